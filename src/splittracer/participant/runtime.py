"""The participant process: a gRPC control server, a data plane, an inbox, and a worker.

Threads: gRPC's pool serves the controller's calls (and Deliver calls from a
peer that has no data port); the data plane (:mod:`.datalink`) has a thread
per connection from a peer. One worker thread takes tasks from the inbox,
highest priority first (arrival order among equals), and runs the role's
handler, so a role never sees two of its handlers at once; a call that finds
the participant idle runs on the thread it arrived on instead (see
``_claim_idle``). ``ctx.call`` may block the worker: the answer comes back
on the connection the call went out on, not through the inbox.
"""

from __future__ import annotations

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
from pathlib import Path
from typing import Any

import grpc
import msgspec
import torch

from ..clock import now_ns
from ..errors import DeviceError, PeerError, RunError, SplitTracerError, UserCodeError
from ..metrics.energy import EnergyProbe, probe_energy
from ..metrics.system import SystemSampler, cpu_model
from ..models import import_object
from ..roles import Role
from ..tasks import Task, decode_task, task_name
from ..version import __version__
from ..wire.datalink import Answer, DataLinks, DataListener, decode_frame, split_host_port
from ..wire.messages import Event, ParticipantInfo, Reply, RunConfig, decoder, encode
from ..wire.tls import TlsBundle
from ..wire.transport import (
    GRPC_OPTIONS,
    Incoming,
    LinkShaper,
    Outgoing,
    Tags,
    deliver,
    pack,
    prepare,
    receive,
    unpack,
)
from .context import ParticipantContext
from .inputs import InputSource
from .recorder import TaggedRecorder

FLUSH_INTERVAL_S = 0.1
HEARTBEAT_INTERVAL_S = 1.0
ORPHAN_TIMEOUT_S = 30.0


@dataclass(order=True)
class _Queued:
    priority: int
    seq: int
    incoming: Incoming | None = field(compare=False)  # None: stop the worker
    result: Future[Task | None] | None = field(default=None, compare=False)  # set when the sender waits


