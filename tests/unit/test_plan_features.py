"""Unit kinds and features the latency regression is fitted on."""

from __future__ import annotations

import operator

import pytest
import torch
from torch import nn

from splittracer.plan.features import kind_of_module, kind_of_ops, op_name
from splittracer.plan.graph import model_graph
from splittracer.split.model import SplitModel


@pytest.mark.parametrize(
    ("module", "kind"),
    [
        (nn.Conv2d(8, 16, 3), "conv"),
        (nn.Conv2d(8, 8, 3, groups=8), "depthwise"),
        (nn.Conv2d(8, 8, 3, groups=2), "conv"),
        (nn.Linear(4, 4), "linear"),
        (nn.MaxPool2d(2), "pooling"),
        (nn.AdaptiveAvgPool2d(1), "pooling"),
        (nn.BatchNorm2d(4), "norm"),
        (nn.LayerNorm(4), "norm"),
        (nn.ReLU(), "activation"),
        (nn.Hardswish(), "activation"),
        (nn.MultiheadAttention(8, 2), "attention"),
        (nn.Dropout(), "other"),
        (nn.Flatten(), "other"),
        (nn.Embedding(4, 4), None),
    ],
)
def test_kind_of_module(module, kind):
    assert kind_of_module(module) == kind


def test_kind_of_ops_takes_the_costliest():
    assert kind_of_ops(["view", "add"]) == "elementwise"
    assert kind_of_ops(["softmax", "bmm", "scaled_dot_product_attention"]) == "attention"
    assert kind_of_ops(["flatten"]) == "other"
    assert kind_of_ops([]) == "other"


def test_op_name_forms():
    assert op_name(torch.ops.aten.relu_.default) == "relu"
    assert op_name(torch.ops.aten.conv2d.default) == "conv2d"
    assert op_name(operator.add) == "add"
    assert op_name("view") == "view"
    assert op_name("__getitem__") == "__getitem__"


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) + x


def test_units_of_a_layer_with_glue():
    sm = SplitModel(_Residual(), torch.randn(1, 4, 8, 8))
    graph = model_graph(sm)
    conv, bn = graph.layers
    (unit,) = conv.units
    assert unit.kind == "depthwise" and unit.op == "Conv2d"
    assert unit.kernel == (3, 3) and unit.stride == (1, 1) and unit.groups == 4
    assert unit.macs == 4 * 8 * 8 * 9 and unit.in_bytes == 4 * 64 * 4 and unit.out_bytes == 4 * 64 * 4
    assert unit.param_bytes == (4 * 9 + 4) * 4
    assert [u.kind for u in bn.units] == ["norm", "elementwise"]  # the residual add joins bn's layer
    add = bn.units[1]
    assert add.in_bytes == 2 * 4 * 64 * 4 and add.out_bytes == 4 * 64 * 4
