"""Starting participants: one small interface, a local and (later) an SSH implementation.

A :class:`Deployer` starts ``python -m splittracer.participant`` somewhere and
returns a :class:`Deployment`: where its control endpoint is reachable from
the controller, whether it is still alive, how it ended, and the tail of
what it printed. The controller never cares which implementation it has.

Local participants come from the warm agent
(:mod:`splittracer.deploy.agent`) when one runs and matches this
controller's code and environment (an :class:`AgentDeployment`), else
from a fresh subprocess (a :class:`LocalDeployment`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Protocol

from ..errors import RunError
from ..wire.tls import TlsBundle
from . import agent

PORT_PREFIX = "SPLITTRACER_PORT="
START_TIMEOUT_S = 60.0
AGENT_REPLY_TIMEOUT_S = 5.0
LOST = 255
"""Exit status of a participant whose agent ended before reporting it."""

log = logging.getLogger(__name__)


class Deployment(Protocol):
    """A started participant process."""

    name: str
    address: str

    def poll(self) -> int | None:
        """Exit status if it ended (negative: killed by that signal), else None."""
        ...

    def stop(self, timeout: float = 3.0) -> None:
        """End it: politely, then by force after ``timeout`` seconds."""
        ...

    def output_tail(self, lines: int = 20) -> str:
        """The last lines it wrote to stderr."""
        ...


class Deployer(Protocol):
    """Starts participants on one kind of device."""

    def start(self, name: str, tls: TlsBundle) -> Deployment:
        """Start a participant process for ``name`` holding ``tls`` and wait until it listens."""
        ...

    def workspace_path(self, local: Path | None) -> str | None:
        """Where the participant finds the workspace's user code."""
        ...


