"""Checks a manifest against its model before anything starts.

The manifest's schema catches malformed keys as it loads; what it cannot see
is whether the model exists and whether the split points the playbook names
exist in it. Those mistakes used to surface only after participants had
started, as a failed run with a traceback. Here the model is loaded on the
controller once (its source resolved, captured, its layers counted) and each
built-in task's splits and cuts are checked with the rules the head applies
(:func:`splittracer.builtin.split_problem`); a mistake is a ConfigError at
the manifest's file and line, exit 2.

Capturing costs seconds, so the count is cached per model, keyed by what
decides it (source, input shape, granularity, the override file's content,
torch's, torchvision's and SplitTracer's versions). A user's own ``module:callable`` model
is captured each time: its code may have changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import tempfile
from pathlib import Path

from ..builtin import split_problem
from ..errors import ConfigError, SplitTracerError
from ..manifest import WORKSPACE_FILE, Manifest, ModelSection, build_task, find_workspace_root, on_sys_path
from ..participant.dataset import load_dataset
from ..version import __version__, torch_version

__all__ = ["check_dataset", "check_manifest", "model_layers", "preflight_cache"]

BUILT_IN_SOURCES = ("torchvision", "ultralytics", "timm")
CACHE_FILE = "model-layers.json"


def check_manifest(manifest: Manifest, cache_dir: Path | None = None) -> int | None:
    """Check ``manifest``'s model and every split its playbook names; its number of layers.

    None when the manifest has no model. ConfigError (located) on the first mistake.
    """
    if manifest.model is None:
        return None
    check_dataset(manifest)
    layers = model_layers(manifest, cache_dir)
    for participant, entries in manifest.playbook.items():
        for index, entry in enumerate(entries):
            problem = split_problem(build_task(entry), layers)
            if problem:
                field, reason = problem
                raise manifest.error_at(
                    ("playbook", participant, index, "params", field),
                    f"{entry.task}.{field}: {reason}",
                    hint=f"{manifest.model.source} has {layers} layers: split points are 0 (send the input) "
                    f"to {layers} (everything on the first participant); `splittracer model inspect "
                    f"{manifest.model.source}` lists them.",
                )
    return layers


def check_dataset(manifest: Manifest) -> None:
    """Every image of the manifest's dataset exists and has a label the mapping knows.

    A mistake inside a CSV is reported at the CSV's line; one about the folder
    or file itself at the manifest's ``model.dataset``.
    """
    model = manifest.model
    if model is None or model.dataset is None:
        return
    try:
        load_dataset(Path(model.dataset), model.label_indices())
    except ConfigError as exc:
        if exc.path is not None:
            raise
        key = ("model", *(exc.key or "model.dataset").split(".")[1:])
        raise manifest.error_at(key, exc.detail, hint=exc.hint) from None


def preflight_cache(workspace: Path | None) -> Path | None:
    """Where a workspace caches its models' layer counts (None: no workspace, no cache)."""
    if workspace is None or not (workspace / WORKSPACE_FILE).is_file():
        return None
    from ..workspace import open_workspace

    return open_workspace(workspace).results_dir / ".cache"


def model_layers(manifest: Manifest, cache_dir: Path | None = None) -> int:
    """How many layers ``manifest``'s model has, captured once and cached; a located ConfigError
    when the model cannot be loaded or captured."""
    model = manifest.model
    assert model is not None
    key = _cache_key(model)
    cached = _read_cache(cache_dir).get(key) if key and cache_dir else None
    if isinstance(cached, int):
        return cached
    layers = _capture_layers(manifest, model)
    if key and cache_dir:
        _write_cache(cache_dir, {**_read_cache(cache_dir), key: layers})
    return layers


def _capture_layers(manifest: Manifest, model: ModelSection) -> int:
    from ..split.capture import muffled
    from ..split.load import load_split_model

    # A user's ``module:callable`` model lives in the workspace, as their roles do.
    code = contextlib.nullcontext() if manifest.path is None else on_sys_path(_code_dir(manifest.path))
    try:
        with muffled(), code:
            loaded = load_split_model(
                model.source,
                input_shape=model.input_shape,
                granularity=model.granularity,
                override=model.override,
            )
    except SplitTracerError as exc:
        raise manifest.error_at(("model", "source"), exc.message, hint=exc.hint) from None
    return loaded.split.num_layers


def _code_dir(manifest_path: Path) -> Path:
    return find_workspace_root(manifest_path.parent) or manifest_path.parent.resolve()


def _cache_key(model: ModelSection) -> str | None:
    if model.source.partition(":")[0] not in BUILT_IN_SOURCES:
        return None
    override = model.override.read_bytes() if model.override and model.override.is_file() else b""
    parts = [
        model.source,
        str(model.input_shape),
        model.granularity,
        hashlib.sha256(override).hexdigest(),
        torch_version(),
        _installed("torchvision"),
        __version__,
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _installed(package: str) -> str:
    """``package``'s installed version, read from its metadata: importing torch for its
    ``__version__`` would cost the controller seconds on every run."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _read_cache(cache_dir: Path | None) -> dict[str, object]:
    if cache_dir is None:
        return {}
    try:
        data = json.loads((cache_dir / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return {}  # no cache yet, or a damaged one: it is only a cache
    return data if isinstance(data, dict) else {}


def _write_cache(cache_dir: Path, data: dict[str, object]) -> None:
    """Replace the cache file whole (write then rename), so a reader never sees half of it."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=cache_dir, prefix=f".{CACHE_FILE}.", suffix=".tmp")
    with os.fdopen(fd, "w") as out:
        json.dump(data, out)
    os.replace(temp, cache_dir / CACHE_FILE)
