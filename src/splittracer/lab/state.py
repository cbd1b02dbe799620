"""What a lab is, as saved in its state directory and as found when checked.

Files in ``state_dir``:

* ``testbed.json`` (mode 0600): the :class:`TestbedState` — hosts, addresses, sshd pids,
  host keys and their ``SHA256:`` fingerprints (as ``ssh-keygen -lf`` prints them),
  users, the password;
* ``known_hosts``: one line per host, ``198.18.0.11 ssh-ed25519 AAAA…``;
* ``devices.yaml``: the hosts as a device registry in the format of
  :mod:`splittracer.devices.registry`, host keys pinned (the lab made them), paired as
  root by the lab's key with this machine's Python (see :mod:`splittracer.lab.ready`)::

      devices:
        st-h1:
          host: 198.18.0.11
          port: 22
          user: root
          host_key: ssh-ed25519 AAAAC3Nz...
          fingerprint: SHA256:3q9...
          tags: [testbed]
          key: /root/.local/state/splittracer/testbed/id_ed25519
          python: /usr/bin/python3
          listen_host: 198.18.0.11
* ``id_ed25519`` and ``id_ed25519.pub``: the lab's login key (root on every host);

and one directory per host with its sshd's files (:class:`~splittracer.lab.sshd.SshdFiles`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import TestbedError
from .network import LabNetwork
from .shaping import describe_shaping
from .sshd import SSH_PORT

__all__ = [
    "CLIENT_KEY_FILE",
    "KNOWN_HOSTS_FILE",
    "LAB_USER",
    "REGISTRY_FILE",
    "STATE_FILE",
    "HostStatus",
    "LabHost",
    "TestbedState",
    "TestbedStatus",
    "default_state_dir",
    "describe_rate",
    "known_hosts_text",
    "load_state",
    "paired_entry",
    "registry_document",
    "remove_state_files",
    "save_state",
    "state_files",
    "state_from_json",
    "state_to_json",
    "status_document",
]

STATE_FILE = "testbed.json"
REGISTRY_FILE = "devices.yaml"
KNOWN_HOSTS_FILE = "known_hosts"
CLIENT_KEY_FILE = "id_ed25519"
LAB_USER = "root"  # who the registry logs in as (see splittracer.lab.ready)
_FILES = (STATE_FILE, REGISTRY_FILE, KNOWN_HOSTS_FILE, CLIENT_KEY_FILE, f"{CLIENT_KEY_FILE}.pub")


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
    cpu_limit: float | None = None  # a fraction of one CPU, enforced on everything its sshd starts
    memory_limit_bytes: int | None = None
    cgroup_dirs: tuple[str, ...] = ()  # the host's cgroups, one per hierarchy


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
    client_key: Path | None = None  # the lab's login key; None: hosts not paired (no registry key)
    runtime_created: Path | None = None  # the runtime up made, which down removes
    cgroup_parents: tuple[str, ...] = ()  # the lab's parent cgroups, which down removes

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


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/splittracer/testbed``, else ``~/.local/state/splittracer/testbed``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "splittracer" / "testbed"


def describe_rate(state: TestbedState) -> str:
    """``10 Mbit/s (tbf, burst 1600 B, latency 1000ms)`` or ``unshaped``."""
    return describe_shaping(state.rate_bps, state.tbf_burst)


def registry_document(hosts: Sequence[LabHost], key: Path | None = None) -> dict[str, Any]:
    """The hosts as a device registry, host keys pinned; with ``key``, paired as root by it."""
    return {"devices": {h.name: _device_entry(h, key) for h in hosts}}


def _device_entry(host: LabHost, key: Path | None) -> dict[str, Any]:
    if key is not None:
        return paired_entry(host, key)
    return {
        "host": host.address,
        "port": host.port,
        "user": host.user,
        "host_key": host.host_key,
        "fingerprint": host.host_key_fingerprint,
        "tags": ["testbed"],
    }


def paired_entry(host: LabHost, key: Path, python: str | None = None) -> dict[str, Any]:
    """A registry entry for ``host`` paired as root by ``key``: it runs ``python`` (default this
    machine's) and listens for peers at the host's address."""
    return {
        "host": host.address,
        "port": host.port,
        "user": LAB_USER,
        "host_key": host.host_key,
        "fingerprint": host.host_key_fingerprint,
        "tags": ["testbed"],
        "key": str(key),
        "python": python or sys.executable,
        "listen_host": host.address,
    }


def known_hosts_text(hosts: Sequence[LabHost]) -> str:
    """One ``known_hosts`` line per host."""
    return "".join(
        f"{h.address if h.port == SSH_PORT else f'[{h.address}]:{h.port}'} {h.host_key}\n" for h in hosts
    )


def state_to_json(state: TestbedState) -> dict[str, Any]:
    """The state as JSON-ready data (paths as strings)."""
    plain: dict[str, Any] = _plain(asdict(state))
    return plain


def state_from_json(data: dict[str, Any]) -> TestbedState:
    """The state :func:`state_to_json` wrote; :class:`TestbedError` saying how to recover if unreadable."""
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
        # A field added since the state was written takes its default; others must be there.
        value = data[f.name] if f.name in data or f.default is MISSING else f.default
        path_field = "Path" in str(f.type)
        if isinstance(value, list):
            out[f.name] = tuple(value)  # JSON has no tuples
        else:
            out[f.name] = Path(value) if path_field and value is not None else value
    return out


def save_state(state: TestbedState, state_file: Path) -> None:
    """Write the registry, ``known_hosts`` and, readable by root only, the state itself."""
    state.registry.write_text(
        "# SplitTracer testbed hosts, written by 'splittracer testbed up'\n"
        + yaml.safe_dump(registry_document(state.hosts, state.client_key), sort_keys=False)
    )
    state.known_hosts.write_text(known_hosts_text(state.hosts))
    fd = os.open(state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(state_to_json(state), out, indent=2)


def load_state(state_file: Path) -> TestbedState | None:
    """The saved state, or ``None`` when there is none."""
    if not state_file.exists():
        return None
    try:
        data = json.loads(state_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TestbedError(f"{state_file}: not readable ({exc})") from exc
    return state_from_json(data)


def state_files(state_dir: Path) -> list[Path]:
    """The lab's own files in ``state_dir`` that exist (not the host directories)."""
    files = (state_dir / n for n in _FILES)
    return [f for f in files if f.exists()]


def remove_state_files(state_dir: Path, net: LabNetwork) -> list[str]:
    """Remove the lab's files and host directories, then ``state_dir`` if nothing else is in it."""
    if not state_dir.is_dir():
        return []
    removed = []
    for path in state_dir.iterdir():
        if path.is_dir() and net.owns_namespace(path.name):
            shutil.rmtree(path)
        elif path.name in _FILES:
            path.unlink()
        else:
            continue
        removed.append(f"file {path}")
    with contextlib.suppress(OSError):
        state_dir.rmdir()
    return removed


def status_document(found: TestbedStatus, state_dir: Path) -> dict[str, Any]:
    """``status`` as JSON for scripts: the saved state and each host's health."""
    state = found.state
    if state is None:
        return {"up": False, "healthy": False, "state_dir": str(state_dir), "hosts": []}
    by_name = {h.name: h for h in found.hosts}
    return {
        "up": True,
        "healthy": found.healthy,
        "state_dir": str(state.state_dir),
        "bandwidth": state.bandwidth,
        "rate_bps": state.rate_bps,
        "netem": state.netem,
        "registry": str(state.registry),
        "known_hosts": str(state.known_hosts),
        "hosts": [_host_document(h, by_name[h.name]) for h in state.hosts],
    }


def _host_document(host: LabHost, found: HostStatus) -> dict[str, Any]:
    return {
        "name": host.name,
        "address": host.address,
        "port": host.port,
        "user": host.user,
        "namespace": host.namespace,
        "sshd_pid": host.sshd_pid,
        "host_key_fingerprint": host.host_key_fingerprint,
        "cpu_limit": host.cpu_limit,
        "memory_limit_bytes": host.memory_limit_bytes,
        "sshd_running": found.sshd_running,
        "banner": found.banner,
        "shaped": found.shaped,
    }
