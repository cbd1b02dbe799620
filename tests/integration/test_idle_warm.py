"""Each compute span records how long its participant was idle before it (and the CPU's MHz where
readable); ``keep_warm: true`` is recorded with the run, and the participant still computes right."""

from __future__ import annotations

import statistics
from pathlib import Path

from splittracer.metrics.system import cpu_freq_mhz
from tests.integration.helpers import run, workspace_with

_WAITING = """\
name: waiting
model: {source: torchvision:alexnet}
participants:
  phone:
    role: splittracer.builtin:SplitHead
    limits: {threads: 1, latency: 300ms}
  cloud:
    role: splittracer.builtin:SplitTail
    limits: {threads: 1}
    keep_warm: true
playbook:
  phone:
    - task: Sweep
      params: {splits: [0], next: [cloud]}
options: {repeats: 3, warmup: 0}
"""


def test_compute_spans_carry_idle_time_and_keep_warm_is_recorded(tmp_path: Path):
    ws = workspace_with(tmp_path, {"waiting": _WAITING})
    outcome, store = run(ws, "waiting")
    assert outcome.status == "succeeded", outcome.error
    spans = [s for s in store.spans(outcome.run_id, kind="compute") if s.participant == "cloud"]
    assert len(spans) == 3
    idle = [float(s.attrs["idle_ms"]) for s in spans]
    # Between two of the cloud's inferences the phone's next input spends 300 ms on its link.
    assert statistics.median(idle[1:]) >= 250, idle
    assert all(ms >= 0 for ms in idle)
    assert all(("cpu_mhz" in s.attrs) == (cpu_freq_mhz() is not None) for s in spans)
    record = store.get_run(outcome.run_id).record
    assert record.participants["cloud"].keep_warm is True
    assert record.participants["phone"].keep_warm is False
