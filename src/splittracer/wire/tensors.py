"""Tensors as metadata plus one raw byte buffer, without pickle.

A tensor travels as a :class:`TensorMeta` (dtype name, shape) and the bytes of
its elements in C order. Encoding is zero-copy for contiguous CPU tensors;
decoding is zero-copy when the buffer is writable and aligned (a ``bytearray``
the transport filled), and copies once otherwise, because handlers may change
tensors in place and must never write into an immutable ``bytes`` object.
"""

from __future__ import annotations

import numpy as np
import torch

from splittracer.errors import UserCodeError, WireError

from .tensormeta import DTYPE_NAMES, TensorMeta, announced_nbytes

__all__ = [
    "DTYPE_NAMES",
    "TensorMeta",
    "announced_nbytes",
    "decode_tensor",
    "dtype_of",
    "encode_tensor",
]

# The wire names of .tensormeta, as torch dtypes.
_DTYPES: dict[str, torch.dtype] = {
    "bool": torch.bool,
    "uint8": torch.uint8,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "uint16": torch.uint16,
    "uint32": torch.uint32,
    "uint64": torch.uint64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "complex64": torch.complex64,
    "complex128": torch.complex128,
    "float8_e4m3fn": torch.float8_e4m3fn,
    "float8_e5m2": torch.float8_e5m2,
}
_NAMES: dict[torch.dtype, str] = {dtype: name for name, dtype in _DTYPES.items()}


def dtype_of(name: str) -> torch.dtype:
    """The torch dtype for a wire dtype name; WireError if there is none."""
    try:
        return _DTYPES[name]
    except KeyError:
        known = ", ".join(DTYPE_NAMES)
        raise WireError(f"unknown tensor dtype '{name}'; known: {known}") from None


def encode_tensor(tensor: torch.Tensor) -> tuple[TensorMeta, memoryview]:
    """Metadata and a flat byte view of ``tensor``'s elements in C order.

    The view shares memory with a contiguous CPU tensor; other tensors (on a
    GPU, strided, conjugated) are copied once into a contiguous CPU tensor.
    """
    name = _wire_name(tensor)
    flat = _plain_cpu(tensor).reshape(-1)
    # Viewing as uint8 makes numpy able to export any dtype, bfloat16 included.
    data = flat.view(torch.uint8).numpy().data
    return TensorMeta(dtype=name, shape=tuple(tensor.shape)), data


def decode_tensor(meta: TensorMeta, data: bytes | bytearray | memoryview) -> torch.Tensor:
    """Rebuild the tensor that :func:`encode_tensor` described; WireError if the bytes don't fit."""
    dtype = dtype_of(meta.dtype)
    if type(data) is bytearray and len(data) == meta.nbytes and len(data):
        # The transport's own buffers: writable, and aligned by the allocator (checked anyway).
        flat = torch.frombuffer(data, dtype=torch.uint8)
        if flat.data_ptr() % dtype.itemsize == 0:
            return flat.view(dtype).reshape(meta.shape)
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.nbytes != meta.nbytes:
        raise WireError(f"tensor {meta.dtype}{list(meta.shape)} needs {meta.nbytes} bytes, got {raw.nbytes}")
    if raw.nbytes == 0:  # numpy gives empty arrays stride 0, which torch cannot view as dtype
        return _empty(meta, dtype)
    if not raw.flags.writeable or raw.ctypes.data % dtype.itemsize:
        raw = raw.copy()
    return torch.from_numpy(raw).view(dtype).reshape(meta.shape)


def _empty(meta: TensorMeta, dtype: torch.dtype) -> torch.Tensor:
    """An empty tensor of ``meta``'s shape; WireError if torch cannot stride it (a dimension too large)."""
    try:
        return torch.empty(meta.shape, dtype=dtype)
    except (RuntimeError, OverflowError) as exc:
        raise WireError(f"tensor {meta.dtype}{list(meta.shape)} cannot be built: {exc}") from exc


def _wire_name(tensor: torch.Tensor) -> str:
    if tensor.is_meta:
        raise UserCodeError(
            "cannot send a tensor on the meta device: it has no data",
            hint="send a tensor that holds values (on the CPU or a GPU)",
        )
    if tensor.layout is not torch.strided:
        raise UserCodeError(
            f"cannot send a {tensor.layout} tensor",
            hint="send a dense tensor: call .to_dense() first",
        )
    try:
        return _NAMES[tensor.dtype]
    except KeyError:
        known = ", ".join(DTYPE_NAMES)
        raise UserCodeError(
            f"cannot send a tensor of dtype {tensor.dtype}", hint=f"convert it to one of: {known}"
        ) from None


def _plain_cpu(tensor: torch.Tensor) -> torch.Tensor:
    """A detached, contiguous CPU tensor whose bytes are its values (no lazy conj/neg bits)."""
    plain = tensor.detach().cpu().resolve_conj().resolve_neg()
    return plain.contiguous()
