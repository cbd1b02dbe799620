"""SSH deployment against a real sshd: participants start, answer through the tunnel, leave nothing."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import pytest

from splittracer.controller.plan import plan_from_manifest
from splittracer.controller.run import run_experiment
from splittracer.deploy.ssh import SSHDeployer
from splittracer.devices.errors import DeviceError
from splittracer.metrics.store import ResultsStore
from splittracer.participant.messages import ParticipantInfo, decoder, method
from splittracer.participant.runtime import open_channel
from splittracer.participant.tls import CONTROLLER, TlsBundle, issue_run_certificates

from .helpers import alive, workspace_with
from .sshd_fixture import Sshd, ssh_env_fixture, sshd_fixture  # noqa: F401  (fixtures)
from .test_devices_ssh import paired

pytestmark = pytest.mark.slow


def hello(address: str, name: str, controller: TlsBundle) -> ParticipantInfo:
    with open_channel(address, name, controller) as channel:
        raw = channel.unary_unary(method("Hello"))(b"", timeout=30)
    return decoder(ParticipantInfo).decode(raw)


def run_dirs(server: Sshd) -> list[Path]:
    runs = server.home / ".splittracer" / "runs"
    return list(runs.rglob("*")) if runs.exists() else []


def test_participant_starts_answers_and_leaves_nothing(sshd: Sshd, tmp_path: Path):
    registry = paired(sshd)
    workspace = tmp_path / "ws"
    (workspace / "pkg").mkdir(parents=True)
    (workspace / "roles.py").write_text("X = 1\n")
    (workspace / "pkg" / "__init__.py").write_text("")
    (workspace / "notes.txt").write_text("not code")
    config = tmp_path / "override.yaml"
    config.write_text("granularity: block\n")
    certificates = issue_run_certificates("r1", ["CLIENT1"])
    with SSHDeployer({"CLIENT1": registry.get("dev1")}, workspace=workspace, files=[config]) as deployer:
        deployment = deployer.start("CLIENT1", certificates["CLIENT1"])
        assert deployment.address.startswith("127.0.0.1:")
        assert deployment.peer_address.startswith("127.0.0.1:")
        assert deployment.address != deployment.peer_address  # control goes through the tunnel
        info = hello(deployment.address, "CLIENT1", certificates[CONTROLLER])
        assert info.pid == deployment.pid and alive(info.pid)
        with pytest.raises(grpc.RpcError):  # no certificate of this run: refused
            hello(deployment.address, "CLIENT1", issue_run_certificates("other", ["CLIENT1"])[CONTROLLER])
        remote = Path(deployment.workspace)
        assert sorted(p.relative_to(remote).as_posix() for p in remote.rglob("*")) == [
            "override.yaml",
            "pkg",
            "pkg/__init__.py",
            "roles.py",
            "tls",
            "tls/ca.pem",
            "tls/cert.pem",
            "tls/key.pem",
        ]
        assert (remote / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600
        assert (remote / "tls").stat().st_mode & 0o777 == 0o700
        assert deployment.poll() is None
        deployment.stop()
        assert deployment.poll() == -signal.SIGTERM
    assert not alive(info.pid)
    assert run_dirs(sshd) == [] and not (sshd.home / ".splittracer").exists()


def test_a_killed_participant_is_seen_and_cleaned_up(sshd: Sshd):
    registry = paired(sshd)
    with SSHDeployer({"A": registry.get("dev1")}) as deployer:
        deployment = deployer.start("A")
        assert deployment.pid is not None
        import os

        os.kill(deployment.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while deployment.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert deployment.poll() == -signal.SIGKILL
    assert run_dirs(sshd) == []


def test_closing_the_deployer_stops_everything(sshd: Sshd):
    registry = paired(sshd)
    device = registry.get("dev1")
    deployer = SSHDeployer({"A": device, "B": device})
    pids = [deployer.start(n).pid for n in ("A", "B")]
    assert all(pid is not None and alive(pid) for pid in pids)
    deployer.close()
    assert not any(alive(pid) for pid in pids if pid is not None)
    assert run_dirs(sshd) == []


def test_start_failure_names_host_command_and_output(sshd: Sshd):
    registry = paired(sshd)
    broken = registry.get("dev1").model_copy(update={"python": "/bin/false"})
    with SSHDeployer({"A": broken}) as deployer, pytest.raises(DeviceError) as caught:
        deployer.start("A")
    text = caught.value.render()
    assert "127.0.0.1" in text and "splittracer.participant" in text and "device setup" in text
    assert run_dirs(sshd) == []


TWO = """
name: two
model: {source: torchvision:alexnet}
participants:
  phone: {device: dev1, role: "splittracer.builtin:SplitHead", limits: {threads: 1}}
  cloud: {device: dev1, role: "roles:Tail", limits: {threads: 1}}
playbook:
  phone:
    - task: Sweep
      params: {splits: [0, 13, 21], next: [cloud], repeats: 1, warmup: 0}
"""


def test_a_run_over_ssh(sshd: Sshd, tmp_path: Path):
    registry = paired(sshd)
    ws = workspace_with(tmp_path, {"two": TWO})
    (ws.root / "roles.py").write_text(
        "from splittracer.builtin import SplitTail\n\n\nclass Tail(SplitTail):\n    pass\n"
    )
    plan = plan_from_manifest(ws.load_manifest("two"))
    store = ResultsStore(ws.results_db)
    placements = {p.name: registry.get(p.device) for p in plan.participants}
    with SSHDeployer(placements, workspace=ws.root) as deployer:
        outcome = run_experiment(plan, store, workspace=ws.root, deployer=deployer)
    assert outcome.status == "succeeded", outcome.error
    assert run_dirs(sshd) == []
