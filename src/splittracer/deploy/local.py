"""Participants on this machine: a fresh subprocess, or a child of the warm agent.

:class:`LocalDeployer` (the ``local`` device) asks the warm agent
(:mod:`.agent_client`) to fork a participant when one runs and matches this
controller's code and environment (an ``AgentDeployment``), else starts
```python -m splittracer.participant`` as a subprocess (a
:class:`LocalDeployment`). Either way it waits for the port and hands back a
:class:`~.base.Deployment`. A participant with CPU or memory limits is always
spawned, into its cgroups (:mod:`.limits`), never forked by the agent: a
fork would start outside them, with the agent's memory already charged
elsewhere. Its ``launch`` is then ``spawn+cgroup``. A CPU limit enforced
with signals (``limits.by``, :func:`~splittracer.devices.limits.cpu_mechanism`)
runs the participant under the throttle (:mod:`splittracer.devices.throttle`),
its parent: ``spawn+signals`` (``spawn+cgroup+signals`` with a memory limit).
"""

from __future__ import annotations

import ipaddress
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

from ..devices.limits import ParticipantCgroup, ResourceLimits, RunCgroups, cpu_mechanism
from ..devices.throttle import start_throttling, throttled_command
from ..errors import RunError
from ..participant.lifeline import CONTROLLER_PID_ENV
from ..wire.datalink import join_host_port
from ..wire.tls import TlsBundle
from .agent_client import AgentDeployment, fork_participant
from .base import PORT_PREFIX, START_TIMEOUT_S, describe_exit, log_tail

__all__ = ["LocalDeployer", "LocalDeployment", "route_source"]


class LocalDeployment:
    """A participant running as a subprocess of the controller."""

    launch = "spawn"
    workspace: str | None = None  # it runs on this machine: the run's files are read in place

    def __init__(
        self,
        name: str,
        process: subprocess.Popen[bytes],
        log: IO[bytes],
        address: str,
        secrets: Path,
        cgroup: ParticipantCgroup | None = None,
        signals: bool = False,
    ) -> None:
        self.name = name
        self.cgroup = cgroup
        self.signals = signals  # its CPU limit enforced by the throttle, its parent process
        self.launch = "spawn" + ("+cgroup" if cgroup is not None else "") + ("+signals" if signals else "")
        self.process = process
        self.pid = process.pid
        self.address = address
        self.peer_address = address  # another when peers on other hosts must reach it (see LocalDeployer)
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
        if self.cgroup is not None:
            self.cgroup.remove()

    def output_tail(self, lines: int = 20) -> str:
        """Last lines of its stderr, after the kernel's out-of-memory verdict if it gave one."""
        tail = log_tail(self._log.name, lines) or []
        ended = self.process.poll() is not None
        note = self.cgroup.out_of_memory_note() if ended and self.cgroup is not None else ""
        return "\n".join([note, *tail] if note else tail)


