"""Eager capture: models no tracer captures, split exactly without recomputing the head's layers."""

from __future__ import annotations

import pytest
import torch

from splittracer.errors import SplitError
from splittracer.split import SplitModel, SplitOverride
from splittracer.split.profile import verify_splits

from .toy_models import FlattenBetween, PassThrough, Residual, Uncapturable, small_detector


def test_value_dependent_branch_is_captured_eagerly_and_every_split_is_exact():
    model, x = Uncapturable().eval(), torch.randn(2, 8)
    torch.nn.init.constant_(model.a.bias, 5.0)  # y.sum() > 0 on the example: b runs
    sm = SplitModel(model, x)
    assert sm.method == "eager"
    assert [a.method for a in sm.attempts] == ["export", "fx", "hooks", "eager"]
    assert [layer.name for layer in sm.layers] == ["a", "b"]
    # y + x after b: the input crosses every cut, a's output until b has read it
    assert [[t.name for t in p.tensors] for p in sm.points] == [
        ["input.0"],
        ["input.0", "a.0"],
        ["input.0", "a.0", "b.0"],  # the tail replays the branch on a's output, so a's output goes too
    ]
    checks = verify_splits(sm, x)
    assert len(checks) == 3 and all(c.ok and c.max_abs_diff == 0 for c in checks)
    # another input takes the other branch (b is skipped): the tail follows it
    torch.nn.init.constant_(model.a.bias, -5.0)
    with torch.no_grad():
        head, tail = sm.cut(1)
        torch.testing.assert_close(tail(*head(x)), model(x), rtol=0, atol=0)


def test_the_tail_never_recomputes_the_heads_layers(monkeypatch):
    model, x = Residual().eval(), torch.randn(2, 8)
    sm = SplitModel(model, x)
    computed: list[int] = []
    real = torch.nn.Linear.forward

    def counted(self, value):
        computed.append(self.out_features if self is not model.a else 0)
        return real(self, value)

    monkeypatch.setattr(torch.nn.Linear, "forward", counted)
    head, tail = sm.cut(2)
    with torch.no_grad():
        sent = head(x)
        assert computed == [0, 8]  # a, then b
        computed.clear()
        out = tail(*sent)
    assert computed == [3]  # c only
    torch.testing.assert_close(out, model(x), rtol=0, atol=0)
    assert all(c.ok for c in verify_splits(sm, x))  # the in-place add is replayed once, on a copy


def test_functional_glue_is_replayed_not_sent():
    x = torch.randn(2, 3, 8, 8)
    sm = SplitModel(FlattenBetween().eval(), x)
    assert sm.method == "eager"
    after_pool = next(p for p in sm.points if p.after == "pool")
    assert [t.shape for t in after_pool.tensors] == [(2, 4, 2, 2)]  # flatten runs on the tail
    assert all(c.ok for c in verify_splits(sm, x))
    chain = sm.chain([1, 3])
    with torch.no_grad():
        values = (x,)
        for part in chain[:-1]:
            values = part(*values)
        torch.testing.assert_close(chain[-1](*values), sm.model(x), rtol=0, atol=0)


def test_override_selects_eager_and_placements_are_refused(tmp_path):
    override = tmp_path / "override.yaml"
    override.write_text("capture: [eager]\n")
    sm = SplitModel(FlattenBetween().eval(), torch.randn(2, 3, 8, 8), override=override)
    assert [a.method for a in sm.attempts] == ["eager"]
    with pytest.raises(SplitError, match=r"captured eagerly.*not placed layer by layer"):
        sm.placement("1,3")


@pytest.fixture(scope="module")
def detector():
    return small_detector().eval(), torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))


def test_detector_splits_between_transform_backbone_rpn_and_heads(detector):
    model, x = detector
    sm = SplitModel(model, x, override=SplitOverride(capture=["eager"], granularity="block"))
    assert [layer.name for layer in sm.layers] == ["transform", "backbone", "rpn", "roi_heads"]
    checks = verify_splits(sm, x)
    assert len(checks) == 5 and all(c.ok and c.max_abs_diff == 0 for c in checks), checks
    with torch.no_grad():
        head, tail = sm.cut(2)
        detections = tail(*head(x))
    assert set(detections[0]) == {"boxes", "labels", "scores"} and len(detections[0]["boxes"]) == 20


@pytest.mark.slow
def test_detector_splits_inside_the_backbone_and_the_heads(detector):
    model, x = detector
    sm = SplitModel(model, x)
    names = [layer.name for layer in sm.layers]
    inside = [
        names.index("backbone.body.5.block.0.1") + 1,  # inside the backbone
        names.index("backbone.fpn.extra_blocks") + 1,  # between the neck and the RPN
        names.index("roi_heads.box_head.fc6") + 1,  # inside the box head
        sm.num_layers,  # everything but the post-processing on the first device
    ]
    checks = verify_splits(sm, x, splits=inside)
    assert len(checks) == 4 and all(c.ok and c.max_abs_diff == 0 for c in checks), checks


def test_a_layer_that_returns_its_input_keeps_both_origins():
    model, x = PassThrough().eval(), torch.randn(2, 8)
    sm = SplitModel(model, x, override=SplitOverride(capture=["eager"]))
    assert [layer.name for layer in sm.layers] == ["a", "drop", "b"]
    checks = verify_splits(sm, x)
    assert len(checks) == 4 and all(c.ok and c.max_abs_diff == 0 for c in checks), checks
