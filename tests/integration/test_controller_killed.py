"""``kill -9`` of ``splittracer run`` mid-sweep: its participants stop within 5 s, the run is
marked interrupted once its lease expires, and its spans are kept."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from splittracer.metrics.lease import CONTROLLER_LOST, EXPIRY_S, RENEW_S
from splittracer.metrics.store import ResultsStore
from splittracer.workspace import init_workspace, open_workspace

from .helpers import alive, participant_pids

pytestmark = pytest.mark.slow

STOP_WITHIN_S = 5.0

# Long enough that the sweep is always running when the controller is killed.
LONG_SWEEP = """\
name: long
model: {source: torchvision:alexnet}
participants:
  phone: {role: splittracer.builtin:SplitHead, limits: {threads: 1}}
  cloud: {role: splittracer.builtin:SplitTail, limits: {threads: 1}}
playbook:
  phone:
    - task: Sweep
      params: {splits: [0, 3], next: [cloud]}
options: {repeats: 5000, warmup: 1}
"""


def _spans_stored(store: ResultsStore) -> int:
    return len(store.spans("latest", kind="inference")) if store.list_runs() else 0


def _pids_once_running(store: ResultsStore, controller: subprocess.Popen[bytes]) -> list[int]:
    """The participants' pids, once the run has stored a few inferences."""
    deadline = time.monotonic() + 240
    while _spans_stored(store) < 3 and controller.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert controller.poll() is None, controller.communicate()
    assert _spans_stored(store) >= 3, "no inference stored within 4 minutes"
    pids = participant_pids(store, "latest")
    assert len(pids) == 2 and all(pid > 0 for pid in pids), pids
    return pids


def _wait_gone(pids: list[int], within: float) -> tuple[list[int], float]:
    """The pids still alive after ``within`` seconds (none: how long it took)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        left = [pid for pid in pids if alive(pid)]
        if not left:
            return [], time.monotonic() - started
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)], within


def kill_mid_sweep(root: Path, db: Path, scratch: Path) -> tuple[list[int], str]:
    """Start a long sweep, SIGKILL its controller once spans arrive; the participants' pids and the run id.

    ``scratch`` is the run's temp folder (``TMPDIR``), where the controller keeps each participant's
    TLS files.
    """
    controller = subprocess.Popen(
        [sys.executable, "-m", "splittracer", "run", "long", "--no-plot", "--workspace", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    try:
        with ResultsStore(db) as store:
            pids = _pids_once_running(store, controller)
            run_id = store.get_run("latest").id
        controller.send_signal(signal.SIGKILL)
        controller.wait(timeout=10)  # reaped at once, as a shell would
    finally:
        if controller.poll() is None:
            controller.kill()
            controller.wait()
        assert controller.stderr is not None
        controller.stderr.close()
    return pids, run_id


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int], str]:
    """One run killed for the tests below, in order: its participants, then its record."""
    ws = init_workspace(tmp_path_factory.mktemp("killed") / "ws")
    (ws.experiments_dir / "long.yaml").write_text(LONG_SWEEP)
    scratch = ws.root.parent / "tmp"
    scratch.mkdir()
    pids, run_id = kill_mid_sweep(ws.root, ws.results_db, scratch)
    return ws.root, pids, run_id


def test_participants_stop_within_5_s_of_the_controller_killed(killed_run):
    root, pids, _run_id = killed_run
    try:
        left, took = _wait_gone(pids, STOP_WITHIN_S)
        assert not left, f"participants {left} still running {STOP_WITHIN_S:g} s after the kill"
        print(f"participants stopped {took:.2f} s after the controller was killed")
        # The controller could not remove its participants' scratch folders (TLS keys): they did.
        left_behind = [p.name for p in (root.parent / "tmp").iterdir() if p.name.startswith("splittracer")]
        assert left_behind == []
    finally:
        for pid in pids:  # no participant may outlive a failed test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_the_killed_run_is_interrupted_when_the_store_is_next_opened(killed_run):
    root, pids, run_id = killed_run
    _wait_gone(pids, STOP_WITHIN_S)
    with ResultsStore(_db(root)) as store:
        assert store.get_run(run_id).status == "running", "marked before its lease expired: a guess"
        stored = len(store.spans(run_id))
    time.sleep(EXPIRY_S + RENEW_S)
    listed = _splittracer(root, "results", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    run = next(r for r in json.loads(listed.stdout) if r["id"] == run_id)
    assert (run["status"], run["error"]) == ("interrupted", CONTROLLER_LOST)
    shown = _splittracer(root, "results", "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    with ResultsStore(_db(root)) as store:
        assert len(store.spans(run_id)) == stored > 0  # every span stored before the kill is kept


def _db(root: Path) -> Path:
    return open_workspace(root).results_db


def _splittracer(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "splittracer", *args, "--workspace", str(root)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)
