"""A full disk under the results folder stops the run with a clear error and keeps what was stored.

The results folder is a small tmpfs mounted for the test (root only; skipped elsewhere).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from splittracer.workspace import Workspace

from .helpers import alive, workspace_with

pytestmark = pytest.mark.slow

# Endless enough that the run always fills the disk before it could end.
LONG_SWEEP = """\
name: long
model: {source: torchvision:resnet18, input_shape: [1, 3, 32, 32], granularity: block}
participants:
  phone: {role: splittracer.builtin:SplitHead, limits: {threads: 1}}
  cloud: {role: splittracer.builtin:SplitTail, limits: {threads: 1}}
playbook:
  phone:
    - task: Sweep
      params: {splits: [0, 2, 5], next: [cloud]}
options: {repeats: 100000, warmup: 1, sample_interval: 20ms, timeout: 300s}
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Workspace]:
    """A workspace whose results folder is a 1.5 MB tmpfs."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    ws = workspace_with(tmp_path, {"long": LONG_SWEEP})
    results = ws.results_dir
    results.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1500k", "tmpfs", str(results)])
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield ws
    finally:
        subprocess.run(["umount", "-l", str(results)], check=True)


def test_a_full_disk_stops_the_run_with_a_clear_error_and_keeps_what_was_stored(small_disk: Workspace):
    ws = small_disk
    scratch = ws.root.parent / "tmp"  # the participants' scratch folders: their command lines name it
    scratch.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "splittracer", "run", "long", "--no-plot", "--workspace", str(ws.root)],
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "is out of disk space" in result.stderr and "Free space on the disk" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.count("is out of disk space") == 1, result.stderr  # said once
    with sqlite3.connect(f"file:{ws.results_db}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = conn.execute("SELECT COUNT(*) FROM spans WHERE kind = 'inference'").fetchone()[0]
    assert stored > 0  # what was stored before the disk filled up is kept
    assert _participants_of(scratch) == [], "a participant outlived its run"
    assert list(scratch.iterdir()) == []


def _participants_of(scratch: Path) -> list[int]:
    """Pids of participants whose scratch folder is under ``scratch``, after up to 5 s to stop."""
    deadline = time.monotonic() + 5.0
    while True:
        found = subprocess.run(["pgrep", "-f", f"--tls-dir {scratch}/"], capture_output=True, text=True)
        pids = [int(pid) for pid in found.stdout.split() if alive(int(pid))]
        if not pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.1)
