"""The controller's side of a run: start, configure, feed, watch, record, tear down.

:func:`run_experiment` drives one run of a :class:`ResolvedRun` through a
:class:`Deployer`. Spans go into the results store as they arrive. The run
fails — with the reason, every span already recorded kept, and no process
left behind — when a handler raises, a participant exits or stops sending
heartbeats, or the run's deadline passes.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import platform
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import msgspec

from ..clock import now_ns
from ..deploy.base import Deployer, Deployment, describe_exit
from ..devices.limits import cpu_quota
from ..errors import RunError, SplitTracerError
from ..metrics.record import ClockRecord, ControllerHost, EnergySensors, ParticipantRecord, RunRecord
from ..metrics.spans import Metric
from ..metrics.store import INTERRUPTED_BY_USER, EndStatus, ResultsStore
from ..metrics.system import cpu_model
from ..participant.dataset import remote_dataset
from ..participant.delivery import prepare_task
from ..version import __version__, torch_version
from ..wire.grpc_path import deliver, open_channel
from ..wire.messages import Event, ParticipantInfo, PeerInfo, Reply, RunConfig, decoder, encode, method
from ..wire.tls import CONTROLLER, issue_run_certificates
from .clients import Clients
from .clocksync import ClockEstimate, estimate_offset, to_controller_clock
from .placement import deployer_for_plan
from .resolve import ResolvedParticipant, ResolvedRun

_log = logging.getLogger(__name__)

HEARTBEAT_TIMEOUT_S = 5.0
CLOCK_RESYNC_S = 10.0
RESYNC_TIMEOUT_S = 2.0  # a re-estimate during the run must never hold the health check longer
STOP_GRACE_S = 3.0
SILENT_GRACE_S = 1.0  # when a participant fell silent (see _teardown)
CAUSE_WAIT_S = 2.0  # how long a consequential error waits for the error of the peer it names
CONTROL_TIMEOUT_S = 120.0


@dataclass
class RunOutcome:
    """How a run ended."""

    run_id: str
    status: str
    error: str | None = None
    participants: dict[str, ParticipantInfo] = field(default_factory=dict)
    elapsed_s: float = 0.0


class RunObserver:
    """Receives progress while a run goes on; the CLI draws it, tests may record it."""

    def phase(self, text: str) -> None:
        """A step of setting up or tearing down."""

    def progress(self, participant: str, done: int, total: int, label: str) -> None:
        """A participant reported progress."""

    def log(self, participant: str, message: str) -> None:
        """A participant logged a line."""


@dataclass
class _Member:
    plan: ResolvedParticipant
    deployment: Deployment
    channel: grpc.Channel
    last_seen: float = field(default_factory=time.monotonic)
    last_sync: float = 0.0
    stopped: bool = False
    watch_done: bool = False
    silent: bool = False  # sent no heartbeat in time: unreachable (or hung), not asked to stop


def run_experiment(
    plan: ResolvedRun,
    store: ResultsStore,
    *,
    workspace: Path | None = None,
    deployer: Deployer | None = None,
    observer: RunObserver | None = None,
) -> RunOutcome:
    """Run ``plan`` once; the run and its spans are in ``store`` whatever happens.

    Without a ``deployer``, the one the plan's devices need is used, and local
    participants' logs are kept beside the store, in ``logs/RUN_ID/NAME.log``.
    """
    run = _Run(plan, store, observer or RunObserver(), workspace)
    run.deployer = deployer or deployer_for_plan(plan, workspace, log_dir=run_logs(store, run.run_id))
    try:
        return run.execute()
    finally:
        run.deployer.close()


def run_logs(store: ResultsStore, run_id: str) -> Path:
    """Where the participants of run ``run_id`` write their logs, beside the results store."""
    return store.path.parent / "logs" / run_id


class _Run:
    def __init__(
        self,
        plan: ResolvedRun,
        store: ResultsStore,
        observer: RunObserver,
        workspace: Path | None,
    ) -> None:
        self.plan, self.store, self.observer = plan, store, observer
        self.deployer: Deployer  # chosen once the run has an id (its logs are named by it)
        self.workspace = workspace
        self.members: dict[str, _Member] = {}
        self.events: queue.Queue[Event | tuple[str, BaseException]] = queue.Queue()
        self.info: dict[str, ParticipantInfo] = {}
        self.layers: tuple[str, ...] = ()
        self.split_bytes: tuple[int, ...] = ()
        self.split_tensors: tuple[int, ...] = ()
        self.clocks: dict[str, ClockEstimate] = {}
        self.energy: dict[str, dict[str, Any]] = {}
        self.accelerators: dict[str, str] = {}
        self.record = RunRecord.starting(_controller_facts(), plan.provenance)
        self.run_id = store.create_run(plan.experiment, plan.manifest_text, self.record)
        self.certificates = issue_run_certificates(self.run_id, [p.name for p in plan.participants])
        self.clients = Clients(plan.clients)

    def execute(self) -> RunOutcome:
        started = time.monotonic()
        error: str | None = None
        interrupted = False
        try:
            self._start_all()
            self._submit_playbook()
            self._wait()
        except SplitTracerError as exc:
            error = exc.render()
        except KeyboardInterrupt:
            error, interrupted = INTERRUPTED_BY_USER, True
        finally:
            self._teardown()
        status: EndStatus = "interrupted" if interrupted else "failed" if error else "succeeded"
        try:
            self.store.finish_run(self.run_id, status, error)
        except SplitTracerError as exc:  # e.g. the disk filled up: the run ends, the verdict says so
            why = exc.render()
            repeated = error is not None and why in error
            status, error = "failed", error if repeated else "\n".join(filter(None, [error, why]))
        return RunOutcome(self.run_id, status, error, self.info, time.monotonic() - started)

    # -- start ------------------------------------------------------------------

    def _start_all(self) -> None:
        self.observer.phase(f"starting {len(self.plan.participants)} participants")
        threads = [threading.Thread(target=self._start_one, args=(p,)) for p in self.plan.participants]
        failures: list[str] = []
        self._start_failures = failures
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            raise RunError("; ".join(failures))
        # Peers talk directly: a remote participant's peer address is not the controller's tunnel.
        peers = {
            m.plan.name: PeerInfo(
                m.deployment.peer_address,
                m.plan.stage,
                data_port=self.info[m.plan.name].data_port,
            )
            for m in self.members.values()
        }
        self.observer.phase("configuring participants (loading the model)")
        self._configure_all(peers)
        self.record = msgspec.structs.replace(
            self.record,
            layers=self.layers,
            split_bytes=self.split_bytes,
            split_tensors=self.split_tensors,
            launch={n: m.deployment.launch for n, m in self.members.items()},
            clocks={n: ClockRecord(c.offset_ns, c.uncertainty_ns, c.samples) for n, c in self.clocks.items()},
            participants={
                m.plan.name: _facts(
                    self.info[m.plan.name],
                    m.plan,
                    self.energy.get(m.plan.name, {}),
                    self.accelerators.get(m.plan.name, ""),
                    self.plan.model_source(m.plan),
                )
                for m in self.members.values()
            },
        )
        self.store.update_record(self.run_id, self.record)

    def _start_one(self, p: ResolvedParticipant) -> None:
        try:
            deployment = self.deployer.start(p.name, self.certificates[p.name])
        except SplitTracerError as exc:
            self._start_failures.append(exc.render())
            return
        channel = open_channel(deployment.address, p.name, self.certificates[CONTROLLER])
        member = _Member(p, deployment, channel)
        self.members[p.name] = member
        try:
            hello = channel.unary_unary(method("Hello"))(b"", timeout=CONTROL_TIMEOUT_S)
        except grpc.RpcError as exc:
            self._start_failures.append(f"participant '{p.name}' does not answer: {exc.details()}")
            return
        self.info[p.name] = decoder(ParticipantInfo).decode(hello)
        self._sync_clock(member)
        threading.Thread(target=self._watch, args=(member,), daemon=True).start()

    def _sync_clock(self, member: _Member, timeout: float = CONTROL_TIMEOUT_S) -> None:
        """Estimate the member's clock offset and keep it as a metric of the run."""
        clock = member.channel.unary_unary(method("Clock"))

        def read() -> int:
            return int.from_bytes(clock(b"", timeout=timeout), "little", signed=True)

        estimate = estimate_offset(read)
        self.clocks[member.plan.name] = estimate
        member.last_sync = time.monotonic()
        attrs: dict[str, str | int | float | bool] = {"uncertainty_ns": estimate.uncertainty_ns}
        samples = [
            Metric(
                run_id=self.run_id,
                participant=member.plan.name,
                name="clock_offset_ns",
                value=float(estimate.offset_ns),
                time_ns=now_ns(),
                attrs=attrs,
            ),
        ]
        self.store.append_metrics(self.run_id, samples)

    def _configure_all(self, peers: dict[str, PeerInfo]) -> None:
        errors: list[str] = []
        answers: dict[str, Reply] = {}  # from those with a model: its layers and split sizes

        def configure(member: _Member) -> None:
            config = self._config_for(member.plan, peers)
            try:
                raw = member.channel.unary_unary(method("Configure"))(
                    encode(config), timeout=CONTROL_TIMEOUT_S
                )
            except grpc.RpcError as exc:
                errors.append(f"configuring '{member.plan.name}' failed: {exc.details()}")
                return
            reply = decoder(Reply).decode(raw)
            if not reply.ok:
                errors.append(f"participant '{member.plan.name}' could not start its role: {reply.error}")
            else:
                self.energy[member.plan.name] = reply.energy
                self.accelerators[member.plan.name] = reply.accelerator
                if reply.layers:
                    answers[member.plan.name] = reply

        threads = [threading.Thread(target=configure, args=(m,)) for m in self.members.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            # A participant that died while loading the model (e.g. out of memory) is the cause.
            raise RunError(self._exited(grace_s=1.0) or "\n".join(errors))
        # The record keeps the first stage's model: the one the built-in split tasks cut.
        first = min(answers, key=lambda name: self.members[name].plan.stage, default=None)
        if first is not None:
            reply = answers[first]
            self.layers, self.split_bytes = tuple(reply.layers), tuple(reply.split_bytes)
            self.split_tensors = tuple(reply.split_tensors)

    def _config_for(self, p: ResolvedParticipant, peers: dict[str, PeerInfo]) -> RunConfig:
        deployment = self.members[p.name].deployment
        remote_dir = deployment.workspace
        model = self.plan.model_of(p)
        if remote_dir and model is not None:
            # Files (and the dataset's folder) named by the manifest were uploaded beside the user code,
            # under their base names.
            model = msgspec.structs.replace(
                model,
                override=Path(model.override).name if model.override else None,
                weights=Path(model.weights).name if model.weights else None,
                dataset=remote_dataset(Path(model.dataset)) if model.dataset else None,
            )
        return RunConfig(
            run_id=self.run_id,
            name=p.name,
            stage=p.stage,
            role=p.role,
            peers=peers,
            options=self.plan.options,
            params=dict(p.params),
            model=model,
            threads=p.threads,
            torch_device=p.torch_device,
            uplink_bps=p.uplink_bps,
            latency_s=p.latency_s,
            keep_warm=p.keep_warm,
            workers=p.workers,
            batch_max=p.batch_max,
            batch_wait_s=p.batch_wait_s,
            groups=self.plan.groups,
            replica=p.replica,
            client=self.plan.client_index(p.name),
            workspace=remote_dir or (str(self.workspace) if self.workspace else None),
        )

    def _submit_playbook(self) -> None:
        self.observer.phase("running")
        for name, task in self.plan.playbook:
            outgoing = prepare_task(task, sender="controller", sender_stage=-1)
            raw = deliver(self.members[name].channel, outgoing, timeout=CONTROL_TIMEOUT_S)
            reply = decoder(Reply).decode(raw)
            if not reply.ok:
                raise RunError(f"participant '{name}' refused its playbook task: {reply.error}")

    # -- watch --------------------------------------------------------------------

    def _watch(self, member: _Member) -> None:
        events = decoder(Event)
        try:
            for raw in member.channel.unary_stream(method("Watch"))(b""):
                self.events.put(events.decode(raw))
        except grpc.RpcError as exc:
            if not member.stopped:
                self.events.put((member.plan.name, exc))
        finally:
            member.watch_done = True

    def _wait(self) -> None:
        deadline = time.monotonic() + self.plan.timeout_s
        while True:
            timeout = 0.2
            while (kind := self._next_event(timeout)) is not None:
                if kind == "finished" and self.clients.all_done:
                    self.clients.raise_failures()
                    return
                timeout = 0.0  # take everything queued before judging health
            self._check_health()
            if time.monotonic() > deadline:
                raise RunError(f"the run did not finish within its timeout of {self.plan.timeout_s:g} s")

    def _next_event(self, timeout: float) -> str | None:
        """Handle one event; its kind, or None when none came within ``timeout``."""
        try:
            item = self.events.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, tuple):
            return "broken"  # a broken Watch stream: the health check names the cause
        return self._handle(item)

    def _handle(self, event: Event) -> str:
        member = self.members.get(event.participant)
        if member is not None:
            member.last_seen = time.monotonic()
        if event.kind == "spans":
            self.store.append_spans(self.run_id, [to_controller_clock(s, self.clocks) for s in event.spans])
            self.store.append_metrics(self.run_id, [self._metric_on_our_clock(m) for m in event.metrics])
        elif event.kind == "progress":
            self.observer.progress(event.participant, event.done, event.total, event.label)
        elif event.kind == "log":
            self.observer.log(event.participant, event.message)
        elif event.kind == "finished":
            self.clients.finished(event.participant, everyone=event.everyone)
        elif event.kind == "error" and self.clients.failed(event.participant, _error_text(event)):
            _log_frames(event)  # one client of several failed: the others go on, the run reports it
            return "finished"
        elif event.kind == "error":
            _log_frames(event)
            # A consequence is named in one line after its cause, never with a second traceback.
            consequence = f"(then {_error_text(event, frames=False)})"
            # A peer that died makes its neighbours fail too; name the death as the cause.
            dead = self._exited(grace_s=0.5)
            if dead is not None:
                raise RunError(f"{dead}\n{consequence}")
            # A handler that failed because a peer's handler failed: the peer's error is the
            # cause, and its event may still be on the way (the two race to the controller).
            cause = self._error_from(event.caused_by, CAUSE_WAIT_S) if event.caused_by else None
            if cause is not None:
                raise RunError(f"{cause}\n{consequence}")
            raise RunError(_error_text(event))
        elif event.kind == "stopped" and member is not None:
            member.stopped = True
        return event.kind

    def _error_from(self, name: str, within_s: float) -> str | None:
        """Wait up to ``within_s`` for an error event of participant ``name``; its text, or None.

        Other events that come meanwhile are handled as usual (spans are kept).
        """
        deadline = time.monotonic() + within_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self.events.get(timeout=left)
            except queue.Empty:
                return None
            if isinstance(item, tuple):
                continue
            if item.kind == "error":
                if item.participant == name:
                    _log_frames(item)
                    return _error_text(item)
                continue
            self._handle(item)
        return None

    def _metric_on_our_clock(self, metric: Metric) -> Metric:
        estimate = self.clocks.get(metric.participant)
        if estimate is None:
            return metric
        return msgspec.structs.replace(metric, time_ns=metric.time_ns - estimate.offset_ns)

    def _exited(self, grace_s: float) -> str | None:
        """Why a participant is gone, waiting up to ``grace_s`` for an exit to show."""
        deadline = time.monotonic() + grace_s
        while True:
            for member in self.members.values():
                status = member.deployment.poll()
                if status is not None:
                    tail = member.deployment.output_tail()
                    return f"participant '{member.plan.name}' {describe_exit(status)} during the run" + (
                        f"; its last output:\n{tail}" if tail else ""
                    )
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def _check_health(self) -> None:
        now = time.monotonic()
        dead = self._exited(grace_s=0.0)
        if dead is not None:
            raise RunError(dead)
        for member in self.members.values():
            # Silence first: a member cut off from us would hold a clock re-estimate until it timed out.
            if now - member.last_seen > HEARTBEAT_TIMEOUT_S:
                member.silent = True
                raise RunError(
                    f"participant '{member.plan.name}' sent no heartbeat for {HEARTBEAT_TIMEOUT_S:g} s: "
                    "it became unreachable (its host or the network to it is down) or hung"
                )
        for member in self.members.values():
            if now - member.last_sync > CLOCK_RESYNC_S and member.deployment.poll() is None:
                with contextlib.suppress(grpc.RpcError):
                    self._sync_clock(member, RESYNC_TIMEOUT_S)  # clocks drift: re-estimate in long runs

    # -- teardown -----------------------------------------------------------------

    def _teardown(self) -> None:
        self.observer.phase("stopping participants")
        # A silent member answers nothing: it is not asked, not waited for, and stopped at once.
        # The others' work likely waits on it: their last spans need less grace than at a normal end.
        silent = [m for m in self.members.values() if m.silent]
        heard = [m for m in self.members.values() if not m.silent]
        stops = [threading.Thread(target=self._stop, args=(m,)) for m in silent]
        for thread in stops:
            thread.start()
        for member in heard:
            if member.deployment.poll() is None:
                with contextlib.suppress(grpc.RpcError):
                    member.channel.unary_unary(method("Shutdown"))(b"", timeout=2.0)
        deadline = time.monotonic() + (SILENT_GRACE_S if silent else STOP_GRACE_S)
        try:
            while time.monotonic() < deadline and not all(
                m.stopped or m.deployment.poll() is not None for m in heard
            ):
                self._drain_quietly(0.1)
        finally:  # whatever storing the last spans raised, no participant is left running
            stops += [threading.Thread(target=self._stop, args=(m,)) for m in heard]
            for thread in stops[len(silent) :]:
                thread.start()
            for thread in stops:
                thread.join()
        self._drain_quietly(0.0)

    def _stop(self, member: _Member) -> None:
        member.stopped = True
        member.deployment.stop(timeout=STOP_GRACE_S)
        member.channel.close()

    def _drain_quietly(self, timeout: float) -> None:
        """Keep storing spans during teardown; errors now add nothing to the verdict."""
        while True:
            try:
                item = self.events.get(timeout=timeout)
            except queue.Empty:
                return
            if isinstance(item, Event):
                with contextlib.suppress(SplitTracerError):
                    self._handle(item)
            timeout = 0.0


