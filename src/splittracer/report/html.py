"""The self-contained HTML report of one run.

One file that opens with no network: every chart is inline SVG (made by
matplotlib), the styling is inline CSS, there is no script. Next to it go a
PNG and an SVG of each figure, for papers. Sections:

* latency per split point (stacked medians with IQR error bars) and its table,
  with each hop's transfer and bytes along a chain of three or more;
* the metrics handlers recorded with ``ctx.record``, per split and attributes;
* for a run with ``Stream`` tasks: each stream's throughput against its
  pipeline bound, tail latency and queue waits, its latency CDF and, open
  loop, achieved against offered load; throughput and latency over time;
  the latency-throughput trade-off with its Pareto front (only when the run
  streamed; see :mod:`.streamhtml`);
* the per-layer profile (Neurosurgeon's figure): compute time of every layer
  on each participant (timed alone, or the difference of two parts a sweep
  timed, see :mod:`.layers`), and the output size of every layer;
* a timeline of one inference's spans across participants (by default the
  median-total inference of the fastest split);
* system metrics over time, and energy where the devices measured it;
* the run's metadata: manifest snapshot, versions, hosts.

A section with nothing to show says so, and why, instead of a chart.
"""

from __future__ import annotations

import html
import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SplitTracerError
from ..metrics.energy import ENERGY_METRICS, attribute_run_energy, energy_to_power, readings_from_metrics
from ..metrics.record import RunRecord, record_to_dict
from ..metrics.spans import Metric, Span
from ..metrics.store import ResultsStore, RunInfo
from ..metrics.system import SYSTEM_METRICS
from .accuracy import AccuracyRow, accuracy_informative, accuracy_rows
from .custom import MetricRow, summarize_metrics
from .export import atomic_path
from .htmlpage import Section as _Section
from .htmlpage import figure as _figure
from .htmlpage import note as _note
from .htmlpage import page as _page
from .htmlpage import table as _table
from .layers import LayerTime, describe_layer_times, layer_times
from .ratecharts import plot_rate_accuracy
from .runs import (
    NotCounted,
    chain_links,
    format_duration,
    format_timestamp,
    hop_cells,
    not_counted,
    not_counted_lines,
    row_label,
    run_duration_s,
    split_label,
    split_tensors,
    tensors_label,
)
from .streamhtml import streams_section
from .streams import StreamRow, summarize_streams, uplinks_of
from .summary import Quantiles, SplitRow, summarize

__all__ = ["ReportFiles", "choose_inference", "write_html_report"]

_UNITS = {
    "cpu_process_percent": ("process CPU (%)", 1.0),
    "cpu_system_percent": ("machine CPU (%)", 1.0),
    "rss_bytes": ("RSS (MiB)", 1 / 2**20),
    "cpu_freq_mhz": ("CPU frequency (MHz)", 1.0),
    "temperature_c": ("temperature (°C)", 1.0),
}
_MAX_PANELS = 12


@dataclass(frozen=True)
class ReportFiles:
    """The HTML report and the PNG/SVG files of its figures."""

    html: Path
    figures: tuple[Path, ...]


@dataclass(frozen=True)
class _Run:
    """Everything a report reads from the store, read once."""

    info: RunInfo
    spans: list[Span]
    metrics: list[Metric]
    rows: list[SplitRow]
    layers: tuple[str, ...]
    custom: list[MetricRow]
    not_counted: tuple[NotCounted, ...] = ()
    streams: tuple[StreamRow, ...] = ()


