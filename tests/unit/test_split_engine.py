"""The split engine on real torchvision models: tables, cuts, chains, fallbacks."""

from __future__ import annotations

import re

import pytest
import torch

from splittracer.errors import CaptureError, ConfigError, SplitError
from splittracer.split import Granularity, SplitModel
from splittracer.split.profile import profile_layers, verify_splits

from .toy_models import ChainOfOpaque, DataDependent, FlattenBetween, Uncapturable

FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures" / "overrides"

ALEXNET_BYTES = {
    0: 602_112,
    1: 774_400,
    3: 186_624,
    6: 129_792,
    13: 36_864,
    16: 16_384,
    19: 16_384,
    21: 4_000,
}


def test_alexnet_has_21_layers_and_22_split_points(alexnet_split):
    sm = alexnet_split.split
    assert sm.method == "export"
    assert sm.num_layers == 21
    assert len(sm.points) == 22
    assert [layer.type for layer in sm.layers[:3]] == ["Conv2d", "ReLU", "MaxPool2d"]


@pytest.mark.parametrize(("split", "expected"), sorted(ALEXNET_BYTES.items()))
def test_alexnet_bytes_are_4_times_numel(alexnet_split, split, expected):
    point = alexnet_split.split.points[split]
    assert point.bytes == expected
    assert all(t.bytes == 4 * torch.Size(t.shape).numel() for t in point.tensors)


def test_alexnet_layer_params_and_macs(alexnet_split):
    conv1 = alexnet_split.split.layers[0]
    assert conv1.params == 64 * 3 * 11 * 11 + 64
    assert conv1.macs == 64 * 55 * 55 * 3 * 11 * 11
    assert alexnet_split.split.layers[20].macs == 4096 * 1000


def test_cut_inside_residual_block_sends_every_live_tensor(resnet18_split):
    sm = resnet18_split.split
    two = [p for p in sm.points if len(p.tensors) == 2]
    assert two, "cuts inside a residual block must carry the skip tensor too"
    k = two[0].index
    head, tail = sm.cut(k)
    sent = head(resnet18_split.example)
    assert isinstance(sent, tuple) and len(sent) == 2
    expected = sm.model(resnet18_split.example)
    assert torch.allclose(tail(*sent), expected, atol=1e-5)


def test_chain_of_three_parts_matches_model(resnet18_split):
    sm = resnet18_split.split
    parts = sm.chain([5, 30])
    assert [(p.start, p.end) for p in parts] == [(0, 5), (5, 30), (30, sm.num_layers)]
    values = parts[0](resnet18_split.example)
    values = parts[1](*values)
    out = parts[2](*values)
    assert torch.allclose(out, sm.model(resnet18_split.example), atol=1e-5)


def test_cut_at_ends(alexnet_split):
    sm = alexnet_split.split
    x = alexnet_split.example
    head, tail = sm.cut(0)
    assert torch.equal(head(x)[0], x)
    head, tail = sm.cut(sm.num_layers)
    assert isinstance(head(x), tuple)
    assert torch.allclose(tail(*head(x)), sm.model(x))


def test_block_granularity_gives_residual_blocks(resnet18_split):
    sm = SplitModel(resnet18_split.spec.module, resnet18_split.example, granularity="block")
    names = [layer.name for layer in sm.layers]
    assert names[:6] == ["conv1", "bn1", "relu", "maxpool", "layer1.0", "layer1.1"]
    assert len(names) == 14
    assert all(c.ok for c in verify_splits(sm, resnet18_split.example))


def test_repeated_module_calls_are_numbered(resnet18_split):
    names = [layer.name for layer in resnet18_split.split.layers]
    assert "layer1.0.relu" in names and "layer1.0.relu#2" in names


@pytest.mark.parametrize("bad", [-1, 22, 100])
def test_split_index_out_of_range(alexnet_split, bad):
    with pytest.raises(SplitError, match=r"out of range.*0\.\.21"):
        alexnet_split.split.cut(bad)


def test_cuts_must_increase(alexnet_split):
    with pytest.raises(SplitError, match="strictly increasing"):
        alexnet_split.split.chain([5, 5])


def test_granularity_parse():
    assert Granularity.parse("depth=2") == Granularity("depth", 2)
    assert Granularity.parse("block").kind == "block"
    with pytest.raises(SplitError, match="leaf, block or depth"):
        Granularity.parse("medium")


def test_hooks_fallback_splits_an_untraceable_chain():
    model = ChainOfOpaque().eval()
    x = torch.randn(2, 8)
    sm = SplitModel(model, x)
    assert sm.method == "hooks"
    assert [a.method for a in sm.attempts] == ["export", "fx", "hooks"]
    assert sm.attempts[0].error and sm.attempts[1].error and not sm.attempts[2].error
    assert sm.num_layers == 3
    assert all(c.ok for c in verify_splits(sm, x))


def test_uncapturable_model_names_the_construct_and_the_override():
    # No sub-modules and a branch on a value: no tracer follows it, and eager capture has no layers.
    with pytest.raises(CaptureError) as info:
        SplitModel(DataDependent().eval(), torch.randn(2, 8))
    text = info.value.render()
    assert "its forward branches on a tensor's value" in text
    assert "toy_models.py" in text and "DataDependent.forward: if x.sum() > 0" in text
    assert "--override" in text and "`capture:` listing `eager`" in text and "`sequence:`" in text
    assert "eager: SplitError: the forward called none of the model's modules" in text


def test_override_sequence_captures_by_hand(write_override):
    model = ChainOfOpaque().eval()
    sm = SplitModel(model, torch.randn(2, 8), override=write_override("sequence: [a, b, c]\n"))
    assert sm.method == "sequence"
    assert [layer.name for layer in sm.layers] == ["a", "b", "c"]


