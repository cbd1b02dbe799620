"""Lossy codecs: property tests over dtypes and shapes, within each codec's documented bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from splittracer.errors import CodecError, WireError
from splittracer.wire.codecs import LOSSLESS, LOSSY, codec_problem, get_codec
from splittracer.wire.lossy import HEADER_BYTES
from splittracer.wire.tensors import decode_tensor, encode_tensor

FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
OTHER_DTYPES = [torch.int64, torch.int32, torch.uint8, torch.bool]
shapes = st.lists(st.integers(0, 6), min_size=0, max_size=4).map(tuple)
seeds = st.integers(0, 2**31 - 1)
scales = st.sampled_from([1e-3, 1.0, 30.0, 1000.0])


def _round_trip(name: str, tensor: torch.Tensor) -> tuple[torch.Tensor, bytes]:
    meta, data = encode_tensor(tensor)
    codec = get_codec(name)
    packed = codec.compress(data, meta)
    return decode_tensor(meta, bytearray(codec.decompress(packed, meta.nbytes))), packed


def _tensor(shape: tuple[int, ...], dtype: torch.dtype, seed: int, scale: float = 1.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=generator, dtype=torch.float64) * scale).to(dtype)
    if dtype is torch.bool:
        return torch.randint(0, 2, shape, generator=generator).bool()
    return torch.randint(0, 200, shape, generator=generator, dtype=dtype)


def _source_rounding(dtype: torch.dtype, x: torch.Tensor) -> torch.Tensor:
    """What writing a float32 result back into ``dtype`` may add."""
    eps = {torch.float16: 2**-11, torch.bfloat16: 2**-8}.get(dtype, 2**-23)
    return x.abs() * eps + 1e-7


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(LOSSLESS),
    shape=shapes,
    dtype=st.sampled_from(FLOAT_DTYPES + OTHER_DTYPES),
    seed=seeds,
)
def test_lossless_codecs_are_bit_exact(
    name: str, shape: tuple[int, ...], dtype: torch.dtype, seed: int
) -> None:
    tensor = _tensor(shape, dtype, seed)
    back, _ = _round_trip(name, tensor)
    assert back.dtype == tensor.dtype and back.shape == tensor.shape
    assert encode_tensor(back)[1].tobytes() == encode_tensor(tensor)[1].tobytes()


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from((*LOSSY, "png", "jpeg:50")),
    shape=shapes,
    dtype=st.sampled_from(OTHER_DTYPES),
    seed=seeds,
)
def test_lossy_codecs_pass_non_float_tensors_unchanged(
    name: str, shape: tuple[int, ...], dtype: torch.dtype, seed: int
) -> None:
    tensor = _tensor(shape, dtype, seed)
    back, packed = _round_trip(name, tensor)
    assert torch.equal(back, tensor)
    assert len(packed) == HEADER_BYTES + tensor.numel() * tensor.element_size()


def _bound(name: str, x: torch.Tensor) -> torch.Tensor:
    """The documented bound of each element's error, for ``x`` in float64."""
    if name == "fp16":
        return torch.where(x.abs() >= 2**-14, x.abs() * 2**-11, torch.full_like(x, 2**-25))
    if name == "bf16":
        return x.abs() * 2**-8
    if name == "int8-channel" and x.dim() >= 3 and x.numel():
        per = x.transpose(0, 1).reshape(x.shape[1], -1)
        spread = per.max(dim=1).values - per.min(dim=1).values
        return (spread / 510).reshape([1, -1] + [1] * (x.dim() - 2)).expand_as(x)
    spread = (x.max() - x.min()) if x.numel() else torch.tensor(0.0)
    return torch.full_like(x, float(spread) / (30 if name == "int4" else 510))


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(LOSSY), shape=shapes, dtype=st.sampled_from(FLOAT_DTYPES), seed=seeds, scale=scales
)
def test_lossy_codecs_stay_within_their_documented_bound(
    name: str, shape: tuple[int, ...], dtype: torch.dtype, seed: int, scale: float
) -> None:
    tensor = _tensor(shape, dtype, seed, scale)
    back, _ = _round_trip(name, tensor)
    assert back.dtype == tensor.dtype and back.shape == tensor.shape
    x = tensor.double()
    error = (back.double() - x).abs()
    slack = _source_rounding(dtype, x) + x.abs().max().clamp(min=0) * 2**-22 if x.numel() else 0
    assert (error <= _bound(name, x) + slack).all()


