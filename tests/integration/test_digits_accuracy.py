"""The digits example end to end: a trained CNN, labelled images, accuracy per split x codec."""

from __future__ import annotations

import pytest

from splittracer.examples.digits.train import train
from splittracer.report.runs import run_summary
from splittracer.wire.lossy import HEADER_BYTES

from .helpers import run, workspace_with

pytestmark = pytest.mark.slow


def test_digits_accuracy_per_split_and_codec(tmp_path):
    ws = workspace_with(tmp_path, {})
    trained = train(ws.root)
    assert trained.test_accuracy >= 0.95 and trained.test_images == 360
    shipped = trained.experiment.read_text()
    assert ws.load_manifest("digits").name == "digits"  # the shipped experiment is valid as written
    quick = shipped.replace("repeats: 360", "repeats: 40").replace(
        "codecs: [none, fp16, bf16, int8, int8-channel, int4]", "codecs: [none, fp16, int8]"
    )
    (ws.experiments_dir / "digits.yaml").write_text(quick)
    outcome, store = run(ws, "digits")
    assert outcome.status == "succeeded", outcome.error
    rows = {(r.split, r.codec): r for r in run_summary(store, outcome.run_id).accuracy}
    splits = sorted({split for split, _ in rows})
    assert splits == list(range(10)) and len(rows) == 30
    for split in splits:
        none, fp16, int8 = rows[split, "none"], rows[split, "fp16"], rows[split, "int8"]
        assert none.count == fp16.count == int8.count == none.labelled == 40
        assert none.top1 is not None and none.top1 >= 0.9 and none.agreement == 1.0
        assert fp16.agreement is not None and fp16.agreement >= 0.99
        assert abs((fp16.top1 or 0) - none.top1) < 0.03 and (none.top5 or 0) >= none.top1
        header = none.bytes_wire - none.bytes_raw  # the task's own header: the same for every codec
        tensors = 2 if split == 0 else 1  # split 0 also sends nothing but the input
        assert fp16.bytes_wire - header == pytest.approx(
            none.bytes_raw / 2 + HEADER_BYTES, abs=HEADER_BYTES * tensors
        )
        assert int8.bytes_wire - header == pytest.approx(
            none.bytes_raw / 4 + HEADER_BYTES + 8, abs=18 * tensors
        )
