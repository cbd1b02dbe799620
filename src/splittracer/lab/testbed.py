"""A lab of real SSH hosts on one Linux machine: network namespaces, a bridge, OpenSSH and ``tc``.

``Testbed(state_dir).up(hosts=N, bandwidth="10mbit")`` (root, Linux) builds, for
host ``i`` in ``1..N`` of a lab with prefix ``st`` and subnet ``0``:

* a network namespace ``st-hI`` with ``lo`` up and ``eth0`` at ``198.18.0.(10+I)/24``;
* ``eth0``'s veth peer ``st-hI-br`` on the bridge ``st-br0`` (``198.18.0.1/24``) in the
  root namespace, so the controller reaches every host and hosts reach each other;
* a system user ``splittracer-st-hI`` (home ``/home/splittracer-st-hI``, comment
  ``SplitTracer testbed …``) whose password is the lab's password. One user per host,
  because namespaces share the file system: a run deployed to two hosts must not see
  one home. The home holds ``.ssh/authorized_keys``; password and key logins work;
* root may log in too, by key only, with keys from ``<state_dir>/st-hI/root_authorized_keys``
  (:meth:`Testbed.authorize_key` with ``user="root"``): root sessions can run the
  controller's own Python and torch, which may live where the host users cannot read.
  The controller's ``~/.ssh`` is never read or written;
* a real OpenSSH ``sshd`` in the namespace, listening on the host's address port 22,
  with its own ed25519 host key, config, pid file and log under ``<state_dir>/st-hI/``;
* with a bandwidth, a ``tbf`` qdisc at that rate on both ends of the veth, so each
  direction is shaped once on the way out of a host and once on the way in.

``netem`` is not used: it is missing on some kernels (:func:`netem_available` probes).

Files in ``state_dir``:

* ``testbed.json`` (mode 0600): the :class:`TestbedState` — hosts, addresses, sshd pids,
  host keys and their ``SHA256:`` fingerprints (as ``ssh-keygen -lf`` prints them),
  users, the password;
* ``known_hosts``: one line per host, ``198.18.0.11 ssh-ed25519 AAAA…``;
* ``devices.yaml``: the hosts as a device registry in the format of
  :mod:`splittracer.devices.registry`, host keys pinned (the lab made them), no client key::

      devices:
        st-h1:
          host: 198.18.0.11
          port: 22
          user: splittracer-st-h1
          host_key: ssh-ed25519 AAAAC3Nz...
          fingerprint: SHA256:3q9...
          tags: [testbed]

``down()`` stops every process in the lab's namespaces (sshd and the sessions it
started), deletes the namespaces, veths and bridge, the users it made and the files
above. It finds them by name as well as from the state, so it also clears what an
interrupted ``up`` left; it is idempotent.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from ..errors import RUN_FAILURE, SplitTracerError
from ..units import format_rate, parse_rate

__all__ = [
    "HostStatus",
    "LabHost",
    "LabNetwork",
    "Testbed",
    "TestbedCommandError",
    "TestbedError",
    "TestbedState",
    "TestbedStatus",
    "check_environment",
    "check_platform",
    "default_state_dir",
    "netem_available",
    "read_ssh_banner",
]

STATE_FILE = "testbed.json"
REGISTRY_FILE = "devices.yaml"
KNOWN_HOSTS_FILE = "known_hosts"
USER_MARKER = "SplitTracer testbed"
HOST_IFACE = "eth0"
SSH_PORT = 22
MAX_HOSTS = 64
# The queue tbf may hold, as time at the rate. A short queue drops packets as soon as TCP's
# window outgrows it, and the link then idles while TCP recovers: at 50 ms a 10 Mbit/s link
# carried large tensors 10-15% slower than its rate. A queue of a second never drops one
# message's packets, so the link stays busy and a transfer takes bytes / rate (plus headers).
TBF_LATENCY = "1000ms"
# tbf must hold one full frame (1500 + 14 bytes of Ethernet header); a burst of more than
# about a millisecond of traffic would let small messages through unshaped.
TBF_MIN_BURST = 1600
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")
_START_TIMEOUT_S = 10.0

Progress = Callable[[str], None]


class TestbedError(SplitTracerError):
    """The lab cannot be built here, or was asked for something it cannot do."""

    __test__ = False


class TestbedCommandError(TestbedError):
    """A command run to build, check or remove the lab failed."""

    exit_code = RUN_FAILURE

    def __init__(self, argv: Sequence[str], status: int | None, output: str) -> None:
        command = " ".join(argv)
        what = "timed out" if status is None else f"exited with status {status}"
        tail = "\n".join(output.strip().splitlines()[-10:])
        super().__init__(
            f"testbed command '{command}' {what}" + (f":\n{tail}" if tail else ""),
            hint="run 'splittracer testbed down' to remove what was made, then try again",
        )
        self.argv, self.status, self.output = tuple(argv), status, output


@dataclass(frozen=True)
class LabNetwork:
    """Names and addresses of one lab: ``{prefix}-hI`` hosts on ``198.18.{subnet}.0/24``."""

    prefix: str = "st"
    subnet: int = 0

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z]{1,4}", self.prefix):
            raise TestbedError(f"lab prefix '{self.prefix}' must be 1 to 4 lower-case letters")
        if not 0 <= self.subnet <= 255:
            raise TestbedError(f"lab subnet {self.subnet} must be 0..255 (198.18.SUBNET.0/24)")

    @property
    def bridge(self) -> str:
        return f"{self.prefix}-br0"

    @property
    def bridge_address(self) -> str:
        return f"198.18.{self.subnet}.1"

    @property
    def cidr(self) -> str:
        return f"198.18.{self.subnet}.0/24"

    def namespace(self, index: int) -> str:
        return f"{self.prefix}-h{index}"

    def address(self, index: int) -> str:
        return f"198.18.{self.subnet}.{10 + index}"

    def bridge_veth(self, index: int) -> str:
        return f"{self.prefix}-h{index}-br"

    def user(self, index: int) -> str:
        return f"splittracer-{self.prefix}-h{index}"

    def owns_namespace(self, name: str) -> bool:
        return re.fullmatch(rf"{self.prefix}-h\d+", name) is not None

    def owns_link(self, name: str) -> bool:
        return name == self.bridge or re.fullmatch(rf"{self.prefix}-h\d+-br", name) is not None

    def owns_user(self, name: str) -> bool:
        return re.fullmatch(rf"splittracer-{self.prefix}-h\d+", name) is not None


@dataclass(frozen=True)
class LabHost:
    """One lab host as built: where it is, who may log in, how to check its identity."""

    name: str
    index: int
    address: str
    port: int
    namespace: str
    interface: str
    bridge_veth: str
    user: str
    home: Path
    authorized_keys: Path
    root_authorized_keys: Path
    sshd_pid: int
    sshd_config: Path
    sshd_log: Path
    host_key: str
    host_key_fingerprint: str


@dataclass(frozen=True)
class TestbedState:
    """What ``up`` made; saved as ``testbed.json`` and read back by ``status`` and ``down``."""

    __test__ = False

    state_dir: Path
    prefix: str
    subnet: int
    bridge: str
    bridge_address: str
    bandwidth: str | None
    rate_bps: float | None
    tbf_burst: int | None
    password: str
    hosts: tuple[LabHost, ...]
    registry: Path
    known_hosts: Path
    netem: bool
    privsep_dir_created: Path | None
    created_at: float

    @property
    def network(self) -> LabNetwork:
        return LabNetwork(self.prefix, self.subnet)

    def host(self, name: str) -> LabHost:
        for host in self.hosts:
            if name in (host.name, host.address):
                return host
        raise TestbedError(f"no lab host '{name}'; hosts: {', '.join(h.name for h in self.hosts)}")


@dataclass(frozen=True)
class HostStatus:
    """A lab host as found now."""

    name: str
    address: str
    namespace: bool
    sshd_running: bool
    banner: str | None
    shaped: bool

    @property
    def ok(self) -> bool:
        return self.namespace and self.sshd_running and self.banner is not None


@dataclass(frozen=True)
class TestbedStatus:
    """``status()``: the saved state (``None`` when no lab is up) and each host's health."""

    __test__ = False

    state: TestbedState | None
    hosts: tuple[HostStatus, ...]

    @property
    def up(self) -> bool:
        return self.state is not None

    @property
    def healthy(self) -> bool:
        return self.up and all(h.ok for h in self.hosts)


