"""Participants on paired devices over SSH: the :class:`~.base.Deployer` protocol, remote.

For each participant :class:`SSHDeployer` uploads the workspace's user code
(and any run files, and the images of an image-folder dataset) to a per-run
directory on the device over SFTP, starts
``python -m splittracer.participant`` there over the kept SSH connection,
reads its ``SPLITTRACER_PORT=`` line and forwards a local port to it, so the
controller's control channel goes through the SSH tunnel. The participant
listens on an address peers can reach (``peer_address``): participants send
tasks to each other directly.

A small shell wrapper on the device kills the participant when the SSH
session's stdin closes: stopping it, a controller that dies, or a dropped
connection all end the remote process, and the wrapper then removes the
per-run directory, so nothing is left on the device. Stopping removes it too
(for a wrapper that could not). A device that stops answering while it is
stopped (a network partition) is not waited for: its connection is dropped,
and the device's sshd ends the session, and with it the participant and its
folder, as soon as it hears of it (when the link returns).

asyncssh needs an event loop; the deployer owns one in a background thread
so the synchronous controller can call it from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import signal
import threading
import uuid
from collections import deque
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from ..devices.errors import DeviceError, UnknownDevice
from ..devices.probe import RUNTIME_DIR, select_python
from ..devices.registry import Device
from ..devices.ssh import Target, connect, quote, remote_home, run, translate, watched_python
from ..errors import ConfigError
from ..participant.dataset import dataset_files, dataset_root
from ..wire.datalink import join_host_port
from ..wire.tls import FILES as TLS_FILES
from ..wire.tls import TlsBundle
from .base import LOST, PORT_PREFIX

__all__ = ["SSHDeployer", "SSHDeployment"]

T = TypeVar("T")
PID_PREFIX = "SPLITTRACER_PID="
DEVICE_START_TIMEOUT_S = 120.0  # torch's first import on a Raspberry Pi takes a while
CALL_MARGIN_S = 30.0
TAIL_LINES = 200
KEEPALIVE_S = 5.0  # a device that stops answering is seen within ~15 s, and its participants as ended
ANSWER_S = 2.0  # a device being stopped that answers nothing for this long is cut off, not waited for
TLS_DIR = "tls"  # in the per-run directory; mode 700, files 600
PARALLEL_PUTS = 8  # files in flight at once on one SFTP session (many small images)
SLOWEST_UPLOAD_BPS = 125_000.0  # 1 Mbit/s: how long a start may take to upload a dataset
_ANY_ADDRESS = ("0.0.0.0", "::", "")


class _LoopThread:
    """An asyncio loop in a daemon thread; coroutines are submitted from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="splittracer-ssh", daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class _Remote:
    """The device side of one deployment (touched only on the loop thread)."""

    conn: asyncssh.SSHClientConnection
    target: Target
    run_dir: str
    cleanup: str
    process: asyncssh.SSHClientProcess[str] | None = None
    listener: asyncssh.SSHListener | None = None
    pid: int | None = None


