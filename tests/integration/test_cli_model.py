"""The ``splittracer model`` commands, run as a user would: a real process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def splittracer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "splittracer", *args], capture_output=True, text=True, timeout=300
    )


def test_inspect_json_alexnet():
    result = splittracer("model", "inspect", "torchvision:alexnet", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["method"] == "export"
    assert len(data["layers"]) == 21 and len(data["splits"]) == 22
    assert [s["bytes"] for s in data["splits"]][:4] == [602_112, 774_400, 774_400, 186_624]


def test_inspect_table_shows_every_layer():
    result = splittracer("model", "inspect", "torchvision:alexnet")
    assert result.returncode == 0, result.stderr
    assert "21 layers, 22 split points" in result.stdout
    assert "classifier.6" in result.stdout and "602,112" in result.stdout


def test_verify_reports_every_split():
    result = splittracer(
        "model",
        "verify",
        "torchvision:resnet18",
        "--input-shape",
        "1,3,64,64",
        "--granularity",
        "block",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] and len(data["splits"]) == 15


def test_profile_json():
    result = splittracer(
        "model", "profile", "torchvision:alexnet", "--repeats", "2", "--warmup", "1", "--json"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["layers"]) == 21 and data["forward_median_ms"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model", "inspect", "torchvision:alexnett"], "no model named 'alexnett'"),
        (
            ["model", "inspect", "torchvision:alexnet", "--input-shape", "1,3,4,4"],
            "fails on an input of shape",
        ),
        (["model", "inspect", "torchvision:alexnet", "--input-shape", "abc"], "positive integers"),
        (
            ["model", "inspect", "tests.unit.toy_models:DataDependent", "--input-shape", "2,8"],
            "`capture:` listing `eager`",
        ),
        (
            ["model", "inspect", "torchvision:alexnet", "--granularity", "huge"],
            "leaf, block or depth",
        ),
        (
            [
                "model",
                "inspect",
                "torchvision:resnet18",
                "--override",
                "tests/unit/fixtures/overrides/unknown_key.yaml",
            ],
            "unknown_key.yaml:2",
        ),
    ],
)
def test_user_mistakes_exit_2_without_traceback(args, message):
    result = splittracer(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


INCEPTION = ("tests.unit.toy_models:inception_toy", "--input-shape", "1,3,16,16")


def test_inspect_placement_shows_each_side_and_what_crosses(tmp_path):
    placement = tmp_path / "p.yaml"
    placement.write_text("first: stem,block1.b2\n")
    result = splittracer("model", "inspect", *INCEPTION, "--placement", str(placement), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["placement"] == "1-2,4-6" and data["split"] is None
    assert data["first_names"] == ["stem.0", "stem.1", "block1.b2.0", "block1.b2.1", "block1.b2.2"]
    assert [t["shape"] for t in data["tensors"]] == [[1, 8, 16, 16], [1, 4, 16, 16]]
    assert data["bytes"] == 8192 + 4096
    text = splittracer("model", "inspect", *INCEPTION, "--placement", "stem,block1.b1,block1.b3")
    assert text.returncode == 0, text.stderr
    assert "first device: 1-3 (stem.0..block1.b1), 7-9 (block1.b3.0..block1.b3.2)" in text.stdout
    assert "3 tensors, 16,384 bytes cross." in text.stdout


def test_inspect_unclosed_placement_names_the_layer_and_exits_2():
    result = splittracer("model", "inspect", *INCEPTION, "--placement", '["block1.b2.2"]')
    assert result.returncode == 2, result.stderr
    assert "layer 6 (block1.b2.2) is placed on the first device but reads" in result.stderr
    assert "least placement holding these layers is 1-2,4-6" in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_error_exits_2():
    result = splittracer("model", "inspect")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_torch_noise_stays_off_the_terminal_unless_debug():
    args = ["model", "inspect", "tests.unit.toy_models:DataDependent", "--input-shape", "2,8"]
    quiet = splittracer(*args)
    assert quiet.returncode == 2
    # only SplitTracer's own paragraph: no graph dump, no torch log line, no warning
    assert quiet.stderr.lstrip().startswith("error: no capture method"), quiet.stderr
    assert "def forward" not in quiet.stderr and "symbolic_shapes" not in quiet.stderr
    loud = splittracer("--debug", *args)
    assert loud.returncode == 2
    assert "def forward" in loud.stderr  # --debug lets torch's own output through


def test_verify_chosen_splits_only():
    result = splittracer("model", "verify", "torchvision:alexnet", "--splits", "0,5,21", "--json")
    assert result.returncode == 0, result.stderr
    assert [s["index"] for s in json.loads(result.stdout)["splits"]] == [0, 5, 21]
    outside = splittracer("model", "verify", "torchvision:alexnet", "--splits", "3,99")
    assert outside.returncode == 2 and "split 99 is not a split point" in outside.stderr
    assert "Traceback" not in outside.stderr


@pytest.mark.slow
def test_verify_a_detector_captured_eagerly():
    """Faster R-CNN: data-dependent post-processing, lists of dicts out; split between its parts."""
    args = ["model", "verify", "tests.unit.toy_models:small_detector", "--granularity", "block", "--json"]
    result = splittracer(*args)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] and [s["after"] for s in data["splits"]] == [
        "input",
        "transform",
        "backbone",
        "rpn",
        "roi_heads",
    ]
    assert all(s["max_abs_diff"] == 0 for s in data["splits"])


def test_version():
    from splittracer import __version__

    result = splittracer("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"splittracer {__version__}"
