"""The lab as a user drives it: ``testbed up``, the two commands it prints, ``testbed down``.

Named to run before the session's lab (which uses other names) is built; it builds the default lab.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from splittracer.lab import LabNetwork, Testbed, TestbedError
from splittracer.lab.network import check_free
from splittracer.lab.ready import runtime_dir

from .conftest import lab_skip_reason

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "splittracer", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_up_run_the_printed_commands_down(tmp_path: Path) -> None:
    reason = lab_skip_reason()
    if reason is not None:
        pytest.skip(f"no testbed: {reason}")
    try:
        check_free(LabNetwork(), "")
    except TestbedError:
        pytest.skip("a lab with the default names is up: this test builds that one")
    state_dir = tmp_path / "state"
    runtime_before = runtime_dir().exists()
    up = cli("testbed", "up", "--hosts", "2", "--state-dir", str(state_dir), cwd=tmp_path)
    assert up.returncode == 0, up.stderr  # a failed up removes what it made
    try:
        init, run = [line.strip() for line in up.stdout.splitlines() if line.startswith("  ")][-2:]
        assert init.startswith("splittracer init ") and " splittracer run lab-neurosurgeon" in run
        _shell(init, tmp_path)
        manifest = tmp_path / "lab-demo" / "experiments" / "lab-neurosurgeon.yaml"
        short = (
            manifest.read_text()
            .replace("splits: all", "splits: [0, 5, 21]")
            .replace("repeats: 5", "repeats: 2")
        )
        manifest.write_text(short)
        done = _shell(run, tmp_path)
        assert "lab-neurosurgeon" in done.stdout or "split" in done.stdout
        registry = state_dir / "devices.yaml"
        shown = cli("device", "ls", "--json", "--registry", str(registry), cwd=tmp_path)
        rows = {r["name"]: r for r in json.loads(shown.stdout)}
        assert {n: (r["reachable"], r["login"], r["ready"]) for n, r in rows.items()} == {
            "st-h1": (True, "ok", True),
            "st-h2": (True, "ok", True),
        }
        results = cli("results", "show", "latest", "--json", "--workspace", "lab-demo", cwd=tmp_path)
        assert results.returncode == 0, results.stderr
    finally:
        down = cli("testbed", "down", "--state-dir", str(state_dir), cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert Testbed(state_dir).leftovers() == []
    assert not state_dir.exists()
    if not runtime_before:
        assert not runtime_dir().exists()


def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``command`` as a user would paste it (``VAR=value splittracer ...``), run with this Python."""
    words = shlex.split(command)
    env = dict(os.environ)
    while "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words[0] == "splittracer"
    done = cli(*words[1:], cwd=cwd, env=env)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done