class SSHDeployment:
    """A participant running on a device; ``address`` is the local end of its SSH tunnel."""

    launch = "spawn"  # a fresh process on the device: devices run no warm agent

    def __init__(self, name: str, device: Device, remote: _Remote, loop: _LoopThread) -> None:
        self.name = name
        self.device = device
        self.address = ""
        self.peer_address = ""
        self.workspace = remote.run_dir  # absolute, on the device: where its user code is
        self._remote = remote
        self._loop = loop
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._status: int | None = None
        self._exited = asyncio.Event()
        self._stopped = False
        self._tasks: set[asyncio.Future[None]] = set()

    @property
    def pid(self) -> int | None:
        """The participant's process id on the device."""
        return self._remote.pid

    def poll(self) -> int | None:
        """Exit status once it ended (negative: killed by that signal), else None."""
        return self._status

    def stop(self, timeout: float = 3.0) -> None:
        """SIGTERM, SIGKILL after ``timeout``; then the tunnel closed and the per-run directory removed."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            self._loop.call(self._stop(timeout), timeout + CALL_MARGIN_S)

    def output_tail(self, lines: int = 20) -> str:
        """The last lines it wrote to stderr (and what went wrong around it)."""
        return "\n".join(list(self._tail)[-lines:])

    # -- on the loop thread -----------------------------------------------------------

    async def _launch(self, command: str, listen: str) -> None:
        remote = self._remote
        remote.process = await remote.conn.create_process(command, encoding="utf-8", errors="replace")
        port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        stderr = asyncio.ensure_future(self._pump_stderr(remote.process))
        self._tasks.add(asyncio.ensure_future(self._pump_stdout(remote.process, port, stderr)))
        self._tasks.add(stderr)
        remote_port = await asyncio.wait_for(port, DEVICE_START_TIMEOUT_S)
        forward_to = "127.0.0.1" if listen in _ANY_ADDRESS else listen
        remote.listener = await remote.conn.forward_local_port("127.0.0.1", 0, forward_to, remote_port)
        self.address = f"127.0.0.1:{remote.listener.get_port()}"
        peer_host = remote.conn.get_extra_info("peername")[0] if listen in _ANY_ADDRESS else listen
        self.peer_address = join_host_port(str(peer_host), remote_port)

    async def _pump_stdout(
        self, process: asyncssh.SSHClientProcess[str], port: asyncio.Future[int], stderr: asyncio.Future[None]
    ) -> None:
        """Learn the pid and port, keep the pipe drained, record how the process ended."""
        with contextlib.suppress(asyncssh.Error, OSError):
            async for line in process.stdout:
                text = line.strip()
                if text.startswith(PID_PREFIX):
                    self._remote.pid = int(text.removeprefix(PID_PREFIX))
                elif text.startswith(PORT_PREFIX) and not port.done():
                    port.set_result(int(text.removeprefix(PORT_PREFIX)))
        await process.wait_closed()
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(stderr), 2.0)  # its last lines explain the exit
        self._record_exit(process)
        if not port.done():
            port.set_exception(EOFError("the participant ended before it listened"))

    async def _pump_stderr(self, process: asyncssh.SSHClientProcess[str]) -> None:
        with contextlib.suppress(asyncssh.Error, OSError):
            async for line in process.stderr:
                self._tail.append(line.rstrip("\n"))

    def _record_exit(self, process: asyncssh.SSHClientProcess[str]) -> None:
        if self._exited.is_set():
            return
        self._status = _exit_status(process)
        if process.exit_status is None and process.exit_signal is None:
            self._tail.append(f"(the SSH connection to {self._remote.target.label} was lost)")
        self._exited.set()

    async def _stop(self, timeout: float) -> None:
        remote = self._remote
        if remote.process is not None and not self._exited.is_set():
            with contextlib.suppress(asyncssh.Error, OSError):
                remote.process.stdin.write_eof()  # the wrapper answers with SIGTERM
            if not await self._ended_or_answering(timeout):
                self._abandon()
                return
            if not self._exited.is_set():
                await self._kill()
        if remote.listener is not None:
            remote.listener.close()
        try:
            await run(remote.conn, remote.target, remote.cleanup, timeout=60.0, label="rm -rf RUN_DIR")
        except DeviceError as exc:
            self._tail.append(f"(cleanup failed: {exc.message})")

    async def _ended_or_answering(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the participant to end; False once its device stops answering.

        A device cut off from us answers no request: waiting for it, then killing and
        cleaning up over a connection that carries nothing, would hold the run's end
        until SSH's keepalive gave up on it.
        """
        ended = asyncio.ensure_future(self._exited.wait())
        answered = asyncio.ensure_future(self._answers())
        pending: set[asyncio.Future[Any]] = {ended, answered}
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while ended in pending and (left := deadline - asyncio.get_running_loop().time()) > 0:
                done, pending = await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                if answered in done and not answered.result() and ended not in done:
                    return False
            return True
        finally:
            for future in pending:
                future.cancel()

    async def _answers(self) -> bool:
        """Whether the device answers a request within ANSWER_S (a refused one is an answer too)."""
        try:
            await asyncio.wait_for(self._remote.conn.run("true", check=False), ANSWER_S)
        except (asyncio.TimeoutError, TimeoutError):
            return False
        except (asyncssh.Error, OSError):
            return True  # e.g. too many sessions: it is there; killing it over SSH may work
        return True

    def _abandon(self) -> None:
        """Drop the connection to a device that stopped answering; it cleans up when it hears of it."""
        remote = self._remote
        self._tail.append(
            f"({remote.target.label} answered nothing for {ANSWER_S:g} s while being stopped: "
            "its connection was dropped; its sshd ends the participant, and the run's folder "
            "is removed, once the device hears of it)"
        )
        remote.conn.abort()

    async def _kill(self) -> None:
        remote = self._remote
        if remote.pid is not None:
            with contextlib.suppress(DeviceError):
                await run(remote.conn, remote.target, f"kill -KILL {remote.pid}", check=False, timeout=30.0)
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(self._exited.wait(), 10.0)