def write_html_report(
    store: ResultsStore, run_id: str, path: str | Path, *, inference: int | None = None
) -> ReportFiles:
    """Write the report of ``run_id`` (id, prefix or 'latest') to ``path``, figures beside it.

    Figures are ``<path stem>-<figure>.{png,svg}``. ``inference`` picks the
    inference the timeline shows; raises SplitTracerError if it does not exist.
    """
    target = Path(path)
    info = store.get_run(run_id)
    spans = store.spans(info.id)
    metrics = store.metrics(info.id)
    run = _Run(
        info,
        spans,
        metrics,
        summarize(spans),
        info.record.layers,
        summarize_metrics(metrics, spans),
        not_counted(info, spans),
        tuple(summarize_streams(spans, metrics, uplinks_of(info.record))),
    )
    chosen = choose_inference(spans, inference)  # a bad --inference fails before anything is written
    figures: list[Path] = []
    stem = target.with_name(target.stem)
    sections = [
        _splits_section(run, stem, figures),
        *([streams_section(run.streams, run.info.id, stem, figures)] if run.streams else []),
        _custom_section(run),
        _layers_section(run, stem, figures),
        _timeline_section(run, stem, figures, chosen, picked=inference is not None),
        _system_section(run, stem, figures),
        _energy_section(run, stem, figures),
        _metadata_section(run),
    ]
    accuracy = _accuracy_section(run, stem, figures)
    if accuracy is not None:  # only runs whose inferences recorded predictions
        sections.insert(2, accuracy)
    with atomic_path(target) as temp:
        temp.write_text(_page(run.info, sections), encoding="utf-8")
    return ReportFiles(target, tuple(figures))


# -- splits ----------------------------------------------------------------------


def _splits_section(run: _Run, stem: Path, figures: list[Path]) -> _Section:
    title = "Latency per split point"
    left_out = "".join(_note(line.strip()) for line in not_counted_lines(run.not_counted))
    if not run.rows:
        nothing = _note("The run has no completed inferences outside warm-up.")
        return _Section("splits", title, nothing + left_out)
    from .plots import plot_stacked_splits

    paths = plot_stacked_splits(
        run.rows, f"{stem}-splits", title=f"{title} — {run.info.id}", labels=run.layers
    )
    caption = "Median head, transfer and tail per split; error bars: interquartile range of the total"
    chart = _figure(paths, paths[-1].read_text(encoding="utf-8"), "splits", caption, figures)
    links = chain_links(run.rows)
    columns = ["split", "after layer", "n", "head ms", "transfer ms", "tail ms", "total ms"]
    columns += ["total IQR ms", "bytes", "tensors"]
    columns += [f"{a}→{b} {what}" for a, b in links for what in ("ms", "bytes")]
    rows = [
        [
            r.cut_label,
            row_label(r, run.layers),
            r.count,
            r.head.median,
            r.transfer.median,
            r.tail.median,
            r.total.median,
            f"{r.total.p25:,.3f}–{r.total.p75:,.3f}",
            r.bytes_raw,
            tensors_label(split_tensors(r, run.info.record.split_tensors)),
            *hop_cells(r, links),
        ]
        for r in run.rows
    ]
    best = min(run.rows, key=lambda r: r.total.median)
    lead = f"Fastest split: {best.cut_label} (after {row_label(best, run.layers)}), "
    lead += f"median {best.total.median:,.3f} ms over {best.count} inferences."
    return _Section("splits", title, f"<p>{html.escape(lead)}</p>{chart}{_table(columns, rows)}{left_out}")


# -- accuracy per split and codec -----------------------------------------------------


def _accuracy_section(run: _Run, stem: Path, figures: list[Path]) -> _Section | None:
    rows = accuracy_rows(run.spans, run.metrics)
    if not any(r.agreement is not None for r in rows) or not accuracy_informative(rows):
        return None
    saved = plot_rate_accuracy(rows, f"{stem}-rate-accuracy", "Bytes vs accuracy, one line per codec")
    caption = "Bytes on the wire per inference against accuracy (agreement without labels)"
    chart = _figure(saved.paths, saved.svg, "rate-accuracy", caption, figures)

    def share(value: float | None) -> str:
        return "—" if value is None else f"{100 * value:.1f}%"

    columns = ["split", "codec", "n", "bytes", "wire bytes", "total ms", "agreement", "rel error"]
    columns += ["top-1", "top-5"]
    table = [
        [
            r.cut_label,
            r.codec,
            r.count,
            r.bytes_raw,
            r.bytes_wire,
            r.total_ms,
            share(r.agreement),
            *_errors(r),
        ]
        for r in rows
    ]
    return _Section("accuracy", "Accuracy per split and codec", chart + _table(columns, table))


def _errors(row: AccuracyRow) -> list[str]:
    top = ["—" if v is None else f"{100 * v:.1f}%" for v in (row.top1, row.top5)]
    return [f"{row.rel_error:.2e}", *top]


