"""The device registry: every paired device, its pinned host key and what was probed on it.

One YAML file, found in this order:

1. an explicit path (``--registry FILE``, or the ``SPLITTRACER_DEVICES`` environment variable),
2. ``devices.yaml`` at the root of the current workspace, when it has one,
3. ``$XDG_CONFIG_HOME/splittracer/devices.yaml`` (``~/.config/splittracer/devices.yaml``).

::

    devices:
      pi4:
        host: 192.168.1.20          # an address, a DNS name or a ~/.ssh/config alias
        user: pi
        key: ~/.config/splittracer/id_ed25519
        host_key: ssh-ed25519 AAAAC3Nz...
        fingerprint: SHA256:3q9...
        installed_key: ssh-ed25519 AAAAC3Nz... splittracer@laptop   # only when pairing installed it
        tags: [arm, camera]
        facts: {os: Linux, arch: aarch64, python: 3.11.2, torch: 2.4.1, ...}
        last_seen: 2025-01-31T10:12:00Z

Writes replace the file atomically, under a lock, so two commands updating
different devices at once both keep their change.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import yaml
from pydantic import Field, field_validator, model_validator

from ..config import Strict, did_you_mean, load_typed, read_yaml
from ..errors import ConfigError
from .errors import UnknownDevice

__all__ = [
    "ENV_REGISTRY",
    "Device",
    "DeviceFacts",
    "Registry",
    "config_dir",
    "fingerprint_of",
    "registry_path",
]

ENV_REGISTRY = "SPLITTRACER_DEVICES"
REGISTRY_FILE = "devices.yaml"
RESERVED_NAMES = frozenset({"local"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class DeviceFacts(Strict):
    """What a probe found on a device. ``torch`` is None when torch is not installed."""

    os: str = ""
    os_release: str = ""
    arch: str = ""
    python: str = ""
    python_path: str = ""
    runtime: bool = False  # python_path is the splittracer runtime (~/.splittracer/venv)
    splittracer: str | None = None
    cpu_model: str = ""
    cpu_cores: int = 0
    memory_bytes: int = 0
    disk_free_bytes: int = 0
    torch: str | None = None
    torch_error: str | None = None
    cuda: bool = False
    cuda_devices: tuple[str, ...] = ()
    probed_at: datetime | None = None

    @property
    def python_tuple(self) -> tuple[int, ...]:
        """The Python version as numbers, (0,) when unknown."""
        parts = re.findall(r"\d+", self.python)[:3]
        return tuple(int(p) for p in parts) or (0,)


class Device(Strict):
    """One paired device. ``host_key`` is the pinned server key in OpenSSH public format."""

    name: str = Field(default="", exclude=True)  # the key of its entry in the file
    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    user: str | None = None
    key: Path | None = None
    host_key: str
    fingerprint: str
    tags: tuple[str, ...] = ()
    # The interpreter `device setup` builds the runtime's venv with, and probes use until it exists
    # (default: the newest python3 on PATH); once built, participants and probes run in the venv.
    python: str | None = None
    listen_host: str | None = None  # where participants listen for peers (default: the SSH address)
    installed_key: str | None = None  # the authorized_keys line pairing added; `device rm` removes it
    facts: DeviceFacts | None = None
    last_seen: datetime | None = None

    @field_validator("host_key")
    @classmethod
    def _openssh_key(cls, value: str) -> str:
        parts = value.split()
        if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-", "sk-")):
            raise ValueError("expected a public key in OpenSSH format, e.g. 'ssh-ed25519 AAAAC3Nz...'")
        return " ".join(parts[:2])

    @field_validator("fingerprint")
    @classmethod
    def _sha256(cls, value: str) -> str:
        if not value.startswith("SHA256:"):
            raise ValueError("expected a SHA256 fingerprint, e.g. 'SHA256:3q9...'")
        return value

    @model_validator(mode="after")
    def _fingerprint_matches(self) -> Device:
        if fingerprint_of(self.host_key) != self.fingerprint:
            raise ValueError(
                f"fingerprint {self.fingerprint} is not the fingerprint of host_key; "
                "re-pin the device with 'splittracer device add NAME --host HOST --repin'"
            )
        return self

    @property
    def destination(self) -> str:
        """``user@host:port`` as far as known, for messages."""
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{self.host}{port}"


class _RegistryFile(Strict):
    devices: dict[str, Device] = Field(default_factory=dict)


def config_dir() -> Path:
    """SplitTracer's directory in the user's config dir (holds the registry and the pairing key)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "splittracer"


