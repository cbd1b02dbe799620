"""Choosing a deployer from plain inputs, and the mixed deployer's routing and closing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from splittracer.controller import placement
from splittracer.controller.resolve import ResolvedParticipant, ResolvedRun
from splittracer.deploy.base import describe_exit
from splittracer.deploy.local import LocalDeployer
from splittracer.deploy.select import MixedDeployer, deployer_for
from splittracer.devices.limits import LimitsError, ResourceLimits
from splittracer.wire.messages import ModelConfig


class _Recorder:
    """A deployer that records what it was asked to do."""

    def __init__(self, log: list[str], label: str, fail_close: bool = False) -> None:
        self.log, self.label, self.fail_close = log, label, fail_close

    def start(self, name: str, tls: Any) -> Any:
        self.log.append(f"{self.label} starts {name}")
        return name

    def close(self) -> None:
        self.log.append(f"{self.label} closed")
        if self.fail_close:
            raise OSError("connection already gone")


def test_a_run_on_this_machine_only_gets_a_local_deployer_without_a_registry():
    chosen = deployer_for({"phone": "local", "cloud": "local"}, None)
    assert isinstance(chosen, LocalDeployer) and chosen.advertise is None
    chosen.close()  # part of the protocol, nothing to release


def test_the_mixed_deployer_routes_by_name_and_closes_both_even_if_one_fails():
    log: list[str] = []
    mixed = MixedDeployer(_Recorder(log, "local"), _Recorder(log, "ssh", fail_close=True), {"cloud"})
    mixed.start("phone", None)
    mixed.start("cloud", None)
    with pytest.raises(OSError):
        mixed.close()
    assert log == ["local starts phone", "ssh starts cloud", "ssh closed", "local closed"]


def test_the_plan_gives_devices_and_the_files_a_device_needs(monkeypatch):
    seen: dict[str, Any] = {}
    monkeypatch.setattr(placement, "deployer_for", lambda *a, **kw: seen.update(args=a, kwargs=kw))
    plan = ResolvedRun(
        experiment="x",
        participants=(
            ResolvedParticipant("phone", 0, "r", cpu=0.1, memory_bytes=1 << 30),
            ResolvedParticipant("cloud", 1, "r", device="dev1"),
        ),
        playbook=(),
        model=ModelConfig("torchvision:alexnet", override="conf/o.yaml", dataset="../images"),
    )
    placement.deployer_for_plan(plan, Path("/ws"), run_id="r1", log_dir=Path("/ws/results/logs/r1"))
    assert seen["args"] == ({"phone": "local", "cloud": "dev1"}, Path("/ws"))
    assert seen["kwargs"] == {
        "files": [Path("conf/o.yaml")],
        "dataset": Path("../images"),
        "registry": None,
        "run_id": "r1",
        "log_dir": Path("/ws/results/logs/r1"),
        "limits": {"phone": ResourceLimits(0.1, 1 << 30), "cloud": ResourceLimits()},
        "run_name": "x",
    }


def test_limits_on_a_device_are_refused_not_ignored():
    with pytest.raises(LimitsError, match=r"'cloud' runs on device 'dev1'.*local participants only"):
        deployer_for({"phone": "local", "cloud": "dev1"}, None, limits={"cloud": ResourceLimits(cpu=0.5)})


def test_local_limits_reach_the_local_deployer():
    chosen = deployer_for({"phone": "local"}, None, limits={"phone": ResourceLimits(memory_bytes=1 << 30)})
    assert isinstance(chosen, LocalDeployer) and chosen.limits == {"phone": ResourceLimits(None, 1 << 30)}
    chosen.close()


def test_exits_are_described_as_subprocess_reports_them():
    assert describe_exit(None) == "still running"
    assert describe_exit(3) == "exited with status 3"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-200) == "killed by signal 200"