# --------------------------------------------------------------------------- pure helpers


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/splittracer/testbed``, else ``~/.local/state/splittracer/testbed``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "splittracer" / "testbed"


def bridge_commands(net: LabNetwork) -> list[list[str]]:
    return [
        ["ip", "link", "add", net.bridge, "type", "bridge"],
        ["ip", "addr", "add", f"{net.bridge_address}/24", "dev", net.bridge],
        ["ip", "link", "set", net.bridge, "up"],
    ]


def host_link_commands(net: LabNetwork, index: int) -> list[list[str]]:
    ns, veth = net.namespace(index), net.bridge_veth(index)
    return [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", veth, "type", "veth", "peer", "name", HOST_IFACE, "netns", ns],
        ["ip", "link", "set", veth, "master", net.bridge, "up"],
        ["ip", "-n", ns, "addr", "add", f"{net.address(index)}/24", "dev", HOST_IFACE],
        ["ip", "-n", ns, "link", "set", HOST_IFACE, "up"],
        ["ip", "-n", ns, "link", "set", "lo", "up"],
        # Each task is one burst after an idle gap; restarting TCP's slow start after every gap
        # would add round trips to each message that a link of this rate does not cost.
        ["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.tcp_slow_start_after_idle=0"],
    ]


def tbf_burst_bytes(rate_bps: float) -> int:
    """About a millisecond of traffic, and never less than one full frame."""
    return max(TBF_MIN_BURST, math.ceil(rate_bps / 8 * 1e-3))