class SSHDeployer:
    """Starts participants on paired devices (``placements``: participant name -> device).

    ``workspace``'s user code (``*.py`` at its root and packages beside them)
    and ``files`` (e.g. the run's config files) go to every participant's
    per-run directory ``~/.splittracer/runs/RUN/NAME``; files keep their base
    names. ``dataset``, an image folder or a CSV, goes there too in its folder's base name,
    with only the files a participant reads (every participant loads the
    run's inputs, and any role may ask for one). Use it as a context manager,
    or call :meth:`close`, to stop what is left and close the connections.
    """

    def __init__(
        self,
        placements: Mapping[str, Device],
        *,
        workspace: Path | None = None,
        files: Sequence[Path] = (),
        dataset: Path | None = None,
        run_id: str | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.placements = dict(placements)
        self.workspace = workspace
        self.files = list(files)
        self.uploads = list(user_code(workspace)) if workspace else []
        self.uploads += [(path, path.name) for path in self.files]
        self.dataset = dataset_uploads(dataset, self.uploads) if dataset else []
        self._dataset_bytes = sum(path.stat().st_size for path, _ in self.dataset)
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.connect_timeout = connect_timeout
        self.deployments: list[SSHDeployment] = []
        self._loop = _LoopThread()
        self._conns: dict[str, asyncssh.SSHClientConnection] = {}
        self._homes: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def start(self, name: str, tls: TlsBundle | None = None) -> SSHDeployment:
        """Upload, start and tunnel participant ``name``; DeviceError (host, command, output) if it fails.

        ``tls`` (the participant's certificate, key and the run's authority) is
        written to the per-run directory, readable by the login user only.
        Without it the participant serves without TLS (``--insecure``): tests only.
        """
        device = self.placements.get(name)
        if device is None:
            raise UnknownDevice(f"participant '{name}' is not placed on any device")
        upload_s = self._dataset_bytes / SLOWEST_UPLOAD_BPS
        timeout = DEVICE_START_TIMEOUT_S + 3 * CALL_MARGIN_S + upload_s
        return self._loop.call(self._start(name, device, tls), timeout)

    def close(self) -> None:
        """Stop every participant still running, close the connections and the loop (idempotent)."""
        if self._loop.loop.is_closed():
            return
        for deployment in self.deployments:
            deployment.stop()
        with contextlib.suppress(Exception):
            self._loop.call(self._close_connections(), CALL_MARGIN_S)
        self._loop.close()

    def __enter__(self) -> SSHDeployer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- on the loop thread -----------------------------------------------------------

    async def _start(self, name: str, device: Device, tls: TlsBundle | None) -> SSHDeployment:
        conn, home = await self._connection(device)
        target = Target.of(device)
        base = f"{home}/{RUNTIME_DIR}"
        run_dir = f"{base}/runs/{self.run_id}/{name}"
        cleanup = f"{removal(run_dir)}; true"
        deployment = SSHDeployment(name, device, _Remote(conn, target, run_dir, cleanup), self._loop)
        self.deployments.append(deployment)
        listen = device.listen_host or str(conn.get_extra_info("peername")[0])
        command = participant_command(run_dir, listen, device.python, tls_dir=TLS_DIR if tls else None)
        try:
            await self._upload(conn, target, run_dir, tls)
            await deployment._launch(command, listen)
        except BaseException as exc:
            await deployment._stop(timeout=2.0)
            deployment._stopped = True
            raise _start_error(exc, deployment, target, command) from exc
        return deployment

    async def _connection(self, device: Device) -> tuple[asyncssh.SSHClientConnection, str]:
        lock = self._locks.setdefault(device.name, asyncio.Lock())
        async with lock:
            if device.name not in self._conns:
                target = Target.of(device)
                keys = (device.key,) if device.key else ()
                conn = await connect(target, keys=keys, timeout=self.connect_timeout, keepalive=KEEPALIVE_S)
                self._homes[device.name] = await remote_home(conn, target)
                self._conns[device.name] = conn
        return self._conns[device.name], self._homes[device.name]

    async def _upload(
        self, conn: asyncssh.SSHClientConnection, target: Target, run_dir: str, tls: TlsBundle | None
    ) -> None:
        uploads = self.uploads + self.dataset
        try:
            async with conn.start_sftp_client() as sftp:
                await sftp.makedirs(run_dir, exist_ok=True)
                await sftp.chmod(run_dir, 0o700)
                if tls is not None:
                    await _put_secrets(sftp, f"{run_dir}/{TLS_DIR}", tls)
                await _put_all(sftp, run_dir, uploads)
        except (asyncssh.Error, OSError) as exc:
            raise DeviceError(
                f"uploading the run's files to {run_dir} failed: {exc}", host=target.label
            ) from exc

    async def _close_connections(self) -> None:
        for conn in self._conns.values():
            conn.close()
        for conn in self._conns.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 5.0)
        self._conns.clear()


