"""The concrete ``ctx`` a role's handlers receive on a participant.

It is the only way user code touches the run: send tasks to peers, wait for
replies, run layers of the model through the split engine, tag and time
inferences, record metrics, report progress, finish the run. Everything it
does is measured without the user writing any measuring code.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, overload

import torch

from ..clock import now_ns
from ..errors import RunError, SplitError, SplitTracerError, UserCodeError
from ..metrics.spans import inference_id
from ..metrics.system import recent_cpu_freq_mhz
from ..roles import Tensors
from ..split.model import SplitModel
from ..split.parts import Part
from ..tasks import Task, task_name
from ..wire.codecs import CODECS, codec_problem
from ..wire.envelope import Outgoing, Tags
from ..wire.messages import RunConfig, RunOptions
from .delivery import prepare_task
from .inputs import InputSource
from .recorder import TaggedRecorder
from .warm import KeepWarm

SendFn = Callable[[str, Outgoing, "float | None"], "Task | None"]


class ParticipantContext:
    """One participant's view of a run (see :class:`splittracer.roles.Context`)."""

    def __init__(
        self,
        config: RunConfig,
        recorder: TaggedRecorder,
        send: SendFn,
        emit: Callable[..., None],
        model: SplitModel | None = None,
        inputs: InputSource | None = None,
        set_uplink: Callable[[float], None] | None = None,
    ) -> None:
        self._config = config
        self._set_uplink = set_uplink
        self._recorder = recorder
        self._send = send
        self._emit = emit
        self._model = model
        self._inputs = inputs
        self._parts: dict[tuple[int, int, bool | None], Part] = {}
        self._placed: dict[tuple[str, int], Part] = {}
        self._local = threading.local()
        self._computed_ns = now_ns()  # when this participant last finished computing (or started)
        self.keep_warm: KeepWarm | None = None  # set by the runtime for ``keep_warm: true``

    # -- who and where -------------------------------------------------------

    @property
    def participant(self) -> str:
        """This participant's name in the manifest."""
        return self._config.name

    @property
    def stage(self) -> int:
        """Position in the manifest's participant list (0 = first device)."""
        return self._config.stage

    @property
    def peers(self) -> Sequence[str]:
        """Names of the other participants (each replica by its own name)."""
        return [p for p in self._config.peers if p != self._config.name]

    @property
    def run_id(self) -> str:
        """Id of the current run."""
        return self._config.run_id

    @property
    def params(self) -> Mapping[str, Any]:
        """The participant's ``params`` from the manifest."""
        return self._config.params

    @property
    def options(self) -> RunOptions:
        """The run's options: repeats, warmup, compression, seed."""
        return self._config.options

    # -- the model -------------------------------------------------------------

    @property
    def model(self) -> SplitModel:
        """The experiment's model, captured and ready to split."""
        if self._model is None:
            raise SplitError("this experiment's manifest names no model", hint="Add a 'model:' section.")
        return self._model

    @property
    def num_layers(self) -> int:
        """L of the model: split points are 0..L."""
        return self.model.num_layers

    def example(self, index: int) -> torch.Tensor:
        """Input number ``index``: synthetic (seeded) or from the manifest's dataset."""
        if self._inputs is None:
            raise SplitError("this experiment's manifest names no model, so there are no inputs")
        return self._inputs.get(index)

    def label(self, index: int) -> int | None:
        """The label of input ``index`` (its class folder in the dataset); None when it has none."""
        return None if self._inputs is None else self._inputs.label(index)

    @overload
    def run_layers(self, start: int, end: int, *tensors: torch.Tensor, final: Literal[False]) -> Tensors: ...

    @overload
    def run_layers(self, start: int, end: int, *tensors: torch.Tensor, final: bool | None = None) -> Any: ...

    def run_layers(self, start: int, end: int, *tensors: torch.Tensor, final: bool | None = None) -> Any:
        """Run layers ``start+1..end`` on ``tensors``, recorded as a compute span.

        Returns the tuple of tensors live across cut ``end``, or the model's
        output when the part is ``final`` (default: ``end`` is the last layer).

        On an accelerator (the participant's ``torch_device``) the span
        includes copying the inputs there and waiting for the kernels to
        finish, so it measures what the device really took; the outputs stay
        on the device until they are sent (the copy back is then part of
        serializing them).
        """
        key = (start, end, final)
        part = self._parts.get(key)
        if part is None:
            part = self._parts[key] = self.model.part(start, end, final=final)
        try:
            return self._timed(part, start, end, tensors, {})
        except Exception as exc:
            explained = self._explained(exc, start, end, tensors)
            if explained is exc:
                raise
            raise explained from exc

    def _explained(
        self, exc: Exception, start: int, end: int, tensors: tuple[torch.Tensor, ...]
    ) -> Exception:
        """``exc`` of a part, with what its inputs should have been when they were not that:
        torch's own message (a matrix product's sizes) does not say that the sender ran
        another model or cut, which with a model per participant is the likely cause."""
        mismatch = None if isinstance(exc, SplitTracerError) else self.model.input_mismatch(start, tensors)
        if mismatch is None:
            return exc
        source = self._config.model.source if self._config.model is not None else "the model"
        return UserCodeError(
            f"layers {start + 1}..{end} of {source} ('{self.participant}') failed: "
            f"{type(exc).__name__}: {exc}; {mismatch}",
            hint="does the sender run the same model and cut? Each participant's model: 'experiment show'.",
        )

    def run_placed(self, placement: str, device: int, *tensors: torch.Tensor) -> Any:
        """Run one device's layers of ``placement`` (0: the first device's, 1: the rest), recorded
        as a compute span carrying ``attrs['placement']``; see :meth:`run_layers`."""
        part = self._placed.get((placement, device))
        if part is None:
            chain = placement.split("|")  # a chain: every device's layers but the last's
            parts = self.model.place_chain(chain) if len(chain) > 1 else self.model.place(placement)
            if not 0 <= device < len(parts):
                raise SplitError(f"placement {placement} has devices 0..{len(parts) - 1}, not {device}")
            for i, built in enumerate(parts):
                self._placed[placement, i] = built
            part = parts[device]
        return self._timed(part, part.start, part.end, tensors, {"placement": placement})

    def _timed(
        self,
        part: Part,
        start: int,
        end: int,
        tensors: tuple[torch.Tensor, ...],
        extra: dict[str, str | int | float | bool],
    ) -> Any:
        """Run ``part`` on ``tensors`` inside a compute span."""
        tags = self.tags
        attrs = {**_warmup(tags), **self._idle_attrs(), **extra}
        warm = self.keep_warm.paused() if self.keep_warm is not None else contextlib.nullcontext()
        try:
            with (
                warm,
                self._recorder.span(
                    "compute",
                    inference=tags.inference,
                    split=tags.split,
                    start_layer=start,
                    end_layer=end,
                    attrs=attrs,
                ) as span,
                torch.no_grad(),
            ):
                cpu_started = time.process_time()
                try:
                    return self._compute(part, tensors)
                finally:
                    # CPU time beside wall time: a throttled or contended participant's span
                    # is long for lack of CPU, not for more work, and this tells the two apart.
                    span.attrs["cpu_ms"] = (time.process_time() - cpu_started) * 1000
        finally:
            self._computed_ns = now_ns()

    def _compute(self, part: Part, tensors: tuple[torch.Tensor, ...]) -> Any:
        device = self.model.device
        if device.type == "cpu":
            return part(*tensors)
        result = part(*(t.to(device) for t in tensors))
        _synchronize(device)
        return result

    def _idle_attrs(self) -> dict[str, str | int | float | bool]:
        """How long this participant was idle before a compute span, and the CPU's MHz where readable.

        Read before the span starts, so the reading costs the span nothing; the
        MHz is the system sampler's last reading (at most 0.25 s old), since a
        new one costs up to 0.25 ms where ``/proc/cpuinfo`` must be parsed, a
        gap no span accounts for in every frame. A participant woken from idle
        computes slower (thread pools asleep, frequency scaling): ``idle_ms``
        lets results show it.
        """
        attrs: dict[str, str | int | float | bool] = {"idle_ms": (now_ns() - self._computed_ns) / 1e6}
        mhz = recent_cpu_freq_mhz()
        if mhz is not None:
            attrs["cpu_mhz"] = mhz
        return attrs

    # -- tagging ---------------------------------------------------------------

    @property
    def tags(self) -> Tags:
        """Trace tags of the work in progress on this thread."""
        return getattr(self._local, "tags", Tags())

    @contextlib.contextmanager
    def tagged(self, tags: Tags) -> Iterator[None]:
        """Attribute everything inside the block to ``tags`` (framework use)."""
        previous = self.tags
        self._local.tags = tags
        try:
            yield
        finally:
            self._local.tags = previous

    @contextlib.contextmanager
    def inference(
        self,
        index: int,
        *,
        split: int = -1,
        warmup: bool = False,
        attrs: Mapping[str, str | int | float | bool] | None = None,
        since_ns: int | None = None,
    ) -> Iterator[None]:
        """Time one end-to-end inference; spans inside (here and on peers) carry its id.

        ``attrs`` go on its ``inference`` span, e.g. ``{"uplink": "3g"}`` to
        group a sweep's inferences by the link they crossed. When several
        clients share the run, ``index`` is this client's sequence number and
        the id its spans carry is unique in the run
        (:func:`~splittracer.metrics.spans.inference_id`); the span names the client.
        """
        client = self._config.client
        tags = Tags(inference_id(client, index), split, warmup)
        extra: dict[str, str | int | float | bool] = {"client": self.participant} if client >= 0 else {}
        with (
            self.tagged(tags),
            self._recorder.span(
                "inference",
                inference=tags.inference,
                split=split,
                attrs={**(attrs or {}), **extra, **_warmup(tags)},
                since_ns=since_ns,
            ),
        ):
            yield

    @property
    def batch(self) -> tuple[int, float] | None:
        """The participant's ``batch:`` as (max requests, window in seconds); None without one."""
        config = self._config
        return (config.batch_max, config.batch_wait_s) if config.batch_max > 0 else None

    @contextlib.contextmanager
    def computing(self, start: int, end: int, **attrs: str | int | float | bool) -> Iterator[None]:
        """Time the block as a ``compute`` span of layers ``start+1..end`` of the inference in progress."""
        tags = self.tags
        with self._recorder.span(
            "compute",
            inference=tags.inference,
            split=tags.split,
            start_layer=start,
            end_layer=end,
            attrs={**attrs, **_warmup(tags)},
        ):
            yield

    @contextlib.contextmanager
    def waiting(self, *, since_ns: int | None = None) -> Iterator[None]:
        """Time the block as a ``queue`` span of the inference in progress."""
        tags = self.tags
        with self._recorder.span(
            "queue", inference=tags.inference, split=tags.split, attrs=_warmup(tags), since_ns=since_ns
        ):
            yield

    # -- messages --------------------------------------------------------------

    def send(self, peer: str, task: Task, *, codec: str | None = None) -> None:
        """Deliver ``task`` to ``peer``'s inbox; returns once it arrived there.

        The emulated uplink (rate and latency) holds the sender for as long
        as a real link would. ``codec`` overrides ``options.compression``.
        """
        self._deliver(peer, task, expects_reply=False, codec=codec)

    def call(self, peer: str, task: Task, *, timeout: float = 600.0, codec: str | None = None) -> Task:
        """Send ``task`` to ``peer`` and wait for the task its handler returns."""
        reply = self._deliver(peer, task, expects_reply=True, timeout=timeout, codec=codec)
        if reply is None:
            raise RunError(f"'{peer}' handled {task_name(task)} but returned no task to reply with")
        return reply

    def set_uplink(self, rate_bps: float) -> None:
        """Change this participant's emulated uplink rate from now on (``math.inf``: no limit).

        Replays a bandwidth trace within one run, e.g. to watch ``split: adaptive``
        follow a drop; the latency stays as the manifest set it.
        """
        if self._set_uplink is None:
            raise RunError(f"'{self.participant}' cannot change its uplink: this context shapes no link")
        self._set_uplink(rate_bps)

    # -- reporting -------------------------------------------------------------

    def record(self, name: str, value: float, **attrs: object) -> None:
        """Record a custom metric, stored with the run and the inference (and split) in progress."""
        tags = self.tags
        plain = {k: v for k, v in attrs.items() if isinstance(v, (str, int, float, bool))}
        if tags.warmup:
            plain["warmup"] = True  # as on spans: summaries leave warm-up samples out
        self._recorder.metric(name, value, plain, inference=tags.inference, split=tags.split)

    def record_for(self, index: int, split: int, name: str, value: float, **attrs: object) -> None:
        """Record a metric of inference ``index`` at ``split`` once it ended (no time is added to it)."""
        plain = {k: v for k, v in attrs.items() if isinstance(v, (str, int, float, bool))}
        self._recorder.metric(name, value, plain, inference=index, split=split)

    def progress(self, done: int, total: int, label: str = "") -> None:
        """Tell the controller how far this participant is (drives the progress bar)."""
        self._emit("progress", done=done, total=total, label=label)

    def log(self, message: str) -> None:
        """A line for the controller's log."""
        self._emit("log", message=message)

    def finish(self, *, everyone: bool = False) -> None:
        """This participant is done: the run ends once every participant with a playbook is.

        A participant without a playbook (or ``everyone=True``) ends the run
        for everyone at once: the controller stops every participant and saves the results.
        """
        self._emit("finished", everyone=everyone)

    def resolve_peer(self, peer: str) -> str:
        """The participant a name reaches: ``peer`` itself, or for a replicated group one of
        its replicas (this participant's replica index modulo the group's size)."""
        members = self._config.groups.get(peer)
        if not members:
            return peer
        return members[self._config.replica % len(members)]

    # -- internals -----------------------------------------------------------

    def _deliver(
        self,
        peer: str,
        task: Task,
        *,
        expects_reply: bool,
        timeout: float | None = None,
        codec: str | None = None,
    ) -> Task | None:
        peer = self.resolve_peer(peer)
        if peer not in self._config.peers or peer == self.participant:
            known = ", ".join(sorted(self.peers))
            raise RunError(f"'{self.participant}' has no peer named '{peer}' (peers: {known})")
        tags = self.tags
        outgoing = prepare_task(
            task,
            sender=self.participant,
            sender_stage=self.stage,
            codec=self._config.options.compression if codec is None else _known_codec(codec),
            tags=tags,
            expects_reply=expects_reply,
        )
        self.record_sender_spans(outgoing, tags)
        started = now_ns()
        reply = self._send(peer, outgoing, timeout)
        # For a call, "send" lasts until the reply is back: it contains the peer's work.
        attrs: dict[str, str | int | float | bool] = {"to": peer, "call": expects_reply}
        attrs["codec"] = outgoing.envelope.codec
        self._recorder.add_span(
            "send",
            started,
            now_ns(),
            tags,
            bytes_raw=outgoing.bytes_raw,
            bytes_wire=outgoing.bytes_wire,
            attrs=attrs,
        )
        return reply

    def record_sender_spans(self, outgoing: Outgoing, tags: Tags) -> None:
        """Serialize and compress spans of a message this participant sends (framework use)."""
        self._recorder.add_span("serialize", *outgoing.serialize_ns, tags, bytes_raw=outgoing.bytes_raw)
        if outgoing.envelope.codec != "none":
            self._recorder.add_span(
                "compress",
                *outgoing.compress_ns,
                tags,
                bytes_raw=outgoing.bytes_raw,
                bytes_wire=outgoing.bytes_wire,
                attrs={"codec": outgoing.envelope.codec},
            )


def _known_codec(name: str) -> str:
    """``name`` if it names a codec; RunError saying which do otherwise."""
    problem = codec_problem(name)
    if problem is not None:
        raise RunError(f"{problem}; known codecs: {', '.join(CODECS)} (jpeg:Q and webp:Q take a quality)")
    return name


def _synchronize(device: torch.device) -> None:
    """Wait for the kernels queued on ``device``: they run asynchronously from Python."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _warmup(tags: Tags) -> dict[str, str | int | float | bool]:
    return {"warmup": True} if tags.warmup else {}