# -- custom metrics ------------------------------------------------------------------


def _custom_section(run: _Run) -> _Section:
    title = "Recorded metrics"
    if not run.custom:
        return _Section("metrics", title, _note("No handler recorded a metric with ctx.record."))
    columns = ["metric", "participant", "split", "attrs", "n", "median", "p25", "p75", "mean"]
    rows = [
        [m.name, m.participant, m.cut_label, m.attrs_label, m.count, *_spread_of(m.value), m.mean]
        for m in run.custom
    ]
    note = _note(
        "Samples recorded inside an inference count toward its split when the inference does "
        "(completed, not warm-up); split — : recorded outside any inference."
    )
    return _Section("metrics", title, note + _table(columns, rows))


def _spread_of(q: Quantiles) -> list[float]:
    return [q.median, q.p25, q.p75]


# -- per-layer profile ---------------------------------------------------------------


def _split_bytes(record: RunRecord) -> tuple[int, ...] | None:
    # The input and at least one layer's output, or there is no split table to draw.
    return record.split_bytes if len(record.split_bytes) >= 2 else None


def _layers_section(run: _Run, stem: Path, figures: list[Path]) -> _Section:
    title = "Per-layer profile"
    times = {who: by for who, by in layer_times(run.spans).items() if by}
    sizes = _split_bytes(run.info.record)
    count = max([len(run.layers), len(sizes) - 1 if sizes else 0, *(max(t) for t in times.values())])
    if count == 0:
        return _Section(
            "layers", title, _note("The run recorded neither per-layer times nor layer output sizes.")
        )
    from .figures import plot_layer_profile

    names = [split_label(k, run.layers) for k in range(1, count + 1)]
    per_layer = {who: [_median(by.get(k)) for k in range(1, count + 1)] for who, by in times.items()}
    spread = {who: [_iqr(by.get(k)) for k in range(1, count + 1)] for who, by in times.items()}
    # A layer the split table does not cover gets no bar, not a made-up size.
    outputs = [sizes[k] if k < len(sizes) else None for k in range(1, count + 1)] if sizes else None
    saved = plot_layer_profile(
        names, per_layer, outputs, f"{stem}-layers", f"{title} — {run.info.id}", spread=spread
    )
    notes = describe_layer_times(times, count)
    if sizes is None:
        notes.append("The run's metadata has no split table, so output sizes are not shown.")
    else:
        notes.append(
            f"Input size: {sizes[0]:,} bytes. Output size of layer k: bytes crossing a cut after it."
        )
    caption = "Compute time of each layer (median, IQR bars) and its output size, as in Neurosurgeon"
    chart = _figure(saved.paths, saved.svg, "layers", caption, figures)
    return _Section("layers", title, "".join(_note(n) for n in notes) + chart + _layertable(times, names))


def _median(t: LayerTime | None) -> float | None:
    return None if t is None else t.time.median


def _iqr(t: LayerTime | None) -> tuple[float, float] | None:
    return None if t is None else (t.time.p25, t.time.p75)


def _layertable(times: dict[str, dict[int, LayerTime]], names: Sequence[str]) -> str:
    rows = [
        [k, names[k - 1] if k <= len(names) else str(k), who, *_spread_of(t.time), t.method, t.samples]
        for who, by in times.items()
        for k, t in sorted(by.items())
    ]
    columns = ["layer", "name", "participant", "median ms", "p25 ms", "p75 ms", "how", "samples"]
    return f"<details><summary>Per-layer times (table)</summary>{_table(columns, rows)}</details>"


# -- timeline ----------------------------------------------------------------------


