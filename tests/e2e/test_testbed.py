"""The lab itself: real sshd on each host, logins, the shaped link, a clean ``down``."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from splittracer.cli import main
from splittracer.lab import (
    LabNetwork,
    Testbed,
    TestbedError,
    TestbedState,
    netem_available,
    read_ssh_banner,
)
from splittracer.lab.network import namespace_pids
from splittracer.lab.system import wait_for

from .conftest import LAB_HOSTS, lab_skip_reason
from .labclaim import claimed_lab

pytestmark = pytest.mark.e2e

TRANSFER_BYTES = 2_000_000
TRANSFER_PORT = 5201

# Both scripts run inside lab namespaces (ip netns exec); every wait is bounded by a timeout.
SERVER = r"""
import socket, sys
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with socket.create_server((host, port)) as srv:
    srv.settimeout(20)
    print("ready", flush=True)
    conn, _ = srv.accept()
    with conn:
        conn.settimeout(20)
        got = 0
        while got < size:
            chunk = conn.recv(1 << 16)
            if not chunk:
                break
            got += len(chunk)
        conn.sendall(b"k")
        print(got, flush=True)
"""
CLIENT = r"""
import socket, sys, time
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
payload = bytes(size)
with socket.create_connection((host, port), timeout=20) as conn:
    conn.settimeout(20)
    start = time.perf_counter()
    conn.sendall(payload)
    ack = conn.recv(1)
    print(time.perf_counter() - start if ack == b"k" else -1.0)
