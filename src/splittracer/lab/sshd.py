"""The lab's SSH hosts: one system user and one real OpenSSH ``sshd`` per host.

Each host ``st-hI`` gets a system user ``splittracer-st-hI`` (home ``/home/splittracer-st-hI``,
comment ``SplitTracer testbed …``) whose password is the lab's password. One user per
host, because namespaces share the file system: a run deployed to two hosts must not
see one home. The home holds ``.ssh/authorized_keys``; password and key logins work.
Root may log in too, by key only, with keys from ``<state_dir>/st-hI/root_authorized_keys``:
root sessions can run the controller's own Python and torch, which may live where the
host users cannot read. The controller's ``~/.ssh`` is never read or written.

The sshd runs in the host's namespace, listening on the host's address port 22, with
its own ed25519 host key, config, pid file and log under ``<state_dir>/st-hI/``
(:class:`SshdFiles`).
"""

from __future__ import annotations

import os
import pwd
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import TestbedCommandError, TestbedError
from .network import LabNetwork
from .system import Progress, read_pid, run, wait_for

__all__ = [
    "SSH_PORT",
    "USER_MARKER",
    "SshdFiles",
    "add_authorized_key",
    "lab_users",
    "make_host_key",
    "make_privsep_dir",
    "make_user",
    "parse_fingerprint",
    "read_ssh_banner",
    "remove_privsep_dir",
    "remove_users",
    "sshd_config",
    "sshd_has_penalties",
    "start_sshd",
    "supports_per_source_penalties",
    "user_exists",
    "write_sshd_config",
]

SSH_PORT = 22
# The comment of every user the lab makes: ``down`` removes only users that carry it.
USER_MARKER = "SplitTracer testbed"
_START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SshdFiles:
    """One host's sshd files, all in its directory under the lab's state directory."""

    directory: Path

    @property
    def host_key(self) -> Path:
        return self.directory / "ssh_host_ed25519_key"

    @property
    def config(self) -> Path:
        return self.directory / "sshd_config"

    @property
    def pid_file(self) -> Path:
        return self.directory / "sshd.pid"

    @property
    def log(self) -> Path:
        return self.directory / "sshd.log"

    @property
    def root_keys(self) -> Path:
        return self.directory / "root_authorized_keys"


def supports_per_source_penalties(sshd_version: str) -> bool:
    """OpenSSH 9.8 added penalties that would lock the controller out after failed logins."""
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", sshd_version)
    return match is not None and (int(match[1]), int(match[2])) >= (9, 8)


def sshd_has_penalties(sshd: Path) -> bool:
    """Whether the installed ``sshd`` knows ``PerSourcePenalties`` (and must be told to drop them)."""
    version = run([sshd, "-V"], check=False)
    return supports_per_source_penalties(version.stderr + version.stdout)


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


def write_sshd_config(files: SshdFiles, *, name: str, address: str, user: str, penalties: bool) -> None:
    """Write the host's config and an empty root keys file for it to name."""
    files.root_keys.touch(mode=0o600)
    files.config.write_text(
        sshd_config(
            name=name,
            address=address,
            host_key=files.host_key,
            pid_file=files.pid_file,
            user=user,
            root_keys=files.root_keys,
            per_source_penalties=penalties,
        )
    )


def parse_fingerprint(keygen_output: str) -> str:
    """``SHA256:…`` from ``ssh-keygen -lf`` output (``256 SHA256:abc comment (ED25519)``)."""
    match = re.search(r"\bSHA256:[A-Za-z0-9+/=]+", keygen_output)
    if match is None:
        raise TestbedError(f"no SHA256 fingerprint in ssh-keygen output: {keygen_output.strip()!r}")
    return match[0]


def make_host_key(files: SshdFiles, name: str) -> tuple[str, str]:
    """Make the host's ed25519 key; return its public key (``ssh-ed25519 AAAA…``) and fingerprint."""
    key = files.host_key
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}-testbed", "-f", key])
    public_key = " ".join(key.with_suffix(".pub").read_text().split()[:2])
    fingerprint = parse_fingerprint(run(["ssh-keygen", "-lf", key.with_suffix(".pub")]).stdout)
    return public_key, fingerprint