def participant_command(
    run_dir: str, listen: str, python: str | None = None, *, tls_dir: str | None = None
) -> str:
    """The shell that runs a participant in ``run_dir`` and kills it when stdin closes.

    It prints ``SPLITTRACER_PID=`` then the participant prints ``SPLITTRACER_PORT=``;
    its exit status is the participant's (128+N when killed by signal N).
    """
    security = f"--tls-dir {quote(tls_dir)}" if tls_dir else "--insecure"
    # The wrapper removes the run's folder whenever the participant ends: a controller that
    # dies or is cut off cannot, and the folder holds the run's private TLS key.
    return watched_python(
        f"-m splittracer.participant --host {quote(listen)} --port 0 {security}",
        # torch creates its compiler cache in the device's temp folder when imported: keep it in
        # the run's folder, which is removed with the run, so nothing is left on the device.
        prologue=f'cd {quote(run_dir)} || exit 97\nexport TORCHINDUCTOR_CACHE_DIR="$PWD/.torch"\n'
        f"{select_python(python)}\n",
        on_start=f'echo "{PID_PREFIX}$pid"\n',
        epilogue=f"cd / && {removal(run_dir)}\n",
    )


def removal(run_dir: str) -> str:
    """Shell that removes ``run_dir`` (``.../runs/RUN/NAME``) and the parents it leaves empty; silent."""
    runs_run = posixpath.dirname(run_dir)
    runs = posixpath.dirname(runs_run)
    parents = " ".join(quote(d) for d in (runs_run, runs, posixpath.dirname(runs)))
    return f"rm -rf {quote(run_dir)} >/dev/null 2>&1; rmdir {parents} >/dev/null 2>&1"