def _controller_facts() -> ControllerHost:
    return ControllerHost(
        hostname=platform.node(),
        user=getpass.getuser(),
        python=platform.python_version(),
        torch=torch_version(),
        splittracer=__version__,
        cpu_model=cpu_model(),
    )


def _log_frames(event: Event) -> None:
    """Every frame of a participant's error, SplitTracer's included, at debug level (``--debug``)."""
    if event.debug_traceback:
        _log.debug("participant '%s' failed:\n%s", event.participant, event.debug_traceback)


def _error_text(event: Event, *, frames: bool = True) -> str:
    """A participant's error event as the run's error text, with the user's frames unless ``frames`` is off.

    The participant already left SplitTracer's own frames out (they are in
    its log, and logged here at debug level for ``splittracer --debug``).
    """
    detail = f"\n{event.traceback.rstrip()}" if frames and event.traceback else ""
    return f"participant '{event.participant}': {event.message}{detail}"


def _facts(
    info: ParticipantInfo,
    plan: ResolvedParticipant,
    energy: dict[str, Any],
    accelerator: str,
    model: str,
) -> ParticipantRecord:
    return ParticipantRecord(
        model=model,
        energy=msgspec.convert(energy, EnergySensors),
        torch_threads=plan.threads,
        torch_device=plan.torch_device,
        accelerator=accelerator,
        uplink_bps=plan.uplink_bps,
        latency_s=plan.latency_s,
        cpu_limit=plan.cpu,
        cpu_period_us=cpu_quota(plan.cpu)[1] if plan.cpu else 0,
        memory_limit_bytes=plan.memory_bytes,
        keep_warm=plan.keep_warm,
        enforced_cpu=info.cpu_enforced or None,
        enforced_memory_bytes=info.memory_enforced or None,
        enforced_cpu_by=info.cpu_enforced_by,
        hostname=info.hostname,
        platform=info.platform,
        python=info.python,
        torch=info.torch,
        cpu_model=info.cpu_model,
        cpu_count=info.cpu_count,
        pid=info.pid,
    )
