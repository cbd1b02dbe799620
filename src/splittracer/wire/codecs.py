"""Compression codecs for tensor buffers, chosen by name.

Each codec's package is imported only when the codec is asked for, so a
device without ``blosc2`` can still run with ``lz4``. Corrupt input on
decompression becomes a :class:`~splittracer.errors.WireError`.

Decompression takes a ``limit``: the size the sender announced. Output
beyond it is refused without being allocated (a decompression bomb: a few
bytes that expand to gigabytes): the size a frame's header declares is
checked first, and the output is read at most ``limit + 1`` bytes at a time.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

from splittracer.errors import CodecError, WireError

if TYPE_CHECKING:
    from .tensormeta import TensorMeta

LOSSLESS: tuple[str, ...] = ("none", "lz4", "zstd", "blosc2")
"""Codecs that give back every bit."""

LOSSY: tuple[str, ...] = ("fp16", "bf16", "int8", "int8-channel", "int4")
"""Codecs that quantise float tensors (:mod:`.lossy` states their error bounds)."""

IMAGE: tuple[str, ...] = ("jpeg", "webp", "png")
"""Image codecs for an input image at split 0: ``jpeg:Q`` and ``webp:Q`` (quality 1-100), ``png``."""

CODECS: tuple[str, ...] = LOSSLESS + LOSSY + IMAGE
"""Names :func:`get_codec` accepts (``jpeg`` and ``webp`` also as ``jpeg:Q``)."""

_DEFAULT_QUALITY = 75

_DEFAULT_LEVELS = {"lz4": 0, "zstd": 1, "blosc2": 5}


class Codec(Protocol):
    """Turns a byte buffer into a (usually smaller) one and back."""

    @property
    def name(self) -> str:
        """The name :func:`get_codec` knows this codec by."""
        ...

    def compress(self, data: bytes | memoryview, meta: TensorMeta | None = None) -> bytes:
        """Compress ``data``: the elements of a tensor described by ``meta``, when given
        (lossy codecs need it; lossless ones read bytes alone)."""
        ...

    def decompress(self, data: bytes, limit: int | None = None) -> bytes:
        """Undo :meth:`compress`; WireError if ``data`` is not this codec's output or
        would expand beyond ``limit`` bytes (None: no limit)."""
        ...


def get_codec(name: str, *, level: int | None = None, typesize: int = 1) -> Codec:
    """The codec called ``name``.

    ``level`` overrides the codec's speed-first default (lz4 0, zstd 1,
    blosc2 5). ``typesize`` is the element size of the data (4 for float32);
    blosc2 uses it to shuffle bytes of equal significance together, which
    makes float tensors compress far better. Other codecs ignore it.
    """
    problem = codec_problem(name)
    if problem is not None:
        known = name.partition(":")[0] in CODECS
        raise CodecError(problem, hint="for example jpeg:90" if known else _did_you_mean(name))
    base, _, quality = name.partition(":")
    if base in LOSSY or base in IMAGE:
        from .lossy import LossyCodec

        return LossyCodec(base, int(quality) if quality else _DEFAULT_QUALITY)
    return _BUILDERS[base](_DEFAULT_LEVELS.get(base, 0) if level is None else level, typesize)


def codec_problem(name: str) -> str | None:
    """Why ``name`` names no codec (None when it does); reads no codec package."""
    base, colon, quality = name.partition(":")
    if base not in CODECS:
        return f"unknown codec '{name}'"
    if not colon:
        return None
    if base not in ("jpeg", "webp"):
        return f"codec '{base}' takes no quality (only jpeg:Q and webp:Q do)"
    if not quality.isdigit() or not 1 <= int(quality) <= 100:
        return f"codec '{name}': the quality after ':' must be a whole number from 1 to 100"
    return None


def is_lossless(name: str) -> bool:
    """Whether codec ``name`` gives back every bit."""
    return name in LOSSLESS


@dataclass(frozen=True)
class _NoCodec:
    name: str = "none"

    def compress(self, data: bytes | memoryview, meta: TensorMeta | None = None) -> bytes:
        return bytes(data)

    def decompress(self, data: bytes, limit: int | None = None) -> bytes:
        _check_declared(self.name, len(data), limit)
        return data


@dataclass(frozen=True)
class _Lz4Codec:
    level: int
    frame: ModuleType
    name: str = "lz4"

    def compress(self, data: bytes | memoryview, meta: TensorMeta | None = None) -> bytes:
        return bytes(self.frame.compress(data, compression_level=self.level))

    def decompress(self, data: bytes, limit: int | None = None) -> bytes:
        try:
            if limit is None:
                return bytes(self.frame.decompress(data))
            _check_declared(self.name, self.frame.get_frame_info(data).get("content_size") or 0, limit)
            out = self.frame.LZ4FrameDecompressor().decompress(data, max_length=limit + 1)
        except RuntimeError as exc:
            raise _corrupt(self.name, exc) from exc
        return _within(self.name, bytes(out), limit)


@dataclass(frozen=True)
class _ZstdCodec:
    level: int
    zstd: ModuleType
    name: str = "zstd"

    def compress(self, data: bytes | memoryview, meta: TensorMeta | None = None) -> bytes:
        return bytes(self.zstd.ZstdCompressor(level=self.level).compress(data))

    def decompress(self, data: bytes, limit: int | None = None) -> bytes:
        try:
            if limit is None:
                return bytes(self.zstd.ZstdDecompressor().decompress(data))
            declared = self.zstd.get_frame_parameters(data).content_size
            unknown = declared == self.zstd.CONTENTSIZE_UNKNOWN
            _check_declared(self.name, 0 if unknown else declared, limit)
            with self.zstd.ZstdDecompressor().stream_reader(data) as reader:
                out = reader.read(limit + 1)
        except self.zstd.ZstdError as exc:
            raise _corrupt(self.name, exc) from exc
        return _within(self.name, bytes(out), limit)


@dataclass(frozen=True)
class _Blosc2Codec:
    level: int
    typesize: int
    blosc2: ModuleType
    name: str = "blosc2"

    def compress(self, data: bytes | memoryview, meta: TensorMeta | None = None) -> bytes:
        view = memoryview(data).cast("B")
        if view.nbytes > self.blosc2.MAX_BUFFERSIZE:
            raise CodecError(
                f"blosc2 compresses at most {self.blosc2.MAX_BUFFERSIZE} bytes at once, got {view.nbytes}",
                hint="use the zstd or lz4 codec for buffers this large",
            )
        # blosc2 refuses a typesize that does not divide the length; shuffle needs it to.
        typesize = self.typesize if view.nbytes % self.typesize == 0 else 1
        return bytes(self.blosc2.compress(view, typesize=typesize, clevel=self.level))

    def decompress(self, data: bytes, limit: int | None = None) -> bytes:
        try:
            if limit is not None:  # blosc2 allocates the size its header declares: check it first
                _check_declared(self.name, self.blosc2.get_cbuffer_sizes(data)[0], limit)
            return bytes(self.blosc2.decompress(data))
        except (ValueError, RuntimeError) as exc:
            raise _corrupt(self.name, exc) from exc


def _none(level: int, typesize: int) -> Codec:
    return _NoCodec()


def _lz4(level: int, typesize: int) -> Codec:
    return _Lz4Codec(level=level, frame=_require("lz4", "lz4.frame", "lz4"))


def _zstd(level: int, typesize: int) -> Codec:
    return _ZstdCodec(level=level, zstd=_require("zstd", "zstandard", "zstandard"))


def _blosc2(level: int, typesize: int) -> Codec:
    if typesize < 1:
        raise CodecError(f"typesize must be at least 1, got {typesize}")
    return _Blosc2Codec(level=level, typesize=typesize, blosc2=_require("blosc2", "blosc2", "blosc2"))


_BUILDERS: dict[str, Callable[[int, int], Codec]] = {
    "none": _none,
    "lz4": _lz4,
    "zstd": _zstd,
    "blosc2": _blosc2,
}


def _require(codec: str, module: str, package: str) -> ModuleType:
    """Import ``module`` or say which package to install for ``codec``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise CodecError(
            f"codec '{codec}' needs the '{package}' package, which is not installed",
            hint=f"run: pip install {package}  (or pick another codec: {', '.join(CODECS)})",
        ) from exc


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name.partition(":")[0], CODECS, n=1)
    known = f"known codecs: {', '.join(CODECS)}"
    return f"did you mean '{close[0]}'? {known}" if close else known


def _check_declared(codec: str, size: int, limit: int | None) -> None:
    if limit is not None and size > limit:
        raise WireError(f"{codec} data would expand to {size} bytes; the sender announced {limit}")


def _within(codec: str, out: bytes, limit: int) -> bytes:
    if len(out) > limit:
        raise WireError(f"{codec} data expands beyond the {limit} bytes the sender announced")
    return out


def _corrupt(codec: str, exc: Exception) -> WireError:
    return WireError(f"data is not valid {codec} output: {exc}")
