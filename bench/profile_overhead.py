"""Profiling overhead: sum of per-layer medians vs a plain ``model(x)`` forward.

Both are measured in the same run, interleaved, as medians of >= 20 runs
after warm-up. Prints one line per model and the ratio (target <= 1.05x).

    python bench/profile_overhead.py [--repeats 30] [--models alexnet,resnet18]
"""

from __future__ import annotations

import argparse
import platform

import torch

from splittracer.split.load import load_split_model
from splittracer.split.profile import profile_layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--models", default="alexnet,resnet18")
    args = parser.parse_args()
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, repeats={args.repeats}"
    )
    print(f"{'model':<12} {'layers':>6} {'sum of layers ms':>17} {'forward ms':>11} {'ratio':>6}")
    for name in args.models.split(","):
        loaded = load_split_model(f"torchvision:{name}")
        result = profile_layers(loaded.split, loaded.example, repeats=args.repeats, warmup=args.warmup)
        ratio = result.layers_total_ms / result.forward_median_ms
        print(
            f"{name:<12} {len(result.layers):>6} {result.layers_total_ms:>17.2f} "
            f"{result.forward_median_ms:>11.2f} {ratio:>6.3f}"
        )


if __name__ == "__main__":
    main()
