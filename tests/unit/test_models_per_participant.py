"""A model per participant: ``model:`` on a participant or a replica group, else the manifest's."""

from __future__ import annotations

import textwrap

import pytest

from splittracer.controller.preflight import check_manifest
from splittracer.controller.resolve import resolve_run
from splittracer.errors import ConfigError
from splittracer.experiment import Experiment
from splittracer.manifest import load_manifest

MODELS = "splittracer.examples.cooperative.models"

FLEET = f"""
name: fleet
model: {{source: {MODELS}:fusion}}
participants:
  camera:
    role: splittracer.examples.cooperative.roles:Sensor
    replicas: 2
    model: {{source: {MODELS}:camera, weights: cam.pt, granularity: block}}
  microphone:
    role: splittracer.examples.cooperative.roles:Sensor
    model: {{source: {MODELS}:microphone}}
  hub: {{role: "splittracer.examples.cooperative.roles:Hub", params: {{sensors: [camera-0, microphone]}}}}
playbook:
  camera: [{{task: Sense, params: {{count: 2}}}}]
  microphone: [{{task: Sense, params: {{count: 2}}}}]
"""


def _write(tmp_path, text: str):
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text))
    (tmp_path / "cam.pt").write_bytes(b"")
    return path


def test_each_participant_runs_its_own_model_else_the_manifests(tmp_path):
    manifest = load_manifest(_write(tmp_path, FLEET))
    camera = manifest.participants["camera"].model
    assert camera is not None and camera.weights == tmp_path / "cam.pt"  # relative to the manifest
    assert camera.granularity == "block"
    assert {n: manifest.model_of(n).source for n in ("camera-0", "camera-1", "microphone", "hub")} == {
        "camera-0": f"{MODELS}:camera",
        "camera-1": f"{MODELS}:camera",
        "microphone": f"{MODELS}:microphone",
        "hub": f"{MODELS}:fusion",
    }
    assert manifest.model_key("camera-1") == ("participants", "camera", "model")
    assert manifest.model_key("hub") == ("model",)


def test_the_resolved_run_tells_every_replica_its_model(tmp_path):
    plan = resolve_run(load_manifest(_write(tmp_path, FLEET)))
    models = {p.name: plan.model_of(p) for p in plan.participants}
    assert {n: m.source for n, m in models.items() if m} == {
        "camera-0": f"{MODELS}:camera",
        "camera-1": f"{MODELS}:camera",
        "microphone": f"{MODELS}:microphone",
        "hub": f"{MODELS}:fusion",
    }
    assert models["camera-0"].weights == str(tmp_path / "cam.pt")
    assert [m.source for m in plan.models] == [f"{MODELS}:{n}" for n in ("camera", "microphone", "fusion")]


def test_a_participants_model_is_checked_as_the_top_level_one_is(tmp_path):
    text = FLEET.replace("granularity: block", "granularity: blocks")
    with pytest.raises(ConfigError) as caught:
        load_manifest(_write(tmp_path, text))
    error = caught.value
    assert (error.line, error.key) == (8, "participants.camera.model.granularity"), error.render()
    assert "leaf, block or depth=N" in error.render() and error.exit_code == 2


def test_without_any_model_a_participant_has_none(tmp_path):
    text = "name: chat\nparticipants:\n  a: {role: splittracer.builtin:SplitTail}\nplaybook: {}\n"
    manifest = load_manifest(_write(tmp_path, text))
    assert manifest.model_of("a") is None and not manifest.has_models_per_participant


def test_two_models_files_of_one_name_are_refused_before_anything_starts(tmp_path):
    # A device receives the models' files under their base names: cam.pt and other/cam.pt collide.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "cam.pt").write_bytes(b"")
    text = FLEET.replace(f"{MODELS}:microphone}}", f"{MODELS}:microphone, weights: other/cam.pt}}")
    with pytest.raises(ConfigError) as caught:
        check_manifest(load_manifest(_write(tmp_path, text)))
    error = caught.value
    assert (error.line, error.key) == (11, "participants.microphone.model.weights"), error.render()
    assert "participants.camera.model.weights" in error.render() and error.exit_code == 2


def test_weights_given_at_run_time_apply_to_the_top_level_model_only(tmp_path):
    manifest = load_manifest(
        _write(tmp_path, FLEET.replace('role: "splittracer', 'model: {source: x:y}, role: "splittracer'))
    )
    assert manifest.has_models_per_participant and all(p.model for p in manifest.participants.values())
    with pytest.raises(ConfigError, match="runs its own model: --weights applies to none"):
        Experiment(workspace=None, manifest=manifest).with_model_files(weights=tmp_path / "cam.pt")


def test_a_part_given_another_models_tensors_says_what_its_cut_carries():
    """A sender running another model (or cut) makes torch fail on sizes; the error names the cut's
    shapes and what came, so the cause is plain. Tensors that fit run as before."""
    import torch
    from torch import nn

    from splittracer.errors import UserCodeError
    from splittracer.participant.context import ParticipantContext
    from splittracer.participant.recorder import TaggedRecorder
    from splittracer.split.model import SplitModel
    from splittracer.wire.messages import ModelConfig, RunConfig, RunOptions

    model = SplitModel(nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2)), torch.randn(1, 8))
    config = RunConfig(
        run_id="r",
        name="hub",
        stage=1,
        role="m:R",
        peers={},
        options=RunOptions(),
        model=ModelConfig("m:fusion"),
    )
    ctx = ParticipantContext(
        config, TaggedRecorder("r", "hub", 1), lambda *a: None, lambda *a, **k: None, model
    )
    assert ctx.run_layers(1, 3, torch.randn(1, 4)).shape == (1, 2)
    assert model.input_mismatch(1, [torch.randn(1, 4)]) is None
    with pytest.raises(UserCodeError) as raised:
        ctx.run_layers(1, 3, torch.randn(1, 6))
    message = str(raised.value)
    assert message.startswith("layers 2..3 of m:fusion ('hub') failed: RuntimeError: ")
    assert message.endswith("cut 1 of this model carries 1 tensor ([1, 4]); it was given 1 ([1, 6])")
    with pytest.raises(RuntimeError):  # a failure with the right inputs is left as it was
        ctx.run_layers(0, 3, torch.randn(1, 8).to(torch.int64))
