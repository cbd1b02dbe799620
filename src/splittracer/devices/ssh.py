"""SSH to devices with asyncssh: pinned host keys only, keys or a password, errors made ours.

Every connection after pairing verifies the server against the one host key
pinned in the registry; there is no code path that accepts an unknown key.
``~/.ssh/config`` (aliases, ``User``, ``Port``, ``IdentityFile``, ``ProxyJump``)
and the ssh-agent are honoured because asyncssh reads them when we don't
override a setting.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shlex
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from .errors import AuthenticationFailed, DeviceError, HostKeyChanged, RemoteCommandFailed, Unreachable
from .registry import Device, config_dir, fingerprint_of

__all__ = [
    "CONNECT_TIMEOUT_S",
    "Completed",
    "Target",
    "connect",
    "ensure_pairing_key",
    "fetch_host_key",
    "pairing_key_path",
    "public_key_of",
    "remote_home",
    "repin_command",
    "run",
    "translate",
]

CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 120.0
PAIRING_KEY = "id_ed25519"
TAIL_CHARS = 4000


@dataclass(frozen=True)
class Target:
    """Where and how to connect. ``host_key`` (OpenSSH format) is None only while pairing."""

    host: str
    port: int | None = None
    user: str | None = None
    key: Path | None = None
    host_key: str | None = None
    name: str | None = None

    @classmethod
    def of(cls, device: Device) -> Target:
        """The target of a registered device, with its pinned key."""
        return cls(device.host, device.port, device.user, device.key, device.host_key, device.name)

    @property
    def label(self) -> str:
        """``name (user@host:port)``, as much as is known: how messages name the device."""
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        where = f"{user}{self.host}{port}"
        return f"{self.name} ({where})" if self.name else where


@dataclass(frozen=True)
class Completed:
    """What a remote command printed and how it ended."""

    stdout: str
    stderr: str
    exit_status: int

    @property
    def output(self) -> str:
        """stdout then stderr, as a user would have seen them."""
        return (self.stdout + self.stderr)[-TAIL_CHARS:]


def pairing_key_path() -> Path:
    """SplitTracer's own key, installed on devices that accepted no other (never in ~/.ssh)."""
    return config_dir() / PAIRING_KEY


def ensure_pairing_key() -> Path:
    """The pairing key, generated (ed25519, mode 600) the first time it is needed."""
    path = pairing_key_path()
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519", comment=f"splittracer@{platform.node()}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.export_private_key())
    path.with_name(path.name + ".pub").write_bytes(key.export_public_key())
    return path


def public_key_of(private_key: Path) -> str:
    """The OpenSSH public key line of a private key file (its ``.pub`` when present)."""
    pub = private_key.with_name(private_key.name + ".pub")
    try:
        if pub.exists():
            return pub.read_text().strip()
        return asyncssh.read_private_key(private_key).export_public_key().decode().strip()
    except (OSError, asyncssh.KeyImportError) as exc:
        raise AuthenticationFailed(
            f"cannot read the key {private_key}: {exc}",
            hint="Pass --key with an unencrypted private key file, or leave it out to use SplitTracer's own.",
        ) from exc


async def fetch_host_key(target: Target, timeout: float = CONNECT_TIMEOUT_S) -> str:
    """The server's host key (OpenSSH public format), fetched without logging in."""
    try:
        key = await asyncio.wait_for(asyncssh.get_server_host_key(target.host, target.port or ()), timeout)
    except BaseException as exc:
        raise translate(exc, target, timeout=timeout) from exc
    if key is None:
        raise DeviceError("the server presented no host key", host=target.label)
    return " ".join(key.export_public_key().decode().split()[:2])