class LocalDeployment:
    """A participant running as a subprocess of the controller."""

    launch = "spawn"

    def __init__(
        self, name: str, process: subprocess.Popen[bytes], log: IO[bytes], address: str, secrets: Path
    ) -> None:
        self.name = name
        self.process = process
        self.pid = process.pid
        self.address = address
        self.peer_address = ""  # set when peers on other hosts must reach it (see LocalDeployer)
        self._log = log
        self._secrets = secrets

    def poll(self) -> int | None:
        """Exit status, or None while it runs."""
        return self.process.poll()

    def stop(self, timeout: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; always reaped."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        shutil.rmtree(self._secrets, ignore_errors=True)

    def output_tail(self, lines: int = 20) -> str:
        """Last lines of its stderr."""
        return "\n".join(_log_tail(self._log, lines) or [])


class AgentDeployment:
    """A participant forked by the warm agent; the agent reports its exit status.

    The agent's connection stays open while the participant runs: a thread
    reads the exit report from it. Closing it early makes the agent
    terminate the participant.
    """

    launch = "agent"

    def __init__(
        self,
        name: str,
        sock: socket.socket,
        reader: agent.LineReader,
        pid: int,
        log: IO[bytes],
        secrets: Path,
    ) -> None:
        self.name = name
        self.pid = pid
        self.address = ""
        self.peer_address = ""  # as for LocalDeployment
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
        if not self._ended.is_set() and not agent.pid_alive(self.pid):
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
        tail = _log_tail(self._log, lines)
        if tail is None:
            return ""
        if self._status == LOST:
            tail.append("(the warm agent ended before reporting how this participant ended)")
        return "\n".join(tail)


class LocalDeployer:
    """Runs every participant as a local process (the ``local`` device)."""

    def __init__(
        self,
        python: str = sys.executable,
        log_dir: Path | None = None,
        extra_env: dict[str, dict[str, str]] | None = None,
        advertise: str | None = None,
    ) -> None:
        """``advertise``: an address of this machine that peers on devices can reach.

        Without it participants listen on loopback only. With it they listen
        on every interface (every link is mutually authenticated: a peer
        without the run's certificate is refused) and give peers
        ``ADVERTISE:PORT``; the controller still talks to them on loopback.
        """
        self.advertise = advertise
        self.python = python
        self.log_dir = log_dir
        self.extra_env = extra_env or {}  # per participant, e.g. a shifted clock in tests

    def start(self, name: str, tls: TlsBundle) -> LocalDeployment | AgentDeployment:
        """Start one participant (forked by the warm agent, or a new process) and read its port."""
        secrets = tls.write(Path(tempfile.mkdtemp(prefix=f"splittracer-{name}-tls-")))
        log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - owned by the deployment, closed in stop()
            prefix=f"splittracer-{name}-", suffix=".log", dir=self.log_dir, delete=False
        )
        host = "0.0.0.0" if self.advertise else "127.0.0.1"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env.get(name, {})}
        deployment: LocalDeployment | AgentDeployment
        forked = self._from_agent(name, host, secrets, log_file, env)
        if forked is not None:
            deployment = forked
            port = forked.read_port(START_TIMEOUT_S)
        else:
            command = [self.python, "-m", "splittracer.participant", "--host", host, "--port", "0"]
            process = subprocess.Popen(
                [*command, "--tls-dir", str(secrets)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log_file,
                env=env,
                start_new_session=True,  # Ctrl-C reaches the controller, which stops us in order
            )
            port = _read_port(process, START_TIMEOUT_S)
            deployment = LocalDeployment(name, process, log_file, "", secrets)
        if port:
            deployment.address = f"127.0.0.1:{port}"
        if port and self.advertise:
            deployment.peer_address = _host_port(self.advertise, port)
        if port is None:
            deployment.stop(timeout=1.0)
            raise RunError(
                f"participant '{name}' did not start: {describe_exit(deployment.poll())}\n"
                f"{deployment.output_tail()}"
            )
        return deployment

    def _from_agent(
        self, name: str, host: str, secrets: Path, log_file: IO[bytes], env: dict[str, str]
    ) -> AgentDeployment | None:
        """Ask the warm agent to fork ``name``; None (and why, at debug level) when it cannot."""
        if not agent.agent_enabled():
            return None
        path = agent.socket_path()
        sock = agent.connect(path)
        if sock is None:
            log.debug("no warm agent at %s: spawning '%s'", path, name)
            return None
        reader = agent.LineReader(sock)
        request = {
            "op": "start",
            "name": name,
            "host": host,
            "tls_dir": str(secrets),
            "cwd": os.getcwd(),
            "env": env,
            "log": log_file.name,
            "fingerprint": agent.fingerprint(self.python, env),
        }
        try:
            agent.send_message(sock, request)
            early = []  # the child may announce its port before the agent sends its pid
            reply = reader.read(AGENT_REPLY_TIMEOUT_S)
            while reply is not None and "ok" not in reply:
                early.append(reply)
                reply = reader.read(AGENT_REPLY_TIMEOUT_S)
            reader.pending.extend(early)
        except (OSError, ValueError, TimeoutError) as exc:
            reply = {"ok": False, "error": f"no usable answer ({exc})"}
        if not reply or not reply.get("ok") or not isinstance(reply.get("pid"), int):
            sock.close()
            why = (reply or {}).get("error", "it closed the connection")
            log.debug("warm agent at %s not used for '%s': %s; spawning", path, name, why)
            return None
        return AgentDeployment(name, sock, reader, reply["pid"], log_file, secrets)

    def workspace_path(self, local: Path | None) -> str | None:
        """Local processes read the workspace where it is."""
        return str(local) if local else None


def _log_tail(log: IO[bytes], lines: int) -> list[str] | None:
    """The last ``lines`` lines of a participant's log file (None if it cannot be read)."""
    try:
        text = Path(log.name).read_text(errors="replace")
    except OSError:
        return None
    return text.rstrip().splitlines()[-lines:]


def describe_exit(status: int | None) -> str:
    """'exited with status 3', 'killed by SIGKILL' or 'still running'."""
    if status is None:
        return "still running"
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exited with status {status}"


def _read_port(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    """Wait for the participant's ``SPLITTRACER_PORT=`` line."""
    lines: queue.Queue[bytes] = queue.Queue()
    stdout = process.stdout
    assert stdout is not None

    def pump() -> None:
        with stdout:  # closed here, at end of file, so no pipe outlives the process
            for line in stdout:
                lines.put(line)
        lines.put(b"")

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            if process.poll() is not None:
                return None
            continue
        if not line:
            return None
        text = line.decode(errors="replace").strip()
        if text.startswith(PORT_PREFIX):
            return int(text.removeprefix(PORT_PREFIX))
    return None


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def route_source(host: str, port: int = 22) -> str | None:
    """The address of this machine that traffic to ``host`` leaves from, or None if unknown.

    Connecting a UDP socket sends nothing: the kernel only picks the route
    and its source address. A host name is resolved first.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError:
        return None
    for family, kind, proto, _name, address in infos:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.connect(address)
                source = str(probe.getsockname()[0])
        except OSError:
            continue
        if not ipaddress.ip_address(source).is_loopback:
            return source
    return None
