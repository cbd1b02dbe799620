"""A real OpenSSH server on 127.0.0.1 for tests: own port, own host key, own authorized keys.

Import ``sshd_fixture`` (and ``ssh_env_fixture``) into a test module to use the
``sshd`` and ``ssh_env`` fixtures.

Nothing outside the test's tmp directory is read or written on either side:
the controller's HOME and XDG_CONFIG_HOME point into tmp (no ~/.ssh, no
agent), and the server gives sessions a HOME in tmp (``SetEnv``) and reads
authorized keys only from tmp. The interpreter running the tests comes first
on the sessions' PATH, so the "device" has this Python, torch and splittracer.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A port of 127.0.0.1 that accepts connections and never answers: a device that hangs.

    The kernel completes the TCP handshake (the backlog holds it) but nothing
    reads or writes, so an SSH client waits for the server's banner until its
    timeout, exactly as with a device that stopped responding. No packet leaves
    this machine.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield int(s.getsockname()[1])


def keygen(path: Path, comment: str = "test") -> str:
    """Make an ed25519 key pair at ``path``; the public key line."""
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".pub").unlink(missing_ok=True)
    subprocess.run([KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path.with_name(path.name + ".pub").read_text().strip()


@dataclass
class Sshd:
    """One running sshd. ``home`` is the HOME its sessions get."""

    root: Path
    port: int
    home: Path
    process: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"

    @property
    def authorized_keys(self) -> Path:
        return self.root / "authorized_keys"

    @property
    def host_key(self) -> str:
        """The server's public host key, OpenSSH format without comment."""
        return " ".join((self.root / "host_key.pub").read_text().split()[:2])

    def authorize(self, public_key: str) -> None:
        with self.authorized_keys.open("a") as f:
            f.write(public_key.strip() + "\n")

    def start(self) -> None:
        config = self.root / "sshd_config"
        path = os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"])
        config.write_text(
            f"Port {self.port}\nListenAddress {self.host}\nHostKey {self.root / 'host_key'}\n"
            f"AuthorizedKeysFile {self.authorized_keys} {self.home}/.ssh/authorized_keys\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            f"PidFile {self.root / 'sshd.pid'}\nSubsystem sftp internal-sftp\n"
            "AllowTcpForwarding yes\nMaxStartups 64\nMaxSessions 64\n"
            f"SetEnv HOME={self.home} PATH={path}\n"
        )
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation dir sshd insists on
        with (self.root / "sshd.log").open("ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(5)
        self.process = None

    def restart(self, *, new_host_key: bool = False) -> None:
        """Stop, optionally make a new host key (as a reinstalled device would have), start."""
        self.stop()
        if new_host_key:
            keygen(self.root / "host_key", "host")
        self.start()

    def log(self) -> str:
        return (self.root / "sshd.log").read_text(errors="replace")


def start_sshd(root: Path) -> Sshd:
    """A new sshd with its own host key, listening on a free port of 127.0.0.1."""
    if not (os.path.exists(SSHD) and os.path.exists(KEYGEN)):
        pytest.skip("OpenSSH server not installed (apt-get install -y openssh-server)")
    if os.geteuid() != 0:
        pytest.skip("the sshd fixture runs sshd as root")
    root.mkdir(parents=True, exist_ok=True)
    home = root / "remote-home"
    home.mkdir()
    keygen(root / "host_key", "host")
    server = Sshd(root, free_port(), home)
    server.start()
    return server


@pytest.fixture(name="ssh_env")
def ssh_env_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The controller side kept in tmp: HOME, config dir, registry; no ssh-agent."""
    home = tmp_path / "controller-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("SPLITTRACER_DEVICES", str(home / "devices.yaml"))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


@pytest.fixture(name="sshd")
def sshd_fixture(tmp_path: Path, ssh_env: Path) -> Iterator[Sshd]:
    """A running sshd; the test authorizes whichever keys it wants."""
    server = start_sshd(tmp_path / "sshd")
    try:
        yield server
    finally:
        server.stop()
