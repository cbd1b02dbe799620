"""Lab hosts made ready for ``splittracer run``: paired in the lab's registry, with a runtime.

The namespaces share this machine's file system, so the hosts are paired as
root, by a key of the lab's own (``<state_dir>/id_ed25519``; root may log in
by key only): root's sessions there can run this machine's own Python and
torch, which the hosts' users may not be able to read. Each entry names that
Python and the host's address for peers. The runtime is made the way
``splittracer device setup --offline`` makes it for a device without network
(a venv over that Python, this splittracer's wheel uploaded over SFTP,
nothing downloaded); root's home is the same on every host, so the hosts share
one runtime, ``~root/.splittracer/venv``. ``down`` removes it when ``up`` made it.
"""

from __future__ import annotations

import contextlib
import pwd
import shutil
from collections.abc import Sequence
from pathlib import Path

from ..devices.probe import RUNTIME_DIR
from ..devices.registry import Registry
from ..devices.setup import Offline, setup_device
from .sshd import add_authorized_key
from .state import CLIENT_KEY_FILE, LAB_USER, LabHost
from .system import Progress, run

__all__ = [
    "CLIENT_KEY_FILE",
    "authorize_client_key",
    "make_client_key",
    "make_runtimes",
    "remove_runtime",
    "runtime_dir",
]


def make_client_key(state_dir: Path) -> Path:
    """The lab's own login key (ed25519, no passphrase, mode 600) in ``state_dir``."""
    key = state_dir / CLIENT_KEY_FILE
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "splittracer-testbed", "-f", key])
    return key


def authorize_client_key(key: Path, hosts: Sequence[LabHost]) -> None:
    """Let ``key`` log in as root on every host."""
    public = key.with_name(key.name + ".pub").read_text()
    for host in hosts:
        add_authorized_key(host.root_authorized_keys, public, owner=None)


def runtime_dir() -> Path:
    """The runtime lab hosts share: in root's home (``$HOME`` may be another user's under sudo)."""
    return Path(pwd.getpwnam(LAB_USER).pw_dir) / RUNTIME_DIR / "venv"


def make_runtimes(registry: Path, hosts: Sequence[LabHost], say: Progress) -> None:
    """Give every host its runtime, as ``device setup --offline`` would."""
    devices = Registry(registry)
    for host in hosts:
        say(f"runtime on {host.name}")
        setup_device(devices, host.name, progress=_prefixed(say, host.name), offline=Offline())


def _prefixed(say: Progress, name: str) -> Progress:
    def report(text: str) -> None:
        say(f"{name}: {text}")

    return report


def remove_runtime(venv: Path | None) -> list[str]:
    """Remove the runtime ``up`` made, and its folder when nothing else is left in it."""
    if venv is None or not venv.exists():
        return []
    shutil.rmtree(venv)
    with contextlib.suppress(OSError):
        venv.parent.rmdir()
    return [f"runtime {venv}"]