def test_sequence_that_is_not_the_model_is_refused(write_override):
    # Uncapturable adds its input back after b: the chain a, b runs but computes something else.
    with pytest.raises(ConfigError, match=r"key 'sequence.1'.*not the model's output.*other values"):
        SplitModel(Uncapturable().eval(), torch.randn(2, 8), override=write_override("sequence: [a, b]\n"))


def test_override_groups_and_allowed_splits(resnet18_split):
    sm = SplitModel(resnet18_split.spec.module, resnet18_split.example, override=FIXTURES / "good.yaml")
    assert sm.layers[0].name == "stem"
    allowed = [p.index for p in sm.points if p.allowed]
    relu = next(layer.index for layer in sm.layers if layer.name == "layer1.0.relu")
    assert allowed == sorted({0, 1, relu, 10})
    with pytest.raises(SplitError, match="not allowed"):
        sm.cut(2)


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        (
            "unknown_key.yaml",
            r"unknown_key\.yaml:2, key 'split'.*unknown key 'split'[\s\S]*Did you mean 'splits'",
        ),
        ("bad_syntax.yaml", r"bad_syntax\.yaml:\d+: YAML syntax error"),
        (
            "bad_granularity.yaml",
            r"bad_granularity\.yaml:2, key 'granularity'.*leaf, block or depth=N",
        ),
        (
            "unknown_layer.yaml",
            r"unknown_layer\.yaml:3, key 'splits\.1'.*no layer named 'layer9\.0'",
        ),
    ],
)
def test_malformed_override_names_file_line_and_key(resnet18_split, name, pattern):
    with pytest.raises(ConfigError) as info:
        SplitModel(resnet18_split.spec.module, resnet18_split.example, override=FIXTURES / name)
    assert re.search(pattern, info.value.render()), info.value.render()


def test_profile_times_every_layer(alexnet_split):
    result = profile_layers(alexnet_split.split, alexnet_split.example, repeats=3, warmup=1)
    assert len(result.layers) == 21
    assert all(t.median_ms > 0 and t.p25_ms <= t.median_ms <= t.p75_ms for t in result.layers)
    assert result.layers[0].output_bytes == 774_400
    assert result.forward_median_ms > 0


@pytest.fixture
def write_override(tmp_path):
    """Write an override file under the test's own folder and return its path."""

    def write(text: str):
        path = tmp_path / "override.yaml"
        path.write_text(text)
        return path

    return write


def test_participants_build_identical_random_weights():
    """Head and tail come from different processes: the same seed must give the same model."""
    from splittracer.split.load import load_split_model

    first = load_split_model("torchvision:resnet18", input_shape=(1, 3, 32, 32), seed=3)
    second = load_split_model("torchvision:resnet18", input_shape=(1, 3, 32, 32), seed=3)
    pairs = zip(first.spec.module.state_dict().values(), second.spec.module.state_dict().values())
    assert all(torch.equal(a, b) for a, b in pairs)
    head, _ = first.split.cut(10)
    _, tail = second.split.cut(10)
    assert torch.allclose(tail(*head(first.example)), first.spec.module(first.example), atol=1e-5)


def test_override_sequence_with_glue_splits_and_verifies(write_override):
    model = FlattenBetween().eval()
    x = torch.randn(2, 3, 8, 8)
    text = "sequence:\n  - features\n  - pool\n  - flatten: 1\n  - classifier\n"
    sm = SplitModel(model, x, override=write_override(text))
    assert sm.method == "sequence"
    assert [layer.name for layer in sm.layers] == ["features", "pool", "classifier"]
    assert sm.points[2].tensors[0].shape == (2, 16)  # the flatten is glue of the pool layer
    checks = verify_splits(sm, x)
    assert len(checks) == 4 and all(c.ok for c in checks)


def test_override_sequence_reshape_and_named_function(write_override):
    model, x = FlattenBetween().eval(), torch.randn(2, 3, 8, 8)
    glue = "{call: 'tests.unit.toy_models:flatten_batch'}"
    for step in ("{reshape: [-1, 16]}", glue):
        sm = SplitModel(
            model, x, override=write_override(f"sequence: [features, pool, {step}, classifier]\n")
        )
        assert all(c.ok for c in verify_splits(sm, x))
    text = f"sequence: [features, pool, {glue}, {{call: 'tests.unit.toy_models:halve'}}, classifier]\n"
    with pytest.raises(ConfigError) as info:
        SplitModel(model, x, override=write_override(text))
    assert "key 'sequence.4'" in info.value.render() and "not the model's output" in info.value.render()


def test_wrong_sequence_names_the_module_and_the_shape(write_override):
    model = FlattenBetween().eval()
    path = write_override("sequence:\n  - features\n  - pool\n  - classifier\n")
    with pytest.raises(ConfigError) as info:
        SplitModel(model, torch.randn(2, 3, 8, 8), override=path)
    text = info.value.render()
    assert f"{path.name}:4, key 'sequence.2'" in text
    assert "module 'classifier' (Linear)" in text and "output of 'pool', a 2×4×2×2 tensor" in text
    assert "flatten: 1" in text


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        ("sequence: [features, {squash: 1}]\n", r"key 'sequence.1'.*'squash: 1' is not a step"),
        (
            "sequence: [features, poool]\n",
            r"key 'sequence.1'.*no module 'poool'[\s\S]*features, pool, classifier",
        ),
    ],
)
def test_malformed_sequence_steps(body, pattern, write_override):
    with pytest.raises(ConfigError) as info:
        SplitModel(FlattenBetween().eval(), torch.randn(2, 3, 8, 8), override=write_override(body))
    assert re.search(pattern, info.value.render()), info.value.render()
