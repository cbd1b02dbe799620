"""Placements: any dependency-closed set of layers on the first device reproduces the model."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils import _pytree as pytree

from splittracer.errors import ConfigError, SplitError
from splittracer.split import SplitModel
from splittracer.split.placement import read_placement
from splittracer.split.profile import placement_diff

from .toy_models import InceptionToy

# Capture is shared; each example builds two graph modules, so the budgets stay small.
PROPERTY = settings(
    max_examples=8, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
EXACT = 1e-5  # the parts run the model's own operations in its order: in practice the difference is 0


@pytest.fixture(scope="module")
def inception():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 16, 16)
    return SplitModel(InceptionToy(), x), x


def random_placement(sm: SplitModel, data: st.DataObject):
    """A few random layers and all they read from: prefixes, branches and everything between."""
    chosen = data.draw(st.sets(st.integers(1, sm.num_layers), max_size=4))
    return sm.close(sorted(chosen))


_REFERENCE: dict[int, list[torch.Tensor]] = {}


def check_reproduces(sm: SplitModel, x: torch.Tensor, placement) -> None:
    """Head then tail equal the full model's output (computed once per model: it is the slow part)."""
    if id(sm) not in _REFERENCE:
        with torch.no_grad():
            _REFERENCE[id(sm)] = pytree.tree_leaves(sm.model(x))
    expected = _REFERENCE[id(sm)]
    got = pytree.tree_leaves(sm.run_placement(placement, x))
    assert [t.shape for t in got] == [t.shape for t in expected], placement.label
    diff = max(float((a - b).abs().max()) for a, b in zip(got, expected))
    assert diff <= EXACT, f"placement {placement.label} differs by {diff}"


@settings(PROPERTY, max_examples=30)
@given(data=st.data())
def test_random_placements_of_an_inception_model_are_exact(inception, data):
    sm, x = inception
    check_reproduces(sm, x, random_placement(sm, data))


@PROPERTY
@given(data=st.data())
def test_random_placements_of_resnet18_are_exact(resnet18_split, data):
    sm = resnet18_split.split
    check_reproduces(sm, resnet18_split.example, random_placement(sm, data))


@settings(PROPERTY, max_examples=6)
@given(data=st.data())
def test_random_placements_of_yolov8n_are_exact(yolov8n_leaf_split, data):
    sm = yolov8n_leaf_split.split
    check_reproduces(sm, yolov8n_leaf_split.example, random_placement(sm, data))


def branch_starts(sm: SplitModel) -> list[int]:
    """Layers that do not need the layer before them: where a placement can skip ahead."""
    return [i for i in range(2, sm.num_layers + 1) if i - 1 not in sm.close([i]).first]


def test_every_model_has_placements_that_are_not_prefixes(inception, resnet18_split, yolov8n_leaf_split):
    for sm, x in (inception, (resnet18_split.split, resnet18_split.example)):
        starts = branch_starts(sm)
        assert starts, "the property tests would only see prefix cuts"
        placement = sm.close([starts[0]])
        assert placement.split is None
        assert placement_diff(sm, x, placement) <= EXACT
    assert branch_starts(yolov8n_leaf_split.split)


def test_inception_branch_on_the_first_device_sends_its_input_and_its_output(inception):
    sm, x = inception
    names = [layer.name for layer in sm.layers]
    placement = sm.placement("stem,block1.b1")
    assert [names[i - 1] for i in placement.first] == ["stem.0", "stem.1", "block1.b1"]
    assert len(placement.tensors) == 2  # the stem's output (the other branches read it) and b1's
    head, tail = sm.place(placement)
    sent = head(x)
    assert [tuple(t.shape) for t in sent] == [t.shape for t in placement.tensors]
    assert torch.equal(tail(*sent), sm.model(x))


def test_prefix_placements_are_the_cuts(resnet18_split):
    sm, x = resnet18_split.split, resnet18_split.example
    for k in range(sm.num_layers + 1):
        placement = sm.placement(list(range(1, k + 1)))
        assert placement.split == k and placement.tensors == sm.points[k].tensors
    for k in (0, 7, sm.num_layers):
        head, tail = sm.place(sm.placement(f"0-{k}"))
        cut_head, cut_tail = sm.cut(k)
        assert (head.input_names, head.output_names) == (cut_head.input_names, cut_head.output_names)
        assert tail.input_names == cut_tail.input_names
        assert torch.equal(tail(*head(x)), sm.run_split(k, x))


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        ("layer1.0.conv2", r"layer \d+ \(layer1.0.conv2\) is placed on the first device but reads"),
        ("0-4,layer9", "no layer of that name"),
        ("0-99", "names layer 99, but this model has 60 layers"),
        ("7-3", "runs backwards"),
        ({"second": [1]}, "needs 'first'"),
        ({"first": "0-4", "second": "4-60"}, r"layer 4 \(maxpool\) is placed on both devices"),
        ([True], "indices, ranges or names"),
    ],
)
def test_invalid_placements_name_the_offending_layer(resnet18_split, spec, pattern):
    with pytest.raises(SplitError, match=pattern):
        resnet18_split.split.placement(spec)


def test_names_ranges_and_module_prefixes(resnet18_split):
    sm = resnet18_split.split
    by_index = sm.placement("0-4")
    assert sm.placement("conv1-maxpool") == by_index == sm.placement([0, 1, 2, 3, 4])
    block = sm.placement("0-4,layer1.0")  # a module path stands for every layer inside it
    assert {sm.layers[i - 1].name for i in block.first} >= {"layer1.0.conv1", "layer1.0.bn2"}
    assert sm.placement(block.label) == block
    nothing = sm.placement("0")
    assert nothing.first == () and nothing.label == "0" and nothing.split == 0


def test_read_placement_from_text_json_and_files(tmp_path):
    assert read_placement(" 0-5,layer3.0 ") == "0-5,layer3.0"
    assert read_placement('{"first": [1, 2]}') == {"first": [1, 2]}
    (tmp_path / "p.yaml").write_text("first: 0-5\nsecond: 6-9\n")
    assert read_placement(str(tmp_path / "p.yaml")) == {"first": "0-5", "second": "6-9"}
    (tmp_path / "p.json").write_text(json.dumps([1, "layer1"]))
    assert read_placement(str(tmp_path / "p.json")) == [1, "layer1"]
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_placement("[1, 2")
    with pytest.raises(ConfigError, match="cannot read"):
        read_placement(str(tmp_path / "missing.yaml"))
