"""Tensors to metadata plus raw bytes and back: every dtype, odd layouts, zero-copy, errors."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
import torch

from splittracer.errors import UserCodeError, WireError
from splittracer.wire.tensors import DTYPE_NAMES, TensorMeta, decode_tensor, encode_tensor


def _sample(name: str, shape: tuple[int, ...] = (3, 5)) -> torch.Tensor:
    """A tensor of dtype ``name`` whose elements differ, so byte mix-ups show."""
    dtype = getattr(torch, name)
    values = torch.arange(int(np.prod(shape)), dtype=torch.int64).reshape(shape)
    if dtype is torch.bool:
        return values % 3 == 0
    if dtype.is_floating_point or dtype.is_complex:
        return (values.to(torch.float64) / 4 - 1).to(dtype)
    return values.to(dtype)


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    """Elements as raw bytes: compares every dtype exactly (NaN and float8 included)."""
    return tensor.contiguous().reshape(-1).view(torch.uint8)


def _round_trip(tensor: torch.Tensor, wrap: type = bytes) -> torch.Tensor:
    meta, data = encode_tensor(tensor)
    wire = msgspec.msgpack.decode(msgspec.msgpack.encode(meta), type=TensorMeta)
    return decode_tensor(wire, wrap(data))


def _assert_same(decoded: torch.Tensor, original: torch.Tensor) -> None:
    assert decoded.dtype == original.dtype
    assert decoded.shape == original.shape
    assert torch.equal(_bits(decoded), _bits(original))


@pytest.mark.parametrize("name", DTYPE_NAMES)
@pytest.mark.parametrize("wrap", [bytes, bytearray])
def test_every_dtype_round_trips(name: str, wrap: type) -> None:
    original = _sample(name)
    _assert_same(_round_trip(original, wrap), original)


def test_common_dtypes_are_supported() -> None:
    common = {"float32", "float16", "float64", "bfloat16", "int8", "int16", "int32", "int64"}
    assert common | {"uint8", "bool"} <= set(DTYPE_NAMES)


def test_bfloat16_keeps_values() -> None:
    original = torch.tensor([1.5, -2.25, 3.0e38, float("inf")], dtype=torch.bfloat16)
    meta, _ = encode_tensor(original)
    decoded = _round_trip(original)
    assert meta.dtype == "bfloat16"
    assert decoded.dtype is torch.bfloat16
    assert torch.equal(decoded.float(), original.float())


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.arange(12.0).reshape(3, 4).t(),
        lambda: torch.arange(20, dtype=torch.int32)[::3],
        lambda: torch.arange(4.0).expand(3, 4),
        lambda: torch.arange(24.0).reshape(2, 3, 4).permute(2, 0, 1)[1:],
        lambda: torch.arange(6.0, dtype=torch.bfloat16).reshape(2, 3).t(),
    ],
    ids=["transposed", "strided", "expanded", "permuted-slice", "bfloat16-transposed"],
)
def test_non_contiguous_tensors_keep_values(make) -> None:
    original = make()
    assert not original.is_contiguous()
    decoded = _round_trip(original)
    assert decoded.is_contiguous()
    assert torch.equal(decoded, original)


def test_lazy_conjugate_and_negative_views_send_their_values() -> None:
    base = torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64)
    assert torch.equal(_round_trip(base.conj()), torch.tensor([1 - 2j, 3 + 4j]))
    assert torch.equal(_round_trip(torch._neg_view(base)), -base)


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 2, 5)])
@pytest.mark.parametrize("name", ["float32", "bfloat16", "bool"])
def test_empty_tensors_round_trip(shape: tuple[int, ...], name: str) -> None:
    original = torch.empty(shape, dtype=getattr(torch, name))
    meta, data = encode_tensor(original)
    assert data.nbytes == 0 and meta.nbytes == 0
    decoded = decode_tensor(meta, bytes(data))
    assert decoded.shape == original.shape and decoded.dtype == original.dtype


def test_scalar_tensor_round_trips() -> None:
    original = torch.tensor(2.5)
    decoded = _round_trip(original)
    assert decoded.shape == () and decoded.item() == 2.5


def test_tensor_that_requires_grad_is_sent_detached() -> None:
    original = torch.ones(3, requires_grad=True) * 2
    decoded = _round_trip(original)
    assert not decoded.requires_grad
    assert torch.equal(decoded, torch.full((3,), 2.0))


def test_contiguous_cpu_tensor_is_encoded_without_copy() -> None:
    tensor = torch.arange(8, dtype=torch.float32)
    meta, data = encode_tensor(tensor)
    assert np.frombuffer(data, dtype=np.uint8).ctypes.data == tensor.data_ptr()
    tensor[0] = 42.0
    assert np.frombuffer(data, dtype=np.float32)[0] == 42.0
    assert meta == TensorMeta(dtype="float32", shape=(8,))


def test_decoding_a_bytearray_shares_its_memory() -> None:
    meta, data = encode_tensor(torch.zeros(4, dtype=torch.int32))
    buffer = bytearray(data)
    decoded = decode_tensor(meta, buffer)
    decoded += 7
    assert np.frombuffer(buffer, dtype=np.int32).tolist() == [7, 7, 7, 7]


def test_decoding_bytes_copies_so_in_place_ops_never_touch_them() -> None:
    meta, data = encode_tensor(torch.zeros(4, dtype=torch.float32))
    frozen = bytes(data)
    decoded = decode_tensor(meta, frozen)
    decoded.add_(1)  # would warn (an error here) or corrupt ``frozen`` if it aliased it
    assert frozen == bytes(16)
    assert torch.equal(decoded, torch.ones(4))


def test_misaligned_buffer_is_copied_to_an_aligned_tensor() -> None:
    meta, data = encode_tensor(torch.arange(5, dtype=torch.float64))
    shifted = memoryview(bytearray(1 + data.nbytes))[1:]
    shifted[:] = data
    decoded = decode_tensor(meta, shifted)
    assert decoded.data_ptr() % 8 == 0
    assert torch.equal(decoded, torch.arange(5, dtype=torch.float64))


def test_unknown_dtype_on_decode_is_a_wire_error() -> None:
    with pytest.raises(WireError, match="unknown tensor dtype 'float128'"):
        decode_tensor(TensorMeta(dtype="float128", shape=(1,)), bytes(16))


@pytest.mark.parametrize("size", [11, 13, 0])
def test_buffer_of_the_wrong_size_is_a_wire_error(size: int) -> None:
    with pytest.raises(WireError, match="needs 12 bytes"):
        decode_tensor(TensorMeta(dtype="float32", shape=(3,)), bytes(size))


def test_negative_dimension_is_rejected_by_the_schema() -> None:
    raw = msgspec.msgpack.encode(["float32", [-1]])
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(raw, type=TensorMeta)


def test_sparse_tensor_cannot_be_sent() -> None:
    with pytest.raises(UserCodeError, match="sparse") as info:
        encode_tensor(torch.eye(3).to_sparse())
    assert "to_dense" in (info.value.hint or "")


def test_unsupported_dtype_cannot_be_sent() -> None:
    with pytest.raises(UserCodeError, match=r"dtype torch\.float8_e4m3fnuz") as info:
        encode_tensor(torch.zeros(2, dtype=torch.float8_e4m3fnuz))
    assert "bfloat16" in (info.value.hint or "")


def test_meta_tensor_cannot_be_sent() -> None:
    with pytest.raises(UserCodeError, match="meta device"):
        encode_tensor(torch.empty(3, device="meta"))


def test_the_torch_free_sizes_are_torchs_own():
    # TensorMeta announces sizes without torch (the controller and frame checks read them);
    # each wire dtype's element size there must be the one torch gives it.
    from splittracer.wire.tensormeta import itemsize_of
    from splittracer.wire.tensors import dtype_of

    for name in DTYPE_NAMES:
        assert itemsize_of(name) == dtype_of(name).itemsize, name
    with pytest.raises(WireError, match="unknown tensor dtype 'float7'"):
        itemsize_of("float7")
