"""The warm agent, as controllers and the CLI see it: where it lives, whether it fits, and its children.

The agent (:mod:`.agent_server`) is a per-user process that has imported torch,
torchvision and the participant runtime once and forks ready-made local
participants on request. This module holds what talks to it: its directory
and socket, the :func:`fingerprint` a controller must share with it, the
wire format, and :class:`AgentDeployment`, a participant it forked
(:func:`fork_participant` asks for one; ``launch`` is ``agent``).

Compatibility: the agent records a :func:`fingerprint` (the Python
executable, SplitTracer's version, package directory and the mtimes and
sizes of its ``.py`` files, torch's version, and environment variables read
at import time). A controller whose fingerprint differs does not use the
agent, so an edited checkout never runs stale code. Only the environment
the user set counts: a variable an import set in the controller's own
process (``SET_BY_IMPORTS``) is no difference; :func:`last_refusal` says
why the agent was not used.

Protocol: one request per connection, newline-terminated JSON both ways.
``{"op": "status"}`` answers the agent's status; ``{"op": "start", ...}``
answers ``{"ok": true, "pid": N}`` (from the agent), ``{"port": P}`` (from
the child, once it listens) and ``{"exit": S}`` (from the agent, when the
child ended), or ``{"ok": false, "error": ...}``. A controller that closes
the connection while its child runs gets the child terminated.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from ..environment import set_here_since_start
from ..metrics.processes import pid_alive
from ..participant.lifeline import CONTROLLER_PID_ENV
from ..version import __version__
from .base import LOST, log_tail

DIR_ENV = "SPLITTRACER_AGENT_DIR"
"""Overrides the agent's directory (tests, or several agents side by side)."""
USE_ENV = "SPLITTRACER_AGENT"
"""``0``/``off``/``no``/``false``: controllers never use an agent."""
SOCKET_NAME = "agent.sock"
LOG_NAME = "agent.log"
REPLY_TIMEOUT_S = 5.0
"""How long a controller waits for each answer of the agent to a start request."""
MAX_REQUEST_BYTES = 4 << 20
# Environment variables that may take effect when modules are imported: the agent imported
# them with its own environment, so a child may only be forked for a controller that agrees.
IMPORT_ENV_PREFIXES = ("SPLITTRACER_", "PYTHON", "OMP_", "MKL_", "OPENBLAS_", "TORCH", "PYTORCH_")
# The controller's pid differs per run and is read by the participant, not at import.
IGNORED_ENV = frozenset({DIR_ENV, USE_ENV, "PYTHONUNBUFFERED", CONTROLLER_PID_ENV})
SET_BY_IMPORTS = frozenset({"TORCHINDUCTOR_CACHE_DIR", "TORCH_WARM_POOL"})
"""Variables torch sets in its own process when its compiler is imported: only a user's value counts."""
_PACKAGE_DIR = Path(__file__).resolve().parent.parent

log = logging.getLogger(__name__)


class AgentError(Exception):
    """The agent cannot start, or its directory is not safe to use."""


# -- where it lives -----------------------------------------------------------------


def agent_dir(env: Mapping[str, str] | None = None) -> Path:
    """The per-user directory of the agent's socket, lock and log.

    ``$SPLITTRACER_AGENT_DIR`` if set, else ``$XDG_RUNTIME_DIR/splittracer``
    when that directory exists, else ``~/.cache/splittracer``.
    """
    env = os.environ if env is None else env
    if explicit := env.get(DIR_ENV):
        return Path(explicit)
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "splittracer"
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".cache" / "splittracer"


def socket_path(env: Mapping[str, str] | None = None) -> Path:
    """The agent's Unix socket."""
    return agent_dir(env) / SOCKET_NAME


def agent_enabled(env: Mapping[str, str] | None = None) -> bool:
    """False when ``$SPLITTRACER_AGENT`` turns the agent off for controllers."""
    env = os.environ if env is None else env
    return env.get(USE_ENV, "").strip().lower() not in ("0", "off", "no", "false")


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if needed; refuse one owned by someone else."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise AgentError(f"{path} is not a directory of this user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def is_private_dir(path: Path) -> bool:
    """Whether ``path`` is a directory of this user that nobody else can enter."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not stat.S_IMODE(info.st_mode) & 0o077
    )


# -- compatibility ------------------------------------------------------------------


def source_digest(package_dir: Path = _PACKAGE_DIR) -> str:
    """A hash of the relative path, mtime and size of every ``.py`` file of the package."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        try:
            info = path.stat()
        except OSError:
            continue
        digest.update(f"{path.relative_to(package_dir)}\0{info.st_mtime_ns}\0{info.st_size}\n".encode())
    return digest.hexdigest()[:20]


