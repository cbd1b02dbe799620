"""The machine the lab runs on: finding and running its commands, waiting, stopping processes.

Also what building the lab needs from it (:func:`check_platform`, :func:`check_environment`):
Linux, root, iproute2, the OpenSSH tools and, to shape links, ``tc``. Programs are looked
up on ``PATH`` and in the ``sbin`` directories, which a non-login root shell may lack.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import TestbedCommandError, TestbedError

__all__ = [
    "Progress",
    "alive",
    "check_environment",
    "check_platform",
    "find_sshd",
    "read_pid",
    "run",
    "stop",
    "wait_for",
    "which",
]

_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")

# Told each step of a long operation (``up``, ``down``), for a spinner.
Progress = Callable[[str], None]


def which(name: str) -> str | None:
    """The program ``name`` on ``PATH`` or in the ``sbin`` directories, or ``None``."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    return shutil.which(name, path=search)


def run(
    argv: Sequence[str | Path], *, check: bool = True, timeout: float = 30.0, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``, output captured; with ``check``, raise :class:`TestbedCommandError` if it fails."""
    args = [str(a) for a in argv]
    args[0] = which(args[0]) or args[0]
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
    missing = [n for n in needed if which(n) is None]
    if missing:
        raise TestbedError(
            f"the testbed needs {', '.join(missing)}, not found on PATH or in /usr/sbin",
            hint="install them (Debian/Ubuntu: apt-get install iproute2 openssh-client passwd)",
        )
    return find_sshd()


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
    if which("ip") is None:
        raise TestbedError(
            "the testbed needs the 'ip' command (iproute2), not found on PATH or in /usr/sbin",
            hint="install it (Debian/Ubuntu: apt-get install iproute2)",
        )


def find_sshd() -> Path:
    """The OpenSSH server's absolute path; every lab host runs one."""
    found = which("sshd")
    if found is None:
        raise TestbedError(
            "no OpenSSH server (sshd) found; each lab host runs a real sshd",
            hint="install it: apt-get install openssh-server (Debian/Ubuntu), dnf install openssh-server",
        )
    # sshd re-executes itself and refuses to start from a relative path.
    return Path(found).resolve()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def stop(pids: Sequence[int], grace_s: float = 3.0) -> None:
    """SIGTERM, then SIGKILL whatever is still there after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not any(alive(p) for p in pids):
            return


def read_pid(path: Path) -> int | None:
    """The pid a pid file holds, or ``None`` while it is missing or incomplete."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def wait_for(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds (``True``) or ``timeout_s`` passes (``False``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
