"""Codec registry: round trips, real compression, unknown names, missing packages, bad input."""

from __future__ import annotations

import random
import sys

import pytest
import torch

from splittracer.errors import CodecError, SplitTracerError, WireError
from splittracer.wire.codecs import CODECS, get_codec

COMPRESSIBLE = b"split computing " * 4096
FLOATS = torch.linspace(0, 1, 50_000).numpy().tobytes()


def test_codec_names_are_the_documented_ones() -> None:
    assert CODECS == (
        "none",
        "lz4",
        "zstd",
        "blosc2",
        "fp16",
        "bf16",
        "int8",
        "int8-channel",
        "int4",
        "jpeg",
        "webp",
        "png",
    )
    assert [get_codec(name).name for name in CODECS] == list(CODECS)


@pytest.mark.parametrize("name", CODECS)
@pytest.mark.parametrize(
    "data",
    [b"", b"x", COMPRESSIBLE, FLOATS, bytes(range(256)) * 3],
    ids=["empty", "one-byte", "text", "floats", "bytes"],
)
def test_round_trip(name: str, data: bytes) -> None:
    codec = get_codec(name)
    packed = codec.compress(data)
    assert isinstance(packed, bytes)
    assert codec.decompress(packed) == data


@pytest.mark.parametrize("name", CODECS)
def test_compress_accepts_a_memoryview(name: str) -> None:
    tensor = torch.arange(1000, dtype=torch.float32)
    view = memoryview(tensor.numpy())
    codec = get_codec(name, typesize=4)
    assert codec.decompress(codec.compress(view)) == tensor.numpy().tobytes()


@pytest.mark.parametrize("name", ["lz4", "zstd", "blosc2"])
def test_compressing_codecs_shrink_a_compressible_buffer(name: str) -> None:
    packed = get_codec(name).compress(COMPRESSIBLE)
    assert len(packed) < len(COMPRESSIBLE) // 10


def test_none_codec_keeps_bytes_unchanged() -> None:
    assert get_codec("none").compress(memoryview(COMPRESSIBLE)) == COMPRESSIBLE


def test_blosc2_typesize_hint_shuffles_float_bytes() -> None:
    plain = len(get_codec("blosc2", typesize=1).compress(FLOATS))
    shuffled = len(get_codec("blosc2", typesize=4).compress(FLOATS))
    assert shuffled < plain // 4


def test_blosc2_accepts_a_length_the_typesize_does_not_divide() -> None:
    codec = get_codec("blosc2", typesize=4)
    assert codec.decompress(codec.compress(FLOATS + b"abc")) == FLOATS + b"abc"


def test_zstd_level_is_used() -> None:
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(3, 9))) for _ in range(300)]
    text = " ".join(rng.choice(words) for _ in range(40_000)).encode()
    fast = get_codec("zstd").compress(text)
    small = get_codec("zstd", level=19).compress(text)
    assert len(small) < len(fast) * 0.95


def test_unknown_codec_suggests_the_closest_name() -> None:
    with pytest.raises(CodecError, match="unknown codec 'lz5'") as info:
        get_codec("lz5")
    assert isinstance(info.value, SplitTracerError)
    assert "did you mean 'lz4'?" in (info.value.hint or "")


def test_unknown_codec_with_no_close_name_lists_the_known_ones() -> None:
    with pytest.raises(CodecError) as info:
        get_codec("gzip")
    assert "none, lz4, zstd, blosc2" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("name", "modules", "package"),
    [
        ("lz4", ["lz4", "lz4.frame"], "lz4"),
        ("zstd", ["zstandard"], "zstandard"),
        ("blosc2", ["blosc2"], "blosc2"),
    ],
)
def test_missing_package_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, name: str, modules: list[str], package: str
) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # makes ``import module`` fail
    with pytest.raises(CodecError, match=f"needs the '{package}' package") as info:
        get_codec(name)
    assert f"pip install {package}" in (info.value.hint or "")


@pytest.mark.parametrize("name", ["lz4", "zstd", "blosc2"])
def test_corrupt_input_is_a_wire_error(name: str) -> None:
    with pytest.raises(WireError, match=f"not valid {name} output"):
        get_codec(name).decompress(b"this is not compressed data at all")
