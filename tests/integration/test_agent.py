"""The warm agent for real: started by the CLI, forking participants for runs and for the deployer."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from splittracer.cli import main
from splittracer.deploy import agent_client as agent
from splittracer.deploy.agent_client import AgentDeployment
from splittracer.deploy.local import LocalDeployer, LocalDeployment
from splittracer.metrics.store import ResultsStore
from splittracer.wire.tls import issue_run_certificates

from ..manifests import pool5
from .helpers import alive, participant_pids, run, workspace_with

pytestmark = pytest.mark.slow


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def _start_agent(capsys: pytest.CaptureFixture[str], idle: str = "120s") -> dict:
    assert main(["agent", "start", "--idle-timeout", idle, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def agent_dir(monkeypatch):
    """A private agent directory of this test (short: Unix socket paths are limited)."""
    directory = Path(tempfile.mkdtemp(prefix="st-agent-", dir="/tmp"))
    monkeypatch.setenv(agent.DIR_ENV, str(directory))
    monkeypatch.delenv(agent.USE_ENV, raising=False)
    started: list[int] = []
    yield directory, started
    for pid in started:  # stopped by pid, whatever the test did
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, 15):
                os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, 5)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def warm(agent_dir, capsys):
    """A running agent: (its pid, its directory)."""
    directory, started = agent_dir
    info = _start_agent(capsys)
    started.append(info["pid"])
    assert info["started"] is True and info["socket"] == str(directory / agent.SOCKET_NAME)
    return info["pid"], directory


def test_a_run_through_the_agent_succeeds_and_says_so(warm, tmp_path, capsys):
    pid, _ = warm
    ws = workspace_with(tmp_path, {"infer": pool5(5, name="infer")})
    assert main(["run", "infer", "--workspace", str(ws.root), "--json", "--no-plot"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "succeeded"
    assert result["launch"] == {"phone": "agent", "cloud": "agent"}
    store = ResultsStore(ws.results_db)
    assert store.get_run(result["run"]).record.launch == {"phone": "agent", "cloud": "agent"}
    assert len([s for s in store.spans(result["run"]) if s.kind == "inference"]) == 5
    pids = participant_pids(store, result["run"])
    assert len(pids) == 2 and pid not in pids
    assert not any(alive(p) for p in pids)  # reaped by the agent, not left as zombies
    status = agent.agent_status()
    assert status is not None and status["pid"] == pid and status["children"] == []


def test_forked_participants_are_the_agents_children_and_a_kill_fails_the_run(warm, tmp_path):
    agent_pid, _ = warm
    ws = workspace_with(tmp_path, {"infer": pool5(100000, name="infer")})
    result = {}
    # A daemon: should the test fail before the kill, its endless run must not keep pytest alive
    # (its participants then end with the controller, see participant/lifeline.py).
    thread = threading.Thread(
        target=lambda: result.update(zip(("outcome", "store"), run(ws, "infer"))), daemon=True
    )
    thread.start()
    store = ResultsStore(ws.results_db)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = store.list_runs()
        if runs and len(store.spans(runs[-1].id)) >= 10:
            break
        time.sleep(0.2)
    run_id = store.list_runs()[-1].id
    record = store.get_run(run_id).record
    assert record.launch == {"phone": "agent", "cloud": "agent"}
    pids = {name: p.pid for name, p in record.participants.items()}
    assert {_parent(pid) for pid in pids.values()} == {agent_pid}
    assert all(os.getsid(pid) == pid for pid in pids.values())  # a session of its own
    status = agent.agent_status()
    assert status is not None
    assert {c["pid"] for c in status["children"]} == set(pids.values())
    killed_at = time.monotonic()
    os.kill(pids["cloud"], signal.SIGKILL)
    thread.join(timeout=60)
    ended_in = time.monotonic() - killed_at
    outcome = result["outcome"]
    assert outcome.status == "failed"
    assert ended_in < 10, f"run took {ended_in:.1f} s to notice"
    assert "cloud" in outcome.error and "killed by SIGKILL" in outcome.error
    assert not any(alive(p) for p in participant_pids(store, run_id))
    assert alive(agent_pid)  # the agent outlives its participants


def test_the_forked_process_is_set_up_as_a_spawned_one(warm, tmp_path):
    agent_pid, _ = warm
    bundles = issue_run_certificates("run-a", ["cloud"])
    deployment = LocalDeployer(log_dir=tmp_path).start("cloud", bundles["cloud"])
    try:
        assert isinstance(deployment, AgentDeployment) and deployment.launch == "agent"
        pid = deployment.pid
        assert _parent(pid) == agent_pid and deployment.poll() is None
        assert deployment.address.startswith("127.0.0.1:")
        assert os.readlink(f"/proc/{pid}/cwd") == os.getcwd()
        assert os.readlink(f"/proc/{pid}/fd/0") == os.devnull
        assert os.readlink(f"/proc/{pid}/fd/2") == str(Path(deployment._log.name).resolve())
        with socket.create_connection(("127.0.0.1", int(deployment.address.rsplit(":", 1)[1])), timeout=5):
            pass  # it listens
    finally:
        deployment.stop(timeout=5)
    assert deployment.poll() == -signal.SIGTERM
    assert not alive(pid) and not deployment._secrets.exists()


def test_a_dropped_controller_connection_ends_the_participant(warm):
    bundles = issue_run_certificates("run-a", ["cloud"])
    deployment = LocalDeployer().start("cloud", bundles["cloud"])
    assert isinstance(deployment, AgentDeployment)
    deployment._sock.shutdown(socket.SHUT_RDWR)  # as when the controller dies
    assert _wait_gone(deployment.pid, 10)
    deployment.stop(timeout=1)


def test_agent_stop_terminates_its_participants_and_reports_them(warm, capsys):
    agent_pid, directory = warm
    bundles = issue_run_certificates("run-a", ["cloud"])
    deployment = LocalDeployer().start("cloud", bundles["cloud"])
    assert isinstance(deployment, AgentDeployment)
    assert main(["agent", "stop", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stopped"] == agent_pid
    assert not alive(agent_pid)
    deadline = time.monotonic() + 5
    while deployment.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert deployment.poll() == -signal.SIGTERM  # reported before the agent went
    assert not alive(deployment.pid)
    assert not (directory / agent.SOCKET_NAME).exists()
    deployment.stop()
    assert main(["agent", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["running"] is False


def test_an_incompatible_agent_is_not_used(warm, monkeypatch, caplog):
    agent_pid, _ = warm
    # A variable read at import time differs: the agent's imports may not match this controller.
    monkeypatch.setenv("SPLITTRACER_CLOCK_SHIFT_NS", "1000")
    assert main(["agent", "status", "--json"]) == 0
    bundles = issue_run_certificates("run-a", ["cloud"])
    with caplog.at_level(logging.DEBUG, logger="splittracer.deploy.agent_client"):
        deployment = LocalDeployer().start("cloud", bundles["cloud"])
    try:
        assert isinstance(deployment, LocalDeployment) and deployment.launch == "spawn"
        assert _parent(deployment.pid) == os.getpid() != agent_pid
    finally:
        deployment.stop()
    assert "not used" in caplog.text and "SPLITTRACER_CLOCK_SHIFT_NS" in caplog.text
    status = agent.agent_status()
    assert status is not None and status["children"] == []


def test_status_shows_a_mismatch_and_start_replaces_an_idle_stale_agent(warm, monkeypatch, capsys, agent_dir):
    agent_pid, _ = warm
    _, started = agent_dir
    capsys.readouterr()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert main(["agent", "status", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["running"] and not info["fingerprint_match"] and not info["used_by_runs"]
    assert any("OMP_NUM_THREADS" in d for d in info["differences"])
    replacement = _start_agent(capsys)
    started.append(replacement["pid"])
    assert replacement["replaced"] == agent_pid and replacement["pid"] != agent_pid
    assert not alive(agent_pid)
    assert main(["agent", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fingerprint_match"] is True


def test_a_stale_socket_is_replaced_and_an_idle_agent_exits_by_itself(agent_dir, capsys):
    directory, started = agent_dir
    directory.chmod(0o700)
    stale = directory / agent.SOCKET_NAME
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as leftover:
        leftover.bind(str(stale))  # an agent that died without cleaning up
    assert main(["agent", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["running"] is False
    info = _start_agent(capsys, idle="4s")
    started.append(info["pid"])
    assert agent.agent_status() is not None
    assert stale.stat().st_mode & 0o777 == 0o600
    assert _wait_gone(info["pid"], 20), "the idle agent did not exit"
    assert not stale.exists()


def test_torchs_compiler_imported_by_the_controller_does_not_skip_the_agent(warm, tmp_path, capsys):
    # Planning a split (split: auto) imports torch's compiler in the controller, which sets
    # TORCHINDUCTOR_CACHE_DIR here; the user did not set it, so the agent still fits.
    import torch._inductor.config  # noqa: F401

    assert "TORCHINDUCTOR_CACHE_DIR" in os.environ
    ws = workspace_with(tmp_path, {"infer": pool5(2, name="infer")})
    assert main(["run", "infer", "--workspace", str(ws.root), "--no-plot"]) == 0
    lines = capsys.readouterr().out.splitlines()
    prefix = "forked by the warm agent: "
    forked = [sorted(x.removeprefix(prefix).split(", ")) for x in lines if x.startswith(prefix)]
    assert forked == [["cloud", "phone"]]
    assert not any("not used" in line for line in lines)


def test_a_run_says_in_one_line_why_the_agent_was_not_used(warm, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONHASHSEED", "7")  # read when Python starts: the agent's children differ
    ws = workspace_with(tmp_path, {"infer": pool5(2, name="infer")})
    assert main(["run", "infer", "--workspace", str(ws.root), "--no-plot"]) == 0
    lines = capsys.readouterr().out.splitlines()
    why = [line for line in lines if line.startswith("warm agent not used:")]
    assert len(why) == 1 and "$PYTHONHASHSEED: agent None, here '7'" in why[0]
    assert not any("tip:" in line for line in lines)