def tbf_args(rate_bps: float) -> list[str]:
    burst = tbf_burst_bytes(rate_bps)
    return ["root", "tbf", "rate", f"{round(rate_bps)}bit", "burst", str(burst), "latency", TBF_LATENCY]


def shaping_commands(net: LabNetwork, index: int, rate_bps: float) -> list[list[str]]:
    """tbf on the host's end (its uplink) and on the bridge's end (its downlink)."""
    tbf = tbf_args(rate_bps)
    return [
        ["tc", "-n", net.namespace(index), "qdisc", "add", "dev", HOST_IFACE, *tbf],
        ["tc", "qdisc", "add", "dev", net.bridge_veth(index), *tbf],
    ]


def supports_per_source_penalties(sshd_version: str) -> bool:
    """OpenSSH 9.8 added penalties that would lock the controller out after failed logins."""
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", sshd_version)
    return match is not None and (int(match[1]), int(match[2])) >= (9, 8)


def sshd_config(
    *,
    name: str,
    address: str,
    host_key: Path,
    pid_file: Path,
    user: str,
    root_keys: Path,
    port: int = SSH_PORT,
    per_source_penalties: bool = False,
) -> str:
    """One lab host's sshd_config: its address only; its user by password or key, root by key only."""
    lines = [
        f"# SplitTracer testbed host {name}, written by 'splittracer testbed up'",
        f"ListenAddress {address}",
        f"Port {port}",
        f"HostKey {host_key}",
        f"PidFile {pid_file}",
        f"AllowUsers {user} root",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication yes",
        "PubkeyAuthentication yes",
        "KbdInteractiveAuthentication no",
        "AuthorizedKeysFile .ssh/authorized_keys",
        "UsePAM no",
        "StrictModes no",
        "AllowTcpForwarding yes",
        "X11Forwarding no",
        "PrintMotd no",
        "UseDNS no",
        "MaxStartups 64:30:128",
        "MaxSessions 32",
        "LogLevel VERBOSE",
        "Subsystem sftp internal-sftp",
    ]
    if per_source_penalties:
        lines.append("PerSourcePenalties no")
    # Match blocks run to the end of the file, so this one comes last.
    lines += ["Match User root", f"    AuthorizedKeysFile {root_keys}"]
    return "\n".join(lines) + "\n"


