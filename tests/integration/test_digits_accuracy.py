"""The digits example end to end: a trained CNN, labelled images, accuracy per split x codec."""

from __future__ import annotations

import pytest

from splittracer.examples.digits.train import train
from splittracer.report.runs import run_summary
from splittracer.wire.lossy import HEADER_BYTES

from .helpers import run, workspace_with

pytestmark = pytest.mark.slow


def test_digits_accuracy_per_split_and_codec(tmp_path):
    ws = workspace_with(tmp_path, {})
    trained = train(ws.root)
    assert trained.test_accuracy >= 0.95 and trained.test_images == 360
    shipped = trained.experiment.read_text()
    assert ws.load_manifest("digits").name == "digits"  # the shipped experiment is valid as written
    quick = shipped.replace("repeats: 360", "repeats: 40").replace(
        "codecs: [none, fp16, bf16, int8, int8-channel, int4]", "codecs: [none, fp16, int8]"
    )
    (ws.experiments_dir / "digits.yaml").write_text(quick)
    outcome, store = run(ws, "digits")
    assert outcome.status == "succeeded", outcome.error
    rows = {(r.split, r.codec): r for r in run_summary(store, outcome.run_id).accuracy}
    splits = sorted({split for split, _ in rows})
    assert splits == list(range(10)) and len(rows) == 30
    for split in splits:
        none, fp16, int8 = rows[split, "none"], rows[split, "fp16"], rows[split, "int8"]
        assert none.count == fp16.count == int8.count == none.labelled == 40
        assert none.top1 is not None and none.top1 >= 0.9 and none.agreement == 1.0
        assert fp16.agreement is not None and fp16.agreement >= 0.99
        assert abs((fp16.top1 or 0) - none.top1) < 0.03 and (none.top5 or 0) >= none.top1
        header = none.bytes_wire - none.bytes_raw  # the task's own header: the same for every codec
        tensors = 2 if split == 0 else 1  # split 0 also sends nothing but the input
        assert fp16.bytes_wire - header == pytest.approx(
            none.bytes_raw / 2 + HEADER_BYTES, abs=HEADER_BYTES * tensors
        )
        assert int8.bytes_wire - header == pytest.approx(
            none.bytes_raw / 4 + HEADER_BYTES + 8, abs=18 * tensors
        )


def test_weights_and_a_csv_dataset_given_on_the_command_line(tmp_path):
    """`run --weights --dataset`: this run's model files, checked first, recorded with the run."""
    import subprocess
    import sys

    import torch

    from splittracer.examples.digits import build
    from splittracer.metrics.store import ResultsStore

    ws = workspace_with(tmp_path, {})
    trained = train(ws.root)
    shipped = trained.experiment.read_text()
    (ws.experiments_dir / "digits.yaml").write_text(
        shipped.replace("repeats: 360", "repeats: 20")
        .replace("splits: all", "splits: [0, 4]")
        .replace("codecs: [none, fp16, bf16, int8, int8-channel, int4]", "codecs: [none]")
    )
    images = sorted(trained.dataset.rglob("*.png"))[::18][:20]  # a spread over the ten digits
    csv = tmp_path / "val.csv"
    rows = [f"{p.relative_to(trained.dataset.parent).as_posix()},{p.parent.name}" for p in images]
    csv.with_name("digits").symlink_to(trained.dataset.parent, target_is_directory=True)
    csv.write_text("file,label\n" + "\n".join(f"digits/{row}" for row in rows) + "\n")
    torch.manual_seed(1)
    untrained = tmp_path / "untrained.pt"
    torch.save(build().state_dict(), untrained)

    def cli(*args):
        command = [sys.executable, "-m", "splittracer", "run", "digits", "--workspace", str(ws.root), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=600)

    missing = cli("--weights", str(tmp_path / "nope.pt"))
    assert missing.returncode == 2 and "--weights: weights file" in missing.stderr, missing.stderr
    assert "Traceback" not in missing.stderr and not ResultsStore(ws.results_db).list_runs()
    done = cli("--weights", str(untrained), "--dataset", str(csv), "--json", "--no-plot")
    assert done.returncode == 0, done.stderr
    store = ResultsStore(ws.results_db)
    run_id = store.list_runs()[-1].id
    assert store.get_run(run_id).record.overrides == {
        "model.weights": str(untrained.resolve()),
        "model.dataset": str(csv.resolve()),
    }
    rows = {r.split: r for r in run_summary(store, run_id).accuracy}
    assert sorted(rows) == [0, 4]
    for row in rows.values():
        assert row.count == row.labelled == 20  # every CSV row had a label
        assert row.top1 is not None and row.top1 < 0.6  # untrained weights: not the trained ~99%


AUTO = """
name: auto-codec
model:
  source: "splittracer.examples.digits:build"
  input_shape: [1, 3, 8, 8]
  weights: ../digits/weights.pt
  dataset: ../digits/test
participants:
  phone: {role: "splittracer.builtin:SplitHead", profile: digits-1t, limits: {threads: 1, uplink: 3g}}
  cloud: {role: "splittracer.builtin:SplitTail", profile: digits-1t, limits: {threads: 1}}
playbook:
  phone:
    - task: Infer
      params:
        {split: auto, next: [cloud], count: 4, finish: true, max_accuracy_drop: BUDGET, accuracy_from: FROM}
"""


def test_split_auto_plans_the_codec_within_an_accuracy_budget(tmp_path):
    """`split: auto` + `max_accuracy_drop`: split and codec chosen from a profile run's codecs."""
    from splittracer.controller.resolve import resolve_run
    from splittracer.errors import ConfigError
    from splittracer.plan.profiles import DeviceProfile, ProfileStore, default_profile_dir, profile_local

    ws = workspace_with(tmp_path, {})
    trained = train(ws.root)
    (ws.experiments_dir / "digits.yaml").write_text(
        trained.experiment.read_text()
        .replace("repeats: 360", "repeats: 20")
        .replace("codecs: [none, fp16, bf16, int8, int8-channel, int4]", "codecs: [none, int8]")
    )
    swept, store = run(ws, "digits")
    assert swept.status == "succeeded", swept.error
    records = profile_local(
        ["splittracer.examples.digits:build"], threads=1, repeats=3, input_shape=(1, 3, 8, 8)
    )
    ProfileStore(default_profile_dir(ws.results_dir)).save(
        DeviceProfile(name="digits-1t", threads=1).with_models(records)
    )

    (ws.experiments_dir / "auto-codec.yaml").write_text(
        AUTO.replace("BUDGET", "100%").replace("FROM", "nope")
    )
    with pytest.raises(ConfigError, match="nope") as caught:
        resolve_run(ws.load_manifest("auto-codec"), ws.root)
    assert caught.value.key == "playbook.phone.0.params.accuracy_from"

    # Any drop allowed: at 3G, int8 (a quarter of the bytes, the same compute) beats none at every split.
    (ws.experiments_dir / "auto-codec.yaml").write_text(
        AUTO.replace("BUDGET", "100%").replace("FROM", swept.run_id)
    )
    outcome, store = run(ws, "auto-codec")
    assert outcome.status == "succeeded", outcome.error
    decisions = [m for m in store.metrics(outcome.run_id) if m.name == "split_plan"]
    assert [m.attrs["codec"] for m in decisions] == ["int8"]
    assert [d.codec for d in run_summary(store, outcome.run_id).decisions] == ["int8"]  # results show
    used = {
        s.attrs.get("codec")
        for s in store.spans(outcome.run_id)
        if s.kind == "transfer" and s.attrs.get("direction") == "forward" and s.split >= 0
    }
    assert used == {"int8"}