def user_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) without the variables an import set here (``SET_BY_IMPORTS``)."""
    env = os.environ if env is None else env
    return {k: v for k, v in env.items() if not _set_by_import(k, v)}


def import_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of ``env`` the user set that imports may read (see ``IMPORT_ENV_PREFIXES``)."""
    return {
        k: v
        for k, v in sorted(user_env(env).items())
        if k.startswith(IMPORT_ENV_PREFIXES) and k not in IGNORED_ENV
    }


def _set_by_import(name: str, value: str) -> bool:
    """Whether an import in this process set ``name=value`` (the user did not): torch's compiler does."""
    return name in SET_BY_IMPORTS and set_here_since_start(name, value)


def interpreter(python: str) -> str:
    """The interpreter behind the path ``python``: its real file, and its virtual environment if any.

    ``.../bin/python`` and ``.../bin/python3.11`` of one installation are the
    same; two virtual environments made from one Python are not (they see
    different packages), as Python itself tells them apart by ``pyvenv.cfg``.
    """
    path = Path(os.path.abspath(python))
    venv = next((c for c in (path.parent, path.parent.parent) if (c / "pyvenv.cfg").is_file()), None)
    return f"{os.path.realpath(path)}" + (f" (venv {venv})" if venv else "")


def fingerprint(python: str | None = None, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What a forked participant shares with the agent: a controller's must match the agent's.

    ``python``: the interpreter a spawned participant would run (default:
    this one); ``env``: the environment it would get (default: this one).
    """
    import importlib.metadata  # here: the command line imports this module, and only a run asks

    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = ""
    return {
        "python": interpreter(python or sys.executable),
        "splittracer": __version__,
        "package": str(_PACKAGE_DIR),
        "source": source_digest(),
        "torch": torch_version,
        "env": import_env(env),
    }


def differences(agent: Mapping[str, Any], mine: Mapping[str, Any]) -> list[str]:
    """Readable differences between two fingerprints (empty: compatible)."""
    found = [
        f"{key}: agent {agent.get(key)!r}, here {mine.get(key)!r}"
        for key in sorted(set(agent) | set(mine))
        if key != "env" and agent.get(key) != mine.get(key)
    ]
    theirs, ours = agent.get("env", {}), mine.get("env", {})
    for name in sorted(set(theirs) | set(ours)):
        if theirs.get(name) != ours.get(name):
            found.append(f"${name}: agent {theirs.get(name)!r}, here {ours.get(name)!r}")
    return found


_refusal: str | None = None  # why the agent last did not fork a participant for this process


def last_refusal() -> str | None:
    """Why the running agent last refused to fork a participant here, in one line; None if it did not refuse.

    None also when no agent runs (nothing refused): the caller may suggest starting one.
    """
    return _refusal


# -- talking to it --------------------------------------------------------------------


class LineReader:
    """Newline-terminated JSON messages from a socket, with deadlines."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""
        self.closed = False
        self.pending: list[dict[str, Any]] = []  # messages to hand out before reading more

    def read(self, timeout: float | None) -> dict[str, Any] | None:
        """The next message; None at end of stream. Raises ``TimeoutError`` after ``timeout``."""
        if self.pending:
            return self.pending.pop(0)
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            if self.closed:
                return None
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("no answer from the agent")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)  # socket.timeout is TimeoutError
            if not chunk:
                self.closed = True
                continue
            self._buffer += chunk
            if len(self._buffer) > MAX_REQUEST_BYTES:
                raise ValueError("message from the agent too long")
        line, _, self._buffer = self._buffer.partition(b"\n")
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError("malformed message from the agent")
        return message


def send_message(sock: socket.socket, message: Mapping[str, Any]) -> None:
    """Write one message (a JSON object on one line)."""
    sock.sendall(json.dumps(message).encode() + b"\n")


def connect(path: Path | None = None, timeout: float = 2.0) -> socket.socket | None:
    """A connection to the agent at ``path``; None when no agent answers there or it is unsafe."""
    path = path or socket_path()
    if not is_private_dir(path.parent):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError:  # no file, or a stale one: nobody listens
        sock.close()
        return None
    return sock


def agent_status(path: Path | None = None, timeout: float = 5.0) -> dict[str, Any] | None:
    """The running agent's status (see ``Agent.status``), or None when there is none."""
    sock = connect(path, timeout)
    if sock is None:
        return None
    with sock:
        try:
            send_message(sock, {"op": "status"})
            return LineReader(sock).read(timeout)
        except (OSError, ValueError, TimeoutError):
            return None


# -- a participant it forked --------------------------------------------------------


