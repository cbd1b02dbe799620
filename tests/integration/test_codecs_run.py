"""Codecs on the cut in a real run: a Sweep over codecs x splits, an Infer per hop, spans that say which."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from splittracer.report.runs import run_summary
from splittracer.wire.lossy import HEADER_BYTES

from .helpers import run, workspace_with

pytestmark = pytest.mark.slow

DIGITS = """
name: {name}
model: {{source: "splittracer.examples.digits:build", input_shape: [1, 3, 8, 8]}}
participants:
  phone: {{role: "splittracer.builtin:SplitHead", limits: {{threads: 1}}}}
  {tails}
playbook:
  phone:
    - task: {task}
      params: {params}
"""


def _manifest(
    name: str, task: str, params: str, tails: str = 'cloud: {role: "splittracer.builtin:SplitTail"}'
) -> str:
    return DIGITS.format(name=name, task=task, params=params, tails=tails)


def test_a_sweep_over_codecs_and_splits_shrinks_the_cut_by_each_codecs_ratio(tmp_path):
    params = "{splits: [0, 2, 5], codecs: [none, fp16, int8, int4], next: [cloud], repeats: 2, warmup: 1}"
    ws = workspace_with(tmp_path, {"sweep": _manifest("sweep", "Sweep", params)})
    outcome, store = run(ws, "sweep")
    assert outcome.status == "succeeded", outcome.error
    spans = store.spans(outcome.run_id)
    codec_of = {s.inference: s.attrs["codec"] for s in spans if s.kind == "inference"}
    assert sorted(set(codec_of.values())) == ["fp16", "int4", "int8", "none"]
    wire: dict[tuple[int, str], set[int]] = defaultdict(set)
    raw: dict[tuple[int, str], set[int]] = defaultdict(set)
    for s in spans:
        if s.kind == "transfer" and s.attrs.get("direction") == "forward" and s.inference >= 0:
            assert s.attrs["codec"] == codec_of[s.inference]
            wire[(s.split, codec_of[s.inference])].add(s.bytes_wire)
            raw[(s.split, codec_of[s.inference])].add(s.bytes_raw)
    assert len(wire) == 12 and all(len(v) == 1 for v in wire.values())  # the same bytes every time
    for split in (0, 2, 5):
        (tensor,) = raw[(split, "none")]
        (plain,) = wire[(split, "none")]
        header = plain - tensor  # the task's own header, the same for every codec
        (half,) = wire[(split, "fp16")]
        (quarter,) = wire[(split, "int8")]
        (eighth,) = wire[(split, "int4")]
        assert half - header == tensor // 2 + HEADER_BYTES
        assert quarter - header == tensor // 4 + HEADER_BYTES + 8
        assert eighth - header == (tensor // 4 + 1) // 2 + HEADER_BYTES + 8
        assert raw[(split, "int8")] == {tensor}  # raw bytes stay the float32 size
    timed = {(s.kind, s.attrs.get("codec")) for s in spans if s.kind in ("compress", "decompress")}
    assert timed == {(k, c) for k in ("compress", "decompress") for c in ("fp16", "int8", "int4")}
    # Every measured inference is compared with the uncompressed model (random weights: no labels).
    rows = {(r.split, r.codec): r for r in run_summary(store, outcome.run_id).accuracy}
    assert set(rows) == {(k, c) for k in (0, 2, 5) for c in ("none", "fp16", "int8", "int4")}
    assert all(r.count == 2 and r.top1 is None and r.agreement is not None for r in rows.values())
    for split in (0, 2, 5):
        assert rows[split, "none"].agreement == 1.0 and rows[split, "none"].rel_error < 1e-6
        assert 0 < rows[split, "fp16"].rel_error < 2e-3
        assert rows[split, "fp16"].rel_error < rows[split, "int8"].rel_error < rows[split, "int4"].rel_error
    _check_results_commands(ws.root, outcome.run_id)


def _results(root: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "splittracer", "results", *args, "--workspace", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _check_results_commands(root: Path, run_id: str) -> None:
    """show (table and JSON), export and plot carry accuracy, agreement and bytes per (split, codec)."""
    accuracy = json.loads(_results(root, "show", run_id, "--json"))["accuracy"]
    assert len(accuracy) == 12 and {"agreement", "rel_error", "bytes_wire", "top1", "codec"} <= set(
        accuracy[0]
    )
    assert "Accuracy per split and codec" in _results(root, "show", run_id)
    _results(root, "export", run_id)
    table = (root / "results" / f"{run_id}-accuracy.csv").read_text().splitlines()
    assert table[0].startswith("split,cuts,codec,count,bytes_raw,bytes_wire") and len(table) == 13
    _results(root, "plot", run_id)
    for chart in ("rate-accuracy", "latency-accuracy"):
        assert (root / "results" / f"{run_id}-{chart}.png").stat().st_size > 1000


def test_infer_sets_a_codec_per_hop_and_a_misnamed_codec_is_refused_before_the_run(tmp_path):
    tails = 'edge: {role: "splittracer.builtin:SplitTail"}\n  cloud: {role: "splittracer.builtin:SplitTail"}'
    good = _manifest(
        "hops",
        "Infer",
        "{cuts: [2, 5], codec: [int8, fp16], next: [edge, cloud], count: 2, finish: true}",
        tails,
    )
    bad = _manifest("bad", "Sweep", "{splits: [1], codecs: [none, jpg:90], next: [cloud]}")
    ws = workspace_with(tmp_path, {"hops": good, "bad": bad})
    outcome, store = run(ws, "hops")
    assert outcome.status == "succeeded", outcome.error
    spans = store.spans(outcome.run_id)
    forward = {
        (s.attrs["from"], s.attrs["codec"])
        for s in spans
        if s.kind == "transfer" and s.attrs["direction"] == "forward" and s.inference >= 0
    }
    assert forward == {("phone", "int8"), ("edge", "fp16")}
    assert {s.attrs["codec"] for s in spans if s.kind == "inference"} == {"int8/fp16"}
    from splittracer.errors import ConfigError

    with pytest.raises(ConfigError, match="codecs") as caught:
        run(ws, "bad")
    assert "jpeg" in str(caught.value) or "jpeg" in (caught.value.hint or "")


IMAGES = """
name: images
model: {source: torchvision:resnet18, input_shape: [1, 3, 64, 64], granularity: block}
participants:
  phone: {role: "splittracer.builtin:SplitHead", limits: {threads: 1}}
  cloud: {role: "splittracer.builtin:SplitTail", limits: {threads: 1}}
