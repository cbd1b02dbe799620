"""Model sources: turn a name such as ``torchvision:alexnet`` into a module.

Sources, by prefix:

``torchvision:NAME``
    Any model torchvision knows (classification, detection, segmentation,
    video, optical flow: both frames stacked on dim 1), with random weights
    -- backbone weights too -- unless a local weights file is given. Nothing
    is downloaded: a builder that tries is a ModelError naming the URL.
``ultralytics:FILE.yaml``
    A YOLO model built from the ``ultralytics`` package's own model yaml
    (optional extra ``splittracer[yolo]``), random weights, no download.
``timm:NAME``
    Any timm model, random weights (optional extra ``splittracer[timm]``).
``transformers:TYPE?key=value&...``
    A Hugging Face model built from its config with the given sizes,
    random weights (optional package ``transformers``; see :mod:`.hf`).
``package.module:callable``
    A user's own model: a module-level ``nn.Module`` instance, or a class or
    function that returns one when called with no arguments.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelError, UserCodeError

if TYPE_CHECKING:  # import_object serves the controller's role checks, which need no torch
    import torch
    from torch import nn

__all__ = ["ModelSpec", "example_input", "load_model", "parse_input_shape"]


@dataclass(frozen=True)
class ModelSpec:
    """A loaded model in eval mode, with the input shape it expects by default."""

    source: str
    module: nn.Module
    input_shape: tuple[int, ...]
    vocab: int | None = None  # inputs are token ids below this (a language model), not noise


def load_model(
    source: str,
    *,
    input_shape: tuple[int, ...] | None = None,
    weights: str | Path | None = None,
) -> ModelSpec:
    """Build the model named by ``source`` (see the module docstring) in eval mode."""
    kind, sep, name = source.partition(":")
    if not sep or not name:
        raise ModelError(
            f"model '{source}' is not of the form SOURCE:NAME",
            hint="Write torchvision:alexnet, ultralytics:yolov8n.yaml, timm:resnet18 "
            "or package.module:callable.",
        )
    builder = _BUILDERS.get(kind)
    module, default_shape = builder(name) if builder else _build_user(kind, name)
    if weights is not None:
        _load_weights(module, Path(weights))
    module.eval()
    vocab = getattr(module, "input_vocab", None)
    return ModelSpec(source, module, input_shape or default_shape, int(vocab) if vocab else None)


def parse_input_shape(text: str) -> tuple[int, ...]:
    """Parse ``"1,3,224,224"`` (or ``1x3x224x224``) into a shape tuple."""
    parts = text.replace("x", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise ModelError(
            f"input shape '{text}' is not a list of positive integers",
            hint="Write it like 1,3,224,224 (batch, channels, height, width).",
        )
    return shape


def example_input(shape: tuple[int, ...], *, seed: int = 0, vocab: int | None = None) -> torch.Tensor:
    """A reproducible synthetic input of ``shape``: standard normal float32, or token ids below ``vocab``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    if vocab:
        return torch.randint(0, vocab, shape, generator=generator)
    return torch.randn(shape, generator=generator)