class LocalDeployer:
    """Runs every participant as a local process (the ``local`` device)."""

    def __init__(
        self,
        python: str = sys.executable,
        log_dir: Path | None = None,
        extra_env: dict[str, dict[str, str]] | None = None,
        advertise: str | None = None,
        limits: dict[str, ResourceLimits] | None = None,
        run_name: str = "run",
    ) -> None:
        """``advertise``: an address of this machine that peers on devices can reach.

        ``limits``: per participant, the CPU and memory it may use, enforced
        with cgroups under a parent named after ``run_name``.

        Without it participants listen on loopback only. With it they listen
        on every interface (every link is mutually authenticated: a peer
        without the run's certificate is refused) and give peers
        ``ADVERTISE:PORT``; the controller still talks to them on loopback.
        """
        self.advertise = advertise
        self.python = python
        self.log_dir = log_dir
        self.extra_env = extra_env or {}  # per participant, e.g. a shifted clock in tests
        self.limits = {name: lim for name, lim in (limits or {}).items() if lim}
        # Per limited participant: its CPU limit enforced by a cgroup or by signals.
        self.cpu_by = {name: cpu_mechanism(lim) for name, lim in self.limits.items()}
        self.cgroups = RunCgroups(run_name) if self.limits else None

    def start(self, name: str, tls: TlsBundle) -> LocalDeployment | AgentDeployment:
        """Start one participant (forked by the warm agent, or a new process) and read its port."""
        # One scratch folder per participant, removed when it stops: its TLS files, and its log
        # unless the run keeps logs (``log_dir``: the results folder's logs/RUN/).
        secrets = tls.write(Path(tempfile.mkdtemp(prefix=f"splittracer-{name}-")))
        log_file = self._log_file(name, secrets)
        host = "0.0.0.0" if self.advertise else "127.0.0.1"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env.get(name, {})}
        env[CONTROLLER_PID_ENV] = str(os.getpid())  # so it stops if we are killed (participant/lifeline.py)
        deployment: LocalDeployment | AgentDeployment
        cgroup = self._cgroup(name, secrets, log_file)
        limited = cgroup is not None or name in self.limits
        forked = None if limited else fork_participant(name, host, secrets, log_file, env, self.python)
        if forked is not None:
            deployment = forked
            port = forked.read_port(START_TIMEOUT_S)
        else:
            deployment, port = self._spawn(name, host, secrets, log_file, env, cgroup)
        if not port:
            deployment.stop(timeout=1.0)
            raise RunError(
                f"participant '{name}' did not start: {describe_exit(deployment.poll())}\n"
                f"{deployment.output_tail()}"
            )
        if isinstance(deployment, LocalDeployment) and limited:
            self._throttle(deployment)
        deployment.address = f"127.0.0.1:{port}"
        deployment.peer_address = (
            join_host_port(self.advertise, port) if self.advertise else deployment.address
        )
        return deployment

    def _log_file(self, name: str, scratch: Path) -> IO[bytes]:
        if self.log_dir is None:
            return (scratch / "participant.log").open("wb")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return (self.log_dir / f"{name}.log").open("wb")

    def _cgroup(self, name: str, secrets: Path, log_file: IO[bytes]) -> ParticipantCgroup | None:
        """``name``'s cgroups with its limits written, or None when none of its limits needs one."""
        if self.cgroups is None or name not in self.limits:
            return None
        limits = self.limits[name]
        if self.cpu_by[name] == "signals":  # the throttle enforces the CPU limit; a cgroup only memory
            limits = ResourceLimits(memory_bytes=limits.memory_bytes)
        if not limits:
            return None
        try:
            return self.cgroups.create(name, limits)
        except RunError:
            log_file.close()
            shutil.rmtree(secrets, ignore_errors=True)
            raise

    @staticmethod
    def _throttle(deployment: LocalDeployment) -> None:
        """Start limiting its CPU, now that it listens (see devices/limits.py)."""
        try:
            if deployment.cgroup is not None:
                deployment.cgroup.throttle()
            if deployment.signals:
                start_throttling(deployment.pid)
        except (RunError, ProcessLookupError):
            deployment.stop(timeout=1.0)
            raise

    def _spawn(
        self,
        name: str,
        host: str,
        secrets: Path,
        log_file: IO[bytes],
        env: dict[str, str],
        cgroup: ParticipantCgroup | None,
    ) -> tuple[LocalDeployment, int | None]:
        """``python -m splittracer.participant`` as a subprocess, and its port (None: it never listened)."""
        command = [self.python, "-m", "splittracer.participant", "--host", host, "--port", "0"]
        command += ["--tls-dir", str(secrets), "--scratch"]
        signals = self.cpu_by.get(name) == "signals"
        limit = self.limits[name].cpu if signals else None
        if limit is not None:  # held unthrottled until it listens: see _throttle
            command = throttled_command(limit, command, python=self.python)
        process = subprocess.Popen(
            cgroup.wrap(command) if cgroup else command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the controller, which stops us in order
        )
        deployment = LocalDeployment(name, process, log_file, "", secrets, cgroup, signals)
        return deployment, _read_port(process, START_TIMEOUT_S)

    def close(self) -> None:
        """Remove the run's cgroups (each deployment owns its process); idempotent."""
        if self.cgroups is not None:
            self.cgroups.remove()


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
