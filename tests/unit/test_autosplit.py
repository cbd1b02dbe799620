"""``split: auto`` / ``split: adaptive`` in manifests: planner inputs and the mistakes refused."""

from __future__ import annotations

import dataclasses
import math
import textwrap

import pytest

from splittracer.builtin import Infer
from splittracer.cli import main
from splittracer.controller.autosplit import resolve_planned_splits
from splittracer.controller.resolve import resolve_run
from splittracer.errors import ConfigError
from splittracer.manifest import build_task
from splittracer.plan.online import MEASURE, decode_inputs
from splittracer.plan.profiles import DeviceProfile, ProfileStore, default_profile_dir
from splittracer.workspace import init_workspace

from .toy_models import profile_toy_devices

TOY = "tests.unit.toy_models:chain_of_opaque"

MANIFEST = """
name: {name}
model: {{source: "{toy}", input_shape: [2, 8]}}
participants:
  phone:
    role: splittracer.builtin:SplitHead
    profile: {head}
    limits: {{uplink: {uplink}, latency: 10ms}}
  cloud:
    role: splittracer.builtin:SplitTail
    profile: toy-b
    limits: {{uplink: 18.88mbit}}
playbook:
  phone:
    - task: Infer
      params: {params}
"""


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = init_workspace(tmp_path_factory.mktemp("autosplit") / "ws")
    profile_toy_devices(ws.results_dir)
    return ws


def manifest(ws, params: str, *, head: str = "toy-a", uplink: str = "5.85mbit", name: str = "m"):
    text = MANIFEST.format(name=name, toy=TOY, head=head, uplink=uplink, params=params)
    (ws.experiments_dir / f"{name}.yaml").write_text(textwrap.dedent(text))
    return ws.load_manifest(name)


def planned(ws, params: str, **kwargs) -> Infer:
    plan = resolve_run(manifest(ws, params, **kwargs), ws.root)
    (_, task), *_ = plan.playbook
    assert isinstance(task, Infer)
    return task


def test_auto_carries_the_profiles_costs_and_the_emulated_links(ws):
    task = planned(ws, "{split: auto, next: [cloud], count: 3}")
    inputs = decode_inputs(task.planner)
    store = ProfileStore(default_profile_dir(ws.results_dir))
    expected = [[layer.median_ms for layer in store.load(n).models[0].layers] for n in ("toy-a", "toy-b")]
    assert inputs.devices == ["toy-a", "toy-b"] and inputs.methods == ["measured", "measured"]
    assert inputs.costs == expected and len(expected[0]) == 3
    assert inputs.bandwidths_bps == [5.85e6] and inputs.sources == ["uplink"]
    assert inputs.latencies_s == [0.01]
    assert inputs.reply_bps == [18.88e6] and inputs.reply_latencies_s == [0.0]


def test_bandwidth_given_or_measured_where_nothing_is_emulated(ws):
    given = decode_inputs(
        planned(ws, "{split: adaptive, next: [cloud], bandwidth: 3g}", uplink="unlimited").planner
    )
    assert given.bandwidths_bps == [1.1e6] and given.sources == ["given"]
    measured = decode_inputs(planned(ws, "{cuts: auto, next: [cloud]}", uplink="unlimited").planner)
    assert measured.bandwidths_bps == [MEASURE] and measured.sources == ["measure"]
    assert measured.reply_bps == [18.88e6] and not math.isinf(measured.reply_bps[0])


def test_fixed_splits_carry_no_planner_inputs(ws):
    assert planned(ws, "{split: 2, next: [cloud]}").planner == b""


def test_resolving_leaves_the_manifest_and_the_given_tasks_as_they_were(ws):
    m = manifest(ws, "{split: auto, next: [cloud], count: 3}")
    before = m.model_dump()
    given = [(name, build_task(entry)) for name, entries in m.playbook.items() for entry in entries]
    resolved = resolve_planned_splits(m, given, ws.root)
    (_, task), (_, copy) = given[0], resolved[0]
    assert isinstance(task, Infer) and isinstance(copy, Infer)
    assert task.planner == b"" and decode_inputs(copy.planner).devices == ["toy-a", "toy-b"]
    assert copy is not task and copy.split == "auto" and copy.next == task.next
    resolve_run(m, ws.root)
    assert m.model_dump() == before