def parse_fingerprint(keygen_output: str) -> str:
    """``SHA256:…`` from ``ssh-keygen -lf`` output (``256 SHA256:abc comment (ED25519)``)."""
    match = re.search(r"\bSHA256:[A-Za-z0-9+/=]+", keygen_output)
    if match is None:
        raise TestbedError(f"no SHA256 fingerprint in ssh-keygen output: {keygen_output.strip()!r}")
    return match[0]


def registry_document(hosts: Sequence[LabHost]) -> dict[str, Any]:
    return {
        "devices": {
            h.name: {
                "host": h.address,
                "port": h.port,
                "user": h.user,
                "host_key": h.host_key,
                "fingerprint": h.host_key_fingerprint,
                "tags": ["testbed"],
            }
            for h in hosts
        }
    }


def known_hosts_text(hosts: Sequence[LabHost]) -> str:
    return "".join(
        f"{h.address if h.port == SSH_PORT else f'[{h.address}]:{h.port}'} {h.host_key}\n" for h in hosts
    )


def parse_bandwidth(bandwidth: str | None) -> float | None:
    """Bits per second to shape at, or ``None`` for an unshaped lab."""
    if bandwidth is None:
        return None
    try:
        rate = parse_rate(bandwidth)
    except ValueError as exc:
        raise TestbedError(f"--bandwidth: {exc}") from exc
    return None if math.isinf(rate) else rate


def check_host_count(hosts: int) -> int:
    if not 1 <= hosts <= MAX_HOSTS:
        raise TestbedError(f"--hosts {hosts}: a lab has 1 to {MAX_HOSTS} hosts")
    return hosts


def state_to_json(state: TestbedState) -> dict[str, Any]:
    plain: dict[str, Any] = _plain(asdict(state))
    return plain


