"""Ctrl-C during ``splittracer run``: exit 130, the run interrupted, only completed inferences are samples."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from splittracer.metrics.store import ResultsStore
from splittracer.workspace import init_workspace

pytestmark = pytest.mark.slow

# Over LTE the input takes about 0.8 s to cross, so an inference is nearly
# always in flight when the signal comes: the one it interrupts.
SLOW_SWEEP = """\
name: slow
model: {source: torchvision:alexnet}
participants:
  phone: {role: splittracer.builtin:SplitHead, limits: {threads: 1, uplink: lte}}
  cloud: {role: splittracer.builtin:SplitTail, limits: {threads: 1}}
playbook:
  phone:
    - task: Sweep
      params: {splits: [0], next: [cloud]}
options: {repeats: 200, warmup: 1}
"""


def splittracer(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "splittracer", *args, "--workspace", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def completed(store: ResultsStore) -> list[int]:
    """Ids of the latest run's completed, non-warm-up inferences, as recorded so far."""
    spans = store.spans("latest", kind="inference") if store.list_runs() else []
    return [s.inference for s in spans if not s.attrs.get("error") and s.attrs.get("warmup") is not True]


def test_ctrl_c_then_results_show_counts_completed_inferences_only(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    (ws.experiments_dir / "slow.yaml").write_text(SLOW_SWEEP)
    run = subprocess.Popen(
        [sys.executable, "-m", "splittracer", "run", "slow", "--no-plot", "--workspace", str(ws.root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with ResultsStore(ws.results_db) as store:
            deadline = time.monotonic() + 240
            while len(completed(store)) < 2 and run.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert run.poll() is None, run.communicate()
            assert len(completed(store)) >= 2, "no inference completed within 4 minutes"
        run.send_signal(signal.SIGINT)  # what Ctrl-C sends the controller
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    # exit 130 as shells expect of Ctrl-C, no traceback, the run marked interrupted
    assert run.returncode == 130 and "interrupted by the user" in out + err, err
    assert "Traceback" not in err

    with ResultsStore(ws.results_db) as store:
        counted = completed(store)
        assert store.get_run("latest").status == "interrupted"
    shown = splittracer(ws.root, "results", "show", "latest", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert [(s["split"], s["count"]) for s in data["splits"]] == [(0, len(counted))]
    left_out = data["not_counted"]
    assert left_out, "the inference in flight at Ctrl-C is not listed"
    assert all(n["outcome"] == "interrupted" and "interrupted by the user" in n["why"] for n in left_out)
    assert not {n["inference"] for n in left_out} & set(counted)
    assert min(n["inference"] for n in left_out) > max(counted)

    table = splittracer(ws.root, "results", "show", "latest")
    assert table.returncode == 0, table.stderr
    assert f"Not counted: {len(left_out)} inference" in table.stdout and "interrupted" in table.stdout
