"""The testbed's pure parts: names, addresses, sshd config, tc command lines, state, errors."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import pytest

from splittracer.cli import main
from splittracer.errors import RUN_FAILURE, USER_ERROR
from splittracer.lab import (
    HostStatus,
    LabHost,
    LabNetwork,
    Testbed,
    TestbedCommandError,
    TestbedError,
    TestbedStatus,
    describe_rate,
    network,
    shaping,
    sshd,
    status_document,
    system,
)
from splittracer.lab import state as saved


def _host(index: int = 1) -> LabHost:
    net = LabNetwork()
    return LabHost(
        name=net.namespace(index),
        index=index,
        address=net.address(index),
        port=22,
        namespace=net.namespace(index),
        interface="eth0",
        bridge_veth=net.bridge_veth(index),
        user=net.user(index),
        home=Path(f"/home/{net.user(index)}"),
        authorized_keys=Path(f"/home/{net.user(index)}/.ssh/authorized_keys"),
        root_authorized_keys=Path(f"/state/st-h{index}/root_authorized_keys"),
        sshd_pid=4242,
        sshd_config=Path("/state/st-h1/sshd_config"),
        sshd_log=Path("/state/st-h1/sshd.log"),
        host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGwVGTkgVx47",
        host_key_fingerprint="SHA256:" + "a" * 43,
    )


def _state(tmp_path: Path) -> saved.TestbedState:
    return saved.TestbedState(
        state_dir=tmp_path,
        prefix="st",
        subnet=0,
        bridge="st-br0",
        bridge_address="198.18.0.1",
        bandwidth="10mbit",
        rate_bps=10e6,
        tbf_burst=1600,
        password="secret",
        hosts=(_host(1), _host(2)),
        registry=tmp_path / "devices.yaml",
        known_hosts=tmp_path / "known_hosts",
        netem=False,
        privsep_dir_created=None,
        created_at=1.5,
    )


def test_names_and_addresses_of_the_default_lab() -> None:
    net = LabNetwork()
    assert (net.bridge, net.bridge_address, net.cidr) == ("st-br0", "198.18.0.1", "198.18.0.0/24")
    assert [net.address(i) for i in (1, 2, 64)] == ["198.18.0.11", "198.18.0.12", "198.18.0.74"]
    assert (net.namespace(3), net.bridge_veth(3), net.user(3)) == ("st-h3", "st-h3-br", "splittracer-st-h3")


def test_a_second_lab_uses_its_own_names_and_subnet() -> None:
    net = LabNetwork(prefix="sd", subnet=1)
    assert (net.bridge, net.address(1)) == ("sd-br0", "198.18.1.11")
    assert net.owns_namespace("sd-h1") and not net.owns_namespace("st-h1")
    assert net.owns_link("sd-h12-br") and net.owns_link("sd-br0") and not net.owns_link("sd-h1")
    assert net.owns_user("splittracer-sd-h2") and not net.owns_user("splittracer-st-h2")


@pytest.mark.parametrize("prefix, subnet", [("", 0), ("toolong", 0), ("ST", 0), ("st", 256), ("st", -1)])
def test_bad_lab_names_are_refused(prefix: str, subnet: int) -> None:
    with pytest.raises(TestbedError):
        LabNetwork(prefix=prefix, subnet=subnet)


def test_interface_names_fit_the_kernel_limit() -> None:
    net = LabNetwork(prefix="abcd", subnet=255)
    assert len(net.bridge_veth(network.MAX_HOSTS)) <= 15


def test_link_commands_put_one_veth_end_in_the_namespace() -> None:
    assert network.bridge_commands(LabNetwork()) == [
        ["ip", "link", "add", "st-br0", "type", "bridge"],
        ["ip", "addr", "add", "198.18.0.1/24", "dev", "st-br0"],
        ["ip", "link", "set", "st-br0", "up"],
    ]
    assert network.host_link_commands(LabNetwork(), 2) == [
        ["ip", "netns", "add", "st-h2"],
        ["ip", "link", "add", "st-h2-br", "type", "veth", "peer", "name", "eth0", "netns", "st-h2"],
        ["ip", "link", "set", "st-h2-br", "master", "st-br0", "up"],
        ["ip", "-n", "st-h2", "addr", "add", "198.18.0.12/24", "dev", "eth0"],
        ["ip", "-n", "st-h2", "link", "set", "eth0", "up"],
        ["ip", "-n", "st-h2", "link", "set", "lo", "up"],
        ["ip", "netns", "exec", "st-h2", "sysctl", "-q", "-w", "net.ipv4.tcp_slow_start_after_idle=0"],
    ]


def test_tbf_shapes_both_ends_with_a_small_burst() -> None:
    tbf = ["root", "tbf", "rate", "10000000bit", "burst", "1600", "latency", "1000ms"]
    assert shaping.shaping_commands(LabNetwork(), 1, 10e6) == [
        ["tc", "-n", "st-h1", "qdisc", "add", "dev", "eth0", *tbf],
        ["tc", "qdisc", "add", "dev", "st-h1-br", *tbf],
    ]
    assert shaping.tbf_burst_bytes(1e6) == shaping.TBF_MIN_BURST
    assert shaping.tbf_burst_bytes(1e9) == 125_000
    assert shaping.tbf_args(5.85e6)[3] == "5850000bit"


def test_sshd_config_allows_only_the_hosts_user_on_its_address() -> None:
    text = sshd.sshd_config(
        name="st-h1",
        address="198.18.0.11",
        host_key=Path("/s/st-h1/key"),
        pid_file=Path("/s/st-h1/sshd.pid"),
        user="splittracer-st-h1",
        root_keys=Path("/s/st-h1/root_authorized_keys"),
    )
    lines = set(text.splitlines())
    for expected in (
        "ListenAddress 198.18.0.11",
        "Port 22",
        "HostKey /s/st-h1/key",
        "PidFile /s/st-h1/sshd.pid",
        "AllowUsers splittracer-st-h1 root",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication yes",
        "PubkeyAuthentication yes",
        "AuthorizedKeysFile .ssh/authorized_keys",
        "UsePAM no",
        "StrictModes no",
        "Subsystem sftp internal-sftp",
    ):
        assert expected in lines
    # root's keys come from the state dir, never from the controller's ~/.ssh; Match ends the file.
    assert text.splitlines()[-2:] == [
        "Match User root",
        "    AuthorizedKeysFile /s/st-h1/root_authorized_keys",
    ]
    assert "PerSourcePenalties no" not in lines
    with_penalties = sshd.sshd_config(
        name="h",
        address="a",
        host_key=Path("k"),
        pid_file=Path("p"),
        user="u",
        root_keys=Path("r"),
        per_source_penalties=True,
    )
    assert "PerSourcePenalties no" in with_penalties.split("Match")[0]


@pytest.mark.parametrize(
    "version, expected",
    [
        ("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.11", False),
        ("OpenSSH_9.8p1, OpenSSL 3.3.1", True),
        ("OpenSSH_10.0p2 Ubuntu", True),
        ("unknown option -- V", False),
    ],
)
def test_per_source_penalties_only_where_sshd_knows_them(version: str, expected: bool) -> None:
    assert sshd.supports_per_source_penalties(version) is expected


def test_fingerprint_is_read_as_ssh_keygen_prints_it() -> None:
    out = "256 SHA256:uJ1zkQ4PLyAgkT7T2D2eXhJ0rWr7vJq7sQ+Xx1x/abc st-h1-testbed (ED25519)\n"
    assert sshd.parse_fingerprint(out) == "SHA256:uJ1zkQ4PLyAgkT7T2D2eXhJ0rWr7vJq7sQ+Xx1x/abc"
    with pytest.raises(TestbedError, match="no SHA256"):
        sshd.parse_fingerprint("garbage")


def test_registry_and_known_hosts() -> None:
    hosts = [_host(1), _host(2)]
    assert saved.registry_document(hosts)["devices"]["st-h2"] == {
        "host": "198.18.0.12",
        "port": 22,
        "user": "splittracer-st-h2",
        "host_key": hosts[1].host_key,
        "fingerprint": hosts[1].host_key_fingerprint,
        "tags": ["testbed"],
    }
    assert saved.known_hosts_text(hosts).splitlines()[0] == f"198.18.0.11 {hosts[0].host_key}"


def test_bandwidth_and_host_count() -> None:
    assert shaping.parse_bandwidth("10mbit") == 10e6
    assert shaping.parse_bandwidth("lte") == 5.85e6
    assert shaping.parse_bandwidth(None) is None
    assert shaping.parse_bandwidth("unlimited") is None
    with pytest.raises(TestbedError, match="--bandwidth"):
        shaping.parse_bandwidth("10mb")
    assert network.check_host_count(2) == 2
    for bad in (0, network.MAX_HOSTS + 1):
        with pytest.raises(TestbedError, match="--hosts"):
            network.check_host_count(bad)


def test_state_survives_json(tmp_path: Path) -> None:
    state = _state(tmp_path)
    text = json.dumps(saved.state_to_json(state))
    assert saved.state_from_json(json.loads(text)) == state


def test_a_corrupt_state_says_how_to_recover(tmp_path: Path) -> None:
    (tmp_path / saved.STATE_FILE).write_text('{"prefix": "st"}')
    with pytest.raises(TestbedError) as info:
        Testbed(tmp_path).status()
    assert "testbed down" in info.value.render()


def test_default_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert saved.default_state_dir() == tmp_path / "xdg" / "splittracer" / "testbed"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert saved.default_state_dir() == tmp_path / ".local" / "state" / "splittracer" / "testbed"


def test_environment_errors_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(TestbedError, match="needs Linux") as info:
        system.check_environment()
    assert info.value.exit_code == USER_ERROR
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(TestbedError, match="needs root") as info:
        system.check_environment()
    assert "sudo" in info.value.render()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(system, "which", lambda name: None if name in ("ip", "sshd") else f"/usr/bin/{name}")
    with pytest.raises(TestbedError, match="'ip' command"):
        system.check_environment()
    monkeypatch.setattr(system, "which", lambda name: None if name == "sshd" else f"/usr/bin/{name}")
    with pytest.raises(TestbedError, match="sshd") as info:
        system.check_environment()
    assert "openssh-server" in info.value.render()


def test_netem_is_unavailable_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert shaping.netem_available() is False


def test_a_failing_command_reports_command_status_and_output() -> None:
    with pytest.raises(TestbedCommandError) as info:
        system.run([sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"])
    assert info.value.status == 3
    assert info.value.exit_code == RUN_FAILURE
    assert "exited with status 3" in info.value.message and "boom" in info.value.message
    with pytest.raises(TestbedCommandError, match="timed out"):
        system.run([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.2)


def test_cli_refuses_a_bad_host_count_before_touching_anything(tmp_path: Path) -> None:
    assert main(["testbed", "up", "--hosts", "0", "--state-dir", str(tmp_path / "s")]) == USER_ERROR
    assert not (tmp_path / "s").exists()


def test_cli_status_without_a_lab(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["testbed", "status", "--state-dir", str(tmp_path)]) == 0
    assert "No testbed is up" in capsys.readouterr().out
    assert main(["testbed", "status", "--json", "--state-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["up"] is False


def test_status_document_joins_the_saved_hosts_with_what_was_found(tmp_path: Path) -> None:
    found = TestbedStatus(
        state=_state(tmp_path),
        hosts=(
            HostStatus("st-h2", "198.18.0.12", True, False, None, True),
            HostStatus("st-h1", "198.18.0.11", True, True, "SSH-2.0-OpenSSH_9.2", True),
        ),
    )
    doc = status_document(found, tmp_path / "elsewhere")
    assert (doc["up"], doc["healthy"], doc["state_dir"]) == (True, False, str(tmp_path))
    assert (doc["bandwidth"], doc["rate_bps"], doc["registry"]) == (
        "10mbit",
        10e6,
        str(tmp_path / "devices.yaml"),
    )
    first, second = doc["hosts"]
    assert (first["name"], first["sshd_running"], first["banner"]) == ("st-h1", True, "SSH-2.0-OpenSSH_9.2")
    assert (second["name"], second["sshd_running"], second["banner"]) == ("st-h2", False, None)
    assert first["sshd_pid"] == 4242 and first["host_key_fingerprint"] == "SHA256:" + "a" * 43
    json.dumps(doc)


def test_the_rate_is_described_with_its_tbf_parameters(tmp_path: Path) -> None:
    assert describe_rate(_state(tmp_path)) == "10 Mbit/s (tbf, burst 1600 B, latency 1000ms)"
    assert describe_rate(dataclasses.replace(_state(tmp_path), rate_bps=None)) == "unshaped"


def test_a_ready_lab_registers_its_hosts_paired_as_root_with_this_python(tmp_path: Path) -> None:
    from splittracer.devices.registry import Registry, fingerprint_of

    from .test_devices_registry import host_key

    key = tmp_path / "id_ed25519"
    real = [host_key() for _ in range(2)]
    hosts = tuple(
        dataclasses.replace(_host(i + 1), host_key=k, host_key_fingerprint=fingerprint_of(k))
        for i, k in enumerate(real)
    )
    unpaired = saved.registry_document(hosts)["devices"]["st-h1"]
    assert unpaired["user"] == "splittracer-st-h1" and "key" not in unpaired
    path = tmp_path / "devices.yaml"
    path.write_text(json.dumps(saved.registry_document(hosts, key)))
    devices = Registry(path).devices()
    assert [(d.user, d.key, d.python, d.listen_host) for d in devices.values()] == [
        ("root", key, sys.executable, h.address) for h in hosts
    ]


def test_a_state_saved_before_the_lab_paired_its_hosts_still_loads(tmp_path: Path) -> None:
    state = dataclasses.replace(_state(tmp_path), client_key=tmp_path / "id_ed25519")
    data = saved.state_to_json(state)
    assert saved.state_from_json(data).client_key == tmp_path / "id_ed25519"
    del data["client_key"], data["runtime_created"]
    old = saved.state_from_json(data)
    assert (old.client_key, old.runtime_created) == (None, None)
    del data["password"]
    with pytest.raises(TestbedError, match="not readable"):
        saved.state_from_json(data)


def test_up_prints_the_two_commands_that_run_the_lab_experiment(tmp_path: Path) -> None:
    from splittracer.cli.testbed import run_commands
    from splittracer.workspace import init_workspace

    state = dataclasses.replace(_state(tmp_path / "state dir"), client_key=tmp_path / "k")
    init, run = run_commands(state)
    assert init == "splittracer init lab-demo"
    assert run == (
        f"SPLITTRACER_DEVICES='{tmp_path}/state dir/devices.yaml' "
        "splittracer run lab-neurosurgeon --workspace lab-demo"
    )
    manifest = init_workspace(tmp_path / "lab-demo").load_manifest("lab-neurosurgeon", check_code=False)
    assert [p.device for p in manifest.participants.values()] == [h.name for h in state.hosts]
