"""The self-contained HTML report, from a hand-made results store, and ``splittracer report``."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from splittracer.cli import main
from splittracer.errors import SplitTracerError
from splittracer.metrics import EnergySensors, ResultsStore
from splittracer.report.html import ReportFiles, choose_inference, write_html_report
from splittracer.workspace import init_workspace

from .report_store import INFERENCES_PER_SPLIT, LAYERS, make_run

SECTIONS = ("splits", "layers", "timeline", "system", "energy", "metadata")
FIGURES = ("splits", "layers", "timeline", "system", "energy")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultsStore]:
    with ResultsStore(tmp_path / "results" / "splittracer.sqlite") as opened:
        yield opened


@dataclass(frozen=True)
class Written:
    out: Path
    run_id: str
    files: ReportFiles
    text: str


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Written:
    """One report of a run with everything, shared: writing a report takes seconds."""
    out = tmp_path_factory.mktemp("report") / "out"
    with ResultsStore(out.parent / "results.sqlite") as opened:
        run_id = make_run(opened)
        files = write_html_report(opened, run_id, out / "report.html")
    return Written(out, run_id, files, files.html.read_text(encoding="utf-8"))


def figures_in(text: str) -> list[str]:
    return re.findall(r'<figure class="chart" data-figure="([a-z]+)"><svg ', text)


def section(text: str, name: str) -> str:
    found = re.search(rf'<section id="{name}">(.*?)</section>', text, flags=re.DOTALL)
    assert found, f"no section {name}"
    return found.group(1)


def assert_self_contained(text: str) -> None:
    assert not re.search(r"https?://", text)
    assert not re.search(
        r"<script|<link|<iframe|<object|<embed|@import|url\((?!#)|\bsrc=", text, re.IGNORECASE
    )
    # Links are only to the figure files beside the report and to anchors in it.
    for href in re.findall(r'href="([^"]*)"', text):
        assert href.startswith("#") or re.fullmatch(r"[\w.-]+\.(png|svg)", href), href


def test_report_has_every_section_and_figure(full: Written) -> None:
    assert full.files.html == full.out / "report.html"
    text = full.text
    assert text.startswith("<!DOCTYPE html>")
    for name in SECTIONS:
        assert f'<section id="{name}">' in text and f'href="#{name}"' in text
    assert figures_in(text) == list(FIGURES)
    expected = [full.out / f"report-{name}.{fmt}" for name in FIGURES for fmt in ("png", "svg")]
    assert list(full.files.figures) == expected
    for path in expected:
        assert path.stat().st_size > 1000
        assert f'href="{path.name}"' in text
    for svg in (p for p in expected if p.suffix == ".svg"):
        ET.fromstring(svg.read_text(encoding="utf-8"))  # the files beside it are well-formed SVG
    assert_self_contained(text)


def test_sections_hold_the_runs_numbers(full: Written) -> None:
    splits = section(full.text, "splits")
    assert "Fastest split: 4 (after fc), median 10.500 ms over 3 inferences." in splits
    assert "<td>relu1</td>" in splits and "80,000" in splits
    layers = section(full.text, "layers")
    # Layer 1 the phone ran alone (split 1); the others are differences of consecutive splits.
    assert (
        "phone: 4 of 4 layers — 1 timed alone (layer 1); 3 from differences of two parts (layers 2–4)."
        in layers
    )
    assert "Input size: 60,000 bytes." in layers
    timeline = section(full.text, "timeline")
    assert "median-total inference of the fastest split" in timeline and "±0.150 ms" in timeline
    energy = section(full.text, "energy")
    assert "phone: jetson/VDD_IN J" in energy and "phone: rapl/package-0 J" in energy
    assert "Energy per layer" in energy
    metadata = section(full.text, "metadata")
    for fact in (full.run_id, "succeeded", "laptop", "host-a", "torch_threads", "model: {source: toy}"):
        assert fact in metadata


def test_energy_per_inference_is_power_times_compute_time(full: Written) -> None:
    # Split 4 runs all 4 layers on the phone for a median 8 ms: 5 W -> 0.040 J, 12 W -> 0.096 J.
    assert re.search(r"<td>4</td><td>fc</td><td>0\.040</td><td>0\.096</td>", section(full.text, "energy"))


def test_run_without_metrics_says_what_is_not_available(store: ResultsStore, tmp_path: Path) -> None:
    why = {"rapl": "no intel-rapl zones", "nvml": "pynvml is not installed"}
    run_id = make_run(store, system=False, energy=False, single_layers=False)
    record = store.get_run(run_id).record
    phone = msgspec.structs.replace(record.participants["phone"], energy=EnergySensors(missing=why))
    participants = {**record.participants, "phone": phone}
    store.update_record(run_id, msgspec.structs.replace(record, participants=participants))
    text = write_html_report(store, run_id, tmp_path / "r.html").html.read_text(encoding="utf-8")
    assert figures_in(text) == ["splits", "layers", "timeline"]
    assert "The run recorded no system metrics." in section(text, "system")
    energy = section(text, "energy")
    assert "Energy: not available on these devices." in energy
    assert "rapl: no intel-rapl zones" in energy and "nvml: pynvml is not installed" in energy
    layers = section(text, "layers")
    # No layer alone, but splits 2..4 on the phone (and 0..2 on the cloud) differ by one layer each.
    assert "phone: 2 of 4 layers — 2 from differences of two parts (layers 3–4)." in layers
    assert "cloud: 2 of 4 layers — 2 from differences of two parts (layers 1–2)." in layers
    assert not (tmp_path / "r-system.png").exists() and not (tmp_path / "r-energy.svg").exists()


def test_custom_metrics_are_plotted_and_said_not_to_be_system_ones(
    store: ResultsStore, tmp_path: Path
) -> None:
    from splittracer.metrics import Metric

    run_id = make_run(store, system=False, energy=False)
    offsets = [
        Metric(run_id=run_id, participant="cloud", name="clock_offset_ns", value=v, time_ns=t)
        for t, v in ((1, 5.0), (2, 7.0))
    ]
    store.append_metrics(run_id, offsets)
    text = write_html_report(store, run_id, tmp_path / "r.html").html.read_text(encoding="utf-8")
    system = section(text, "system")
    assert "recorded no system metrics (CPU, memory, frequency, temperature)" in system
    assert "clock_offset_ns" in system and 'data-figure="system"' in system


def test_empty_failed_run_still_gets_a_report(store: ResultsStore, tmp_path: Path) -> None:
    run_id = store.create_run("broken <b>", "name: <script>alert(1)</script>\n")
    store.finish_run(run_id, "failed", "participant 'cloud' exited with status 1")
    files = write_html_report(store, run_id, tmp_path / "r.html")
    text = files.html.read_text(encoding="utf-8")
    assert files.figures == () and figures_in(text) == []
    assert "no completed inferences" in section(text, "splits")
    assert "neither per-layer times nor layer output sizes" in section(text, "layers")
    assert "exited with status 1" in text and 'class="status-failed"' in text
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "broken &lt;b&gt;" in text


def test_default_timeline_is_the_median_inference_of_the_fastest_split(store: ResultsStore) -> None:
    run_id = make_run(store)
    spans = store.spans(run_id)
    # Split 4 holds inferences 16 (warm-up), 17 (x1.0), 18 (x1.2), 19 (x0.9): the median total is 17's.
    assert choose_inference(spans) == (4, 17)
    assert choose_inference(spans, 6) == (1, 6)
    assert choose_inference([]) is None


def test_unknown_inference_is_a_clear_error(store: ResultsStore, tmp_path: Path) -> None:
    run_id = make_run(store)
    with pytest.raises(SplitTracerError, match="no inference 99") as info:
        write_html_report(store, run_id, tmp_path / "r.html", inference=99)
    assert info.value.hint == f"Inferences recorded: 0–{(len(LAYERS) + 1) * (INFERENCES_PER_SPLIT + 1) - 1}."
    assert list(tmp_path.iterdir()) == [tmp_path / "results"]  # nothing written


def test_chosen_inference_is_the_one_shown(store: ResultsStore, tmp_path: Path) -> None:
    run_id = make_run(store)
    text = write_html_report(store, run_id, tmp_path / "r.html", inference=6).html.read_text(encoding="utf-8")
    assert "inference 6 at split 1 (after conv1)" in section(text, "timeline")
    assert "chosen with --inference" in text


# -- the command ------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Path, str]:
    ws = init_workspace(tmp_path / "ws")
    with ResultsStore(ws.results_db) as opened:
        run_id = make_run(opened)
    return ws.root, run_id


def test_report_command_writes_to_the_results_folder(
    workspace: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, run_id = workspace
    assert main(["report", run_id[:12], "--workspace", str(root)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[0] == str(root / "results" / f"{run_id}-report.html")
    assert len(printed) == 1 + 2 * len(FIGURES) and all(Path(p).is_file() for p in printed)


def test_report_command_output_and_inference_options(
    workspace: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = workspace
    target = tmp_path / "paper" / "fig.html"
    assert (
        main(["report", "latest", "--workspace", str(root), "--output", str(target), "--inference", "5"]) == 0
    )
    assert capsys.readouterr().out.split()[0] == str(target)
    assert "inference 5 at split 1" in target.read_text(encoding="utf-8")
    folder = tmp_path / "folder"
    folder.mkdir()
    assert main(["report", "latest", "--workspace", str(root), "-o", str(folder)]) == 0
    assert len(list(folder.glob("*-report.html"))) == 1


def test_report_command_unknown_run_exits_2(
    workspace: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = workspace
    assert main(["report", "nope", "--workspace", str(root)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


def test_predictions_add_an_accuracy_section_with_its_rate_accuracy_chart(
    store: ResultsStore, tmp_path: Path
) -> None:
    from splittracer.metrics import Metric

    def predicted(agrees: tuple[bool, ...]) -> str:
        run_id = make_run(store, system=False, energy=False)
        counted = [s for s in store.spans(run_id, kind="inference") if not s.attrs.get("warmup")]
        predictions = [
            Metric(
                run_id=run_id,
                participant="phone",
                name="prediction",
                value=3.0,
                time_ns=0,
                inference=s.inference,
                split=s.split,
                attrs={"codec": "none", "agrees": agrees[i % len(agrees)], "rel_error": 0.0},
            )
            for i, s in enumerate(counted)
        ]
        store.append_metrics(run_id, predictions)
        return run_id

    coded = predicted((True, False))
    text = write_html_report(store, coded, tmp_path / "r.html").html.read_text(encoding="utf-8")
    accuracy = section(text, "accuracy")
    assert 'data-figure="rate-accuracy"' in accuracy and "<td>66.7%</td>" in accuracy  # 2 of 3 agreed
    assert (tmp_path / "r-rate-accuracy.png").exists()
    assert "accuracy" not in figures_in(
        write_html_report(store, make_run(store), tmp_path / "s.html").html.read_text()
    )
    # A plain sweep (codec none, no labels, every output the model's own) has nothing to show there.
    plain = write_html_report(store, predicted((True,)), tmp_path / "p.html").html.read_text()
    assert "accuracy" not in figures_in(plain) and not (tmp_path / "p-rate-accuracy.png").exists()