@pytest.mark.parametrize(
    ("name", "ratio"), [("fp16", 2), ("bf16", 2), ("int8", 4), ("int8-channel", 4), ("int4", 8)]
)
def test_lossy_codecs_shrink_float32_by_their_ratio(name: str, ratio: int) -> None:
    tensor = torch.randn(1, 64, 14, 14)
    _, packed = _round_trip(name, tensor)
    raw = tensor.numel() * 4
    fixed = len(packed) - raw // ratio
    assert 0 < fixed <= HEADER_BYTES + 16 + 8 * 64  # a header and at most one scale pair per channel


def test_int8_channel_beats_int8_when_channels_differ_in_range() -> None:
    tensor = torch.randn(2, 4, 8, 8) * torch.tensor([0.01, 1.0, 100.0, 5.0]).reshape(1, 4, 1, 1)
    small = tensor[:, 0]
    per_tensor, _ = _round_trip("int8", tensor)
    per_channel, _ = _round_trip("int8-channel", tensor)
    assert (per_channel[:, 0] - small).abs().max() < (per_tensor[:, 0] - small).abs().max() / 10


@pytest.mark.parametrize("name", ["int8", "int8-channel", "int4", "png"])
def test_non_finite_tensors_pass_through_integer_codecs(name: str) -> None:
    tensor = torch.tensor([[[[1.0, float("nan")], [float("inf"), -2.0]]]])
    back, _ = _round_trip(name, tensor)
    assert torch.equal(back.isnan(), tensor.isnan())
    assert torch.equal(back.nan_to_num(), tensor.nan_to_num())


def test_fp16_keeps_nan_and_overflows_to_inf() -> None:
    back, _ = _round_trip("fp16", torch.tensor([float("nan"), 1e6, -1e6, 1.0]))
    assert back[0].isnan() and back[1] == float("inf") and back[2] == float("-inf") and back[3] == 1.0


def test_bf16_keeps_nan() -> None:
    back, _ = _round_trip("bf16", torch.tensor([float("nan"), 3.0]))
    assert back[0].isnan() and back[1] == 3.0


def test_png_is_within_the_int8_bound_and_jpeg_improves_with_quality() -> None:
    generator = torch.Generator().manual_seed(1)
    smooth = torch.nn.functional.interpolate(torch.randn(2, 3, 8, 8, generator=generator), size=(64, 64))
    png, _ = _round_trip("png", smooth)
    assert (png - smooth).abs().max() <= float(smooth.max() - smooth.min()) / 510 + 1e-5
    errors, sizes = [], []
    for quality in (10, 50, 95):
        back, packed = _round_trip(f"jpeg:{quality}", smooth)
        errors.append(float((back - smooth).abs().mean()))
        sizes.append(len(packed))
    assert errors[0] > errors[1] > errors[2] and sizes[0] < sizes[1] < sizes[2]


@pytest.mark.parametrize("name", ["jpeg:80", "webp:80", "png"])
def test_image_codecs_handle_grey_and_colour_and_pass_other_shapes(name: str) -> None:
    for shape in [(1, 1, 16, 16), (3, 20, 12), (2, 3, 9, 7)]:
        back, _ = _round_trip(name, torch.rand(shape))
        assert back.shape == shape
        assert (back - torch.rand(shape)).abs().max() < 2  # decoded as an image, not garbage
    activations = torch.randn(1, 64, 4, 4)
    back, _ = _round_trip(name, activations)
    assert torch.equal(back, activations)


def test_decode_refuses_more_than_announced_and_malformed_data() -> None:
    meta, data = encode_tensor(torch.randn(1000))
    codec = get_codec("int8")
    packed = codec.compress(data, meta)
    with pytest.raises(WireError, match="announced"):
        codec.decompress(packed, 100)
    with pytest.raises(WireError):
        codec.decompress(packed[:-5], meta.nbytes)
    with pytest.raises(WireError):
        codec.decompress(b"\x09" + packed[1:], meta.nbytes)
    assert isinstance(np.frombuffer(codec.decompress(packed, meta.nbytes), np.float32), np.ndarray)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("jpeg:90", None),
        ("webp:1", None),
        ("jpeg", None),
        ("jpeg:0", "1 to 100"),
        ("png:5", "no quality"),
        ("fp8", "unknown"),
    ],
)
def test_codec_names_with_a_quality(name: str, problem: str | None) -> None:
    found = codec_problem(name)
    assert (found is None) if problem is None else (found is not None and problem in found)
    if problem is not None:
        with pytest.raises(CodecError):
            get_codec(name)
