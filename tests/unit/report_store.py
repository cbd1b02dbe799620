"""A hand-made run shaped like a real two-device sweep, for report tests (unit and browser)."""

from __future__ import annotations

from typing import Any

from splittracer.metrics import ControllerHost, Metric, ParticipantRecord, ResultsStore, RunRecord, Span

MS = 1_000_000
LAYERS = ["conv1", "relu1", "pool1", "fc"]
SPLIT_BYTES = [60_000, 80_000, 80_000, 20_000, 4_000]
HEAD_MS = [0.0, 2.0, 3.0, 5.0, 8.0]
TAIL_MS = [6.0, 5.0, 4.0, 2.0, 0.0]
MANIFEST = "name: neurosurgeon\nmodel: {source: toy}\nparticipants: {phone: {}, cloud: {}}\n"
INFERENCES_PER_SPLIT = 3  # after one warm-up each


def metadata(**extra: Any) -> RunRecord:
    facts: dict[str, Any] = {"hostname": "host-a", "python": "3.11.7", "torch": "2.14.1", "pid": 1234}
    return RunRecord(
        layers=tuple(LAYERS),
        split_bytes=tuple(SPLIT_BYTES),
        controller=ControllerHost(hostname="laptop", splittracer="0.1.0", torch="2.14.1"),
        participants={
            "phone": ParticipantRecord(**facts, torch_threads=1),
            "cloud": ParticipantRecord(**facts, torch_threads=2),
        },
        **extra,
    )


class _Spans:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.spans: list[Span] = []

    def add(self, who: str, kind: str, start: int, ms: float, **fields: Any) -> int:
        end = start + round(ms * MS)
        stage = 0 if who == "phone" else 1
        self.spans.append(
            Span(
                run_id=self.run_id,
                participant=who,
                stage=stage,
                kind=kind,
                start_ns=start,
                end_ns=end,
                **fields,
            )
        )
        return end


def inference_spans(
    run_id: str, split: int, index: int, start: int, jitter: float, *, warmup: bool, single_layers: bool
) -> list[Span]:
    """One inference at ``split`` (head, serialise, transfer, tail, reply) as the built-in roles record it."""
    s = _Spans(run_id)
    tags: dict[str, Any] = {"inference": index, "split": split}
    warm: dict[str, Any] = {"warmup": True} if warmup else {}
    nbytes = SPLIT_BYTES[split]
    t = start
    if split > 0 and (single_layers or split > 1):
        t = s.add(
            "phone", "compute", t, HEAD_MS[split] * jitter, start_layer=0, end_layer=split, attrs=warm, **tags
        )
    sent = t
    t = s.add("phone", "serialize", t, 0.2, bytes_raw=nbytes, attrs=warm, **tags)
    arrived = t + round(nbytes / 10_000 * jitter * MS)
    t = s.add("cloud", "receive", arrived, 0.1, bytes_wire=nbytes, attrs=warm, **tags)
    t = s.add("cloud", "deserialize", t, 0.1, bytes_raw=nbytes, attrs=warm, **tags)
    fwd = {**warm, "from": "phone", "to": "cloud", "direction": "forward", "clock_uncertainty_ns": 150_000}
    s.add("cloud", "transfer", sent, (t - sent) / MS, bytes_raw=nbytes, bytes_wire=nbytes, attrs=fwd, **tags)
    handled = t
    if split < len(LAYERS) and (single_layers or split < len(LAYERS) - 1):
        tail = TAIL_MS[split] * jitter
        t = s.add("cloud", "compute", t, tail, start_layer=split, end_layer=len(LAYERS), attrs=warm, **tags)
    replied = t
    t = s.add("cloud", "serialize", t, 0.1, bytes_raw=40, attrs=warm, **tags)
    s.add("cloud", "handle", handled, (t - handled) / MS, attrs={**warm, "task": "Layers"}, **tags)
    t = s.add("phone", "receive", t + round(0.5 * MS), 0.05, bytes_wire=40, attrs=warm, **tags)
    t = s.add("phone", "deserialize", t, 0.05, bytes_raw=40, attrs=warm, **tags)
    back = {**warm, "from": "cloud", "to": "phone", "direction": "reply", "clock_uncertainty_ns": 150_000}
    s.add("phone", "transfer", replied, (t - replied) / MS, bytes_raw=40, bytes_wire=40, attrs=back, **tags)
    s.add("phone", "send", sent, (t - sent) / MS, bytes_raw=nbytes, attrs={**warm, "to": "cloud"}, **tags)
    s.add("phone", "inference", start, (t + MS - start) / MS, attrs=warm, **tags)
    return s.spans


def sweep(run_id: str, *, single_layers: bool = True) -> tuple[list[Span], int, int]:
    """Every split with one warm-up and three measured inferences; returns spans, first and last ns."""
    spans: list[Span] = []
    start = first = 1_000 * MS
    index = 0
    for split in range(len(LAYERS) + 1):
        for j, jitter in enumerate((3.0, 1.0, 1.2, 0.9)):
            spans += inference_spans(
                run_id, split, index, start, jitter, warmup=j == 0, single_layers=single_layers
            )
            index += 1
            start += 100 * MS
    return spans, first, start


def system_metrics(run_id: str, first: int, last: int) -> list[Metric]:
    """Samples every 50 ms from just before the first span to just after the last, like the sampler."""
    samples = []
    for who, base_cpu in (("phone", 80.0), ("cloud", 40.0)):
        t, i = first - 100 * MS, 0
        while t < last + 100 * MS:
            common: dict[str, Any] = {"run_id": run_id, "participant": who, "time_ns": t}
            samples += [
                Metric(name="cpu_process_percent", value=base_cpu + (i % 5), **common),
                Metric(name="cpu_system_percent", value=base_cpu / 2 + (i % 3), **common),
                Metric(name="rss_bytes", value=300e6 + i * 1e5, **common),
                Metric(
                    name="temperature_c",
                    value=45.0 + (i % 7) / 2,
                    attrs={"sensor": "cpu/thermal_zone0"},
                    **common,
                ),
            ]
            t, i = t + 50 * MS, i + 1
    return samples


def energy_metrics(run_id: str, first: int, last: int) -> list[Metric]:
    """The phone's Jetson rail (5 W) and RAPL package counter (12 W), every 50 ms."""
    samples = []
    t, joules = first - 100 * MS, 0.0
    while t < last + 100 * MS:
        common: dict[str, Any] = {"run_id": run_id, "participant": "phone", "time_ns": t}
        samples.append(Metric(name="power_w", value=5.0, attrs={"domain": "jetson/VDD_IN"}, **common))
        samples.append(Metric(name="energy_j", value=joules, attrs={"domain": "rapl/package-0"}, **common))
        t, joules = t + 50 * MS, joules + 12.0 * 0.05
    return samples


def make_run(
    store: ResultsStore,
    *,
    system: bool = True,
    energy: bool = True,
    single_layers: bool = True,
    experiment: str = "neurosurgeon",
    manifest: str = MANIFEST,
    **extra_metadata: Any,
) -> str:
    """A finished run with a full sweep, and system metrics and energy readings when asked."""
    run_id = store.create_run(experiment, manifest, metadata(**extra_metadata))
    spans, first, last = sweep(run_id, single_layers=single_layers)
    store.append_spans(run_id, spans)
    if system:
        store.append_metrics(run_id, system_metrics(run_id, first, last))
    if energy:
        store.append_metrics(run_id, energy_metrics(run_id, first, last))
    store.finish_run(run_id, "succeeded")
    return run_id