def make_user(user: str, host: str, password: str) -> Path:
    """Make the host's system user with ``password`` and an empty ``authorized_keys``; return its home."""
    if user_exists(user):
        raise TestbedError(
            f"user '{user}' already exists",
            hint="run 'splittracer testbed down' to remove a previous lab's users; "
            "a user the testbed did not make is never removed, so rename or remove it yourself",
        )
    home = Path("/home") / user
    shell = "/bin/bash" if Path("/bin/bash").exists() else "/bin/sh"
    run(
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
    run(["chpasswd"], input=f"{user}:{password}\n")
    entry = pwd.getpwnam(user)
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    keys.touch(mode=0o600)
    for path in (home, ssh_dir, keys):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return home


def add_authorized_key(keys: Path, public_key: str, owner: str | None) -> None:
    """Append ``public_key`` to ``keys``; the file stays ``owner``'s when one is given."""
    with keys.open("a") as out:
        out.write(public_key.strip() + "\n")
    if owner is not None:
        entry = pwd.getpwnam(owner)
        os.chown(keys, entry.pw_uid, entry.pw_gid)


def user_exists(name: str) -> bool:
    """Whether a user ``name`` exists."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def lab_users(net: LabNetwork) -> list[str]:
    """The users this lab made: its names, with the lab's comment."""
    return [
        u.pw_name for u in pwd.getpwall() if net.owns_user(u.pw_name) and u.pw_gecos.startswith(USER_MARKER)
    ]


def remove_users(net: LabNetwork, say: Progress) -> list[str]:
    """Remove the lab's users and their homes."""
    removed = []
    for user in lab_users(net):
        say(f"user {user}")
        run(["userdel", "--remove", user], check=False)
        if user_exists(user):
            raise TestbedError(f"could not remove user '{user}'", hint=f"run 'userdel --remove {user}'")
        removed.append(f"user {user}")
    return removed


def make_privsep_dir(sshd: Path, config: Path) -> Path | None:
    """Make the privilege separation directory when sshd misses it; return it when made."""
    check = run([sshd, "-t", "-f", config], check=False)
    missing = re.search(r"Missing privilege separation directory: (\S+)", check.stderr)
    if missing is None:
        return None
    # Debian's sshd needs /run/sshd, which its service unit usually makes.
    privsep = Path(missing[1])
    privsep.mkdir(mode=0o755, parents=True)
    return privsep


def remove_privsep_dir(privsep: Path | None) -> list[str]:
    """Remove the directory :func:`make_privsep_dir` made, unless something else now uses it."""
    if privsep is None or not privsep.is_dir() or any(privsep.iterdir()):
        return []
    privsep.rmdir()
    return [f"directory {privsep}"]


def start_sshd(
    sshd: Path,
    namespace: str,
    files: SshdFiles,
    address: str,
    wrap: Callable[[list[str]], list[str]] | None = None,
) -> int:
    """Check the config, start sshd in ``namespace`` and wait until it answers; return its pid.

    ``wrap`` turns the start command into one that first enters the host's cgroups.
    """
    check = run([sshd, "-t", "-f", files.config], check=False)
    if check.returncode != 0:
        raise TestbedCommandError([str(sshd), "-t", "-f", str(files.config)], check.returncode, check.stderr)
    log = files.log
    # Without -D sshd binds its port, then forks into the background and writes its pid file.
    # nsenter, not 'ip netns exec': that also remounts /sys for the namespace, which hides
    # /sys/fs/cgroup, where a participant reads the limits its host enforces (metrics/cgroups.py).
    command: list[str] = [
        "nsenter",
        f"--net=/run/netns/{namespace}",
        "--",
        str(sshd),
        "-f",
        str(files.config),
        "-E",
        str(log),
    ]
    run(wrap(command) if wrap is not None else command, timeout=_START_TIMEOUT_S)
    if not wait_for(lambda: read_pid(files.pid_file) is not None, _START_TIMEOUT_S):
        raise TestbedError(f"sshd in {namespace} wrote no pid file; see {log}")
    pid = read_pid(files.pid_file) or 0
    if not wait_for(lambda: read_ssh_banner(address, timeout=1.0) is not None, _START_TIMEOUT_S, 0.1):
        raise TestbedError(f"sshd in {namespace} (pid {pid}) does not answer on {address}:22; see {log}")
    return pid


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