def choose_inference(spans: Sequence[Span], requested: int | None = None) -> tuple[int, int] | None:
    """The ``(split, inference)`` the timeline shows.

    ``requested`` picks an inference by id. By default: among the completed,
    non-warm-up inferences of the fastest split (lowest median total), the
    one whose total is the median (the lower one for an even count). None
    when the run completed no inference.
    """
    if requested is not None:
        keys = sorted({(s.split, s.inference) for s in spans if s.inference == requested})
        if not keys:
            ids = sorted({s.inference for s in spans if s.inference >= 0})
            known = f"{ids[0]}–{ids[-1]}" if ids else "none"
            raise SplitTracerError(
                f"the run has no inference {requested}", hint=f"Inferences recorded: {known}."
            )
        return keys[0]
    rows = summarize(spans)
    if not rows:
        return None
    best = min(rows, key=lambda r: r.total.median).split
    totals: dict[int, float] = {}
    warm: set[int] = set()
    for s in spans:
        if s.split == best and s.inference >= 0:
            if s.attrs.get("warmup") is True:
                warm.add(s.inference)
            if s.kind == "inference" and not s.attrs.get("error"):
                totals[s.inference] = max(totals.get(s.inference, 0.0), s.duration_ms)
    ranked = sorted((total, i) for i, total in totals.items() if i not in warm)
    return best, ranked[(len(ranked) - 1) // 2][1]


def _timeline_section(
    run: _Run, stem: Path, figures: list[Path], chosen: tuple[int, int] | None, *, picked: bool
) -> _Section:
    title = "Timeline of one inference"
    if chosen is None:
        return _Section("timeline", title, _note("The run has no completed inference to show."))
    split, index = chosen
    spans = [s for s in run.spans if s.split == split and s.inference == index]
    from .figures import plot_timeline

    label = f"inference {index} at split {split} (after {split_label(split, run.layers)})"
    saved = plot_timeline(spans, f"{stem}-timeline", f"{label} — {run.info.id}")
    why = "chosen with --inference" if picked else "the median-total inference of the fastest split"
    caption = f"Spans of {label}, {why}; one row per participant, its sends, its handlers, and each link"
    uncertain = [s.attrs["clock_uncertainty_ns"] for s in spans if "clock_uncertainty_ns" in s.attrs]
    note = ""
    if uncertain:
        worst = max(float(u) for u in uncertain) / 1e6
        note = _note(f"Transfers span two clocks; their clock offset is known to ±{worst:,.3f} ms.")
    return _Section("timeline", title, note + _figure(saved.paths, saved.svg, "timeline", caption, figures))


# -- system metrics -----------------------------------------------------------------


def _origins(run: _Run) -> dict[str, int]:
    """Each participant's first timestamp: clocks differ between devices, so time is per participant."""
    first: dict[str, int] = {}
    for who, t in [(s.participant, s.start_ns) for s in run.spans] + [
        (m.participant, m.time_ns) for m in run.metrics
    ]:
        first[who] = min(first.get(who, t), t)
    return first


def _system_section(run: _Run, stem: Path, figures: list[Path]) -> _Section:
    title = "System metrics"
    energy_names = set(ENERGY_METRICS.values())
    metrics = [m for m in run.metrics if m.name not in energy_names]
    if not metrics:
        return _Section("system", title, _note("The run recorded no system metrics."))
    note = ""
    if not any(m.name in SYSTEM_METRICS for m in metrics):
        note = _note(
            "The run recorded no system metrics (CPU, memory, frequency, temperature); "
            "the other metrics it recorded are shown."
        )
    origin = _origins(run)
    grouped: defaultdict[str, defaultdict[str, tuple[list[float], list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: ([], []))
    )
    for m in sorted(metrics, key=lambda m: m.time_ns):
        label, scale = _UNITS.get(m.name, (m.name, 1.0))
        sensor = m.attrs.get("sensor")
        xs, ys = grouped[label][m.participant + (f" {sensor}" if sensor else "")]
        xs.append((m.time_ns - origin[m.participant]) / 1e9)
        ys.append(m.value * scale)
    order = [_UNITS[n][0] for n in SYSTEM_METRICS if _UNITS[n][0] in grouped]
    order += sorted(k for k in grouped if k not in order)
    panels = {k: dict(grouped[k]) for k in order[:_MAX_PANELS]}
    from .figures import plot_series_panels

    saved = plot_series_panels(panels, f"{stem}-system", f"{title} — {run.info.id}", "seconds since start")
    caption = "Samples per participant; time counts from each participant's first record"
    skipped = order[_MAX_PANELS:]
    note += _note(f"Not plotted (too many panels): {', '.join(skipped)}.") if skipped else ""
    return _Section("system", title, note + _figure(saved.paths, saved.svg, "system", caption, figures))


# -- energy --------------------------------------------------------------------------


def _energy_section(run: _Run, stem: Path, figures: list[Path]) -> _Section:
    title = "Energy"
    readings = readings_from_metrics(run.metrics)
    if not readings:
        return _Section(
            "energy", title, _note("Energy: not available on these devices.") + _energy_reasons(run)
        )
    origin = _origins(run)
    panels: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for who, series in readings.items():
        power = energy_to_power(series)
        panels[f"{who} power (W)"] = {
            domain: ([(t - origin[who]) / 1e9 for t in times], list(watts))
            for domain, (times, watts) in power.items()
        }
    from .figures import plot_series_panels

    saved = plot_series_panels(panels, f"{stem}-energy", f"Power — {run.info.id}", "seconds since start")
    chart = _figure(saved.paths, saved.svg, "energy", "Power per measured domain", figures)
    return _Section("energy", title, chart + _energy_tables(run))


def _energy_reasons(run: _Run) -> str:
    reasons = []
    for who, facts in sorted(run.info.record.participants.items()):
        missing = facts.energy.missing
        if missing:
            reasons.append([who, "; ".join(f"{k}: {v}" for k, v in missing.items())])
    return _table(["participant", "why not"], reasons) if reasons else ""


def _energy_tables(run: _Run) -> str:
    attribution = attribute_run_energy(run.metrics, run.spans)
    per_split: defaultdict[int, defaultdict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (split, _), by_domain in attribution.per_inference().items():
        for domain, joules in by_domain.items():
            per_split[split][domain].append(joules)
    if not per_split:
        return _note("No compute span fell inside the energy readings, so none could be attributed.")
    domains = sorted({d for by in per_split.values() for d in by})
    rows = [
        [k, split_label(k, run.layers), *[_median_or_none(per_split[k].get(d)) for d in domains]]
        for k in sorted(per_split)
    ]
    out = "<h3>Energy per inference (median J of its compute spans)</h3>"
    out += _table(["split", "after layer", *[f"{d} J" for d in domains]], rows)
    alone = {key[1]: v for key, v in attribution.per_layer().items() if key[1] == key[0] + 1}
    if alone:
        layer_rows = [
            [k, split_label(k, run.layers), *[alone[k].get(d) for d in domains]] for k in sorted(alone)
        ]
        out += "<h3>Energy per layer (median J, layers computed alone)</h3>"
        out += _table(["layer", "name", *[f"{d} J" for d in domains]], layer_rows)
    if attribution.unattributed:
        out += _note(
            f"{attribution.unattributed} span-domain pairs fell outside the readings and have no energy."
        )
    out += _note(
        "Energy is power integrated over each compute span (trapezoid rule between readings); a span "
        "shorter than the sampling interval gets the interpolated power at its ends."
    )
    return out


def _median_or_none(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


# -- metadata --------------------------------------------------------------------------


def _metadata_section(run: _Run) -> _Section:
    info = run.info
    facts: list[list[Any]] = [
        ["run", info.id],
        ["experiment", info.experiment],
        ["status", info.status],
        ["started (UTC)", format_timestamp(info.started_at)],
        ["ended (UTC)", format_timestamp(info.ended_at) if info.ended_at else None],
        ["duration", format_duration(run_duration_s(info))],
        ["spans", len(run.spans)],
        ["metric samples", len(run.metrics)],
    ]
    if info.error:
        facts.append(["error", info.error])
    body = _table(["", ""], facts)
    record = record_to_dict(info.record)
    body += "<h3>Controller</h3>" + _table(["", ""], sorted(record["controller"].items()))
    participants: dict[str, dict[str, Any]] = record["participants"]
    if participants:
        names = sorted(next(iter(participants.values())))  # every participant has every field
        rows = [[who, *[_plain(facts[k]) for k in names]] for who, facts in sorted(participants.items())]
        body += "<h3>Participants</h3>" + _table(["participant", *names], rows)
    manifest = html.escape(info.manifest or "(no manifest recorded)")
    body += f"<h3>Manifest snapshot</h3><pre>{manifest}</pre>"
    everything = html.escape(json.dumps(record, indent=2, sort_keys=True))
    body += f"<details><summary>All metadata (JSON)</summary><pre>{everything}</pre></details>"
    return _Section("metadata", "Run metadata", body)


def _plain(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value
