"""SSH deployment against a real sshd: participants start, answer through the tunnel, leave nothing."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import asyncssh
import grpc
import pytest
import torch
from torchvision.io import encode_jpeg, write_png

from splittracer.controller.placement import deployer_for_plan
from splittracer.controller.resolve import resolve_run
from splittracer.controller.run import run_experiment
from splittracer.deploy.ssh import SSHDeployer
from splittracer.devices.errors import DeviceError
from splittracer.devices.registry import Device, fingerprint_of
from splittracer.errors import ConfigError
from splittracer.metrics.store import ResultsStore
from splittracer.participant.inputs import InputSource
from splittracer.wire.grpc_path import open_channel
from splittracer.wire.messages import ParticipantInfo, decoder, method
from splittracer.wire.tls import CONTROLLER, TlsBundle, issue_run_certificates

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
    plan = resolve_run(ws.load_manifest("two"))
    store = ResultsStore(ws.results_db)
    placements = {p.name: registry.get(p.device) for p in plan.participants}
    with SSHDeployer(placements, workspace=ws.root) as deployer:
        outcome = run_experiment(plan, store, workspace=ws.root, deployer=deployer)
    assert outcome.status == "succeeded", outcome.error
    assert run_dirs(sshd) == []


def image_folder(folder: Path) -> Path:
    """Three small images (PNG and JPEG, one in a sub-folder) and a file that is not an image."""
    (folder / "night").mkdir(parents=True)
    write_png(torch.zeros((3, 20, 30), dtype=torch.uint8), str(folder / "a.png"))
    (folder / "b.jpg").write_bytes(
        encode_jpeg(torch.full((3, 24, 24), 200, dtype=torch.uint8)).numpy().tobytes()
    )
    write_png(torch.full((3, 8, 8), 90, dtype=torch.uint8), str(folder / "night" / "c.PNG"))
    (folder / "labels.csv").write_text("a.png,0\n")
    return folder


def test_the_dataset_goes_with_the_participant_and_leaves_with_it(sshd: Sshd, tmp_path: Path):
    registry = paired(sshd)
    images = image_folder(tmp_path / "images")
    with SSHDeployer({"A": registry.get("dev1")}, dataset=images) as deployer:
        deployment = deployer.start("A")
        remote = Path(deployment.workspace) / "images"
        assert sorted(p.relative_to(remote).as_posix() for p in remote.rglob("*") if p.is_file()) == [
            "a.png",
            "b.jpg",
            "night/c.PNG",
        ]  # only what the participant reads: labels.csv stays home
        for name in ("a.png", "b.jpg", "night/c.PNG"):
            assert (remote / name).read_bytes() == (images / name).read_bytes()
        local, there = (
            InputSource((1, 3, 16, 16), dataset=str(images)),
            InputSource((1, 3, 16, 16), dataset=str(remote)),
        )
        assert all(torch.equal(local.get(i), there.get(i)) for i in range(3))
    assert run_dirs(sshd) == [] and not (sshd.home / ".splittracer").exists()


def test_a_dataset_that_cannot_be_sent_is_refused_before_connecting(ssh_env: Path, tmp_path: Path):
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    device = Device(name="far", host="127.0.0.1", port=1, host_key=key, fingerprint=fingerprint_of(key))
    with pytest.raises(ConfigError, match="holds no images"):
        SSHDeployer({"A": device}, dataset=tmp_path)
    clash = image_folder(tmp_path / "tls")
    with pytest.raises(ConfigError, match="its name 'tls'") as caught:
        SSHDeployer({"A": device}, dataset=clash)
    assert "Rename the folder" in caught.value.render()


LOOK = """
name: look
model: {source: "nets:tiny", input_shape: [1, 3, 16, 16], dataset: ../images}
participants:
  eye: {device: dev1, role: "roles:Eye"}
playbook:
  eye:
    - task: Look
      params: {count: 4}
"""


def test_a_run_on_a_device_reads_the_image_folder(sshd: Sshd, tmp_path: Path):
    registry = paired(sshd)
    ws = workspace_with(tmp_path, {"look": LOOK})
    images = image_folder(ws.root / "images")
    (ws.root / "nets.py").write_text(
        "import torch.nn as nn\n\n\ndef tiny():\n    return nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU())\n"
    )
    (ws.root / "tasks.py").write_text("from splittracer import Task\n\n\nclass Look(Task):\n    count: int\n")
    (ws.root / "roles.py").write_text(
        "import os\n\nfrom splittracer import Context, Role, handles\nfrom tasks import Look\n\n\n"
        "class Eye(Role):\n"
        "    @handles(Look)\n"
        "    def look(self, task: Look, ctx: Context) -> None:\n"
        "        for i in range(task.count):\n"
        "            ctx.record('input_mean', float(ctx.example(i).mean()), index=i)\n"
        "        ctx.record('images_here', float(len(os.listdir('images'))))\n"
        "        ctx.record('reads_the_copy', float(ctx._config.model.dataset == 'images'))\n"
        "        ctx.finish()\n"
    )
    plan = resolve_run(ws.load_manifest("look"), ws.root)
    store = ResultsStore(ws.results_db)
    outcome = run_experiment(
        plan, store, workspace=ws.root, deployer=deployer_for_plan(plan, ws.root, registry)
    )
    assert outcome.status == "succeeded", outcome.error
    metrics = store.metrics(outcome.run_id)
    means = {int(m.attrs["index"]): m.value for m in metrics if m.name == "input_mean"}
    local = InputSource((1, 3, 16, 16), dataset=str(images))
    assert means == pytest.approx({i: float(local.get(i).mean()) for i in range(4)}, abs=1e-5)
    assert [m.value for m in metrics if m.name == "images_here"] == [3.0]  # a.png, b.jpg, night/
    assert [m.value for m in metrics if m.name == "reads_the_copy"] == [1.0]  # not the controller's path
    assert run_dirs(sshd) == []
