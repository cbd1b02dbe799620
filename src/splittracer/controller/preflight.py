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

from ..builtin import Infer, Stream, Sweep, split_problem
from ..config import KeyPath
from ..errors import ConfigError, SplitTracerError
from ..manifest import WORKSPACE_FILE, Manifest, ModelSection, build_task, find_workspace_root, on_sys_path
from ..manifest.located import dotted
from ..participant.dataset import load_dataset
from ..tasks import Task
from ..version import __version__, torch_version

__all__ = ["check_dataset", "check_manifest", "model_layers", "preflight_cache"]

BUILT_IN_SOURCES = ("torchvision", "ultralytics", "timm")
CACHE_FILE = "model-layers.json"


def check_manifest(manifest: Manifest, cache_dir: Path | None = None) -> int | None:
    """Check every model of ``manifest`` and every split its playbook names; the layers of its
    top-level model (of the first participant's own model when there is no top-level one).

    Each playbook task is checked against the model of the participant that runs it, and a
    built-in split task whose route runs different models is refused. None when no one
    runs a model. ConfigError (located) on the first mistake.
    """
    keys = _model_keys(manifest)
    if not keys:
        return None
    check_dataset(manifest)
    _check_model_files(manifest, keys)
    layers = {key: model_layers(manifest, cache_dir, key) for key in keys}
    for participant, entries in manifest.playbook.items():
        key = manifest.model_key(participant)
        for index, entry in enumerate(entries):
            task = build_task(entry)
            _check_one_model(manifest, participant, index, task)
            if manifest.model_of(participant) is not None:
                _check_splits(manifest, participant, index, task, layers[key])
    return layers[keys[0]]


def _model_keys(manifest: Manifest) -> list[KeyPath]:
    """Where each model is written: the top-level one first, then each participant's own."""
    own: list[KeyPath] = [("participants", n, "model") for n, p in manifest.participants.items() if p.model]
    return [("model",), *own] if manifest.model is not None else own


def _check_splits(manifest: Manifest, participant: str, index: int, task: Task, layers: int) -> None:
    problem = split_problem(task, layers)
    if problem is None:
        return
    field, reason = problem
    source = _model_at(manifest, manifest.model_key(participant)).source
    raise manifest.error_at(
        ("playbook", participant, index, "params", field),
        f"{type(task).__name__}.{field}: {reason}",
        hint=f"{source} (the model '{participant}' runs) has {layers} layers: split points are 0 "
        f"(send the input) to {layers} (everything on the first participant); `splittracer model "
        f"inspect {source}` lists them.",
    )


def _check_one_model(manifest: Manifest, participant: str, index: int, task: Task) -> None:
    """A built-in split task cuts one model: every participant on its route must run the same one."""
    if not isinstance(task, Infer | Sweep | Stream):
        return
    head = manifest.model_of(participant)
    for name in task.next:
        other = manifest.model_of(name)
        if manifest.participant_named(name) is None or other == head:
            continue
        raise manifest.error_at(
            ("playbook", participant, index, "params", "next"),
            f"{type(task).__name__} runs parts of one model along its route, but '{participant}' runs "
            f"{_source(head)} and '{name}' runs {_source(other)}",
            hint="Give both the same model:, or write a role of your own that passes one model's "
            "output to the other (README: a model per participant).",
        )


def _check_model_files(manifest: Manifest, keys: list[KeyPath]) -> None:
    """The models' files reach a device under their base names, beside one dataset folder:
    two different files may not share a name, nor may models on devices name two datasets."""
    seen: dict[str, tuple[Path, KeyPath]] = {}
    datasets: dict[Path, KeyPath] = {}
    for where in keys:
        model = _model_at(manifest, where)
        for field, path in (("override", model.override), ("weights", model.weights)):
            if path is None:
                continue
            first, at = seen.setdefault(path.name, (path, (*where, field)))
            if first.resolve() != path.resolve():
                raise manifest.error_at(
                    (*where, field),
                    f"'{path}' and '{first}' ({dotted(at)}) have the same file name, "
                    "and a model's files reach a device under their names",
                    hint="Rename one of them.",
                )
        if model.dataset is not None:
            datasets.setdefault(Path(model.dataset).resolve(), (*where, "dataset"))
    if len(datasets) > 1 and any(p.device != "local" or p.devices for p in manifest.participants.values()):
        raise manifest.error_at(
            list(datasets.values())[1],
            "a run sends one dataset to its devices, but its models name "
            + " and ".join(f"'{d}'" for d in datasets),
            hint="Give the models one dataset, or run the participants with another dataset locally.",
        )


def _source(model: ModelSection | None) -> str:
    return "no model" if model is None else model.source


def _model_at(manifest: Manifest, key: KeyPath) -> ModelSection:
    """The model written at ``key``: ``("model",)`` or ``("participants", NAME, "model")``."""
    model = manifest.model if key == ("model",) else manifest.participants[str(key[1])].model
    assert model is not None
    return model


def check_dataset(manifest: Manifest) -> None:
    """Every image of each model's dataset exists and has a label its mapping knows.

    A mistake inside a CSV is reported at the CSV's line; one about the folder
    or file itself at the manifest's ``model.dataset`` (or the participant's).
    """
    for where in _model_keys(manifest):
        model = _model_at(manifest, where)
        if model.dataset is None:
            continue
        try:
            load_dataset(Path(model.dataset), model.label_indices())
        except ConfigError as exc:
            if exc.path is not None:
                raise
            key = (*where, *(exc.key or "model.dataset").split(".")[1:])
            raise manifest.error_at(key, exc.detail, hint=exc.hint) from None


def preflight_cache(workspace: Path | None) -> Path | None:
    """Where a workspace caches its models' layer counts (None: no workspace, no cache)."""
    if workspace is None or not (workspace / WORKSPACE_FILE).is_file():
        return None
    from ..workspace import open_workspace

    return open_workspace(workspace).results_dir / ".cache"


def model_layers(manifest: Manifest, cache_dir: Path | None = None, key: KeyPath = ("model",)) -> int:
    """How many layers the model at ``key`` of ``manifest`` has (the top-level one by default),
    captured once and cached; a located ConfigError when it cannot be loaded or captured."""
    model = _model_at(manifest, key)
    cache_key = _cache_key(model)
    cached = _read_cache(cache_dir).get(cache_key) if cache_key and cache_dir else None
    if isinstance(cached, int):
        return cached
    layers = _capture_layers(manifest, model, key)
    if cache_key and cache_dir:
        _write_cache(cache_dir, {**_read_cache(cache_dir), cache_key: layers})
    return layers


def _capture_layers(manifest: Manifest, model: ModelSection, key: KeyPath) -> int:
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
        raise manifest.error_at((*key, "source"), exc.message, hint=exc.hint) from None
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
