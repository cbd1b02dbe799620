"""``device rm``: forget a device, and take back the key pairing installed on it.

Pairing by password appends one line to the device's ``~/.ssh/authorized_keys``
and records that exact line in the registry. Forgetting the device removes
every copy of that line, and nothing else: the file is read and written back
over SFTP byte for byte except for those lines, replaced atomically (a
temporary file renamed over it, with the same permissions), so a dropped
connection never leaves a half-written file behind. When the device cannot be
reached the registry entry is removed all the same, and the result says how
to remove the line by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import posixpath
from dataclasses import dataclass

import asyncssh

from .errors import DeviceError
from .registry import Device, Registry
from .ssh import Target, connect, quote, remote_home

__all__ = ["ForgetResult", "KeyOutcome", "forget_device", "manual_removal", "remove_line"]

FORGET_TIMEOUT_S = 5.0
AUTHORIZED_KEYS = ".ssh/authorized_keys"


class KeyOutcome(enum.Enum):
    """What happened to the authorized_keys line pairing installed."""

    REMOVED = "removed"  # found and removed from the device
    NOT_FOUND = "not found"  # the device was reached, the line was already gone
    KEPT = "kept"  # --keep-key: not touched
    SHARED = "shared"  # another registered device logs in with the same line: not touched
    NONE_INSTALLED = "none installed"  # pairing did not install a key: nothing to take back
    UNREACHABLE = "unreachable"  # the device could not be reached: the line stays there


@dataclass(frozen=True)
class ForgetResult:
    """The forgotten device and what happened to its key on the device."""

    device: Device
    key: KeyOutcome
    removed_lines: int = 0
    error: DeviceError | None = None  # why the device could not be reached
    shared_with: tuple[str, ...] = ()  # devices that still log in with the line

    @property
    def manual(self) -> str | None:
        """The shell command that removes the line on the device, when it is still there."""
        if self.device.installed_key is None or self.key is not KeyOutcome.UNREACHABLE:
            return None
        return manual_removal(self.device.installed_key)


def forget_device(
    registry: Registry, name: str, *, keep_key: bool = False, timeout: float = FORGET_TIMEOUT_S
) -> ForgetResult:
    """Remove the key pairing installed on device ``name`` (unless ``keep_key``), then forget it.

    The registry entry is removed whatever happens on the device; a device
    that cannot be reached is reported in the result, not raised.
    """
    device = registry.get(name)
    line = device.installed_key
    shared = tuple(
        other.name
        for other in registry.devices().values()
        if other.name != name
        and line is not None
        and other.installed_key == line
        and _same_login(other, device)
    )
    if line is None:
        result = ForgetResult(device, KeyOutcome.NONE_INSTALLED)
    elif keep_key:
        result = ForgetResult(device, KeyOutcome.KEPT)
    elif shared:
        result = ForgetResult(device, KeyOutcome.SHARED, shared_with=shared)
    else:
        try:
            removed = asyncio.run(_remove_remotely(device, line, timeout))
        except DeviceError as exc:
            result = ForgetResult(device, KeyOutcome.UNREACHABLE, error=exc)
        else:
            result = ForgetResult(device, KeyOutcome.REMOVED if removed else KeyOutcome.NOT_FOUND, removed)
    registry.remove(name)
    return result


def remove_line(data: bytes, line: str) -> tuple[bytes, int]:
    """``data`` without the lines that are exactly ``line``; and how many there were.

    A line matches only as a whole (no options in front, the same comment,
    ``\\n`` ending or end of file); every other byte is kept as it was.
    """
    wanted = line.encode()
    kept: list[bytes] = []
    removed = 0
    for chunk in data.splitlines(keepends=True):
        if chunk.removesuffix(b"\n") == wanted:
            removed += 1
        else:
            kept.append(chunk)
    return b"".join(kept), removed


def manual_removal(line: str) -> str:
    """A POSIX shell command that removes exactly ``line`` from ~/.ssh/authorized_keys on the device."""
    keys = "~/.ssh/authorized_keys"
    return f"grep -vxF {quote(line)} {keys} > {keys}.new; chmod 600 {keys}.new && mv {keys}.new {keys}"


def _same_login(a: Device, b: Device) -> bool:
    return (a.host, a.port or 22, a.user) == (b.host, b.port or 22, b.user)


async def _remove_remotely(device: Device, line: str, timeout: float) -> int:
    target = Target.of(device)
    keys = (device.key,) if device.key else ()
    conn = await connect(target, keys=keys, timeout=timeout)
    try:
        home = await remote_home(conn, target)
        return await asyncio.wait_for(_rewrite(conn, f"{home}/{AUTHORIZED_KEYS}", line), 6 * timeout)
    except (asyncssh.Error, OSError, asyncio.TimeoutError, TimeoutError) as exc:
        raise DeviceError(f"cannot update ~/{AUTHORIZED_KEYS}: {exc}", host=target.label) from exc
    finally:
        conn.close()


async def _rewrite(conn: asyncssh.SSHClientConnection, path: str, line: str) -> int:
    async with conn.start_sftp_client() as sftp:
        with contextlib.suppress(asyncssh.SFTPError):
            path = await sftp.realpath(path)  # a symlinked file is edited where it really is
        try:
            async with sftp.open(path, "rb") as f:
                data = await f.read()
        except asyncssh.SFTPNoSuchFile:
            return 0
        assert isinstance(data, bytes)
        kept, removed = remove_line(data, line)
        if removed:
            mode = (await sftp.stat(path)).permissions or 0o600
            tmp = posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.splittracer")
            attrs = asyncssh.SFTPAttrs(permissions=mode & 0o777)
            try:
                async with sftp.open(tmp, "wb", attrs) as f:
                    await f.write(kept)
                await sftp.chmod(tmp, mode & 0o777)
                await sftp.posix_rename(tmp, path)
            except BaseException:
                with contextlib.suppress(asyncssh.SFTPError):
                    await sftp.remove(tmp)
                raise
        return removed