def state_from_json(data: dict[str, Any]) -> TestbedState:
    try:
        hosts = tuple(LabHost(**_typed(LabHost, h)) for h in data["hosts"])
        return TestbedState(**{**_typed(TestbedState, data), "hosts": hosts})
    except (KeyError, TypeError, ValueError) as exc:
        raise TestbedError(
            f"the testbed state is not readable ({exc})",
            hint="run 'splittracer testbed down' to remove the lab by name",
        ) from exc


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def _typed(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(cls):
        value = data[f.name]
        path_field = "Path" in str(f.type)
        out[f.name] = Path(value) if path_field and value is not None else value
    return out


# --------------------------------------------------------------------------- system helpers


def _which(name: str) -> str | None:
    search = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    return shutil.which(name, path=search)


def _run(
    argv: Sequence[str | Path], *, check: bool = True, timeout: float = 30.0, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    args = [str(a) for a in argv]
    args[0] = _which(args[0]) or args[0]
    try:
        done = subprocess.run(
            args,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TestbedCommandError(args, None, str(exc.stderr or "")) from exc
    except OSError as exc:
        raise TestbedCommandError(args, None, str(exc)) from exc
    if check and done.returncode != 0:
        raise TestbedCommandError(args, done.returncode, done.stderr + done.stdout)
    return done


def check_environment(*, shaping: bool = False) -> Path:
    """Raise :class:`TestbedError` saying what to do unless the lab can be built; return sshd's path."""
    check_platform()
    needed = ["ssh-keygen", "useradd", "userdel", "chpasswd", *(["tc"] if shaping else [])]
    missing = [n for n in needed if _which(n) is None]
    if missing:
        raise TestbedError(
            f"the testbed needs {', '.join(missing)}, not found on PATH or in /usr/sbin",
            hint="install them (Debian/Ubuntu: apt-get install iproute2 openssh-client passwd)",
        )
    return _sshd_binary()


def check_platform() -> None:
    """Linux, root and ``ip``: what making or removing namespaces needs."""
    if not sys.platform.startswith("linux"):
        raise TestbedError(
            f"the testbed needs Linux network namespaces; this is {sys.platform}",
            hint="run it on a Linux machine or VM, or use local mode with emulated links",
        )
    if os.geteuid() != 0:
        raise TestbedError(
            "the testbed needs root to make namespaces, links and users",
            hint="run it as root, e.g. 'sudo splittracer testbed up --hosts 2'",
        )
    if _which("ip") is None:
        raise TestbedError(
            "the testbed needs the 'ip' command (iproute2), not found on PATH or in /usr/sbin",
            hint="install it (Debian/Ubuntu: apt-get install iproute2)",
        )


def _sshd_binary() -> Path:
    found = _which("sshd")
    if found is None:
        raise TestbedError(
            "no OpenSSH server (sshd) found; each lab host runs a real sshd",
            hint="install it: apt-get install openssh-server (Debian/Ubuntu), dnf install openssh-server",
        )
    # sshd re-executes itself and refuses to start from a relative path.
    return Path(found).resolve()


def netem_available() -> bool:
    """Whether this kernel has the ``netem`` qdisc: add one to ``lo`` in a throwaway namespace."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or _which("tc") is None:
        return False
    probe = f"st-netem-probe-{os.getpid()}"
    try:
        _run(["ip", "netns", "add", probe], timeout=10)
    except TestbedError:
        return False
    try:
        added = _run(
            ["tc", "-n", probe, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
            check=False,
            timeout=10,
        )
        return added.returncode == 0
    finally:
        _run(["ip", "netns", "del", probe], check=False, timeout=10)


def read_ssh_banner(address: str, port: int = SSH_PORT, timeout: float = 2.0) -> str | None:
    """The server's identification line (``SSH-2.0-OpenSSH_9.2…``), or ``None`` if none came."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            data = b""
            deadline = time.monotonic() + timeout
            while b"\n" not in data and len(data) < 512 and time.monotonic() < deadline:
                chunk = sock.recv(512)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    line = data.split(b"\n", 1)[0].decode("ascii", "replace").strip()
    return line if line.startswith("SSH-") else None


def _namespaces() -> list[str]:
    out = _run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _links() -> list[str]:
    out = _run(["ip", "-o", "link", "show"], check=False).stdout
    return [line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line]


def _namespace_pids(namespace: str) -> list[int]:
    out = _run(["ip", "netns", "pids", namespace], check=False).stdout
    return [int(tok) for tok in out.split() if tok.isdigit() and int(tok) != os.getpid()]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _stop(pids: Sequence[int], grace_s: float = 3.0) -> None:
    """SIGTERM, then SIGKILL whatever is still there after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not any(_alive(p) for p in pids):
            return


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _lab_users(net: LabNetwork) -> list[str]:
    return [
        u.pw_name for u in pwd.getpwall() if net.owns_user(u.pw_name) and u.pw_gecos.startswith(USER_MARKER)
    ]


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _wait_for(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


# --------------------------------------------------------------------------- the lab


class Testbed:
    """Build, inspect and remove the lab whose state lives in ``state_dir``."""

    __test__ = False

    def __init__(self, state_dir: Path | None = None, network: LabNetwork | None = None) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.network = network or LabNetwork()
        self._privsep_created: Path | None = None

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    def read_state(self) -> TestbedState | None:
        """The saved state, or ``None`` when no lab is up from this state directory."""
        if not self.state_file.exists():
            return None
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise TestbedError(f"{self.state_file}: not readable ({exc})") from exc
        return state_from_json(data)

    # ---- up

    def up(
        self, hosts: int, bandwidth: str | None = None, *, progress: Progress | None = None
    ) -> TestbedState:
        """Build ``hosts`` lab hosts, their links shaped to ``bandwidth`` when given."""
        say = progress or (lambda _: None)
        count, rate = check_host_count(hosts), parse_bandwidth(bandwidth)
        sshd = check_environment(shaping=rate is not None)
        self._refuse_if_up()
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            return self._build(count, bandwidth, rate, sshd, say)
        except BaseException:
            with contextlib.suppress(Exception):
                self.down()
            raise

    def _refuse_if_up(self) -> None:
        hint = "run 'splittracer testbed down' (with the same --state-dir) first"
        if self.state_file.exists():
            raise TestbedError(f"a testbed is already up from {self.state_dir}", hint=hint)
        net = self.network
        if net.bridge in _links() or any(net.owns_namespace(ns) for ns in _namespaces()):
            raise TestbedError(f"lab links or namespaces named {net.prefix}-* already exist", hint=hint)
        used = _run(["ip", "-o", "addr", "show", "to", net.cidr], check=False).stdout.strip()
        if used:
            raise TestbedError(f"{net.cidr} is already in use here: {used.splitlines()[0]}", hint=hint)

    def _build(
        self, count: int, bandwidth: str | None, rate: float | None, sshd: Path, say: Progress
    ) -> TestbedState:
        net = self.network
        say(f"bridge {net.bridge} {net.bridge_address}/24")
        for cmd in bridge_commands(net):
            _run(cmd)
        version = _run([sshd, "-V"], check=False)
        penalties = supports_per_source_penalties(version.stderr + version.stdout)
        password = secrets.token_urlsafe(12)
        built = []
        for index in range(1, count + 1):
            say(f"host {net.namespace(index)} {net.address(index)}")
            built.append(self._build_host(index, rate, password, sshd, penalties))
        state = TestbedState(
            state_dir=self.state_dir,
            prefix=net.prefix,
            subnet=net.subnet,
            bridge=net.bridge,
            bridge_address=net.bridge_address,
            bandwidth=bandwidth,
            rate_bps=rate,
            tbf_burst=tbf_burst_bytes(rate) if rate is not None else None,
            password=password,
            hosts=tuple(built),
            registry=self.state_dir / REGISTRY_FILE,
            known_hosts=self.state_dir / KNOWN_HOSTS_FILE,
            netem=netem_available(),
            privsep_dir_created=self._privsep_created,
            created_at=time.time(),
        )
        self._save(state)
        return state

    def _build_host(
        self, index: int, rate: float | None, password: str, sshd: Path, penalties: bool
    ) -> LabHost:
        net = self.network
        name, address = net.namespace(index), net.address(index)
        host_dir = self.state_dir / name
        host_dir.mkdir(mode=0o700, exist_ok=True)
        for cmd in host_link_commands(net, index):
            _run(cmd)
        if rate is not None:
            for cmd in shaping_commands(net, index, rate):
                _run(cmd)
        user, home = net.user(index), self._make_user(net.user(index), name, password)
        key = host_dir / "ssh_host_ed25519_key"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}-testbed", "-f", key])
        public_key = " ".join(key.with_suffix(".pub").read_text().split()[:2])
        fingerprint = parse_fingerprint(_run(["ssh-keygen", "-lf", key.with_suffix(".pub")]).stdout)
        config, pid_file, log = host_dir / "sshd_config", host_dir / "sshd.pid", host_dir / "sshd.log"
        root_keys = host_dir / "root_authorized_keys"
        root_keys.touch(mode=0o600)
        config.write_text(
            sshd_config(
                name=name,
                address=address,
                host_key=key,
                pid_file=pid_file,
                user=user,
                root_keys=root_keys,
                per_source_penalties=penalties,
            )
        )
        pid = self._start_sshd(sshd, name, config, pid_file, log, address)
        return LabHost(
            name=name,
            index=index,
            address=address,
            port=SSH_PORT,
            namespace=name,
            interface=HOST_IFACE,
            bridge_veth=net.bridge_veth(index),
            user=user,
            home=home,
            authorized_keys=home / ".ssh" / "authorized_keys",
            root_authorized_keys=root_keys,
            sshd_pid=pid,
            sshd_config=config,
            sshd_log=log,
            host_key=public_key,
            host_key_fingerprint=fingerprint,
        )

    def _make_user(self, user: str, host: str, password: str) -> Path:
        if _user_exists(user):
            raise TestbedError(
                f"user '{user}' already exists",
                hint="run 'splittracer testbed down' to remove a previous lab's users; "
                "a user the testbed did not make is never removed, so rename or remove it yourself",
            )
        home = Path("/home") / user
        shell = "/bin/bash" if Path("/bin/bash").exists() else "/bin/sh"
        _run(
            [
                "useradd",
                "--system",
                "--create-home",
                "--home-dir",
                home,
                "--shell",
                shell,
                "--comment",
                f"{USER_MARKER} host {host}",
                "--user-group",
                user,
            ]
        )
        _run(["chpasswd"], input=f"{user}:{password}\n")
        entry = pwd.getpwnam(user)
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        keys = ssh_dir / "authorized_keys"
        keys.touch(mode=0o600)
        for path in (home, ssh_dir, keys):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return home

    def _start_sshd(
        self, sshd: Path, namespace: str, config: Path, pid_file: Path, log: Path, address: str
    ) -> int:
        check = _run([sshd, "-t", "-f", config], check=False)
        missing = re.search(r"Missing privilege separation directory: (\S+)", check.stderr)
        if missing:
            # Debian's sshd needs /run/sshd, which its service unit usually makes.
            privsep = Path(missing[1])
            privsep.mkdir(mode=0o755, parents=True)
            self._privsep_created = privsep
            check = _run([sshd, "-t", "-f", config], check=False)
        if check.returncode != 0:
            raise TestbedCommandError([str(sshd), "-t", "-f", str(config)], check.returncode, check.stderr)
        # Without -D sshd binds its port, then forks into the background and writes its pid file.
        _run(["ip", "netns", "exec", namespace, sshd, "-f", config, "-E", log], timeout=_START_TIMEOUT_S)
        if not _wait_for(lambda: _read_pid(pid_file) is not None, _START_TIMEOUT_S):
            raise TestbedError(f"sshd in {namespace} wrote no pid file; see {log}")
        pid = _read_pid(pid_file) or 0
        if not _wait_for(lambda: read_ssh_banner(address, timeout=1.0) is not None, _START_TIMEOUT_S, 0.1):
            raise TestbedError(f"sshd in {namespace} (pid {pid}) does not answer on {address}:22; see {log}")
        return pid

    def _save(self, state: TestbedState) -> None:
        state.registry.write_text(
            "# SplitTracer testbed hosts, written by 'splittracer testbed up'\n"
            + yaml.safe_dump(registry_document(state.hosts), sort_keys=False)
        )
        state.known_hosts.write_text(known_hosts_text(state.hosts))
        fd = os.open(self.state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(state_to_json(state), out, indent=2)

    # ---- keys

    def authorize_key(self, host: str, public_key: str, *, user: str | None = None) -> Path:
        """Let ``public_key`` (an ``authorized_keys`` line) log in to ``host`` as its user or ``root``.

        Returns the keys file written, so a test can restore it.
        """
        lab_host = self._require_state().host(host)
        if user not in (None, lab_host.user, "root"):
            raise TestbedError(f"lab host {lab_host.name} accepts only {lab_host.user} and root, not {user}")
        keys = lab_host.root_authorized_keys if user == "root" else lab_host.authorized_keys
        with keys.open("a") as out:
            out.write(public_key.strip() + "\n")
        if user != "root":
            entry = pwd.getpwnam(lab_host.user)
            os.chown(keys, entry.pw_uid, entry.pw_gid)
        return keys

    def _require_state(self) -> TestbedState:
        state = self.read_state()
        if state is None:
            raise TestbedError(
                f"no testbed is up from {self.state_dir}", hint="run 'splittracer testbed up --hosts 2'"
            )
        return state

    # ---- status

    def status(self) -> TestbedStatus:
        """The saved state and, for each host, whether its namespace, sshd and shaping are there."""
        state = self.read_state()
        if state is None:
            return TestbedStatus(state=None, hosts=())
        namespaces = set(_namespaces())
        with ThreadPoolExecutor(max_workers=min(16, len(state.hosts) or 1)) as pool:
            found = tuple(pool.map(lambda h: self._host_status(h, h.namespace in namespaces), state.hosts))
        return TestbedStatus(state=state, hosts=found)

    def _host_status(self, host: LabHost, has_namespace: bool) -> HostStatus:
        running = has_namespace and host.sshd_pid in _namespace_pids(host.namespace)
        qdisc = _run(["tc", "-n", host.namespace, "qdisc", "show", "dev", host.interface], check=False)
        return HostStatus(
            name=host.name,
            address=host.address,
            namespace=has_namespace,
            sshd_running=running,
            banner=read_ssh_banner(host.address, host.port) if running else None,
            shaped=has_namespace and " tbf " in f" {qdisc.stdout} ",
        )

    # ---- down

    def down(self, *, progress: Progress | None = None) -> list[str]:
        """Remove everything the lab made; return what was removed (empty when nothing was up)."""
        say = progress or (lambda _: None)
        state = self.read_state() if self.state_file.exists() else None
        net = state.network if state is not None else self.network
        check_platform()
        removed: list[str] = []
        for ns in (n for n in _namespaces() if net.owns_namespace(n)):
            say(f"namespace {ns}")
            _stop(_namespace_pids(ns))
            _run(["ip", "netns", "del", ns])
            removed.append(f"namespace {ns}")
        # A veth goes with its namespace, but the kernel removes it asynchronously.
        _wait_for(lambda: not any(net.owns_link(n) and n != net.bridge for n in _links()), 5.0)
        for link in (n for n in _links() if net.owns_link(n)):
            _run(["ip", "link", "del", link], check=False)
            removed.append(f"link {link}")
        for user in _lab_users(net):
            say(f"user {user}")
            _run(["userdel", "--remove", user], check=False)
            if _user_exists(user):
                raise TestbedError(f"could not remove user '{user}'", hint=f"run 'userdel --remove {user}'")
            removed.append(f"user {user}")
        removed += self._remove_files(state, net)
        return removed

    def _remove_files(self, state: TestbedState | None, net: LabNetwork) -> list[str]:
        removed = []
        privsep = state.privsep_dir_created if state is not None else self._privsep_created
        if privsep is not None and privsep.is_dir() and not any(privsep.iterdir()):
            privsep.rmdir()
            removed.append(f"directory {privsep}")
        if self.state_dir.is_dir():
            for path in self.state_dir.iterdir():
                if path.is_dir() and net.owns_namespace(path.name):
                    shutil.rmtree(path)
                elif path.name in (STATE_FILE, REGISTRY_FILE, KNOWN_HOSTS_FILE):
                    path.unlink()
                else:
                    continue
                removed.append(f"file {path}")
            with contextlib.suppress(OSError):
                self.state_dir.rmdir()
        return removed

    def leftovers(self) -> list[str]:
        """What of this lab still exists (namespaces, links, users, state files); empty after ``down``."""
        net = self.network
        found = [f"namespace {n}" for n in _namespaces() if net.owns_namespace(n)]
        found += [f"link {n}" for n in _links() if net.owns_link(n)]
        found += [f"user {u}" for u in _lab_users(net)]
        files = (self.state_dir / n for n in (STATE_FILE, REGISTRY_FILE, KNOWN_HOSTS_FILE))
        found += [f"file {f}" for f in files if f.exists()]
        return found


def describe_rate(state: TestbedState) -> str:
    """``10 Mbit/s (tbf, burst 1600 B)`` or ``unshaped``."""
    if state.rate_bps is None:
        return "unshaped"
    return f"{format_rate(state.rate_bps)} (tbf, burst {state.tbf_burst} B, latency {TBF_LATENCY})"
