"""Batched capture: parts that run any batch size, verified at batch 1 and batch 8."""

from __future__ import annotations

import torch

from splittracer.models import load_model
from splittracer.split import SplitModel, SplitOverride
from splittracer.split.profile import verify_splits

from .toy_models import FixedBatch

DYNAMIC = SplitOverride(batch="dynamic", granularity="block")


def test_dynamic_batch_parts_run_batch_1_and_8():
    torch.manual_seed(0)
    model = load_model("torchvision:resnet18").module
    sm = SplitModel(model, torch.randn(1, 3, 32, 32), override=DYNAMIC)
    assert sm.method == "export" and sm.dynamic_batch
    chosen = [0, 3, 6, sm.num_layers]  # the input, inside the stages, the output
    for batch in (1, 8):
        checks = verify_splits(sm, torch.randn(batch, 3, 32, 32), splits=chosen)
        assert len(checks) == 4 and all(c.ok for c in checks), (batch, checks)
    head, tail = sm.cut(5)
    with torch.no_grad():
        assert tail(*head(torch.randn(8, 3, 32, 32))).shape == (8, 1000)


def test_fixed_batch_is_the_default_and_a_model_that_fixes_it_says_why():
    x = torch.randn(1, 8)
    assert not SplitModel(FixedBatch().eval(), x).dynamic_batch
    sm = SplitModel(FixedBatch().eval(), x, override=SplitOverride(batch="dynamic"))
    assert sm.method == "export" and not sm.dynamic_batch
    assert sm.attempts[0].method == "export" and sm.attempts[0].error.startswith("dynamic batch: ")
