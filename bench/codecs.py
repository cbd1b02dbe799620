"""Encode + decode throughput of every codec on float32 tensors the size of real cuts.

Three sizes: 36 KB (AlexNet's last pooled features: 256x6x6), 774 KB
(AlexNet after its first convolution: 64x55x55) and 16 MB (a 4x1024x1024
float32 tensor). Each codec encodes and decodes a smooth-plus-noise tensor
(activations compress like neither zeros nor random bytes) ``--repeats``
times; the best time of each is kept (noise only adds time). ``none`` is
measured in the same run and every codec's ratio to it is given, so the
numbers compare within one run on a loaded machine. Image codecs need an
image-shaped tensor: they get a 3-channel tensor of the same size.

    python bench/codecs.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from splittracer.wire.codecs import get_codec
from splittracer.wire.tensors import encode_tensor

SHAPES = {"36 KB": (1, 256, 6, 6), "774 KB": (1, 64, 55, 55), "16 MB": (4, 1024, 1024)}
IMAGE_SHAPES = {"36 KB": (1, 3, 55, 56), "774 KB": (1, 3, 254, 254), "16 MB": (4, 3, 591, 591)}
CODECS = ["none", "lz4", "zstd", "blosc2", "fp16", "bf16", "int8", "int8-channel", "int4"]
CODECS += ["png", "jpeg:75", "webp:75"]


def tensor(shape: tuple[int, ...]) -> torch.Tensor:
    """A ReLU-like activation: smooth structure, noise, and zeros."""
    generator = torch.Generator().manual_seed(0)
    smooth = torch.linspace(-1, 1, shape[-1]).expand(shape)
    return torch.relu(smooth + 0.3 * torch.randn(shape, generator=generator))


def best_seconds(name: str, x: torch.Tensor, repeats: int) -> tuple[float, float, int]:
    """Best encode and decode seconds of ``name`` on ``x``, and the encoded size."""
    meta, data = encode_tensor(x)
    codec = get_codec(name, typesize=4)
    encode, decode, size = float("inf"), float("inf"), 0
    for _ in range(repeats):
        started = time.perf_counter()
        packed = codec.compress(data, meta)
        middle = time.perf_counter()
        codec.decompress(packed, meta.nbytes)
        encode = min(encode, middle - started)
        decode = min(decode, time.perf_counter() - middle)
        size = len(packed)
    return encode, decode, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| size | codec | bytes on the wire | ratio | encode MB/s | decode MB/s | encode+decode ms", end="")
    print(" | vs none |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, shape in SHAPES.items():
        baseline = None
        for name in CODECS:
            image = name.split(":")[0] in ("png", "jpeg", "webp")
            x = tensor(IMAGE_SHAPES[label] if image else shape)
            encode, decode, size = best_seconds(name, x, args.repeats)
            raw = x.numel() * 4
            total = encode + decode
            baseline = total if name == "none" else baseline
            mbps = (raw / encode / 1e6, raw / decode / 1e6)
            versus = f"{total / baseline:.1f}x" if baseline else "—"
            print(
                f"| {label} | {name} | {size:,} | {raw / size:.2f} | {mbps[0]:,.0f} | {mbps[1]:,.0f} "
                f"| {total * 1e3:.3f} | {versus} |"
            )


if __name__ == "__main__":
    main()
