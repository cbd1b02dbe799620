"""Mistakes only the model can reveal, reported before anything starts: file, line, key, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from splittracer.controller.preflight import CACHE_FILE, check_manifest
from splittracer.errors import ConfigError
from splittracer.manifest import load_manifest

FIXTURES = Path(__file__).parent / "fixtures" / "manifests"


@pytest.mark.parametrize(
    ("name", "line", "key", "phrase"),
    [
        ("split_out_of_range", 11, "playbook.phone.0.params.splits", "0..21"),
        ("infer_split_out_of_range", 11, "playbook.phone.0.params.split", "split 50"),
        ("cuts_out_of_order", 12, "playbook.phone.0.params.cuts", "go backwards"),
        ("model_typo", 4, "model.source", "alexnett"),
        ("yolo_typo", 4, "model.source", "yolov8nn.yaml"),
        ("stream_drop_policy", 17, "playbook.phone.0.params.drop.policy", "newest or oldest"),
        ("stream_splits_out_of_range", 12, "playbook.phone.0.params.splits", "split 40"),
        ("participant_model_typo", 7, "participants.phone.model.source", "mobilenet_v3_smal"),
        ("split_across_models", 13, "playbook.phone.0.params.next", "'cloud' runs"),
        ("participant_split_out_of_range", 14, "playbook.phone.0.params.splits", "0..3"),
    ],
)
def test_the_model_and_its_splits_are_checked_before_a_run(name, line, key, phrase, tmp_path):
    manifest = load_manifest(FIXTURES / f"{name}.yaml")
    with pytest.raises(ConfigError) as caught:
        check_manifest(manifest, tmp_path)
    error = caught.value
    assert (error.line, error.key) == (line, key), error.render()
    assert phrase in error.render() and error.exit_code == 2


def test_a_valid_sweep_passes_and_the_layer_count_is_cached(tmp_path):
    text = (FIXTURES / "split_out_of_range.yaml").read_text().replace("[3, 99]", "[3, 21]")
    (tmp_path / "ok.yaml").write_text(text)
    manifest = load_manifest(tmp_path / "ok.yaml")
    assert check_manifest(manifest, tmp_path / "cache") == 21
    cached = json.loads((tmp_path / "cache" / CACHE_FILE).read_text())
    assert list(cached.values()) == [21]
    # A second check reads the count back instead of capturing: poison the cache to see it used.
    (tmp_path / "cache" / CACHE_FILE).write_text(json.dumps(dict.fromkeys(cached, 2)))
    with pytest.raises(ConfigError, match=r"0\.\.2\b"):
        check_manifest(manifest, tmp_path / "cache")


def test_a_manifest_without_a_model_has_nothing_to_check(tmp_path):
    (tmp_path / "m.yaml").write_text(
        "name: chat\nparticipants:\n  a: {role: splittracer.builtin:SplitTail}\n"
        "playbook:\n  a:\n    - task: Finish\n"
    )
    assert check_manifest(load_manifest(tmp_path / "m.yaml"), tmp_path) is None


def test_a_stream_trace_file_that_is_not_there_is_refused_at_its_key(tmp_path):
    from splittracer.controller.resolve import resolve_run

    manifest = load_manifest(FIXTURES / "stream_trace_missing.yaml")
    with pytest.raises(ConfigError) as caught:
        resolve_run(manifest, tmp_path)
    error = caught.value
    assert (error.line, error.key) == (15, "playbook.phone.0.params.trace"), error.render()
    assert "no-such-frames.csv" in error.render() and error.exit_code == 2
