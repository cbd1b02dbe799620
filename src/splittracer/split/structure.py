"""Flatten any value a layer returns into tensors, and build it back on the other side.

A layer captured eagerly may return more than a tensor: a tuple, an
``OrderedDict`` of feature maps, torchvision's ``ImageList`` (tensors and a
list of image sizes), a list of dicts of boxes. Only tensors travel between
participants, so a value is split into its tensor *leaves* and a *spec* of
its structure, recorded once on the example input. Numbers (an image size)
travel as 0-d tensors, so nothing that can change with the input is frozen
into the spec; only ``None``, strings, dtypes and other constants are.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import SplitError


@dataclass(frozen=True)
class Spec:
    """The structure of one value: ``kind`` and, for containers, its children's specs.

    Kinds: ``tensor``, ``number`` (a Python int, float or bool sent as a 0-d
    tensor), ``const`` (kept as is), ``size`` (a ``torch.Size``), ``seq``
    (a list, tuple or named tuple), ``map`` (a dict), ``object`` (an object
    rebuilt from its attributes, e.g. ``ImageList``).
    """

    kind: str
    type: Any = None
    keys: tuple[Any, ...] = ()
    children: tuple[Spec, ...] = ()
    value: Any = None

    def kinds(self) -> list[str]:
        """The kind of every leaf in order: ``tensor`` or ``number`` (a number or a size's dimension)."""
        if self.kind in ("tensor", "number"):
            return [self.kind]
        if self.kind == "size":
            return ["number"] * len(self.keys)
        return [kind for child in self.children for kind in child.kinds()]

    @property
    def count(self) -> int:
        """How many tensor leaves the value flattens into."""
        if self.kind in ("tensor", "number"):
            return 1
        if self.kind == "size":
            return len(self.keys)
        return sum(child.count for child in self.children)


def flatten(value: Any) -> tuple[list[torch.Tensor], Spec]:
    """The tensor leaves of ``value`` in a fixed order, and its spec."""
    leaves: list[torch.Tensor] = []
    return leaves, _flatten(value, leaves)


def leaves_of(value: Any) -> list[torch.Tensor]:
    """Only the tensor leaves (what a spec's ``count`` counts)."""
    return flatten(value)[0]


def tensors_in(value: Any) -> Iterator[torch.Tensor]:
    """Every tensor inside ``value``, without making tensors of its numbers."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item)
    elif _is_record(value):
        for item in vars(value).values():
            yield from tensors_in(item)


def unflatten(spec: Spec, leaves: Iterator[torch.Tensor]) -> Any:
    """Build the value ``spec`` describes from the next leaves of ``leaves``."""
    try:
        return _build(spec, leaves)
    except StopIteration:
        raise SplitError("fewer tensors arrived than the layer's output has leaves") from None


def _flatten(value: Any, leaves: list[torch.Tensor]) -> Spec:
    if isinstance(value, torch.Tensor):
        leaves.append(value)
        return Spec("tensor")
    if isinstance(value, (bool, int, float)):
        leaves.append(torch.tensor(value))
        return Spec("number", type(value))
    if isinstance(value, torch.Size):
        leaves.extend(torch.tensor(d) for d in value)
        return Spec("size", keys=tuple(range(len(value))))
    if isinstance(value, (list, tuple)):
        return Spec("seq", type(value), children=tuple(_flatten(v, leaves) for v in value))
    if isinstance(value, dict):
        keys = tuple(value)
        return Spec("map", type(value), keys, tuple(_flatten(value[k], leaves) for k in keys))
    if _is_record(value):
        names = tuple(vars(value))
        return Spec("object", type(value), names, tuple(_flatten(getattr(value, n), leaves) for n in names))
    return Spec("const", value=value)


def _build(spec: Spec, leaves: Iterator[torch.Tensor]) -> Any:
    kind = spec.kind
    if kind == "tensor":
        return next(leaves)
    if kind == "number":
        return spec.type(next(leaves).item())
    if kind == "size":
        return torch.Size(int(next(leaves)) for _ in spec.keys)
    if kind == "seq":
        items = [_build(child, leaves) for child in spec.children]
        if spec.type in (list, tuple):
            return spec.type(items)
        return spec.type(*items)  # a named tuple takes its fields positionally
    if kind == "map":
        return spec.type((k, _build(child, leaves)) for k, child in zip(spec.keys, spec.children))
    if kind == "object":
        obj = spec.type.__new__(spec.type)
        for name, child in zip(spec.keys, spec.children):
            setattr(obj, name, _build(child, leaves))
        return obj
    return spec.value


def _is_record(value: Any) -> bool:
    """A plain object holding values (ImageList), not a module, function or class."""
    if isinstance(value, (torch.nn.Module, type)) or callable(value):
        return False
    return hasattr(value, "__dict__") and type(value).__module__ != "builtins"