"""


def _in_namespace(namespace: str, script: str, *args: object) -> list[str]:
    return ["ip", "netns", "exec", namespace, sys.executable, "-c", script, *(str(a) for a in args)]


def _ssh(lab: TestbedState, host_index: int, command: str, **auth: object) -> str:
    """Run ``command`` on a lab host over SSH, the host key pinned to the one the lab recorded."""
    asyncssh = pytest.importorskip("asyncssh")
    host = lab.hosts[host_index]

    # Nothing from the controller's ~/.ssh (keys, config, known_hosts) nor its ssh-agent.
    options: dict[str, object] = {
        "known_hosts": asyncssh.import_known_hosts(f"{host.address} {host.host_key}\n"),
        "client_keys": None,
        "password": lab.password,
        "config": None,
        "agent_path": None,
        "gss_host": None,
        "connect_timeout": 10,
        **auth,
    }

    options.setdefault("username", host.user)

    async def go() -> str:
        async with asyncssh.connect(host.address, port=host.port, **options) as conn:
            result = await asyncio.wait_for(conn.run(command, check=True), timeout=20)
            return str(result.stdout)

    return asyncio.run(go())


def test_every_host_answers_an_ssh_banner(lab: TestbedState) -> None:
    assert len(lab.hosts) == LAB_HOSTS
    for host in lab.hosts:
        with socket.create_connection((host.address, 22), timeout=5) as sock:
            sock.settimeout(5)
            banner = sock.recv(256)
        assert banner.startswith(b"SSH-2.0-"), (host.name, banner)


def test_password_login_runs_a_command_on_the_right_host(lab: TestbedState) -> None:
    for index, host in enumerate(lab.hosts):
        out = _ssh(lab, index, "id -un; echo $SSH_CONNECTION")
        user, connection = out.split("\n")[:2]
        assert user == host.user
        assert connection.split()[2:] == [host.address, "22"]


def test_wrong_password_is_refused(lab: TestbedState) -> None:
    asyncssh = pytest.importorskip("asyncssh")
    with pytest.raises(asyncssh.PermissionDenied):
        _ssh(lab, 0, "true", password="not-the-password")


def test_a_changed_host_key_is_refused(lab: TestbedState) -> None:
    asyncssh = pytest.importorskip("asyncssh")
    first, second = lab.hosts[0], lab.hosts[1]
    wrong = asyncssh.import_known_hosts(f"{first.address} {second.host_key}\n")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        _ssh(lab, 0, "true", known_hosts=wrong)


def test_key_login_with_an_authorized_key(lab_testbed: Testbed, lab: TestbedState) -> None:
    asyncssh = pytest.importorskip("asyncssh")
    host = lab.hosts[1]
    key = asyncssh.generate_private_key("ssh-ed25519")
    before = host.authorized_keys.read_text()
    lab_testbed.authorize_key(host.name, key.export_public_key().decode())
    try:
        out = _ssh(lab, 1, "id -un", client_keys=[key], password=None, preferred_auth="publickey")
    finally:
        host.authorized_keys.write_text(before)
    assert out.strip() == host.user


def test_root_logs_in_by_key_only_and_runs_the_controllers_python(
    lab_testbed: Testbed, lab: TestbedState
) -> None:
    asyncssh = pytest.importorskip("asyncssh")
    host = lab.hosts[0]
    key = asyncssh.generate_private_key("ssh-ed25519")
    keys = lab_testbed.authorize_key(host.name, key.export_public_key().decode(), user="root")
    try:
        out = _ssh(
            lab,
            0,
            f"id -un; {sys.executable} -c 'print(40 + 2)'",
            client_keys=[key],
            password=None,
            username="root",
        )
    finally:
        keys.write_text("")
    assert out.split() == ["root", "42"]
    with pytest.raises(asyncssh.PermissionDenied):
        _ssh(lab, 0, "true", username="root")


def test_the_link_is_shaped_to_the_bandwidth(lab: TestbedState) -> None:
    sender, receiver = lab.hosts[0], lab.hosts[1]
    server = subprocess.Popen(
        _in_namespace(receiver.namespace, SERVER, receiver.address, TRANSFER_PORT, TRANSFER_BYTES),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        client = subprocess.run(
            _in_namespace(sender.namespace, CLIENT, receiver.address, TRANSFER_PORT, TRANSFER_BYTES),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        received = server.communicate(timeout=30)[0].strip()
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=10)
    assert received == str(TRANSFER_BYTES)
    elapsed = float(client.stdout.strip())
    expected = 8 * TRANSFER_BYTES / 10e6
    assert abs(elapsed - expected) <= 0.15 * expected, f"{elapsed:.3f} s for {expected:.3f} s at 10 Mbit/s"


def test_status_reports_every_host_healthy_and_shaped(lab_testbed: Testbed) -> None:
    status = lab_testbed.status()
    assert status.healthy
    assert all(h.shaped and h.banner and h.banner.startswith("SSH-2.0-") for h in status.hosts)


def test_the_registry_lists_the_hosts_as_pinned_devices(lab: TestbedState) -> None:
    devices = yaml.safe_load(lab.registry.read_text())["devices"]
    assert list(devices) == [h.name for h in lab.hosts]
    for host in lab.hosts:
        assert devices[host.name]["host"] == host.address and devices[host.name]["tags"] == ["testbed"]
        assert re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}", host.host_key_fingerprint)
    registry = pytest.importorskip("splittracer.devices.registry")
    loaded = registry.Registry(lab.registry).devices()
    assert {n: (d.host, d.user, d.fingerprint) for n, d in loaded.items()} == {
        h.name: (h.address, h.user, h.host_key_fingerprint) for h in lab.hosts
    }


def test_cli_status_json(lab_testbed: Testbed, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["testbed", "status", "--json", "--state-dir", str(lab_testbed.state_dir)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["up"] and shown["healthy"]
    state = lab_testbed.read_state()
    assert state is not None
    assert [h["address"] for h in shown["hosts"]] == [h.address for h in state.hosts]
    assert "password" not in json.dumps(shown)


def test_a_second_lab_with_the_same_names_is_refused(lab_testbed: Testbed, tmp_path: Path) -> None:
    with pytest.raises(TestbedError, match="already exist"):
        Testbed(tmp_path / "other", lab_testbed.network).up(1)
    assert lab_testbed.status().healthy


def test_down_leaves_nothing_behind(tmp_path: Path, claim_lab: Callable[[LabNetwork], list[str]]) -> None:
    reason = lab_skip_reason()
    if reason is not None:
        pytest.skip(f"no testbed: {reason}")
    # Its own names and subnet, so it runs beside the session's lab.
    network = LabNetwork(prefix="sd", subnet=1)
    claim_lab(network)
    testbed = Testbed(tmp_path / "state", network)
    state = testbed.up(1)
    host = state.hosts[0]
    assert read_ssh_banner(host.address) is not None
    squatter = subprocess.Popen(["ip", "netns", "exec", host.namespace, "sleep", "60"])
    try:
        # `ip netns exec` enters the namespace, then execs: on a busy machine that takes a while,
        # and `down` can only stop what is inside by then.
        assert wait_for(lambda: squatter.pid in namespace_pids(host.namespace), 10.0)
        removed = testbed.down()
        assert squatter.wait(timeout=10) != 0
    finally:
        if squatter.poll() is None:
            squatter.kill()
            squatter.wait(timeout=10)
    assert f"namespace {host.namespace}" in removed
    assert testbed.leftovers() == []
    assert not Path(f"/proc/{host.sshd_pid}").exists() or "Z" in _proc_state(host.sshd_pid)
    assert not host.home.exists()
    assert not (tmp_path / "state").exists()
    assert testbed.down() == []
    assert not testbed.status().up


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return "Z"


def test_netem_detection_matches_the_kernel_config() -> None:
    reason = lab_skip_reason()
    if reason is not None:
        pytest.skip(f"no testbed: {reason}")
    config = Path("/proc/config.gz")
    if not config.exists() or not os.access(config, os.R_OK):
        pytest.skip("no /proc/config.gz to compare with")
    line = next(
        (x for x in gzip.decompress(config.read_bytes()).decode().splitlines() if "NET_SCH_NETEM" in x), ""
    )
    if line.endswith("=m"):
        pytest.skip("netem is a module here; whether it loads depends on the installed modules")
    assert netem_available() is line.endswith("=y")


def test_a_lab_left_by_a_killed_session_is_removed_by_the_next_claim(tmp_path: Path) -> None:
    """A SIGKILLed session cannot tear its lab down: the next session's claim must (see labclaim)."""
    reason = lab_skip_reason()
    if reason is not None:
        pytest.skip(f"no testbed: {reason}")
    network = LabNetwork(prefix="kl", subnet=3)
    script = (
        "import socket, sys, time\n"
        "from pathlib import Path\n"
        "from splittracer.lab import LabNetwork, Testbed\n"
        "claim = socket.socket(socket.AF_UNIX); claim.bind('\\0splittracer-test-lab-kl')\n"
        # ready=False: a runtime made by a killed session is not the next claim's to remove
        "Testbed(Path(sys.argv[1]), LabNetwork(prefix='kl', subnet=3)).up(1, ready=False)\n"
        "print('up', flush=True); time.sleep(120)\n"
    )
    session = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "killed")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert session.stdout is not None and session.stdout.readline().strip() == "up"
        with (
            pytest.raises(pytest.fail.Exception, match="another live test session"),
            claimed_lab(network, tmp_path / "early"),
        ):
            pass
    finally:
        session.kill()
        session.wait(timeout=10)
        if session.stdout is not None:
            session.stdout.close()
    with claimed_lab(network, tmp_path / "next") as removed:
        assert "namespace kl-h1" in removed and "link kl-br0" in removed
        assert Testbed(tmp_path / "next", network).leftovers() == []
