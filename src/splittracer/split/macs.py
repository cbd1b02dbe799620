"""Multiply-accumulate counts of the nodes that do matrix work.

Convolutions and matrix products are counted exactly from their operand
shapes; every other operation counts as zero MACs (element-wise work is not
multiply-accumulate). A ``call_module`` node wrapping a module with children
(the hooks fallback) cannot be counted and gives ``None``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import fx, nn

_CONV_OPS = {"conv1d", "conv2d", "conv3d", "convolution", "_convolution", "conv_transpose2d"}
_LINEAR_OPS = {"linear"}
_MATMUL_OPS = {"mm", "bmm", "matmul", "addmm", "baddbmm"}


def node_macs(node: fx.Node, gm: fx.GraphModule, args: tuple[Any, ...], out: Any) -> int | None:
    """MACs of one node given its evaluated arguments and output."""
    if not isinstance(out, torch.Tensor):
        return 0
    if node.op == "call_module":
        return _module_macs(gm.get_submodule(str(node.target)), out)
    name = _op_name(node.target)
    if name in _CONV_OPS and len(args) > 1 and isinstance(args[1], torch.Tensor):
        weight = args[1]
        transposed = name == "conv_transpose2d"
        per_output = weight.shape[0] if transposed else weight.shape[1]
        return out.numel() * per_output * math.prod(weight.shape[2:])
    if name in _LINEAR_OPS and len(args) > 1 and isinstance(args[1], torch.Tensor):
        return out.numel() * args[1].shape[-1]
    if name in _MATMUL_OPS:
        left = args[1] if name in ("addmm", "baddbmm") else args[0]
        if isinstance(left, torch.Tensor):
            return out.numel() * left.shape[-1]
    return 0


def _module_macs(module: nn.Module, out: torch.Tensor) -> int | None:
    if isinstance(module, nn.modules.conv._ConvNd):
        weight = module.weight
        per_output = weight.shape[0] if module.transposed else weight.shape[1]
        return out.numel() * per_output * math.prod(weight.shape[2:])
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    if any(True for _ in module.children()):
        return None
    return 0


def _op_name(target: object) -> str:
    """``aten.conv2d.default`` -> ``conv2d``; ``torch.nn.functional.linear`` -> ``linear``."""
    name = getattr(target, "__name__", str(target))
    base = str(name).split(".")[0]
    return base.removeprefix("aten::")