def located(ws, params: str, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        resolve_run(manifest(ws, params, **kwargs), ws.root)
    return caught.value


def test_unknown_mode_names_file_line_key_and_the_words(ws):
    error = located(ws, "{split: adaptiv, next: [cloud]}")
    assert error.key == "playbook.phone.0.params" + ".split" and error.line == 16
    assert error.path and error.path.endswith("m.yaml")
    assert "Did you mean 'adaptive'" in error.render() and "split: auto" in error.render()


def test_unknown_profile_says_how_to_make_it(ws):
    error = located(ws, "{split: auto, next: [cloud]}", head="toy-c")
    assert error.key == "participants.phone.profile" and error.line == 7
    assert "no device profile 'toy-c'" in error.message
    assert f"splittracer profile toy-c {TOY}" in error.render() and "toy-a" in error.render()


def test_missing_profile_says_what_to_add(ws):
    text = MANIFEST.format(
        name="m", toy=TOY, head="toy-a", uplink="lte", params="{split: auto, next: [cloud]}"
    )
    (ws.experiments_dir / "m.yaml").write_text(textwrap.dedent(text).replace("    profile: toy-b\n", ""))
    with pytest.raises(ConfigError) as caught:
        resolve_run(ws.load_manifest("m"), ws.root)
    assert caught.value.key == "participants.cloud.profile"
    assert "names no device profile" in caught.value.message and "profile: cloud" in caught.value.render()


@pytest.mark.parametrize(
    ("params", "key", "phrase"),
    [
        ("{split: auto, next: [cloud], bandwidth: wifi}", "bandwidth", "emulated uplink is 5.85mbit"),
        ("{split: auto, next: [cloud], bandwidth: [lte, 3g]}", "bandwidth", "2 bandwidths for 1 hop"),
        ("{split: auto, next: [cloud], threshold: 0}", "threshold", "above 0"),
        ("{split: auto, cuts: [1], next: [cloud]}", "cuts", "not both"),
        ("{split: 1, next: [cloud], uplink_trace: [[2, fast]]}", "uplink_trace", "rate"),
    ],
)
def test_other_mistakes_are_located(ws, params, key, phrase):
    error = located(ws, params)
    assert error.key == f"playbook.phone.0.params.{key}" and phrase in error.message


def test_cli_run_exits_2_before_starting_anything(ws, capsys):
    manifest(ws, "{split: sometimes, next: [cloud]}", name="bad")
    assert main(["run", "bad", "--workspace", str(ws.root)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:16" in err and "split 'sometimes'" in err


@pytest.fixture(scope="module")
def with_energy_profile(ws):
    """toy-e: toy-a's timings with 2 mJ per layer call, as a profile measured on a device with a sensor."""
    store = ProfileStore(default_profile_dir(ws.results_dir))
    source = store.load("toy-a")
    records = [
        dataclasses.replace(m, layers=tuple(dataclasses.replace(layer, energy_mj=2.0) for layer in m.layers))
        for m in source.models
    ]
    store.save(DeviceProfile(name="toy-e", threads=1).with_models(records))
    return ws


def test_energy_objective_carries_the_first_devices_joules_and_radio(with_energy_profile):
    ws = with_energy_profile
    task = planned(ws, "{split: auto, next: [cloud], objective: energy}", head="toy-e", uplink="lte")
    inputs = decode_inputs(task.planner)
    assert inputs.objective == "energy" and inputs.energy_mj == [2.0, 2.0, 2.0]
    assert inputs.tx_power == "lte"  # the uplink's name gives the radio
    given = decode_inputs(
        planned(
            ws, "{split: adaptive, next: [cloud], objective: energy, tx_power: 800mW}", head="toy-e"
        ).planner
    )
    assert given.tx_power == "800mW"
    assert decode_inputs(planned(ws, "{split: auto, next: [cloud]}").planner).energy_mj == []


@pytest.mark.parametrize(
    ("params", "head", "key", "phrase"),
    [
        (
            "{split: auto, next: [cloud], objective: energi}",
            "toy-e",
            "params.objective",
            "Did you mean 'energy'",
        ),
        ("{split: auto, next: [cloud], objective: energy}", "toy-e", "params.tx_power", "radio power"),
        (
            "{split: auto, next: [cloud], objective: energy, tx_power: loud}",
            "toy-e",
            "params.tx_power",
            "watts",
        ),
        ("{split: auto, next: [cloud], tx_power: 1W}", "toy-e", "params.tx_power", "only with objective"),
        ("{split: 2, next: [cloud], objective: energy}", "toy-e", "params.objective", "gives its split"),
    ],
)
def test_energy_objective_mistakes_are_located(with_energy_profile, params, head, key, phrase):
    error = located(with_energy_profile, params, head=head)
    assert error.key == f"playbook.phone.0.{key}" and phrase in error.render()


def test_energy_objective_needs_a_profile_with_energy(ws):
    error = located(ws, "{split: auto, next: [cloud], objective: energy, tx_power: 1W}")
    assert error.key == "participants.phone.profile" and "energy" in error.render()