def _build_torchvision(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    import torchvision

    known = torchvision.models.list_models()
    if name not in known:
        raise ModelError(f"torchvision has no model named '{name}'", hint=_did_you_mean(name, known))
    builder = torchvision.models.get_model_builder(name)
    # Every weight argument a builder takes is None: a detector's default ImageNet backbone
    # weights would otherwise be downloaded although the model's own weights are not.
    offline = {key: None for key in inspect.signature(builder).parameters if key.startswith("weights")}
    with no_downloads(f"torchvision:{name}"):
        module = builder(**offline)
    if ".optical_flow." in builder.__module__:
        _take_frame_pairs(module)
    return module, _torchvision_shape(name, builder.__module__)


class _OnFramePairs:
    """An optical-flow model's forward on one tensor: both frames stacked on dim 1, (N, 2, 3, H, W)."""

    def forward(self, frames: torch.Tensor) -> object:
        return super().forward(frames[:, 0], frames[:, 1])  # type: ignore[misc]


def _take_frame_pairs(module: nn.Module) -> None:
    """Give a two-image model (RAFT) the one-tensor input every split part takes.

    The class is swapped rather than the model wrapped, so its modules keep
    their own names (``feature_encoder``, ``update_block``) as layers.
    """
    kind = type(module)
    module.__class__ = type(f"{kind.__name__}OnFramePairs", (_OnFramePairs, kind), {})


def _torchvision_shape(name: str, where: str) -> tuple[int, ...]:
    """The input a torchvision builder expects: video models take frames, Inception 299 pixels."""
    if ".video." in where:
        return (1, 3, 16, 112, 112)
    if ".optical_flow." in where:
        return (1, 2, 3, 128, 128)  # two frames; RAFT's correlation pyramid needs 128 pixels or more
    size = 299 if "inception_v3" in name else 224
    return (1, 3, size, size)


@contextlib.contextmanager
def no_downloads(source: str) -> Iterator[None]:
    """Turn any attempt to download while ``source`` is built into a ModelError.

    torch.hub's downloader is what torchvision and timm fetch weights with; a
    builder that still wants a file fails with one paragraph instead of a
    urllib traceback (or, worse, a silent download on a device).
    """
    import torch.hub

    def refuse(url: str, *_args: object, **_kwargs: object) -> None:
        raise _DownloadRefused(url)

    real = torch.hub.download_url_to_file
    torch.hub.download_url_to_file = refuse
    try:
        yield
    except _DownloadRefused as exc:
        raise ModelError(
            f"building {source} would download {exc.url}: SplitTracer never downloads weights",
            hint="Build it with random weights (the default), or download the file yourself and "
            "pass it as a local state_dict with --weights (the manifest's model.weights).",
        ) from None
    finally:
        torch.hub.download_url_to_file = real


class _DownloadRefused(Exception):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def _build_ultralytics(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    try:
        from ultralytics.nn import tasks
    except ImportError as exc:
        raise ModelError(
            "ultralytics models need the optional 'ultralytics' package",
            hint="Install it with: pip install 'splittracer[yolo]'",
        ) from exc
    if not name.endswith((".yaml", ".yml")):
        raise ModelError(
            f"ultralytics model '{name}' is not a model yaml",
            hint="Name one of the package's model files, e.g. ultralytics:yolov8n.yaml "
            "(weights files are not loaded: nothing is downloaded).",
        )
    try:
        task = tasks.guess_model_task(tasks.yaml_model_load(name))  # type: ignore[no-untyped-call]
        classes = {
            "detect": tasks.DetectionModel,
            "segment": tasks.SegmentationModel,
            "classify": tasks.ClassificationModel,
            "pose": tasks.PoseModel,
        }
        module = classes.get(task, tasks.DetectionModel)(name, verbose=False)
    except FileNotFoundError as exc:
        raise ModelError(
            f"ultralytics has no model yaml named '{name}'",
            hint="Use a file from ultralytics/cfg/models, e.g. yolov8n.yaml or yolo11n.yaml.",
        ) from exc
    size = 224 if task == "classify" else 640
    return module, (1, 3, size, size)


def _build_timm(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    try:
        import timm
    except ImportError as exc:
        raise ModelError(
            "timm models need the optional 'timm' package",
            hint="Install it with: pip install 'splittracer[timm]'",
        ) from exc
    known = timm.list_models()
    if name not in known:
        raise ModelError(f"timm has no model named '{name}'", hint=_did_you_mean(name, known))
    with no_downloads(f"timm:{name}"):
        module = timm.create_model(name, pretrained=False)
    size = tuple(module.default_cfg.get("input_size", (3, 224, 224)))
    return module, (1, *size)


def _build_transformers(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    from .hf import build_from_config

    with no_downloads(f"transformers:{name}"):
        return build_from_config(name)


def _build_user(module_name: str, attr: str) -> tuple[nn.Module, tuple[int, ...]]:
    from torch import nn

    obj = import_object(module_name, attr)
    model = obj if isinstance(obj, nn.Module) else _call_factory(obj, f"{module_name}:{attr}")
    shape = getattr(model, "example_input_shape", (1, 3, 224, 224))
    return model, tuple(shape)


def import_object(module_name: str, attr: str) -> object:
    """Import ``module_name`` and return its (dotted) attribute ``attr``.

    The current directory is searched first, so a workspace's own files can
    be named. Errors say where Python looked and what it found instead.
    """
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        obj: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UserCodeError(
            f"cannot import module '{module_name}': {exc}",
            hint="Known model sources are torchvision:, ultralytics: and timm:; anything else "
            "must be an importable module (a .py file in the current directory or an "
            "installed package) followed by :name.",
        ) from exc
    except Exception as exc:
        raise UserCodeError(f"importing '{module_name}' failed: {exc!r}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            raise UserCodeError(
                f"module '{module_name}' has no attribute '{attr}'",
                hint=_did_you_mean(part, names),
            )
        obj = getattr(obj, part)
    return obj


def _call_factory(factory: object, where: str) -> nn.Module:
    from torch import nn

    if not callable(factory):
        raise UserCodeError(f"'{where}' is neither an nn.Module nor callable")
    try:
        model = factory()
    except Exception as exc:
        raise UserCodeError(f"calling '{where}()' failed: {exc!r}") from exc
    if not isinstance(model, nn.Module):
        raise UserCodeError(f"'{where}()' returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _load_weights(module: nn.Module, path: Path) -> None:
    import torch

    if not path.is_file():
        raise ModelError(f"weights file '{path}' does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(state)
    except Exception as exc:
        raise ModelError(f"cannot load weights from '{path}': {exc}") from exc


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3)
    return f"Did you mean: {', '.join(close)}?" if close else "Check the spelling."


_BUILDERS: dict[str, Callable[[str], tuple[nn.Module, tuple[int, ...]]]] = {
    "torchvision": _build_torchvision,
    "ultralytics": _build_ultralytics,
    "timm": _build_timm,
    "transformers": _build_transformers,
}
