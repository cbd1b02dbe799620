"""What the latency regression knows about a layer: its *units* and their features.

A layer is one or more consecutive graph nodes; a *unit* is a run of them
owned by one module (a leaf module call) or by no leaf module at all (glue
such as a residual ``+`` or ``flatten``). Each unit gets a kind — the class
of operation whose cost per feature is similar — and the features a
Neurosurgeon-style regression needs: MACs, bytes read and written,
parameter bytes, and the convolution's shape where there is one.

A layer's latency is predicted as the sum of its units' predictions, so the
same fitted model serves any granularity (a ResNet block is the sum of its
convolutions, norms, activations and the residual add).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # planning reads stored features without torch; only kind_of_module needs it
    from torch import nn

__all__ = ["KINDS", "UnitFeatures", "kind_of_module", "kind_of_ops", "op_name"]

KINDS: tuple[str, ...] = (
    "conv",
    "depthwise",
    "linear",
    "pooling",
    "norm",
    "activation",
    "attention",
    "elementwise",
    "other",
)
"""Unit kinds, each with its own regression coefficients."""


@dataclass(frozen=True)
class UnitFeatures:
    """The configuration of one unit, as the regression and a reader see it.

    ``op`` is the module class (``Conv2d``) or the operations of a glue unit
    (``add``); bytes count float tensors as stored (4 bytes per float32).
    ``kernel``, ``stride`` and the channels are set for convolutions only.
    """

    kind: str
    op: str
    macs: int
    in_bytes: int
    out_bytes: int
    param_bytes: int
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    in_channels: int = 0
    out_channels: int = 0
    groups: int = 1


_OP_KINDS: dict[str, str] = {
    **dict.fromkeys(("scaled_dot_product_attention", "_native_multi_head_attention"), "attention"),
    **dict.fromkeys(
        ("conv1d", "conv2d", "conv3d", "convolution", "_convolution", "conv_transpose2d"), "conv"
    ),
    **dict.fromkeys(("linear", "mm", "bmm", "matmul", "addmm", "baddbmm", "einsum"), "linear"),
    **dict.fromkeys(
        ("batch_norm", "_native_batch_norm_legit_no_training", "layer_norm", "group_norm", "instance_norm"),
        "norm",
    ),
    **dict.fromkeys(
        (
            "max_pool1d",
            "max_pool2d",
            "max_pool3d",
            "avg_pool1d",
            "avg_pool2d",
            "avg_pool3d",
            "adaptive_avg_pool1d",
            "adaptive_avg_pool2d",
            "adaptive_max_pool2d",
            "mean",
        ),
        "pooling",
    ),
    **dict.fromkeys(
        (
            "relu",
            "relu6",
            "hardtanh",
            "gelu",
            "silu",
            "hardswish",
            "hardsigmoid",
            "sigmoid",
            "tanh",
            "softmax",
            "_softmax",
            "log_softmax",
            "leaky_relu",
            "elu",
            "mish",
            "clamp",
        ),
        "activation",
    ),
    **dict.fromkeys(
        (
            "add",
            "iadd",
            "sub",
            "mul",
            "imul",
            "div",
            "truediv",
            "cat",
            "concat",
            "stack",
            "pow",
            "neg",
            "exp",
        ),
        "elementwise",
    ),
}
# When a unit holds several operations, the costliest kind names it.
_PRECEDENCE = ("attention", "conv", "depthwise", "linear", "norm", "pooling", "activation", "elementwise")


def op_name(target: object) -> str:
    """``aten.relu_.default`` -> ``relu``; ``operator.add`` -> ``add``; ``"view"`` -> ``view``."""
    name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
    base = str(name).split(".")[0].removeprefix("aten::")
    return base if base.endswith("__") else base.rstrip("_")


def kind_of_module(module: nn.Module) -> str | None:
    """The kind of a leaf module by its class; None when only its operations can tell."""
    from torch import nn

    pooling, norms, other = _module_groups()
    if isinstance(module, nn.MultiheadAttention):
        return "attention"
    if isinstance(module, nn.modules.conv._ConvNd):
        depthwise = module.groups > 1 and module.groups == module.in_channels
        return "depthwise" if depthwise else "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, pooling):
        return "pooling"
    if isinstance(module, norms):
        return "norm"
    if isinstance(module, other):
        return "other"
    if type(module).__module__ == "torch.nn.modules.activation":
        return "activation"
    return None


@cache
def _module_groups() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """The pooling, norm and shape-only module classes (torch imported on first use)."""
    from torch import nn

    pooling = (
        nn.modules.pooling._MaxPoolNd,
        nn.modules.pooling._AvgPoolNd,
        nn.modules.pooling._AdaptiveAvgPoolNd,
        nn.modules.pooling._AdaptiveMaxPoolNd,
    )
    norms = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
    return pooling, norms, (nn.Dropout, nn.Identity, nn.Flatten, nn.Unflatten)


def kind_of_ops(ops: Iterable[str]) -> str:
    """The kind of a run of operations (glue, or a module only its operations describe)."""
    kinds = {_OP_KINDS.get(op, "other") for op in ops}
    return next((k for k in _PRECEDENCE if k in kinds), "other")