def registry_path(explicit: Path | None = None, workspace: Path | None = None) -> Path:
    """Which registry file to use: explicit, then $SPLITTRACER_DEVICES, workspace, user config."""
    if explicit is not None:
        return explicit
    if env := os.environ.get(ENV_REGISTRY):
        return Path(env)
    if workspace is not None and (workspace / REGISTRY_FILE).is_file():
        return workspace / REGISTRY_FILE
    return config_dir() / REGISTRY_FILE


def fingerprint_of(public_key: str) -> str:
    """The ``SHA256:...`` fingerprint of an OpenSSH public key, as ``ssh-keygen -l`` prints it."""
    import asyncssh

    try:
        return str(asyncssh.import_public_key(public_key).get_fingerprint("sha256"))
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise ValueError(f"not a valid OpenSSH public key: {exc}") from None


def check_name(name: str) -> str:
    """``name`` if it can name a device; ConfigError saying why not otherwise."""
    if name in RESERVED_NAMES:
        raise ConfigError(f"'{name}' is reserved for this machine and cannot name a paired device")
    if not _NAME.match(name):
        raise ConfigError(
            f"'{name}' cannot name a device",
            hint="Use letters, digits, '.', '_' and '-', starting with a letter or digit.",
        )
    return name


class Registry:
    """The devices of one registry file. Reads are fresh every time: other commands may write."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def locate(cls, explicit: Path | None = None, workspace: Path | None = None) -> Registry:
        """The registry :func:`registry_path` picks."""
        return cls(registry_path(explicit, workspace))

    def devices(self) -> dict[str, Device]:
        """Every device by name, in file order; empty when the file does not exist yet."""
        if not self.path.exists():
            return {}
        source = read_yaml(self.path)
        if source.data is None:
            return {}
        parsed = load_typed(_RegistryFile, source)
        return {name: device.model_copy(update={"name": name}) for name, device in parsed.devices.items()}

    def get(self, name: str) -> Device:
        """The device called ``name``; UnknownDevice listing the known ones otherwise."""
        devices = self.devices()
        if name in devices:
            return devices[name]
        known = ", ".join(devices) or "none yet"
        close = did_you_mean(name, devices)
        raise UnknownDevice(
            f"no device named '{name}' in {self.path}",
            hint=f"{close + ' ' if close else ''}Known devices: {known}. "
            f"Pair one with 'splittracer device add {name} --host HOST'.",
        )

    def find(self, name: str) -> Device | None:
        """The device called ``name``, or None."""
        return self.devices().get(name)

    def put(self, device: Device) -> Device:
        """Add ``device`` or replace the one of the same name."""
        check_name(device.name)
        self._modify(lambda devices: devices.__setitem__(device.name, device))
        return device

    def remove(self, name: str) -> Device:
        """Forget ``name``; returns what was stored."""
        device = self.get(name)
        self._modify(lambda devices: devices.pop(name, None))
        return device

    def touch(self, seen: dict[str, datetime]) -> None:
        """Record when devices last answered (one write for many devices)."""

        def apply(devices: dict[str, Device]) -> None:
            for name, when in seen.items():
                if name in devices:
                    devices[name] = devices[name].model_copy(update={"last_seen": when})

        self._modify(apply)

    def _modify(self, change: Callable[[dict[str, Device]], object]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path.parent):
            devices = self.devices()
            change(devices)
            self._write(devices)

    def _write(self, devices: dict[str, Device]) -> None:
        data = {"devices": {n: d.model_dump(mode="json", exclude_none=True) for n, d in devices.items()}}
        for entry in data["devices"].values():
            for key in ("tags", "facts"):
                if not entry.get(key):
                    entry.pop(key, None)
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def utcnow() -> datetime:
    """Now, timezone-aware, to the second (what ``last_seen`` records)."""
    return datetime.now(timezone.utc).replace(microsecond=0)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on the registry's directory (no lock file left behind)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; the write is still atomic
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