async def connect(
    target: Target,
    *,
    keys: Sequence[Path] = (),
    password: str | None = None,
    timeout: float = CONNECT_TIMEOUT_S,
    keepalive: float = 0.0,
) -> asyncssh.SSHClientConnection:
    """Log in to ``target``, verifying its pinned host key.

    With ``password`` only the password is tried; otherwise ``keys``, or when
    empty the keys ssh would use (``~/.ssh/config``'s ``IdentityFile`` or
    ``~/.ssh/id_*``), plus the ssh-agent. ``keepalive`` (seconds) makes a
    long-lived connection notice a device that vanished (three missed answers).
    """
    if target.host_key is None:
        raise ValueError("connect() needs a pinned host key; fetch and pin it first")
    options: dict[str, Any] = {
        "known_hosts": ([asyncssh.import_public_key(target.host_key)], [], []),
        "connect_timeout": timeout,
        "login_timeout": timeout,
    }
    if keepalive:
        options.update(keepalive_interval=keepalive, keepalive_count_max=3)
    if target.port:
        options["port"] = target.port
    if target.user:
        options["username"] = target.user
    if password is not None:
        options.update(password=password, client_keys=None, preferred_auth="keyboard-interactive,password")
    elif keys:
        options["client_keys"] = [str(k.expanduser()) for k in keys]
    try:
        return await asyncio.wait_for(asyncssh.connect(target.host, **options), timeout + 1.0)
    except BaseException as exc:
        tried = None if password is not None else tuple(keys)
        raise translate(exc, target, timeout=timeout, password=password is not None, keys=tried) from exc


async def run(
    conn: asyncssh.SSHClientConnection,
    target: Target,
    command: str,
    *,
    input: str | None = None,
    timeout: float = COMMAND_TIMEOUT_S,
    check: bool = True,
    label: str | None = None,
) -> Completed:
    """Run ``command`` on the device; RemoteCommandFailed (host, command, status, tail) if it fails.

    ``label`` names the command in errors when the command itself is a long script.
    """
    shown = label or command
    try:
        result = await asyncio.wait_for(conn.run(command, input=input, check=False), timeout)
    except (asyncio.TimeoutError, TimeoutError) as exc:
        raise RemoteCommandFailed(
            f"the command did not finish within {timeout:g} s", host=target.label, command=shown
        ) from exc
    except (asyncssh.Error, OSError) as exc:
        raise translate(exc, target) from exc
    done = Completed(_text(result.stdout), _text(result.stderr), _status(result))
    if check and done.exit_status != 0:
        raise RemoteCommandFailed(
            "a command on the device failed",
            host=target.label,
            command=shown,
            exit_status=done.exit_status,
            output=done.output,
        )
    return done


async def remote_home(conn: asyncssh.SSHClientConnection, target: Target) -> str:
    """The login user's home directory on the device (absolute; SFTP paths are built on it)."""
    home = (await run(conn, target, 'printf %s "$HOME"', timeout=30.0)).stdout.strip()
    if not home.startswith("/"):
        raise DeviceError(f"the remote $HOME is not an absolute path: {home!r}", host=target.label)
    return home


def quote(text: str) -> str:
    """Shell-quote one word for the device's POSIX shell."""
    return shlex.quote(text)


def watched_python(arguments: str, *, prologue: str = "", on_start: str = "", epilogue: str = "") -> str:
    """``sh -c`` running ``"$py" ARGUMENTS`` in the background until the SSH session ends.

    ``prologue`` must set ``py`` (see :func:`splittracer.devices.probe.select_python`);
    ``on_start`` runs once ``$pid`` is known, ``epilogue`` once the process
    ended, however it ended (it must write nothing: the session may be gone).
    The process gets SIGTERM when the session's stdin closes (the controller
    went away, or its connection was dropped), and the command's exit status
    is the process's own (128+N when killed by signal N).
    """
    script = (
        prologue
        # Once the session is gone, a write to it would kill the wrapper before its epilogue.
        + "trap '' PIPE\n"
        + "exec 3<&0\n"
        + f'PYTHONUNBUFFERED=1 "$py" {arguments} </dev/null 3<&- &\n'
        + "pid=$!\n"
        + on_start
        + '( while read -r _ <&3; do :; done; kill -TERM "$pid" ) >/dev/null 2>&1 &\n'
        + "watchdog=$!\n"
        + "exec 3<&-\n"
        + 'wait "$pid"; status=$?\n'
        + 'kill "$watchdog" 2>/dev/null\n'
        + epilogue
        + 'exit "$status"\n'
    )
    return f"sh -c {quote(script)}"


