"""Cooperative inference across different models: each participant runs its own ``model:``.

The shipped examples (``splittracer.examples.cooperative``) run for real on loopback:
two sensors' models fused on a hub with a third, and a phone-to-cloud pipeline of two.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from importlib import resources

import pytest

from splittracer.report.export import export_run, several_models, spans_to_frame
from splittracer.report.runs import run_summary, summary_to_dict

from .helpers import run, workspace_with

pytestmark = pytest.mark.slow

MODELS = "splittracer.examples.cooperative.models"
EXAMPLES = resources.files("splittracer.examples.cooperative")


def _example(tmp_path, name: str, file: str, count: int = 4):
    text = EXAMPLES.joinpath(file).read_text().replace("count: 10", f"count: {count}")
    ws = workspace_with(tmp_path, {name: text})
    outcome, store = run(ws, name)
    assert outcome.status == "succeeded", outcome.error
    return store, outcome.run_id


def _cli(tmp_path, *args: str) -> str:
    command = [sys.executable, "-m", "splittracer", *args, "--workspace", str(tmp_path / "ws")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=None)
    assert result.returncode == 0, result.stderr
    return " ".join(result.stdout.split())  # rich wraps lines at the terminal's width


def _compute_models(store, run_id: str) -> dict[str, str]:
    """Each participant that computed -> the model the run recorded for it."""
    models = {n: p.model for n, p in store.get_run(run_id).record.participants.items()}
    return {s.participant: models[s.participant] for s in store.spans(run_id) if s.kind == "compute"}


SENSOR_FUSION = {"microphone": "microphone", "camera": "camera", "hub": "fusion"}  # participant: model


def test_two_sensors_models_are_fused_by_the_hubs_model(tmp_path):
    store, run_id = _example(tmp_path, "sensor-fusion", "fusion.yaml")
    assert _compute_models(store, run_id) == {n: f"{MODELS}:{m}" for n, m in SENSOR_FUSION.items()}
    # Each sensor's layers ran its own model: 5 layers each, the hub's 3 once per fused pair.
    computes = Counter(s.participant for s in store.spans(run_id) if s.kind == "compute")
    assert computes["hub"] == 4 and computes["microphone"] == computes["camera"] == 4
    fused = [m for m in store.metrics(run_id) if m.name == "fused_events"]
    assert sorted(m.attrs["index"] for m in fused) == [0, 1, 2, 3]
    assert {m.value for m in fused} == {5.0}  # the fusion model's 5 events, from 2 x 8 features
    inferences = [s for s in store.spans(run_id) if s.kind == "inference"]
    assert Counter(s.participant for s in inferences) == {"microphone": 4, "camera": 4}
    exported = export_run(store, run_id, tmp_path / "spans.csv").read_text().splitlines()
    assert exported[0].startswith("run_id,participant,model,")
    assert any(f",hub,{MODELS}:fusion," in line for line in exported[1:])
    shown = _cli(tmp_path, "results", "show", "latest")
    assert "models " in shown
    assert all(f"{name}: {MODELS}:{model}" in shown for name, model in SENSOR_FUSION.items())
    assert f"{MODELS}:fusion" in _cli(tmp_path, "experiment", "show", "sensor-fusion")


def test_a_pipeline_of_two_models_phone_then_cloud(tmp_path):
    store, run_id = _example(tmp_path, "speech-translation", "pipeline.yaml")
    assert _compute_models(store, run_id) == {
        "phone": f"{MODELS}:speech_to_text",
        "cloud": f"{MODELS}:translation",
    }
    assert summary_to_dict(run_summary(store, run_id))["models"] == {  # results show --json
        "phone": f"{MODELS}:speech_to_text",
        "cloud": f"{MODELS}:translation",
    }
    frame = spans_to_frame(store.spans(run_id), several_models(store.get_run(run_id).record))
    computed = frame[frame["kind"] == "compute"]
    assert set(zip(computed["participant"], computed["model"])) == {
        ("phone", f"{MODELS}:speech_to_text"),
        ("cloud", f"{MODELS}:translation"),
    }
    widths = [m.value for m in store.metrics(run_id) if m.name == "translation_width"]
    assert widths == [32.0] * 4  # model B's output, computed on model A's 16 token scores
    transfers = [s for s in store.spans(run_id) if s.kind == "transfer" and s.inference >= 0]
    sent = Counter((s.attrs["from"], s.attrs["to"]) for s in transfers)
    assert sent == {("phone", "cloud"): 4, ("cloud", "phone"): 4}
    # A's (1, 16) float32 scores cross to the cloud; B's (1, 32) come back.
    assert all(s.bytes_raw >= 4 * (16 if s.attrs["to"] == "cloud" else 32) for s in transfers)
