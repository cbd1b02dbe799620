"""``splittracer profile`` and ``splittracer plan``, run as a user would: real processes."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from splittracer.metrics import ResultsStore, Span
from splittracer.plan.profiles import (
    DeviceProfile,
    LayerRecord,
    ModelRecord,
    ProfileStore,
    default_profile_dir,
    profile_local,
)
from splittracer.workspace import init_workspace

pytestmark = pytest.mark.slow

TOY = "tests.unit.toy_models:chain_of_opaque"


def splittracer(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "splittracer", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace with two profiles of AlexNet and ResNet18 (1 and 2 threads), measured quickly."""
    ws = init_workspace(tmp_path_factory.mktemp("plan") / "ws")
    store = ProfileStore(default_profile_dir(ws.results_dir))
    for threads in (1, 2):
        records = [
            *profile_local(["torchvision:alexnet"], threads=threads, repeats=2, warmup=1),
            *profile_local(
                ["torchvision:resnet18"], threads=threads, repeats=2, warmup=1, input_shape=(1, 3, 64, 64)
            ),
        ]
        store.save(DeviceProfile(name=f"local-{threads}t", threads=threads).with_models(records))
    return ws


def test_profile_command_stores_and_shows_a_profile(ws):
    made = splittracer(
        "profile",
        "toy-1t",
        TOY,
        "--input-shape",
        "2,8",
        "--threads",
        "1",
        "--repeats",
        "2",
        "-w",
        str(ws.root),
    )
    assert made.returncode == 0, made.stderr
    assert "toy-1t" in made.stdout and TOY in made.stdout
    shown = splittracer("profile", "toy-1t", "--json", "-w", str(ws.root))
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["threads"] == 1 and [m["source"] for m in data["models"]] == [TOY]
    assert [layer["name"] for layer in data["models"][0]["layers"]] == ["a", "b", "c"]
    other = splittracer(
        "profile", "toy-1t", TOY, "--input-shape", "2,8", "--threads", "2", "-w", str(ws.root)
    )
    assert other.returncode == 2 and "threads=1" in other.stderr