class Participant:
    """Serves one participant of one run; see the module docstring."""

    def __init__(self, tls: TlsBundle | None = None) -> None:
        self.tls = tls
        self.server: grpc.Server | None = None
        self.config: RunConfig | None = None
        self.ctx: ParticipantContext | None = None
        self.role: Role | None = None
        self.recorder: TaggedRecorder | None = None
        self._events: queue.Queue[Event] = queue.Queue()
        self._inbox: queue.PriorityQueue[_Queued] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._channels: dict[str, grpc.Channel] = {}
        self._links = DataLinks(tls)
        self._data_addresses: dict[str, tuple[str, int]] = {}  # peers with a data port (see _apply)
        self._data: DataListener | None = None
        self.data_port = 0
        self._shaper = LinkShaper()
        self._stopped = threading.Event()
        self._watchers = 0
        self._last_watch = time.monotonic()
        self._worker: threading.Thread | None = None
        # Tasks queued or being handled; a call that finds none runs inline (see _accept).
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._run_lock = threading.Lock()  # one handler at a time, on the worker or inline
        self._role_ready = False
        self._sampler: SystemSampler | None = None
        self._energy: EnergyProbe | None = None

    # -- server -------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start serving; returns the bound port."""
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=GRPC_OPTIONS)
        handlers = {
            "Hello": grpc.unary_unary_rpc_method_handler(self._hello),
            "Configure": grpc.unary_unary_rpc_method_handler(self._configure),
            "Watch": grpc.unary_stream_rpc_method_handler(self._watch),
            "Deliver": grpc.stream_unary_rpc_method_handler(
                lambda m, _c: self._accept_call(lambda: receive(m))
            ),
            "DeliverOne": grpc.unary_unary_rpc_method_handler(
                lambda m, _c: self._accept_call(lambda: unpack(m))
            ),
            "Shutdown": grpc.unary_unary_rpc_method_handler(self._shutdown),
            "Clock": grpc.unary_unary_rpc_method_handler(_clock),
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
        self._links.close()
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
        self._data_addresses = {
            name: (split_host_port(peer.address)[0], peer.data_port)
            for name, peer in config.peers.items()
            if peer.data_port
        }
        if config.threads:
            torch.set_num_threads(config.threads)
        self._shaper = LinkShaper(config.uplink_bps, config.latency_s)
        self.recorder = TaggedRecorder(config.run_id, config.name, config.stage, clock=now_ns)
        role_class = _import_role(config.role, config.workspace)
        model, inputs = _load_model(config)
        self.ctx = ParticipantContext(
            config, self.recorder, self._send, self._emit, model, inputs, set_uplink=self._set_uplink
        )
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

    def _watch(self, _request: bytes, context: Any) -> Iterator[bytes]:
        self._watchers += 1
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
        if self._worker is None:
            self._emit("stopped")
            self._stopped.set()
        else:
            self._inbox.put(_Queued(-(1 << 30), next(self._seq), None))
        return encode(Reply())

    # -- data plane -----------------------------------------------------------------

    def _accept_call(self, read: Callable[[], Incoming]) -> bytes:
        """A task that came over gRPC: the answer on the call's response, a reply task packed in it."""
        reply, outgoing = self._accept(read)
        if outgoing is not None:
            reply = msgspec.structs.replace(reply, payload=pack(outgoing, self._shaper))
        return encode(reply)

    def _accept(self, read: Callable[[], Incoming]) -> Answer:
        """Take a task (over gRPC or the data plane): queue it, or run it here; what to answer."""
        try:
            incoming = read()
        except Exception as exc:
            self._emit(
                "error", message=f"'{self._name}' rejected a task: {exc}", traceback=traceback.format_exc()
            )
            return _error_reply(exc), None
        self._record_receive(incoming)
        priority = incoming.task.priority
        if not incoming.envelope.expects_reply:
            self._enqueue(_Queued(-priority, next(self._seq), incoming))
            return Reply(), None
        if self._claim_idle():
            return self._answer(incoming, *self._handle_inline(incoming))
        result: Future[Task | None] = Future()
        self._enqueue(_Queued(-priority, next(self._seq), incoming, result))
        try:
            answer = result.result()
        except Exception as exc:
            return _error_reply(exc), None
        return self._answer(incoming, answer, None)

    def _answer(self, incoming: Incoming, answer: Task | None, error: Exception | None) -> Answer:
        if error is not None:
            return _error_reply(error), None
        return Reply(), (self._prepare_reply(answer, incoming) if answer is not None else None)

    def _enqueue(self, item: _Queued) -> None:
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
            if self._busy or not self._role_ready:
                return False
            self._busy = 1
            return True

    def _handle_inline(self, incoming: Incoming) -> tuple[Task | None, Exception | None]:
        try:
            with self._run_lock:
                return self._dispatch(incoming)
        finally:
            with self._busy_lock:
                self._busy -= 1

    def _prepare_reply(self, answer: Task, request: Incoming) -> Outgoing:
        """The handler's answer, to travel back over our own emulated uplink."""
        assert self.ctx is not None and self.config is not None
        tags = request.envelope.tags
        outgoing = prepare(
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
        assert self.config is not None
        data_address = self._data_addresses.get(peer)
        try:
            if data_address is not None:
                reply, frame = self._links.exchange(peer, data_address, outgoing, self._shaper, timeout)
                incoming = decode_frame(frame) if frame is not None else None
            else:
                reply, incoming = self._send_over_grpc(
                    peer, self.config.peers[peer].address, outgoing, timeout
                )
        except (OSError, grpc.RpcError) as exc:
            detail = exc.details() if isinstance(exc, grpc.RpcError) else str(exc) or type(exc).__name__
            raise PeerError(f"cannot reach '{peer}': {detail}", peer=peer) from exc
        if not reply.ok:
            raise PeerError(f"'{peer}' failed on {task_name_of(outgoing)}: {reply.error}", peer=peer)
        if incoming is None:
            return None
        self._record_receive(incoming)
        return incoming.task

    def _send_over_grpc(
        self, peer: str, address: str, outgoing: Outgoing, timeout: float | None
    ) -> tuple[Reply, Incoming | None]:
        channel = self._channels.get(peer)
        if channel is None:
            channel = self._channels[peer] = open_channel(address, peer, self.tls)
        reply = decoder(Reply).decode(deliver(channel, outgoing, self._shaper, timeout))
        return reply, (unpack(reply.payload) if reply.payload else None)

    def _record_receive(self, incoming: Incoming) -> None:
        if self.recorder is None:
            return
        env = incoming.envelope
        raw, wire = sum(env.raw_sizes), sum(env.wire_sizes) + len(env.task_header)
        add = self.recorder.add_span
        add("receive", incoming.first_chunk_ns, incoming.received_ns, env.tags, bytes_wire=wire)
        if env.codec != "none":
            add("decompress", incoming.received_ns, incoming.decompressed_ns, env.tags, bytes_raw=raw)
        add("deserialize", incoming.decompressed_ns, incoming.decoded_ns, env.tags, bytes_raw=raw)
        direction = "reply" if env.is_reply else "forward"
        attrs: dict[str, str | int | float | bool] = {
            "from": env.sender,
            "to": self._name,
            "direction": direction,
            "via": incoming.via,
        }
        add(
            "transfer",
            env.sent_ns,
            incoming.decoded_ns,
            env.tags,
            stage=env.sender_stage,
            bytes_raw=raw,
            bytes_wire=wire,
            attrs=attrs,
        )

    # -- worker -------------------------------------------------------------------

    def _work(self) -> None:
        ctx, role = self.ctx, self.role
        assert ctx is not None and role is not None
        with self._run_lock:
            ready = self._guarded("setup", lambda: role.setup(ctx))
            self._role_ready = ready
        while True:
            item = self._inbox.get()
            if item.incoming is None:
                break
            if ready:
                with self._run_lock:
                    self._handle(item)
            elif item.result is not None:  # after a failed setup, senders get an error, not a hang
                item.result.set_exception(RunError(f"'{self._name}' could not set up its role"))
            with self._busy_lock:
                self._busy -= 1
        with self._run_lock:  # an inline handler may still be running
            self._role_ready = False
            self._guarded("teardown", lambda: role.teardown(ctx))
        if self._sampler is not None:
            self._sampler.stop()
        self._emit("stopped")
        self._stopped.set()

    def _handle(self, item: _Queued) -> None:
        assert item.incoming is not None
        answer, error = self._dispatch(item.incoming)
        if item.result is not None:
            if error is not None:
                item.result.set_exception(error)
            else:
                item.result.set_result(answer)

    def _dispatch(self, incoming: Incoming) -> tuple[Task | None, Exception | None]:
        """Run the role's handler for one task: its answer (a Task or None), or the error it raised."""
        assert self.ctx is not None and self.role is not None and self.recorder is not None
        task, envelope = incoming.task, incoming.envelope
        with self.ctx.tagged(envelope.tags):
            try:
                result = self._run_handler(task, envelope.tags, envelope.sender)
            except Exception as exc:
                self._emit(
                    "error",
                    message=f"{type(self.role).__name__} of '{self._name}' failed on "
                    f"{task_name(task)}: {exc!r}",
                    traceback=traceback.format_exc(),
                    caused_by=_failed_peer(exc),
                )
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
            self._emit(
                "error", message=f"{hook} of '{self._name}' failed: {exc!r}", traceback=traceback.format_exc()
            )
            return False

    # -- events -------------------------------------------------------------------

    @property
    def _name(self) -> str:
        return self.config.name if self.config else ""

    def _emit(self, kind: str, **fields: Any) -> None:
        self._events.put(Event(kind=kind, participant=self._name, time_ns=now_ns(), **fields))

    def _span_events(self) -> Iterator[bytes]:
        if self.recorder is None:
            return
        spans, metrics = self.recorder.drain(), self.recorder.drain_metrics()
        if self._sampler is not None:
            metrics += self._sampler.drain()
        if spans or metrics:
            yield encode(Event(kind="spans", participant=self._name, spans=spans, metrics=metrics))

    def _watchdog(self) -> None:
        """Exit if the controller is gone, so no participant outlives its run."""
        while not self._stopped.wait(1.0):
            if self._watchers == 0 and time.monotonic() - self._last_watch > ORPHAN_TIMEOUT_S:
                sys.stderr.write(
                    f"splittracer participant: no controller for {ORPHAN_TIMEOUT_S:.0f} s, exiting\n"
                )
                os._exit(3)


def open_channel(address: str, peer: str, tls: TlsBundle | None) -> grpc.Channel:
    """A channel to ``peer``: mutual TLS when the run has certificates."""
    if tls is None:
        return grpc.insecure_channel(address, options=GRPC_OPTIONS)
    return tls.channel(address, peer, list(GRPC_OPTIONS))


def _clock(_request: bytes, _context: Any) -> bytes:
    """Our span clock, for the controller's offset estimate."""
    return now_ns().to_bytes(8, "little", signed=True)


def task_name_of(outgoing: Outgoing) -> str:
    """Type name of an outgoing task (for error messages)."""
    try:
        return task_name(decode_task(outgoing.envelope.task_header, [bytearray(b) for b in outgoing.buffers]))
    except Exception:
        return "a task"


def host_info(name: str) -> ParticipantInfo:
    """Facts about this process and host."""
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
    )


def _import_role(spec: str, workspace: str | None) -> type[Role]:
    if workspace and workspace not in sys.path:
        sys.path.insert(0, workspace)
    if workspace and (Path(workspace) / "tasks.py").exists():
        import_object("tasks", "__name__")
    module, _, attr = spec.partition(":")
    role = import_object(module, attr)
    if not (isinstance(role, type) and issubclass(role, Role)):
        raise UserCodeError(f"'{spec}' is not a Role subclass")
    return role


def _load_model(config: RunConfig) -> tuple[Any, InputSource | None]:
    if config.model is None:
        return None, None
    from ..split.load import load_split_model

    m = config.model
    loaded = load_split_model(
        m.source,
        input_shape=tuple(m.input_shape) if m.input_shape else None,
        granularity=m.granularity,
        override=m.override,
        weights=m.weights,
        seed=config.options.seed,
        device=torch_device(config.torch_device, config.name),
    )
    return loaded.split, InputSource(loaded.spec.input_shape, seed=config.options.seed, dataset=m.dataset)


def torch_device(name: str, participant: str) -> torch.device:
    """The torch device a participant computes on, refused clearly when this host lacks it."""
    device = torch.device(name)
    host = socket.gethostname()
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(
                f"participant '{participant}' asks for torch_device '{name}', "
                f"but torch {torch.__version__} on {host} sees no CUDA device",
                hint="Give it a device with a GPU (`splittracer device ls` shows which have CUDA), "
                "or drop torch_device from the manifest to compute on the CPU.",
            )
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"participant '{participant}' asks for torch_device '{name}', but {host} has "
                f"{count} CUDA device(s): cuda:0..cuda:{count - 1}",
                hint="Use one of those indices.",
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(
            f"participant '{participant}' asks for torch_device 'mps', but torch on {host} has no MPS",
            hint="MPS needs a Mac with Apple silicon; drop torch_device to compute on the CPU.",
        )
    return device


def accelerator_name(device: torch.device) -> str:
    """A readable name of the accelerator behind ``device`` ('' for the CPU)."""
    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    return "Apple MPS" if device.type == "mps" else ""


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