class AgentDeployment:
    """A participant forked by the warm agent; the agent reports its exit status.

    The agent's connection stays open while the participant runs: a thread
    reads the exit report from it. Closing it early makes the agent
    terminate the participant.
    """

    launch = "agent"
    workspace: str | None = None  # it runs on this machine: the run's files are read in place

    def __init__(
        self,
        name: str,
        sock: socket.socket,
        reader: LineReader,
        pid: int,
        log: IO[bytes],
        secrets: Path,
    ) -> None:
        self.name = name
        self.pid = pid
        self.address = ""
        self.peer_address = ""
        self._sock = sock
        self._reader = reader
        self._log = log
        self._secrets = secrets
        self._status: int | None = None
        self._ended = threading.Event()

    def read_port(self, timeout: float) -> int | None:
        """Wait for the child's port; None if it ended (or stayed silent) first."""
        deadline = time.monotonic() + timeout
        port: int | None = None
        while True:
            try:
                message = self._reader.read(max(0.0, deadline - time.monotonic()))
            except (OSError, ValueError, TimeoutError):
                break
            if message is None:
                self._lost()
                return None
            if "exit" in message:
                self._end(int(message["exit"]))
                return None
            if "port" in message:
                port = int(message["port"]) or None
                break
        threading.Thread(target=self._await_exit, name=f"agent-{self.name}", daemon=True).start()
        return port

    def _await_exit(self) -> None:
        while True:
            try:
                message = self._reader.read(None)
            except (OSError, ValueError):
                message = None
            if message is None:
                self._lost()
                return
            if "exit" in message:
                self._end(int(message["exit"]))
                return

    def _end(self, status: int) -> None:
        if self._status is None:
            self._status = status
        self._ended.set()

    def _lost(self) -> None:
        """The agent's connection ended without a report: the participant counts as ended when it is gone."""
        if not self._ended.is_set() and not pid_alive(self.pid):
            self._end(LOST)

    def poll(self) -> int | None:
        """Exit status, or None while it runs."""
        if not self._ended.is_set() and self._reader.closed:
            self._lost()
        return self._status

    def stop(self, timeout: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; waits for the agent's exit report."""
        for signum, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            if self.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)
            deadline = time.monotonic() + wait
            while not self._ended.wait(0.05) and time.monotonic() < deadline:
                self.poll()
        self._sock.close()
        self._log.close()
        shutil.rmtree(self._secrets, ignore_errors=True)

    def output_tail(self, lines: int = 20) -> str:
        """Last lines of its stderr."""
        tail = log_tail(self._log.name, lines)
        if tail is None:
            return ""
        if self._status == LOST:
            tail.append("(the warm agent ended before reporting how this participant ended)")
        return "\n".join(tail)


def fork_participant(
    name: str, host: str, secrets: Path, log_file: IO[bytes], env: dict[str, str], python: str
) -> AgentDeployment | None:
    """Ask the warm agent to fork ``name``; None (and why, at debug level) when it cannot.

    The child listens on ``host``, reads its certificates from ``secrets``,
    writes its stderr to ``log_file`` and runs with ``env`` in this working
    directory; ``python`` is the interpreter a spawned participant would run
    (the agent must match it). The caller reads the port with
    :meth:`AgentDeployment.read_port`.
    """
    global _refusal
    _refusal = None
    if not agent_enabled():
        return None
    path = socket_path()
    sock = connect(path)
    if sock is None:
        log.debug("no warm agent at %s: spawning '%s'", path, name)
        return None
    reader = LineReader(sock)
    request = {
        "op": "start",
        "name": name,
        "host": host,
        "tls_dir": str(secrets),
        "cwd": os.getcwd(),
        "env": env,
        "log": log_file.name,
        "fingerprint": fingerprint(python, env),
    }
    reply = _ask(sock, reader, request)
    if not reply or not reply.get("ok") or not isinstance(reply.get("pid"), int):
        sock.close()
        why = (reply or {}).get("error", "it closed the connection")
        _refusal = " ".join(str(why).split())  # one line, however the agent worded it
        log.debug("warm agent at %s not used for '%s': %s; spawning", path, name, why)
        return None
    return AgentDeployment(name, sock, reader, reply["pid"], log_file, secrets)


def _ask(sock: socket.socket, reader: LineReader, request: Mapping[str, Any]) -> dict[str, Any] | None:
    """Send a start request; the agent's answer (None: it closed the connection)."""
    try:
        send_message(sock, request)
        early = []  # the child may announce its port before the agent sends its pid
        reply = reader.read(REPLY_TIMEOUT_S)
        while reply is not None and "ok" not in reply:
            early.append(reply)
            reply = reader.read(REPLY_TIMEOUT_S)
        reader.pending.extend(early)
    except (OSError, ValueError, TimeoutError) as exc:
        reply = {"ok": False, "error": f"no usable answer ({exc})"}
    return reply
