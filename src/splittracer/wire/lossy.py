"""Lossy codecs for tensor buffers: fewer bytes on the cut for a bounded error.

A lossy codec sees one tensor's bytes together with its
:class:`~splittracer.wire.tensors.TensorMeta`; what it sends starts with a
fixed 10-byte header (kind, source dtype, element count), then the kind's
parameters, then the payload. The receiver rebuilds a buffer of the source
dtype and shape, so the task decoder never knows a codec was there.

Error bounds, for a finite source value ``x`` and the value ``x'`` the
receiver gets (``lo``/``hi``: the tensor's, or the channel's, minimum and
maximum), plus the rounding of float32 arithmetic and of the source dtype:

========================  =============================================================
``fp16``                  ``|x - x'| <= 2**-11 * |x|`` for ``2**-14 <= |x| <= 65504``;
                          ``<= 2**-25`` below; beyond 65504 the value becomes ``±inf``
``bf16``                  ``|x - x'| <= 2**-8 * |x|`` (float32's range)
``int8``                  ``|x - x'| <= (hi - lo) / 510``, one ``lo``/scale per tensor
``int8-channel``          the same per channel (axis 1 of a tensor of 3+ dimensions;
                          per tensor for fewer)
``int4``                  ``|x - x'| <= (hi - lo) / 30``, two values per byte
``png``                   as ``int8`` (the 8-bit image is kept exactly)
``jpeg:Q``, ``webp:Q``    no fixed bound: the image codec decides; measure agreement
========================  =============================================================

Only float tensors (float16, bfloat16, float32, float64) are encoded; any
other dtype (int64 indices, masks) passes through unchanged, as does a tensor
holding NaN or inf under an integer or image codec, an fp16/bf16 codec on a
tensor already 2 bytes per value, and an image codec on a tensor that is no
image (axis -3 of 1 or 3 channels). Pass-through costs the 10-byte header.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from splittracer.errors import WireError

if TYPE_CHECKING:
    from .tensormeta import TensorMeta

_HEADER = struct.Struct("<BBQ")  # kind, source dtype code, element count
_AFFINE = struct.Struct("<ff")  # lo, scale
_CHANNELS = struct.Struct("<IQ")  # channels, elements per channel run
_IMAGE = struct.Struct("<IIII")  # images, channels, height, width

_RAW, _FP16, _BF16, _INT8, _INT8_CHANNEL, _INT4, _IMAGE_KIND = range(7)
_FLOATS = ("float16", "bfloat16", "float32", "float64")
_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
_KINDS = {"fp16": _FP16, "bf16": _BF16, "int8": _INT8, "int8-channel": _INT8_CHANNEL, "int4": _INT4}

LOSSY_CODECS: tuple[str, ...] = tuple(_KINDS)
"""Names of the lossy tensor codecs (image codecs aside)."""

IMAGE_CODECS: tuple[str, ...] = ("jpeg", "webp", "png")
"""Image codecs for an input at split 0; ``jpeg`` and ``webp`` take a quality, ``jpeg:90``."""

HEADER_BYTES = _HEADER.size
"""Bytes every lossy-encoded buffer starts with."""


@dataclass(frozen=True)
class LossyCodec:
    """A lossy codec: ``compress`` needs the tensor's meta; without it the bytes pass through."""

    name: str
    quality: int = 0  # jpeg and webp only

    def compress(self, data: bytes | memoryview, meta: TensorMeta | None = None) -> bytes:
        """Encode one tensor's bytes (its dtype and shape in ``meta``)."""
        view = memoryview(data).cast("B")
        if meta is None or meta.dtype not in _FLOATS or view.nbytes == 0:
            return _raw(view)
        values = _to_float32(view, meta.dtype)
        code = _FLOATS.index(meta.dtype)
        with np.errstate(over="ignore", invalid="ignore"):  # beyond fp16's range is inf, as documented
            body = self._encode(values, meta, code)
        return _raw(view) if body is None else body

    def decompress(self, data: bytes, limit: int | None = None) -> bytes:
        """The source dtype's bytes again; WireError if ``data`` is malformed or exceeds ``limit``."""
        try:
            return _decode(data, limit)
        except (struct.error, ValueError, IndexError, OSError) as exc:
            raise WireError(f"data is not valid {self.name} output: {exc}") from exc

    def _encode(self, x: np.ndarray, meta: TensorMeta, code: int) -> bytes | None:
        head = _HEADER.pack
        if self.name in ("fp16", "bf16"):
            if _ITEMSIZE[meta.dtype] <= 2:
                return None
            kind = _KINDS[self.name]
            payload = x.astype(np.float16) if kind == _FP16 else _bf16_bits(x)
            return head(kind, code, x.size) + payload.tobytes()
        if not np.isfinite(x).all():
            return None
        if self.name in IMAGE_CODECS:
            return _encode_image(x, meta, code, self.name, self.quality)
        if self.name == "int8-channel":
            return head(_INT8_CHANNEL, code, x.size) + _channel_affine(x, meta.shape)
        levels = 15 if self.name == "int4" else 255
        lo, scale, q = _affine(x, levels)
        payload = _pack4(q) if levels == 15 else q
        return (
            head(_INT4 if levels == 15 else _INT8, code, x.size) + _AFFINE.pack(lo, scale) + payload.tobytes()
        )


