"""What a receiver needs to rebuild a tensor, without torch.

A tensor travels as a :class:`TensorMeta` (a wire dtype name and a shape)
and the bytes of its elements. The metadata and the sizes it announces are
read here without importing torch, so a process that only routes tasks (the
controller, a frame reader checking sizes) never pays torch's import time;
:mod:`.tensors` turns metadata and bytes into tensors.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from splittracer.errors import WireError

__all__ = ["DTYPE_NAMES", "TensorMeta", "announced_nbytes", "itemsize_of"]

# Names on the wire are ours, not torch's repr, so a torch rename cannot break old peers.
# Bytes per element; ``tensors`` maps the same names to torch dtypes (a unit test checks both agree).
_ITEMSIZES: dict[str, int] = {
    "bool": 1,
    "uint8": 1,
    "int8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "uint16": 2,
    "uint32": 4,
    "uint64": 8,
    "float16": 2,
    "bfloat16": 2,
    "float32": 4,
    "float64": 8,
    "complex64": 8,
    "complex128": 16,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
}

DTYPE_NAMES: tuple[str, ...] = tuple(_ITEMSIZES)
"""Every dtype name a tensor can carry on the wire."""


def itemsize_of(name: str) -> int:
    """Bytes per element of a wire dtype name; WireError if there is none."""
    try:
        return _ITEMSIZES[name]
    except KeyError:
        known = ", ".join(DTYPE_NAMES)
        raise WireError(f"unknown tensor dtype '{name}'; known: {known}") from None


class TensorMeta(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """What a receiver needs to rebuild a tensor from its bytes."""

    dtype: str
    shape: tuple[Annotated[int, msgspec.Meta(ge=0)], ...]

    @property
    def nbytes(self) -> int:
        """Size in bytes of the element buffer this metadata describes."""
        return numel(self.shape) * itemsize_of(self.dtype)


class _HeaderTensors(msgspec.Struct, array_like=True, frozen=True):
    """The start of a task header (``splittracer.tasks``): the metadata of its tensors, in buffer order.

    The header's later elements (the task's field values) are not read here.
    """

    version: int
    type: str
    priority: int
    tensors: list[TensorMeta]


_HEADER_TENSORS = msgspec.msgpack.Decoder(_HeaderTensors)


def announced_nbytes(task_header: bytes | memoryview) -> list[int]:
    """The bytes each tensor buffer of a task needs, as its header announces (dtype x elements).

    WireError when the header cannot be read or names an unknown dtype: the sizes of the
    buffers that follow it cannot be trusted then.
    """
    try:
        head = _HEADER_TENSORS.decode(task_header)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec: a str not UTF-8
        raise WireError(
            f"malformed task header: {exc}", hint="run the same splittracer version on every device"
        ) from exc
    return [meta.nbytes for meta in head.tensors]


def numel(shape: tuple[int, ...]) -> int:
    """How many elements a tensor of ``shape`` holds."""
    count = 1
    for size in shape:
        count *= size
    return count
