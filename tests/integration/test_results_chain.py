"""A three-participant chain through ``splittracer results show``: every cut, each hop, the tensors
crossing each cut and a metric the last hop recorded, tied to its inference."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .helpers import run, workspace_with

pytestmark = pytest.mark.slow

CHAIN = """
name: chain
model: {source: torchvision:resnet18, input_shape: [1, 3, 64, 64], granularity: block}
participants:
  phone: {role: "splittracer.builtin:SplitHead", limits: {threads: 1}}
  edge: {role: "splittracer.builtin:SplitTail", limits: {threads: 1}}
  cloud: {role: "tests.integration.run_roles:RecordingTail", limits: {threads: 1}}
playbook:
  phone:
    - task: Sweep
      params: {cuts: [[4, 8], [4, 11]], next: [edge, cloud], repeats: 2, warmup: 1}
"""


def results(root: object, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "splittracer", "results", *args, "--workspace", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "250"},  # the per-hop columns make a wide table
    )


def test_chain_results_show_every_cut_each_hop_and_the_recorded_metric(tmp_path):
    ws = workspace_with(tmp_path, {"chain": CHAIN})
    outcome, store = run(ws, "chain")
    assert outcome.status == "succeeded", outcome.error
    record = store.get_run(outcome.run_id).record
    shown = results(ws.root, "show", outcome.run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    splits = json.loads(shown.stdout)["splits"]
    assert [(s["split"], s["cuts"], s["count"]) for s in splits] == [(4, [4, 8], 2), (4, [4, 11], 2)]
    for row in splits:
        hops = row["hops"]
        assert [(h["from"], h["to"]) for h in hops] == [("phone", "edge"), ("edge", "cloud")]
        assert [h["bytes_raw"] for h in hops] == [record.split_bytes[k] for k in row["cuts"]]
        assert sum(h["transfer_ms"] for h in hops) == pytest.approx(row["transfer_ms"], rel=0.5)
        assert row["after"] == " → ".join(record.layers[k - 1] for k in row["cuts"])
        assert row["tensors"] == [record.split_tensors[k] for k in row["cuts"]] and min(row["tensors"]) >= 1
    metrics = json.loads(shown.stdout)["metrics"]
    # One sample per measured inference on the cloud, joined to its chain: the warm-up is left out.
    assert [
        (m["name"], m["participant"], m["cuts"], m["attrs"], m["count"], m["median"]) for m in metrics
    ] == [
        ("part_start", "cloud", [4, 8], {"part": "last"}, 2, 8.0),
        ("part_start", "cloud", [4, 11], {"part": "last"}, 2, 11.0),
    ]
    table = results(ws.root, "show", outcome.run_id)
    assert table.returncode == 0, table.stderr
    for text in ("4→8", "4→11", "maxpool", "layer2.1", "phone→edge", "edge→cloud", "tensors", "part_start"):
        assert text in table.stdout