def _raw(view: memoryview) -> bytes:
    return _HEADER.pack(_RAW, 0, view.nbytes) + bytes(view)


def _to_float32(view: memoryview, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        bits = np.frombuffer(view, dtype=np.uint16).astype(np.uint32) << 16
        return bits.view(np.float32)
    return np.frombuffer(view, dtype=np.dtype(dtype)).astype(np.float32, copy=False)


def _from_float32(x: np.ndarray, dtype: str) -> bytes:
    if dtype == "bfloat16":
        return _bf16_bits(x).tobytes()
    return x.astype(np.dtype(dtype), copy=False).tobytes()


def _bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 to bfloat16 bit patterns, rounding to nearest even; NaN stays NaN."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((bits + (((bits >> 16) & 1) + 0x7FFF)) >> 16).astype(np.uint16)
    return np.where(np.isnan(x), np.uint16(0x7FC0), rounded)


def _affine(x: np.ndarray, levels: int) -> tuple[float, float, np.ndarray]:
    """``lo``, scale and the levels ``0..levels`` that ``lo + q * scale`` maps back."""
    lo, hi = float(x.min()), float(x.max())
    scale = (hi - lo) / levels if hi > lo else 1.0
    scale = float(np.float32(scale)) or 1.0  # the scale the receiver will use; never 0
    q = np.rint((x - np.float32(lo)) / np.float32(scale))
    return lo, scale, np.clip(q, 0, levels).astype(np.uint8)


def _channel_affine(x: np.ndarray, shape: tuple[int, ...]) -> bytes:
    """Per-channel int8: channel count, run length, every channel's lo and scale, the levels."""
    # (batch, channels, ...): a 2-D (batch, features) tensor has no channels worth a scale each.
    channels = shape[1] if len(shape) >= 3 else 1
    inner = x.size // (shape[0] * channels) if len(shape) >= 3 else x.size
    runs = x.reshape(-1, channels, inner)
    lo = runs.min(axis=(0, 2))
    hi = runs.max(axis=(0, 2))
    scale = np.where(hi > lo, (hi - lo) / np.float32(255), np.float32(1)).astype(np.float32)
    scale[scale == 0] = 1
    q = np.rint((runs - lo[None, :, None]) / scale[None, :, None])
    levels = np.clip(q, 0, 255).astype(np.uint8)
    params: bytes = lo.astype(np.float32).tobytes() + scale.tobytes()
    payload: bytes = levels.tobytes()
    return _CHANNELS.pack(channels, inner) + params + payload


def _pack4(q: np.ndarray) -> np.ndarray:
    padded = np.append(q, np.uint8(0)) if q.size % 2 else q
    packed: np.ndarray = padded[0::2] | (padded[1::2] << 4)
    return packed


def _unpack4(packed: np.ndarray, count: int) -> np.ndarray:
    both = np.empty(packed.size * 2, dtype=np.uint8)
    both[0::2] = packed & 0x0F
    both[1::2] = packed >> 4
    return both[:count]


def _decode(data: bytes, limit: int | None) -> bytes:
    kind, code, count = _HEADER.unpack_from(data)
    body = memoryview(data)[_HEADER.size :]
    if kind == _RAW:
        _check(count, limit)
        if body.nbytes != count:
            raise ValueError(f"announces {count} bytes, holds {body.nbytes}")
        return bytes(body)
    dtype = _FLOATS[code]
    _check(count * _ITEMSIZE[dtype], limit)
    return _from_float32(_decoded_values(kind, body, count), dtype)


def _decoded_values(kind: int, body: memoryview, count: int) -> np.ndarray:
    if kind == _FP16:
        return _exact(np.frombuffer(body, dtype=np.float16), count).astype(np.float32)
    if kind == _BF16:
        bits = _exact(np.frombuffer(body, dtype=np.uint16), count).astype(np.uint32) << 16
        return bits.view(np.float32)
    if kind == _INT8_CHANNEL:
        return _decode_channels(body, count)
    if kind == _IMAGE_KIND:
        return _decode_image(body, count)
    if kind not in (_INT8, _INT4):
        raise ValueError(f"unknown kind {kind}")
    lo, scale = _AFFINE.unpack_from(body)
    levels = np.frombuffer(body[_AFFINE.size :], dtype=np.uint8)
    q = _unpack4(_exact(levels, (count + 1) // 2), count) if kind == _INT4 else _exact(levels, count)
    values: np.ndarray = np.float32(lo) + q.astype(np.float32) * np.float32(scale)
    return values


def _decode_channels(body: memoryview, count: int) -> np.ndarray:
    channels, inner = _CHANNELS.unpack_from(body)
    if channels == 0 or inner == 0 or count % (channels * inner):
        raise ValueError(f"{channels} channels of {inner} do not tile {count} values")
    at = _CHANNELS.size
    lo = _exact(np.frombuffer(body[at : at + 4 * channels], dtype=np.float32), channels)
    scale = _exact(np.frombuffer(body[at + 4 * channels : at + 8 * channels], dtype=np.float32), channels)
    q = _exact(np.frombuffer(body[at + 8 * channels :], dtype=np.uint8), count)
    runs = q.reshape(-1, channels, inner).astype(np.float32)
    values: np.ndarray = (lo[None, :, None] + runs * scale[None, :, None]).reshape(-1)
    return values


def _encode_image(x: np.ndarray, meta: TensorMeta, code: int, fmt: str, quality: int) -> bytes | None:
    """Each image of the batch through Pillow, after the 8-bit affine map of ``int8``."""
    shape = meta.shape
    if len(shape) not in (3, 4) or shape[-3] not in (1, 3):
        return None
    from PIL import Image

    channels, height, width = shape[-3:]
    lo, scale, q = _affine(x, 255)
    images = q.reshape(-1, channels, height, width)
    parts = [_HEADER.pack(_IMAGE_KIND, code, x.size), _AFFINE.pack(lo, scale)]
    parts.append(_IMAGE.pack(len(images), channels, height, width))
    for image in images:
        pixels = image[0] if channels == 1 else np.ascontiguousarray(image.transpose(1, 2, 0))
        out = io.BytesIO()
        options = {"quality": quality} if fmt != "png" else {}
        if fmt == "webp" and quality >= 100:
            options = {"lossless": True}
        Image.fromarray(pixels).save(out, format=fmt.upper(), **options)
        parts += [struct.pack("<I", out.tell()), out.getvalue()]
    return b"".join(parts)


def _decode_image(body: memoryview, count: int) -> np.ndarray:
    from PIL import Image

    lo, scale = _AFFINE.unpack_from(body)
    n, channels, height, width = _IMAGE.unpack_from(body, _AFFINE.size)
    if n * channels * height * width != count:
        raise ValueError(f"{n} images of {channels}x{height}x{width} are not {count} values")
    at, images = _AFFINE.size + _IMAGE.size, []
    for _ in range(n):
        (size,) = struct.unpack_from("<I", body, at)
        with Image.open(io.BytesIO(body[at + 4 : at + 4 + size])) as image:
            pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"))
        if pixels.shape[:2] != (height, width):
            raise ValueError(f"an image of {pixels.shape[:2]} where {height}x{width} was announced")
        images.append(pixels.reshape(height, width, channels).transpose(2, 0, 1))
        at += 4 + size
    q = np.stack(images).astype(np.float32).reshape(-1)
    values: np.ndarray = np.float32(lo) + q * np.float32(scale)
    return values


def _exact(array: np.ndarray, count: int) -> np.ndarray:
    if array.size != count:
        raise ValueError(f"expected {count} values, got {array.size}")
    return array


def _check(size: int, limit: int | None) -> None:
    if limit is not None and size > limit:
        raise WireError(f"lossy data would expand to {size} bytes; the sender announced {limit}")
