"""The warm agent itself: a per-user process that forks ready-made local participants.

A participant started with ``python -m splittracer.participant`` spends
seconds importing torch and torchvision before it listens. The agent pays
that once: it imports torch, torchvision and the participant runtime, then
waits on a Unix socket and forks one child per request. The child becomes
a participant exactly as the command would (working directory, environment,
stderr to the run's log file, stdin from ``/dev/null``, a session of its
own) and answers with its port; the agent answers with the child's pid and,
when the child ends, its exit status (negative: killed by that signal, as
:mod:`subprocess` reports it). Where it lives, its fingerprint and its
protocol are in :mod:`.agent_client`, which controllers and the CLI use.

Fork safety: before forking the agent has imported modules only. It has
started no thread of its own, created no gRPC object and run no torch op.
(Importing numpy starts OpenBLAS's thread pool, which OpenBLAS itself
shuts down and restarts around ``fork`` with ``pthread_atfork``.)

The agent is single-threaded (one ``selectors`` loop) and ends by itself
after ``idle_timeout`` seconds with no child and no request, and on SIGTERM
(its children are terminated first, their exits reported).

    python -m splittracer.deploy.agent_server [--idle-timeout SECONDS] [--detach]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib
import io
import json
import os
import random
import selectors
import signal
import socket
import sys
import time
import traceback
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from .agent_client import (
    LOG_NAME,
    MAX_REQUEST_BYTES,
    SOCKET_NAME,
    AgentError,
    agent_dir,
    differences,
    ensure_private_dir,
    fingerprint,
    send_message,
)

LOCK_NAME = "agent.lock"
DEFAULT_IDLE_TIMEOUT_S = 900.0
STOP_GRACE_S = 5.0
REQUEST_TIMEOUT_S = 10.0


# Modules torch.export loads on a model's first capture (0.2 s of it here); internal names that
# may move between torch versions, so one that is missing is skipped.
CAPTURE_MODULES = (
    "torch.export._trace",
    "torch.export._unlift",
    "torch._export.non_strict_utils",
    "torch._functorch.partitioners",
    "torch._inductor.codecache",
)


def preload() -> None:
    """Import what every participant needs; starts no thread and runs no torch op."""
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    from .. import builtin  # noqa: F401
    from ..participant import __main__, runtime  # noqa: F401
    from ..split import load  # noqa: F401

    for name in CAPTURE_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


@dataclass
class _Conn:
    sock: socket.socket
    opened: float
    buffer: bytes = b""
    child: int = 0  # pid of the child this connection waits for, once forked


@dataclass
class _Child:
    pid: int
    name: str
    started: float
    conn: _Conn | None = field(default=None)


class Agent:
    """The agent's loop; see the module docstring."""

    def __init__(self, directory: Path, idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S) -> None:
        self.directory = directory
        self.socket_path = directory / SOCKET_NAME
        self.idle_timeout = idle_timeout
        self.fingerprint: dict[str, Any] = {}
        self.started = time.time()
        self._started_mono = time.monotonic()
        self._last_activity = time.monotonic()
        self._children: dict[int, _Child] = {}
        self._conns: dict[int, _Conn] = {}  # by file descriptor
        self._selector: selectors.BaseSelector | None = None
        self._listener: socket.socket | None = None
        self._lock_fd = -1
        self._wake: tuple[int, int] = (-1, -1)
        self._stop_signal = 0
        self._socket_inode = 0

    # -- lifecycle ----------------------------------------------------------------

    def run(self, ready: int = -1) -> int:
        """Lock, preload, listen and serve until idle or told to stop; returns the exit status.

        ``ready``: a file descriptor to write this process's pid to once it
        listens (then closed), -1 for none.
        """
        ensure_private_dir(self.directory)
        self._lock()
        self.fingerprint = fingerprint()  # before importing, so a later edit can only mismatch
        preload()
        self._listen()
        if ready >= 0:
            with contextlib.suppress(OSError):
                os.write(ready, f"{os.getpid()}\n".encode())
            os.close(ready)
        sys.stderr.write(f"splittracer agent {os.getpid()} listening on {self.socket_path}\n")
        self._last_activity = time.monotonic()  # idle from now, not from before the imports
        try:
            self._loop()
        finally:
            self._shutdown()
        return 0

    def _lock(self) -> None:
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AgentError(f"another agent holds {self.directory / LOCK_NAME}") from None
        self._lock_fd = fd

    def _listen(self) -> None:
        path = str(self.socket_path)
        if len(path.encode()) > 100:
            raise AgentError(f"socket path too long for a Unix socket: {path}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # we hold the lock: whatever is there is stale
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            listener.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self._socket_inode = os.stat(path).st_ino
        listener.listen(64)
        listener.setblocking(False)
        self._listener = listener
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, "accept")
        read, write = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)
        self._wake = (read, write)
        self._selector.register(read, selectors.EVENT_READ, "signal")
        signal.set_wakeup_fd(write)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the loop
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)

    def _on_stop(self, signum: int, _frame: Any) -> None:
        self._stop_signal = signum

    def _loop(self) -> None:
        selector = self._selector
        assert selector is not None
        while not self._stop_signal:
            self._reap()
            now = time.monotonic()
            self._expire_requests(now)
            idle = not self._children and not self._conns
            if idle and now - self._last_activity >= self.idle_timeout:
                sys.stderr.write(f"splittracer agent: idle for {self.idle_timeout:.0f} s, exiting\n")
                return
            timeout = max(0.0, min(1.0, self._last_activity + self.idle_timeout - now))
            for key, _events in selector.select(timeout):
                if key.data == "accept":
                    self._accept()
                elif key.data == "signal":
                    with contextlib.suppress(OSError):
                        os.read(self._wake[0], 4096)
                elif (conn := self._conns.get(key.fd)) is not None:
                    self._readable(conn)

    def _shutdown(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                if os.stat(self.socket_path).st_ino == self._socket_inode:  # not a successor's
                    os.unlink(self.socket_path)
            self._listener.close()
        for child in self._children.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while self._children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for child in self._children.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_GRACE_S
        while self._children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for conn in list(self._conns.values()):
            self._close(conn)
        signal.set_wakeup_fd(-1)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)

    # -- connections ----------------------------------------------------------------

    def _accept(self) -> None:
        assert self._listener is not None and self._selector is not None
        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return
        sock.settimeout(2.0)
        conn = _Conn(sock, time.monotonic())
        self._conns[sock.fileno()] = conn
        self._selector.register(sock, selectors.EVENT_READ, "conn")
        self._last_activity = time.monotonic()

    def _close(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd >= 0 and self._conns.pop(fd, None) is not None and self._selector is not None:
            self._selector.unregister(conn.sock)
        conn.sock.close()

    def _expire_requests(self, now: float) -> None:
        for conn in list(self._conns.values()):
            if not conn.child and now - conn.opened > REQUEST_TIMEOUT_S:
                self._close(conn)

    def _readable(self, conn: _Conn) -> None:
        try:
            chunk = conn.sock.recv(65536)
        except OSError:
            chunk = b""
        if conn.child:  # the controller only closes this connection; closing it gives up the child
            if not chunk:
                self._close(conn)
                child = self._children.get(conn.child)
                if child is not None:
                    child.conn = None
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child.pid, signal.SIGTERM)
            return
        if not chunk:
            self._close(conn)
            return
        conn.buffer += chunk
        if len(conn.buffer) > MAX_REQUEST_BYTES:
            self._reply(conn, {"ok": False, "error": "request too long"}, close=True)
            return
        if b"\n" not in conn.buffer:
            return
        try:
            request = json.loads(conn.buffer.partition(b"\n")[0])
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            self._reply(conn, {"ok": False, "error": f"malformed request: {exc}"}, close=True)
            return
        self._last_activity = time.monotonic()
        op = request.get("op")
        if op == "status":
            self._reply(conn, self.status(), close=True)
        elif op == "start":
            self._start(conn, request)
        else:
            self._reply(conn, {"ok": False, "error": f"unknown op {op!r}"}, close=True)

    def _reply(self, conn: _Conn, message: Mapping[str, Any], *, close: bool = False) -> None:
        with contextlib.suppress(OSError):
            send_message(conn.sock, message)
        if close:
            self._close(conn)

    def status(self) -> dict[str, Any]:
        """What ``splittracer agent status`` shows."""
        return {
            "ok": True,
            "pid": os.getpid(),
            "socket": str(self.socket_path),
            "fingerprint": self.fingerprint,
            "started": self.started,
            "uptime_s": round(time.monotonic() - self._started_mono, 3),
            "idle_timeout_s": self.idle_timeout,
            "children": [
                {"pid": c.pid, "name": c.name, "age_s": round(time.monotonic() - c.started, 3)}
                for c in self._children.values()
            ],
        }

    # -- children -------------------------------------------------------------------

    def _start(self, conn: _Conn, request: dict[str, Any]) -> None:
        required = ("name", "host", "tls_dir", "cwd", "env", "log", "fingerprint")
        missing = [k for k in required if k not in request]
        if missing:
            self._reply(conn, {"ok": False, "error": f"missing {', '.join(missing)}"}, close=True)
            return
        mismatch = differences(self.fingerprint, request["fingerprint"])
        if mismatch:
            self._reply(conn, {"ok": False, "error": "incompatible: " + "; ".join(mismatch)}, close=True)
            return
        sys.stdout.flush()
        sys.stderr.flush()
        with warnings.catch_warnings():
            # Python 3.12+ warns about forking a multi-threaded process; the only other
            # thread is OpenBLAS's pool, which OpenBLAS handles around fork itself.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            self._become_participant(conn, request)
        name = str(request["name"])
        self._children[pid] = _Child(pid, name, time.monotonic(), conn)
        conn.child = pid
        self._reply(conn, {"ok": True, "pid": pid})

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self._children.pop(pid, None)
            self._last_activity = time.monotonic()
            if child is not None and child.conn is not None:
                self._reply(child.conn, {"exit": os.waitstatus_to_exitcode(status)}, close=True)

    def _become_participant(self, conn: _Conn, request: dict[str, Any]) -> NoReturn:
        """In the forked child: turn into ``python -m splittracer.participant``; never returns."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self._close_inherited(conn)
            os.setsid()
            null = os.open(os.devnull, os.O_RDONLY)
            log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(null)
            os.close(log)
            for stream in (sys.stdout, sys.stderr):  # as PYTHONUNBUFFERED=1 makes them
                if isinstance(stream, io.TextIOWrapper):
                    stream.reconfigure(line_buffering=True, write_through=True)
            cwd = str(request["cwd"])
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update({str(k): str(v) for k, v in request["env"].items()})
            sys.path[0] = cwd  # as `python -m` sets it
            tls_dir = Path(request["tls_dir"])
            from ..participant import __main__ as participant_main

            sys.argv = [str(participant_main.__file__), "--host", str(request["host"])]  # as `python -m`
            sys.argv += ["--port", "0", "--tls-dir", str(tls_dir), "--scratch"]
            _reseed()

            def announce(port: int) -> None:
                with contextlib.suppress(OSError):
                    send_message(conn.sock, {"port": port})
                conn.sock.close()

            code = participant_main.serve(str(request["host"]), 0, tls_dir, announce=announce, scratch=True)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            with contextlib.suppress(Exception):
                traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(code)

    def _close_inherited(self, keep: _Conn) -> None:
        """Close, in a child, what belongs to the agent: above all the lock and the listener."""
        if self._selector is not None:
            self._selector.close()
        if self._listener is not None:
            self._listener.close()
        for fd in (*self._wake, self._lock_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        for conn in self._conns.values():
            if conn is not keep:
                conn.sock.close()
        keep.sock.settimeout(5.0)


def _reseed() -> None:
    """Fresh random states, as a new process would have (numpy's only if it is loaded)."""
    random.seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        with contextlib.suppress(Exception):
            numpy_random.seed()


def _detach() -> int:
    """Fork: the child, the agent to be, returns the write end of a pipe to announce itself on.

    The parent waits for that announcement, prints the agent's pid and exits
    0 (1 if the agent ended before it listened). The child runs in a session
    of its own, stdin from ``/dev/null``, stdout and stderr appended to
    ``agent.log`` in the agent's directory.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.setsid()
        directory = ensure_private_dir(agent_dir())
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(directory / LOG_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        return write
    os.close(write)
    with os.fdopen(read) as ready:
        line = ready.readline().strip()  # empty: the agent ended before it listened
    if not line:
        raise SystemExit(1)
    sys.stdout.write(f"{line}\n")
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m splittracer.deploy.agent_server", description=__doc__)
    parser.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT_S, help="seconds")
    parser.add_argument(
        "--detach", action="store_true", help="run in the background; print its pid once it listens"
    )
    args = parser.parse_args(argv)
    ready = _detach() if args.detach else -1
    try:
        return Agent(agent_dir(), args.idle_timeout).run(ready)
    except AgentError as exc:
        sys.stderr.write(f"splittracer agent: {exc}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