def translate(
    exc: BaseException,
    target: Target,
    *,
    timeout: float = CONNECT_TIMEOUT_S,
    password: bool = False,
    keys: Sequence[Path] | None = None,
) -> DeviceError:
    """An asyncssh / socket failure as the DeviceError a user can act on.

    ``keys`` are the keys a refused login offered (empty: the ones ssh would use).
    """
    if isinstance(exc, DeviceError):
        return exc
    where = target.label
    port = target.port or 22
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return _host_key_changed(target)
    if isinstance(exc, asyncssh.PermissionDenied):
        return _auth_failed(target, password, keys or ())
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return Unreachable(
            f"no SSH answer within {timeout:g} s",
            host=where,
            hint=f"Check that the device is on and on this network, and that sshd listens on port {port} "
            "(pass --port otherwise).",
        )
    if isinstance(exc, ConnectionRefusedError):
        return Unreachable(
            f"connection refused on port {port}",
            host=where,
            hint="sshd is not running there or listens on another port (pass --port).",
        )
    if isinstance(exc, socket.gaierror):
        return Unreachable(
            f"cannot resolve the host name: {exc.strerror}",
            host=where,
            hint="Check the spelling, or define the name as a Host alias in ~/.ssh/config.",
        )
    if isinstance(exc, OSError):
        return Unreachable(f"cannot connect: {exc.strerror or exc}", host=where)
    if isinstance(exc, asyncssh.DisconnectError):
        return DeviceError(f"the SSH connection failed: {exc.reason}", host=where)
    if isinstance(exc, asyncssh.Error):
        return DeviceError(f"SSH error: {exc.reason}", host=where)
    raise exc


def repin_command(target: Target) -> str:
    """The command that pins ``target``'s current host key again."""
    flags = [f"--host {quote(target.host)}"]
    flags += [f"--port {target.port}"] if target.port else []
    flags += [f"--user {quote(target.user)}"] if target.user else []
    return f"splittracer device add {target.name or 'NAME'} {' '.join(flags)} --repin"


def _host_key_changed(target: Target) -> HostKeyChanged:
    pinned = fingerprint_of(target.host_key) if target.host_key else "(none)"
    return HostKeyChanged(
        f"the host key differs from the one pinned at pairing ({pinned}); refusing to connect",
        host=target.label,
        hint="If the device was reinstalled or its SSH keys were regenerated, check the new fingerprint "
        f"on the device (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and re-pin it with "
        f"'{repin_command(target)}'. "
        "Otherwise do not connect: someone may be intercepting the connection.",
    )


def _auth_failed(target: Target, password: bool, keys: Sequence[Path]) -> AuthenticationFailed:
    if password:
        return AuthenticationFailed(
            "the password was refused",
            host=target.label,
            hint="Check the user name (--user) and the password, then run 'splittracer device add' again.",
        )
    offered = ", ".join(str(k) for k in keys) or "~/.ssh/config's IdentityFile, ~/.ssh/id_*, the ssh-agent"
    return AuthenticationFailed(
        f"the SSH server answered but refused the key ({offered})",
        host=target.label,
        hint="Pair again with 'splittracer device add NAME --host HOST' to install SplitTracer's key "
        "(it asks for the password once), or pass --key with a key the device accepts.",
    )


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def _status(result: asyncssh.SSHCompletedProcess) -> int:
    if result.exit_status is not None and result.exit_status >= 0:
        return result.exit_status
    return 255  # killed by a signal, or the channel closed without a status