def dataset_uploads(dataset: Path, others: Sequence[tuple[Path, str]] = ()) -> list[tuple[Path, str]]:
    """(local file, path relative to the run directory) for a dataset (an image folder or a CSV).

    The dataset's folder (a CSV's: the one it is in) keeps its base name on the
    device, which is where the controller points remote participants
    (:func:`~splittracer.participant.dataset.remote_dataset`); only what the
    participant reads is sent (the images, and the CSV), in their sub-folders.
    ConfigError when it holds none, or when its name is taken by another upload.
    """
    folder = dataset_root(dataset)
    name = folder.name
    taken = {rel.split("/")[0] for _, rel in others} | {TLS_DIR}
    if name in ("", "..") or name in taken:
        raise ConfigError(
            f"the dataset folder '{folder}' cannot be sent to devices under its name '{name}': "
            "the participant's run directory uses that name already",
            key="model.dataset",
            hint=f"Rename the folder: its name must differ from {', '.join(sorted(taken))}.",
        )
    files = [path for path in dataset_files(dataset) if path.is_file()]
    return [(path, f"{name}/{path.relative_to(folder).as_posix()}") for path in dict.fromkeys(files)]


def user_code(workspace: Path) -> Iterable[tuple[Path, str]]:
    """(local file, path relative to the run directory) for the workspace's Python code."""
    for path in sorted(workspace.glob("*.py")):
        yield path, path.name
    for package in sorted(p for p in workspace.iterdir() if (p / "__init__.py").is_file()):
        for path in sorted(package.rglob("*.py")):
            if "__pycache__" not in path.parts:
                yield path, path.relative_to(workspace).as_posix()


async def _put_all(sftp: asyncssh.SFTPClient, run_dir: str, uploads: Sequence[tuple[Path, str]]) -> None:
    """Every (local, relative) file into ``run_dir``, a few at a time: small files cost round trips."""
    for folder in sorted({posixpath.dirname(rel) for _, rel in uploads} - {""}):
        await sftp.makedirs(f"{run_dir}/{folder}", exist_ok=True)
    slots = asyncio.Semaphore(PARALLEL_PUTS)

    async def put(local: Path, rel: str) -> None:
        async with slots:
            await sftp.put(str(local), f"{run_dir}/{rel}")

    await asyncio.gather(*(put(local, rel) for local, rel in uploads))


async def _put_secrets(sftp: asyncssh.SFTPClient, directory: str, tls: TlsBundle) -> None:
    """The bundle's PEM files, created with mode 600 in a mode 700 directory."""
    await sftp.makedirs(directory, attrs=asyncssh.SFTPAttrs(permissions=0o700), exist_ok=True)
    for filename, data in zip(TLS_FILES, (tls.ca, tls.cert, tls.key)):
        async with sftp.open(f"{directory}/{filename}", "wb", asyncssh.SFTPAttrs(permissions=0o600)) as f:
            await f.write(data)


def _exit_status(process: asyncssh.SSHClientProcess[str]) -> int:
    status = process.exit_status
    if status is not None and status >= 0:
        return -(status - 128) if status > 128 else status
    if process.exit_signal is not None:
        with contextlib.suppress(KeyError):
            return -int(signal.Signals["SIG" + process.exit_signal[0]])
    return LOST


def _start_error(exc: BaseException, deployment: SSHDeployment, target: Target, command: str) -> DeviceError:
    shown = f"python -m splittracer.participant (in {deployment.workspace})"
    tail = deployment.output_tail()
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        message = (
            f"participant '{deployment.name}' did not report its port within {DEVICE_START_TIMEOUT_S:g} s"
        )
    elif isinstance(exc, EOFError):
        message = f"participant '{deployment.name}' ended before it listened"
    elif isinstance(exc, DeviceError):
        return exc
    elif isinstance(exc, (asyncssh.Error, OSError)):
        return translate(exc, target)
    else:
        raise exc
    return DeviceError(
        message,
        host=target.label,
        command=shown,
        exit_status=deployment.poll(),
        output=tail,
        hint=f"Run 'splittracer device check {deployment.device.name}'; "
        f"'splittracer device setup {deployment.device.name}' installs what is missing.",
    )
