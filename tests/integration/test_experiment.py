"""``Experiment.load(...).run(...)`` from Python, on real participant processes."""

from __future__ import annotations

import pytest

from splittracer import ConfigError, Experiment, RunError, RunFailedError
from splittracer.metrics.store import ResultsStore
from splittracer.report.export import COLUMNS

from .helpers import workspace_with

pytestmark = pytest.mark.slow

TINY = """
name: tiny
model: {source: "nets:tiny", input_shape: [1, 3, 16, 16]}
participants:
  phone: {role: "splittracer.builtin:SplitHead", limits: {threads: 1}}
  cloud: {role: "splittracer.builtin:SplitTail", limits: {threads: 1}}
playbook:
  phone:
    - task: Sweep
      params: {splits: all, next: [cloud], warmup: 0}
options: {repeats: 5}
"""

NETS = "import torch.nn as nn\n\n\ndef tiny():\n    return nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU())\n"


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    ws = workspace_with(tmp_path, {"tiny": TINY})
    (ws.root / "nets.py").write_text(NETS)
    monkeypatch.chdir(tmp_path)
    return ws


def test_run_with_an_override_returns_the_summary_and_the_spans(workspace):
    result = Experiment.load("ws", "tiny").run(repeats=1)  # the workspace by its name in the cwd

    assert result.succeeded and result.status == "succeeded" and result.error is None
    assert result.experiment == "tiny"
    # The override beats the manifest's options.repeats (5): one timed inference per split.
    assert [(row.split, row.count) for row in result.summary.rows] == [(0, 1), (1, 1), (2, 1)]
    assert result.summary.run.id == result.run_id
    frame = result.spans
    assert list(frame.columns) == list(COLUMNS)
    assert set(frame["run_id"]) == {result.run_id}
    assert set(frame["participant"]) == {"phone", "cloud"}
    inferences = frame[frame["kind"] == "inference"]
    assert sorted(inferences["split"]) == [0, 1, 2]
    assert (frame["duration_ms"] >= 0).all() and frame["attrs"].map(type).eq(dict).all()
    with ResultsStore(workspace.results_db) as store:
        assert store.get_run(result.run_id).record.overrides == {"repeats": 1}


def test_a_failed_run_raises_with_what_it_measured(workspace):
    # A split the model lacks is a mistake found before anything starts: no run is recorded.
    with pytest.raises(ConfigError, match=r"split 7 is not a split point: the model has 0\.\.2"):
        Experiment.load(workspace.root, "tiny").run(splits=[0, 7], repeats=1)
    assert not workspace.results_db.exists() or not ResultsStore(workspace.results_db).list_runs()
    # A run that starts and then fails (its head sends to a participant the run does not have).
    with pytest.raises(RunFailedError) as caught:
        Experiment.load(workspace.root, "tiny").run(next=["nobody"], repeats=1)
    failed = caught.value.result
    assert isinstance(caught.value, RunError) and caught.value.exit_code == RunError.exit_code
    assert failed.status == "failed" and not failed.succeeded
    assert "nobody" in (failed.error or "") and failed.run_id in str(caught.value)
    assert failed.summary.rows == () and list(failed.spans.columns) == list(COLUMNS)
