"""Two `splittracer run` at once in one workspace: both record correctly, neither disturbs the other."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from splittracer.metrics.store import ResultsStore

from .helpers import workspace_with

pytestmark = pytest.mark.slow

# Different repeats, so that each run's count of inferences is its own.
SWEEP = """\
name: {name}
model: {{source: torchvision:resnet18, input_shape: [1, 3, 32, 32], granularity: block}}
participants:
  phone: {{role: splittracer.builtin:SplitHead, limits: {{threads: 1}}}}
  cloud: {{role: splittracer.builtin:SplitTail, limits: {{threads: 1}}}}
playbook:
  phone:
    - task: Sweep
      params: {{splits: [0, 2, 5], next: [cloud]}}
options: {{repeats: {repeats}, warmup: 1}}
"""
REPEATS = {"first": 6, "second": 9}


def test_two_runs_at_once_in_one_workspace_both_record_correctly(tmp_path: Path):
    manifests = {name: SWEEP.format(name=name, repeats=n) for name, n in REPEATS.items()}
    ws = workspace_with(tmp_path, manifests)
    command = [sys.executable, "-m", "splittracer", "run", "--no-plot", "--json", "--workspace", str(ws.root)]
    runs = {
        name: subprocess.Popen([*command, name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in REPEATS
    }
    outputs = {name: process.communicate(timeout=600) for name, process in runs.items()}
    for name, (_out, err) in outputs.items():
        assert runs[name].returncode == 0, f"{name}: {err}"
    run_ids = {name: json.loads(out)["run"] for name, (out, _) in outputs.items()}
    assert len(set(run_ids.values())) == 2
    with ResultsStore(ws.results_db) as store:
        for name, run_id in run_ids.items():
            run = store.get_run(run_id)
            assert (run.experiment, run.status) == (name, "succeeded")
            measured = [s for s in store.spans(run_id, kind="inference") if not s.attrs.get("warmup")]
            per_split = {split: sum(s.split == split for s in measured) for split in (0, 2, 5)}
            assert per_split == dict.fromkeys((0, 2, 5), REPEATS[name]), (name, per_split)
            assert {s.run_id for s in store.spans(run_id)} == {run_id}
    for name, (out, _) in outputs.items():  # each run's participant logs in a folder of its own
        logs = Path(json.loads(out)["logs"])
        assert logs.name == run_ids[name]
        assert sorted(p.name for p in logs.iterdir()) == ["cloud.log", "phone.log"]
