"""``splittracer init / experiment / run`` as a user types them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BAD = sorted((ROOT / "tests/unit/fixtures/manifests").glob("*.yaml"))


def splittracer(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "splittracer", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
    )


@pytest.fixture
def workspace(tmp_path):
    result = splittracer("init", str(tmp_path / "ws"))
    assert result.returncode == 0, result.stderr
    return tmp_path / "ws"


def test_init_refuses_to_overwrite(workspace):
    result = splittracer("init", str(workspace))
    assert result.returncode == 2
    assert "splittracer.yaml" in result.stderr and "Traceback" not in result.stderr


def test_experiment_ls_and_show(workspace):
    result = splittracer("experiment", "ls", "--workspace", str(workspace), "--json")
    assert result.returncode == 0, result.stderr
    names = [e["name"] for e in json.loads(result.stdout)]
    assert names == ["fleet", "lab-neurosurgeon", "neurosurgeon", "neurosurgeon-paper", "stream"]
    shown = splittracer("experiment", "show", "neurosurgeon", "--workspace", str(workspace))
    assert shown.returncode == 0 and "splittracer.builtin:SplitHead" in shown.stdout


def test_unknown_experiment_suggests(workspace):
    result = splittracer("run", "neurosurgeoon", "--workspace", str(workspace))
    assert result.returncode == 2
    assert "neurosurgeon" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("fixture", [p for p in BAD if p.name != "good.yaml"], ids=lambda p: p.stem)
def test_bad_manifest_exits_2_with_file_and_line(workspace, fixture):
    shutil.copy(fixture, workspace / "experiments" / fixture.name)
    result = splittracer("run", fixture.stem, "--workspace", str(workspace))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(rf"{re.escape(fixture.name)}:\d+", result.stderr), result.stderr
    assert not list((workspace / "results").glob("*.sqlite")) or "running" not in result.stdout


@pytest.mark.slow
def test_run_by_name_writes_results_and_charts(workspace):
    manifest = (workspace / "experiments" / "neurosurgeon.yaml").read_text()
    # An unthrottled phone (the scaffold's is held to a tenth of a CPU): this test is about the files.
    manifest = "\n".join(
        line for line in manifest.splitlines() if "cpu: 0.1" not in line and "by: auto" not in line
    )
    manifest = (
        manifest.replace("splits: all", "splits: [0, 13, 21]")
        .replace("uplink: lte", "uplink: 100mbit")
        .replace(", uplinks: [3g, lte, wifi]", "")  # one fast link: this test is about the files
    )
    (workspace / "experiments" / "quick.yaml").write_text(
        manifest.replace("name: neurosurgeon", "name: quick")
    )
    scratch = workspace.parent / "tmp"
    scratch.mkdir()
    env = {"TMPDIR": str(scratch)}
    result = splittracer("run", "quick", "--workspace", str(workspace), "--json", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "succeeded"
    # Participants' logs stay with the run; nothing is left in the temp folder.
    logs = workspace / "results" / "logs" / data["run"]
    assert data["logs"] == str(logs) and sorted(p.name for p in logs.iterdir()) == ["cloud.log", "phone.log"]
    assert [p.name for p in scratch.iterdir() if p.name.startswith("splittracer")] == []
    assert [row["split"] for row in data["summary"]] == [0, 13, 21]
    assert all(Path(p).stat().st_size > 0 for p in data["plots"])
    listed = splittracer("results", "ls", "--workspace", str(workspace), "--json")
    assert data["run"] in listed.stdout
    # The stored run carries what repeats it: rerun it, after the workspace's code changed.
    (workspace / "roles.py").write_text((workspace / "roles.py").read_text() + "\n# edited\n")
    # With the agent allowed but none running (an empty agent directory), participants are
    # spawned and the output says how to make launches fast.
    no_agent = {"SPLITTRACER_AGENT": "on", "SPLITTRACER_AGENT_DIR": str(workspace / "no-agent")}
    again = splittracer("rerun", data["run"], "--workspace", str(workspace), "--no-plot", env=no_agent)
    assert again.returncode == 0, again.stderr
    assert "code changed" in again.stdout and "roles.py" in again.stdout
    assert "splittracer agent start" in " ".join(again.stdout.split())
    from splittracer.metrics.store import ResultsStore

    latest = ResultsStore(workspace / "results" / "splittracer.sqlite").get_run("latest")
    assert latest.record.rerun_of == data["run"] and latest.status == "succeeded"
    assert set(latest.record.code) >= {"roles.py", "tasks.py", "splittracer.builtin"}


def test_example_by_hand_fits_in_40_lines():
    roles = ROOT / "src/splittracer/examples/neurosurgeon/roles.py"
    assert len(roles.read_text().splitlines()) <= 40


@pytest.mark.slow
def test_example_by_hand_runs(workspace):
    example = (ROOT / "src/splittracer/examples/neurosurgeon/experiment.yaml").read_text()
    (workspace / "experiments" / "by-hand.yaml").write_text(
        example.replace("repeats: 5", "repeats: 1").replace("uplink: lte", "uplink: 1gbit")
    )
    result = splittracer("run", "by-hand", "--workspace", str(workspace), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert [row["split"] for row in summary] == list(range(22))