def test_plan_two_devices_json(ws):
    result = splittracer(
        "plan",
        "torchvision:alexnet",
        "--devices",
        "local-1t,local-2t",
        "--bandwidth",
        "lte",
        "--latency",
        "10ms",
        "--json",
        "-w",
        str(ws.root),
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [d["method"] for d in data["devices"]] == ["measured", "measured"]
    assert len(data["splits"]) == 22 and len(data["layers"]) == 21
    best = min(data["splits"], key=lambda s: s["total_ms"])
    assert data["best"]["cuts"] == best["cuts"]
    split0 = data["splits"][0]
    assert split0["bytes"] == [602_112]
    assert split0["transfers_ms"][0] == pytest.approx(8 * 602_112 / 5.85e6 * 1000 + 10)


def test_plan_for_throughput_with_clients_sharing_the_server(ws):
    common = ["plan", "torchvision:alexnet", "--devices", "local-1t,local-2t", "--bandwidth", "lte"]
    result = splittracer(*common, "--objective", "throughput", "--clients", "4", "--json", "-w", str(ws.root))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["objective"] == "throughput" and data["clients"] == 4
    for row in data["splits"]:
        stages = [*row["stages_ms"][:-1], 4 * row["stages_ms"][-1], *row["transfers_ms"], row["reply_ms"]]
        assert row["cycle_ms"] == pytest.approx(max(stages))
        assert row["frames_per_s"] == pytest.approx(4 * 1000 / row["cycle_ms"])
    assert data["best"]["cycle_ms"] == min(row["cycle_ms"] for row in data["splits"])
    table = splittracer(*common, "--objective", "throughput", "-w", str(ws.root))
    assert table.returncode == 0, table.stderr
    assert "frames/s" in table.stdout and "best for throughput" in table.stdout


def test_plan_three_devices_table_and_dag(ws):
    three = splittracer(
        "plan",
        "torchvision:alexnet",
        "--devices",
        "local-1t,local-2t,local-2t",
        "--bandwidth",
        "3g,wifi",
        "-w",
        str(ws.root),
    )
    assert three.returncode == 0, three.stderr
    assert "local-1t -> local-2t -> local-2t" in three.stdout and "best: cut after" in three.stdout
    dag = splittracer(
        "plan",
        "torchvision:resnet18",
        "--input-shape",
        "1,3,64,64",
        "--devices",
        "local-1t,local-2t",
        "--bandwidth",
        "5.85mbit",
        "--dag",
        "-w",
        str(ws.root),
    )
    assert dag.returncode == 0, dag.stderr
    assert "DAG min-cut:" in dag.stdout


def test_plan_predicts_a_model_the_profile_never_ran(ws):
    result = splittracer(
        "plan",
        "torchvision:alexnet",
        "--devices",
        "local-1t,local-2t",
        "--estimator",
        "regression",
        "--json",
        "-w",
        str(ws.root),
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [d["method"] for d in data["devices"]] == ["regression", "regression"]
    assert data["devices"][0]["trained_on"] == ["torchvision:resnet18"]
    assert all(x >= 0 for layer in data["layers"] for x in layer["ms"])
    assert data["devices"][0]["total_ms"] > 0 and data["devices"][1]["total_ms"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--devices", "local-1t,phone"], "no device profile named 'phone'"),
        (["--devices", "local-1t"], "at least two devices"),
        (["--devices", "local-1t,local-2t", "--bandwidth", "fast"], "not a rate"),
        (["--devices", "local-1t,local-2t,local-2t", "--bandwidth", "3g,lte,wifi"], "3 values"),
        (["--devices", "local-1t,local-2t,local-2t", "--dag"], "exactly two devices"),
        (["--devices", "local-1t,local-2t", "--objective", "energy"], "needs the first device's radio"),
        (["--devices", "local-1t,local-2t", "--objective", "energy", "--bandwidth", "lte"], "no energy"),
        (["--devices", "local-1t,local-2t", "--tx-power", "loud"], "not a radio power"),
        (["--devices", "local-1t,local-2t", "--clients", "4"], "throughput objective only"),
        (["--devices", "local-1t,local-2t", "--objective", "throughput", "--dag"], "latency only"),
    ],
)
def test_plan_mistakes_exit_2(ws, args, message):
    result = splittracer("plan", "torchvision:alexnet", *args, "-w", str(ws.root))
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_plan_for_the_first_devices_energy(ws):
    store = ProfileStore(default_profile_dir(ws.results_dir))
    phone = store.load("local-1t")
    two_watts = [
        dataclasses.replace(
            m, layers=tuple(dataclasses.replace(x, energy_mj=2.0 * x.median_ms) for x in m.layers)
        )
        for m in phone.models
    ]
    store.save(dataclasses.replace(phone, name="phone-2w", models=tuple(two_watts)))
    result = splittracer(
        "plan",
        "torchvision:alexnet",
        "--devices",
        "phone-2w,local-2t",
        "--bandwidth",
        "wifi",
        "--objective",
        "energy",
        "--json",
        "-w",
        str(ws.root),
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    watts = (283.17 * 18.88 + 132.86) / 1000  # Wi-Fi's uplink model at its rate
    assert data["objective"] == "energy" and data["tx_power"]["watts"] == pytest.approx(watts)
    for row in data["splits"]:
        k = row["cuts"][0]
        compute = sum(2.0 * layer["ms"][0] for layer in data["layers"][:k])
        assert row["compute_energy_mj"] == pytest.approx(compute)
        assert row["transmit_energy_mj"] == pytest.approx(watts * 8 * row["bytes"][0] / 18.88e6 * 1000)
    assert data["best"]["cuts"] == min(data["splits"], key=lambda r: r["energy_mj"])["cuts"]
    table = splittracer(
        "plan",
        "torchvision:alexnet",
        "--devices",
        "phone-2w,local-2t",
        "--objective",
        "energy",
        "--tx-power",
        "0.5W",
        "-w",
        str(ws.root),
    )
    assert table.returncode == 0, table.stderr
    assert "best for energy: cut" in table.stdout and "0.50 W while sending" in table.stdout


def test_profiles_outside_a_workspace_go_to_the_config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SPLITTRACER_CONFIG_DIR", str(tmp_path / "cfg"))
    root = str(Path(__file__).resolve().parents[2])  # for tests.unit.toy_models
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    result = splittracer("profile", "mine", TOY, "--input-shape", "2,8", "--repeats", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cfg" / "profiles" / "mine.json").is_file()
    remote = splittracer("profile", "pi", TOY, "--device", "pi4", cwd=tmp_path)
    assert remote.returncode == 2 and "no device named 'pi4'" in remote.stderr


CHECKED = """\
name: sweep
model: {source: torchvision:alexnet}
participants:
  phone: {role: splittracer.builtin:SplitHead, limits: {threads: 1, uplink: lte}}
  cloud: {role: splittracer.builtin:SplitTail, limits: {threads: 2}}
"""


def _stored_sweep(ws, splits: list[int]) -> str:
    """A run of two inferences at each of ``splits`` (AlexNet has 21 layers), as a sweep records it."""
    with ResultsStore(ws.results_db) as store:
        run_id = store.create_run("sweep", CHECKED)
        spans = []
        for i, split in enumerate(splits * 2):
            common = {"run_id": run_id, "inference": i, "split": split, "start_ns": 0}
            spans += [
                Span(participant="phone", stage=0, kind="inference", end_ns=(50 + split) * 10**6, **common),
                Span(participant="phone", stage=0, kind="compute", end_layer=split, end_ns=1, **common),
                Span(participant="cloud", stage=1, kind="compute", end_layer=21, end_ns=1, **common),
            ]
        store.append_spans(run_id, spans)
        store.finish_run(run_id, "succeeded")
    return run_id


def test_plan_check_says_when_the_choice_was_not_measured(ws):
    every = _stored_sweep(ws, list(range(22)))
    args = ("--devices", "local-1t,local-2t", "-w", str(ws.root))
    data = json.loads(splittracer("plan", "--check", every, "--json", *args).stdout)
    assert data["planned_measured"] and data["compared"] == "planned"
    measured = splittracer("plan", "--check", every, *args)
    assert measured.returncode == 0, measured.stderr
    assert "measured latency of the choice" in measured.stdout and "not measured" not in measured.stdout

    planned = data["planned"][0]
    others = [k for k in (0, 5, 21) if k != planned][:2]
    skipped = _stored_sweep(ws, others)
    instead = json.loads(splittracer("plan", "--check", skipped, "--json", *args).stdout)
    assert not instead["planned_measured"] and instead["compared"] == "predicted_best_measured"
    partial = splittracer("plan", "--check", skipped, *args)
    assert partial.returncode == 0, partial.stderr
    text = " ".join(partial.stdout.split())
    assert f"planner's choice: {planned}, not measured by this run" in text
    chosen, ms = instead["chosen"][0], instead["chosen_measured_ms"]
    assert f"compared instead: {chosen}, the measured choice predicted fastest, measured {ms:.2f} ms" in text
    assert "measured latency of the choice" not in text


def test_profile_says_what_it_replaced(ws):
    args = ("profile", "toy-again", TOY, "--input-shape", "2,8", "--repeats", "2", "-w", str(ws.root))
    first = splittracer(*args)
    assert first.returncode == 0, first.stderr
    assert "replaced" not in first.stderr
    again = splittracer(*args, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["name"] == "toy-again"  # the notice stays off stdout
    notice = " ".join(again.stderr.split())
    assert f"replaced in profile 'toy-again': {TOY} (input 2×8, leaf) measured" in notice
    assert "ms then" in notice and "ms now" in notice


def test_profile_warns_about_layers_measured_while_the_machine_was_busy(ws):
    steady = LayerRecord(0, "conv", "Conv2d", 30.0, 29.0, 31.0, ())
    busy = LayerRecord(1, "fc", "Linear", 40.0, 20.0, 100.0, ())
    record = ModelRecord("m:busy", (1, 3), "leaf", 10, 2, 70.0, "2026-01-01T00:00:00+00:00", (steady, busy))
    ProfileStore(default_profile_dir(ws.results_dir)).save(DeviceProfile(name="busy").with_models([record]))
    shown = splittracer("profile", "busy", "-w", str(ws.root))
    assert shown.returncode == 0, shown.stderr
    assert "spread" in shown.stdout and "117%" in shown.stdout  # (2 + 80) / 70 of the time
    warning = " ".join(shown.stderr.split())
    assert "1 of 2 layers varied by more than 30%" in warning and "fc (Linear) 40.00 ms, IQR 200%" in warning
    assert "conv" not in warning and "likely busy" in warning


def _stored_stream(ws, splits: list[int], *, inflight: int = 2, offered: float = 0.0) -> str:
    """A run of one stream per split (AlexNet has 21 layers), 4 frames each 40 ms apart."""
    with ResultsStore(ws.results_db) as store:
        run_id = store.create_run("stream", CHECKED)
        spans, n = [], 0
        for stream, split in enumerate(splits):
            attrs = {"stream": stream, "loop": "poisson" if offered else "closed", "inflight": inflight}
            for frame in range(4):
                n += 1
                start = (stream * 1000 + frame * 40) * 10**6
                common = {"run_id": run_id, "inference": n, "split": split, "start_ns": start}
                spans += [
                    Span(
                        participant="phone",
                        stage=0,
                        kind="inference",
                        end_ns=start + 100 * 10**6,
                        attrs={**attrs, "offered_fps": offered},
                        **common,
                    ),
                    Span(
                        participant="phone", stage=0, kind="compute", end_layer=split, end_ns=start, **common
                    ),
                    Span(participant="cloud", stage=1, kind="compute", end_layer=21, end_ns=start, **common),
                ]
        store.append_spans(run_id, spans)
        store.finish_run(run_id, "succeeded")
    return run_id


def test_plan_check_on_a_stream_run_compares_frames_per_second(ws):
    args = ("--devices", "local-1t,local-2t", "-w", str(ws.root))
    every = _stored_stream(ws, list(range(22)))
    data = json.loads(splittracer("plan", "--check", every, "--json", *args).stdout)
    assert data["objective"] == "throughput" and data["planned_streamed"] and data["compared"] == "planned"
    assert len(data["streams"]) == 22 and all(s["planned_fps"] > 0 for s in data["streams"])
    assert all(s["achieved_fps"] == pytest.approx(25.0) and s["limited_by"] is None for s in data["streams"])
    planned = data["planned"][0]
    assert data["streams"][planned]["planned_fps"] == pytest.approx(data["planned_fps"])
    text = splittracer("plan", "--check", every, *args)
    assert text.returncode == 0, text.stderr
    assert f"achieved by the choice 25.00 frames/s (stream {planned})" in " ".join(text.stdout.split())

    others = [k for k in (0, 21) if k != planned]
    skipped = _stored_stream(ws, others, offered=25.0)
    instead = json.loads(splittracer("plan", "--check", skipped, "--json", *args).stdout)
    assert not instead["planned_streamed"] and instead["compared"] == "predicted_best_streamed"
    assert {s["limited_by"] for s in instead["streams"]} == {"offered load"}
    partial = " ".join(splittracer("plan", "--check", skipped, *args).stdout.split())
    assert f"planner's choice: {planned} (" in partial and "not streamed by this run" in partial
    assert "compared instead:" in partial and "did not test the pipeline's capacity" in partial
    energy = splittracer("plan", "--check", skipped, "--objective", "energy", *args)
    assert energy.returncode == 2 and "Drop --objective energy" in energy.stderr
