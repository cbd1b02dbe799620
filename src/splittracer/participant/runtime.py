"""The participant process: a gRPC control server, a data plane, an inbox, and a worker.

Threads: gRPC's pool serves the controller's calls (and Deliver calls from a
peer that has no data port); the data plane (:mod:`splittracer.wire.datalink`)
has a thread per connection from a peer. One worker thread takes tasks from
the inbox, highest priority first (arrival order among equals), and runs the
role's handler, so a role never sees two of its handlers at once; a call that
finds the participant idle runs on the thread it arrived on instead (see
``_claim_idle``). ``ctx.call`` may block the worker: the answer comes back
on the connection the call went out on, not through the inbox.

Tasks go out through one :class:`~splittracer.wire.link.Link` per peer:
the data plane for a peer that announced a data port, gRPC otherwise.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import platform
import queue
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import grpc
import msgspec
import torch

from ..clock import now_ns
from ..errors import PeerError, RunError, SplitTracerError, UserCodeError
from ..metrics.cgroups import enforced_limits
from ..metrics.energy import EnergyProbe, probe_energy
from ..metrics.system import SystemSampler, cpu_model
from ..roles import Role
from ..tasks import Task, task_name
from ..version import __version__
from ..wire.datalink import DataListener, SocketLink, client_context, split_host_port
from ..wire.envelope import Incoming, Outgoing, Tags
from ..wire.grpc_path import GRPC_OPTIONS, GrpcLink, delivery_handlers
from ..wire.link import Answer, Link
from ..wire.messages import Event, ParticipantInfo, PeerInfo, Reply, RunConfig, decoder, encode
from ..wire.shaping import LinkShaper
from ..wire.tls import TlsBundle
from .context import ParticipantContext
from .delivery import Received, open_incoming, prepare_task, record_received
from .failure import describe, full_traceback, user_traceback
from .inbox import Inbox
from .lifeline import Lifeline
from .loading import accelerator_name, allowed_workers, import_role, load_model
from .recorder import TaggedRecorder
from .warm import KeepWarm

FLUSH_INTERVAL_S = 0.1
HEARTBEAT_INTERVAL_S = 1.0
ORPHAN_TIMEOUT_S = 30.0
WATCHDOG_INTERVAL_S = 0.5


@dataclass(order=True)
class _Queued:
    priority: int
    seq: int
    received: Received | None = field(compare=False)  # None: stop the worker
    result: Future[Task | None] | None = field(default=None, compare=False)  # set when the sender waits


class Participant:
    """Serves one participant of one run; see the module docstring."""

    def __init__(self, tls: TlsBundle | None = None, on_orphaned: Callable[[], None] | None = None) -> None:
        """``on_orphaned`` runs just before the watchdog ends a participant whose controller is gone."""
        self.tls = tls
        self._on_orphaned = on_orphaned
        self.server: grpc.Server | None = None
        self.config: RunConfig | None = None
        self.ctx: ParticipantContext | None = None
        self.role: Role | None = None
        self.recorder: TaggedRecorder | None = None
        self._events: queue.Queue[Event] = queue.Queue()
        self._inbox: Inbox[_Queued] = Inbox()  # bounded: a flooding sender waits (see inbox.py)
        self._seq = itertools.count()
        self._links: dict[str, Link] = {}  # one per peer (see _apply)
        self._link_context = client_context(tls)
        self._data: DataListener | None = None
        self.data_port = 0
        self._shaper = LinkShaper()
        self._stopped = threading.Event()
        self._watchers = 0
        self._last_watch = time.monotonic()
        self._lifeline = Lifeline()
        self._worker: threading.Thread | None = None
        # Tasks queued or being handled; a call that finds none runs inline (see _accept).
        self._busy = 0
        self._busy_lock = threading.Lock()
        # Handlers running at once, on the workers or inline: one, unless ``workers:`` allows more.
        self._workers = 1
        self._slots = threading.BoundedSemaphore(1)
        self._role_ready = False
        self._sampler: SystemSampler | None = None
        self._energy: EnergyProbe | None = None
        self._warm: KeepWarm | None = None

    # -- server -------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start serving; returns the bound port."""
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=GRPC_OPTIONS)
        handlers = {
            "Hello": grpc.unary_unary_rpc_method_handler(self._hello),
            "Configure": grpc.unary_unary_rpc_method_handler(self._configure),
            "Watch": grpc.unary_stream_rpc_method_handler(self._watch),
            "Shutdown": grpc.unary_unary_rpc_method_handler(self._shutdown),
            "Clock": grpc.unary_unary_rpc_method_handler(_clock),
            **delivery_handlers(self._accept, lambda: self._shaper),
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("splittracer.Participant", handlers),)
        )
        address = f"{host}:{port}"
        if self.tls is None:
            bound: int = self.server.add_insecure_port(address)
        else:
            bound = self.server.add_secure_port(address, self.tls.server_credentials())
        self.server.start()
        self._data = DataListener(self._accept, self.tls, lambda: self._shaper)
        self.data_port = self._data.start(host)
        threading.Thread(target=self._watchdog, name="watchdog", daemon=True).start()
        return bound

    def wait(self) -> None:
        """Block until the participant has stopped."""
        self._stopped.wait()
        if self._data is not None:
            self._data.close()
        for link in self._links.values():
            link.close()
        if self.server is not None:
            self.server.stop(grace=1.0).wait()

    # -- control calls ------------------------------------------------------------

    def _hello(self, _request: bytes, _context: Any) -> bytes:
        info = host_info(self.config.name if self.config else "")
        return encode(msgspec.structs.replace(info, data_port=self.data_port))

    def _configure(self, request: bytes, _context: Any) -> bytes:
        try:
            self._apply(decoder(RunConfig).decode(request))
        except Exception as exc:
            return encode(_error_reply(exc))
        energy = self._energy.to_dict() if self._energy is not None else {}
        model = self.ctx.model if self.ctx is not None and self.config and self.config.model else None
        if model is None:
            return encode(Reply(energy=energy))
        layers = [layer.name for layer in model.layers]
        return encode(
            Reply(
                layers=layers,
                split_bytes=[p.bytes for p in model.points],
                split_tensors=[len(p.tensors) for p in model.points],
                energy=energy,
                accelerator=accelerator_name(model.device),
            )
        )

    def _apply(self, config: RunConfig) -> None:
        self.config = config
        if config.threads:
            torch.set_num_threads(config.threads)
        self._shaper = LinkShaper(config.uplink_bps, config.latency_s)
        peers = {name: peer for name, peer in config.peers.items() if name != config.name}
        self._links = {name: self._link(name, peer) for name, peer in peers.items()}
        self.recorder = TaggedRecorder(config.run_id, config.name, config.stage, clock=now_ns)
        role_class = import_role(config.role, config.workspace)
        self._workers = allowed_workers(role_class, config.workers)
        self._slots = threading.BoundedSemaphore(self._workers)
        model, inputs = load_model(config)
        self._warm = KeepWarm() if config.keep_warm else None
        self.ctx = ParticipantContext(
            config, self.recorder, self._send, self._emit, model, inputs, set_uplink=self._set_uplink
        )
        self.ctx.keep_warm = self._warm
        if self._warm is not None:
            self._warm.start()
        self.role = role_class()
        self._energy = probe_energy(clock=now_ns)
        self._sampler = SystemSampler(
            config.run_id,
            config.name,
            interval_s=config.options.sample_interval_s,
            energy_readers=self._energy.readers,
            clock=now_ns,
        ).start()
        self._worker = threading.Thread(target=self._work, name="worker", daemon=True)
        self._worker.start()

    def _link(self, peer: str, info: PeerInfo) -> Link:
        """How tasks reach ``peer``: its data port when it announced one, gRPC otherwise."""
        if info.data_port:
            address = (split_host_port(info.address)[0], info.data_port)
            return SocketLink(peer, address, self._link_context, self._shaper)
        return GrpcLink(peer, info.address, self.tls, self._shaper)

    def _watch(self, _request: bytes, context: Any) -> Iterator[bytes]:
        self._watchers += 1
        self._lifeline.stream_opened()
        # A callback, not the generator's finally: gRPC may drop a cancelled stream's
        # generator without resuming it, and the lifeline must hear of it either way.
        context.add_callback(self._lifeline.stream_closed)
        try:
            yield encode(Event(kind="ready", participant=self._name, time_ns=now_ns()))
            last_beat = 0.0
            while context.is_active():
                try:
                    event: Event | None = self._events.get(timeout=FLUSH_INTERVAL_S)
                except queue.Empty:
                    event = None
                # Drained after the event was taken: spans recorded before it travel before it.
                yield from self._span_events()
                if event is not None:
                    yield encode(event)
                    if event.kind == "stopped":
                        return
                if time.monotonic() - last_beat >= HEARTBEAT_INTERVAL_S:
                    last_beat = time.monotonic()
                    yield encode(Event(kind="heartbeat", participant=self._name, time_ns=now_ns()))
        finally:
            self._watchers -= 1
            self._last_watch = time.monotonic()

    def _shutdown(self, _request: bytes, _context: Any) -> bytes:
        self._lifeline.shutdown_requested = True
        if self._worker is None:
            self._emit("stopped")
            self._stopped.set()
        else:
            self._inbox.put_control(_Queued(-(1 << 30), next(self._seq), None))
        return encode(Reply())

    # -- data plane -----------------------------------------------------------------

    def _accept(self, read: Callable[[], Incoming]) -> Answer:
        """Take a task (over gRPC or the data plane): queue it, or run it here; what to answer."""
        try:
            received = open_incoming(read())
        except Exception as exc:
            self._fail(f"'{self._name}' rejected a task: {exc}", exc)
            return _error_reply(exc), None
        self._record_receive(received)
        priority = received.task.priority
        if not received.envelope.expects_reply:
            self._enqueue(_Queued(-priority, next(self._seq), received))
            return Reply(), None
        if self._claim_idle():
            return self._answer(received, *self._handle_inline(received))
        result: Future[Task | None] = Future()
        self._enqueue(_Queued(-priority, next(self._seq), received, result))
        try:
            answer = result.result()
        except Exception as exc:
            return _error_reply(exc), None
        return self._answer(received, answer, None)

    def _answer(self, received: Received, answer: Task | None, error: Exception | None) -> Answer:
        if error is not None:
            return _error_reply(error), None
        return Reply(), (self._prepare_reply(answer, received) if answer is not None else None)

    def _enqueue(self, item: _Queued) -> None:
        self._inbox.wait_for_room()  # not under the lock: the workers need it to free room
        with self._busy_lock:
            self._busy += 1
            self._inbox.put(item)

    def _claim_idle(self) -> bool:
        """Whether a call may run on the gRPC thread it arrived on: nothing queued, nothing running.

        The sender of a call waits for the answer anyway; handing the task to
        the worker thread and the answer back costs two thread wake-ups
        (0.2 ms each on an idle machine, milliseconds on a loaded one) for
        nothing when the participant is idle. Priority order is kept: a task
        that arrives meanwhile is queued and waits for this one, as it would
        behind a task on the worker.
        """
        with self._busy_lock:
            if self._busy >= self._workers or not self._role_ready:
                return False
            self._busy += 1
            return True

    def _handle_inline(self, received: Received) -> tuple[Task | None, Exception | None]:
        try:
            with self._slots:
                return self._dispatch(received)
        finally:
            with self._busy_lock:
                self._busy -= 1

    def _prepare_reply(self, answer: Task, request: Received) -> Outgoing:
        """The handler's answer, to travel back over our own emulated uplink."""
        assert self.ctx is not None and self.config is not None
        tags = request.envelope.tags
        outgoing = prepare_task(
            answer,
            sender=self._name,
            sender_stage=self.config.stage,
            codec=self.config.options.compression,
            tags=tags,
            is_reply=True,
        )
        self.ctx.record_sender_spans(outgoing, tags)
        return outgoing

    def _set_uplink(self, rate_bps: float) -> None:
        self._shaper.set_rate(rate_bps)

    def _send(self, peer: str, outgoing: Outgoing, timeout: float | None = None) -> Task | None:
        incoming = self._links[peer].send(outgoing, timeout)
        if incoming is None:
            return None
        received = open_incoming(incoming)
        self._record_receive(received)
        return received.task

    def _record_receive(self, received: Received) -> None:
        if self.recorder is not None:
            record_received(self.recorder, received, self._name)

    # -- worker -------------------------------------------------------------------

    def _work(self) -> None:
        ctx, role = self.ctx, self.role
        assert ctx is not None and role is not None
        with self._exclusive():
            ready = self._guarded("setup", lambda: role.setup(ctx))
            self._role_ready = ready
        others = [
            threading.Thread(target=self._serve, args=(ready,), name=f"worker-{i}", daemon=True)
            for i in range(1, self._workers)
        ]
        for thread in others:
            thread.start()
        self._serve(ready)
        for thread in others:
            thread.join()
        with self._exclusive():  # an inline handler may still be running
            self._role_ready = False
            self._guarded("teardown", lambda: role.teardown(ctx))
        if self._sampler is not None:
            self._sampler.stop()
        if self._warm is not None:
            self._warm.stop()
        self._emit("stopped")
        self._stopped.set()

    def _serve(self, ready: bool) -> None:
        """One worker: take tasks from the inbox until the stop item, which it passes on."""
        while True:
            item = self._inbox.get()
            if item.received is None:
                self._inbox.put_control(item)  # every worker sees it
                return
            if ready:
                with self._slots:
                    self._handle(item)
            elif item.result is not None:  # after a failed setup, senders get an error, not a hang
                item.result.set_exception(RunError(f"'{self._name}' could not set up its role"))
            with self._busy_lock:
                self._busy -= 1

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold every handler slot: nothing else runs (setup and teardown)."""
        for _ in range(self._workers):
            self._slots.acquire()
        try:
            yield
        finally:
            for _ in range(self._workers):
                self._slots.release()

    def _handle(self, item: _Queued) -> None:
        assert item.received is not None
        answer, error = self._dispatch(item.received)
        if item.result is not None:
            if error is not None:
                item.result.set_exception(error)
            else:
                item.result.set_result(answer)

    def _dispatch(self, received: Received) -> tuple[Task | None, Exception | None]:
        """Run the role's handler for one task: its answer (a Task or None), or the error it raised."""
        assert self.ctx is not None and self.role is not None and self.recorder is not None
        task, envelope = received.task, received.envelope
        # How long the task waited in the inbox (or for a free worker) before its handler began.
        attrs: dict[str, str | int | float | bool] = {"task": task_name(task), "from": envelope.sender}
        self.recorder.add_span("queue", received.decoded_ns, now_ns(), envelope.tags, attrs=attrs)
        with self.ctx.tagged(envelope.tags):
            try:
                result = self._run_handler(task, envelope.tags, envelope.sender)
            except Exception as exc:
                role = type(self.role).__name__
                self._fail(f"{role} of '{self._name}' failed on {task_name(task)}: {describe(exc)}", exc)
                return None, exc
        return (result if isinstance(result, Task) else None), None

    def _run_handler(self, task: Task, tags: Tags, sender: str) -> Any:
        assert self.ctx is not None and self.role is not None and self.recorder is not None
        handler = self.role.handler_for(task)
        if handler is None:
            raise UserCodeError(
                f"role {type(self.role).__name__} has no handler for {task_name(task)} (sent by {sender})"
            )
        attrs: dict[str, str | int | float | bool] = {"task": task_name(task)}
        if tags.warmup:
            attrs["warmup"] = True
        with self.recorder.span("handle", inference=tags.inference, split=tags.split, attrs=attrs):
            return handler(task, self.ctx)

    def _guarded(self, hook: str, call: Any) -> bool:
        try:
            call()
            return True
        except Exception as exc:
            self._fail(f"{hook} of '{self._name}' failed: {describe(exc)}", exc)
            return False

    # -- events -------------------------------------------------------------------

    @property
    def _name(self) -> str:
        return self.config.name if self.config else ""

    def _emit(self, kind: str, **fields: Any) -> None:
        self._events.put(Event(kind=kind, participant=self._name, time_ns=now_ns(), **fields))

    def _fail(self, message: str, exc: BaseException) -> None:
        """Report a failure: the user's frames to the controller, every frame to our log (stderr)."""
        full = full_traceback(exc)
        sys.stderr.write(f"{message}\n{full}\n")
        sys.stderr.flush()
        self._emit(
            "error",
            message=message,
            traceback=user_traceback(exc),
            debug_traceback=full,
            caused_by=_failed_peer(exc),
        )

    def _span_events(self) -> Iterator[bytes]:
        if self.recorder is None:
            return
        spans, metrics = self.recorder.drain(), self.recorder.drain_metrics()
        if self._sampler is not None:
            metrics += self._sampler.drain()
        if spans or metrics:
            yield encode(Event(kind="spans", participant=self._name, spans=spans, metrics=metrics))

    def _watchdog(self) -> None:
        """Exit if the controller is gone, so no participant outlives its run (see lifeline.py)."""
        while not self._stopped.wait(WATCHDOG_INTERVAL_S):
            why = self._lifeline.gone()
            if why is None and self._watchers == 0 and time.monotonic() - self._last_watch > ORPHAN_TIMEOUT_S:
                why = f"no controller for {ORPHAN_TIMEOUT_S:.0f} s"
            if why is not None:
                with contextlib.suppress(Exception):  # a full disk under the log must not keep us alive
                    sys.stderr.write(f"splittracer participant: {why}, exiting\n")
                    sys.stderr.flush()
                if self._on_orphaned is not None:
                    with contextlib.suppress(Exception):  # exiting matters more than tidying up
                        self._on_orphaned()
                os._exit(3)


def _clock(_request: bytes, _context: Any) -> bytes:
    """Our span clock, for the controller's offset estimate."""
    return now_ns().to_bytes(8, "little", signed=True)


def host_info(name: str) -> ParticipantInfo:
    """Facts about this process and host."""
    enforced = enforced_limits()
    return ParticipantInfo(
        name=name,
        pid=os.getpid(),
        hostname=socket.gethostname(),
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
        python=platform.python_version(),
        torch=str(torch.__version__),
        splittracer=__version__,
        cpu_model=cpu_model(),
        cpu_count=os.cpu_count() or 0,
        cpu_enforced=enforced.cpu or 0.0,
        memory_enforced=enforced.memory_bytes or 0,
        cpu_enforced_by=enforced.cpu_by,
    )


def _failed_peer(exc: BaseException) -> str:
    """The peer whose failure ``exc`` is a consequence of (through causes and contexts), or ''."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, PeerError):
            return current.peer
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return ""


def _error_reply(exc: BaseException) -> Reply:
    text = exc.render() if isinstance(exc, SplitTracerError) else f"{type(exc).__name__}: {exc}"
    return Reply(ok=False, error=text, traceback=traceback.format_exc(), error_kind=type(exc).__name__)