playbook:
  phone:
    - task: Sweep
      params:
        {splits: [0, 3], codecs: [none, png, "jpeg:95", "jpeg:20", "webp:50"], next: [cloud], repeats: 2}
options: {warmup: 0}
"""


def test_image_codecs_send_the_input_as_an_image_at_split_0_and_say_which(tmp_path):
    ws = workspace_with(tmp_path, {"images": IMAGES})
    outcome, store = run(ws, "images")
    assert outcome.status == "succeeded", outcome.error
    rows = {(r.split, r.codec): r for r in run_summary(store, outcome.run_id).accuracy}
    raw = rows[0, "none"].bytes_raw
    assert all(r.bytes_raw == raw for (split, _), r in rows.items() if split == 0)
    wire = {codec: rows[0, codec].bytes_wire for codec in ("none", "png", "jpeg:95", "jpeg:20", "webp:50")}
    assert wire["jpeg:20"] < wire["jpeg:95"] < wire["png"] < wire["none"] / 3  # 8 bits a value at most
    assert rows[0, "png"].rel_error < rows[0, "jpeg:95"].rel_error < rows[0, "jpeg:20"].rel_error
    assert all(r.agreement is not None for r in rows.values())
    # After split 0 the cut is no image (64 channels): it crosses unchanged, with the 10-byte header.
    tensor_bytes = rows[3, "none"].bytes_wire
    assert all(rows[3, codec].bytes_wire == tensor_bytes + HEADER_BYTES for codec in wire if codec != "none")
