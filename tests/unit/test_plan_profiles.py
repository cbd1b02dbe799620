"""Device profiles: stored as JSON, found by name, measured in this process."""

from __future__ import annotations

import dataclasses
import json

import pytest

from splittracer.errors import SplitTracerError
from splittracer.plan.estimate import layer_costs
from splittracer.plan.graph import model_graph
from splittracer.plan.profiles import (
    DeviceProfile,
    LayerRecord,
    ModelRecord,
    ProfileStore,
    default_profile_dir,
    profile_local,
)
from splittracer.workspace import init_workspace, profile_store

TOY = "tests.unit.toy_models:chain_of_opaque"


@pytest.fixture(scope="module")
def toy_record():
    (record,) = profile_local([TOY], threads=1, repeats=2, warmup=0, input_shape=(2, 8))
    return record


def test_profile_local_measures_every_layer(toy_record):
    assert toy_record.source == TOY and toy_record.input_shape == (2, 8)
    assert [layer.name for layer in toy_record.layers] == ["a", "b", "c"]
    assert all(layer.median_ms > 0 for layer in toy_record.layers)
    assert toy_record.layers[0].units[0].kind == "linear"
    assert toy_record.layers[0].units[0].macs == 2 * 8 * 8


def test_save_and_load_round_trip(tmp_path, toy_record):
    store = ProfileStore(tmp_path)
    profile = DeviceProfile(name="local-1t", threads=1).with_models([toy_record])
    path = store.save(profile)
    assert path == tmp_path / "local-1t.json" and json.loads(path.read_text())["format"] == 1
    assert store.load("local-1t") == profile
    assert store.names() == ["local-1t"]
    again = store.load("local-1t").with_models([toy_record])
    assert len(again.models) == 1  # a model measured again replaces its old record
    assert profile.find(TOY, (2, 8), "leaf") == toy_record
    assert profile.find(TOY, (1, 8), "leaf") is None


def test_unknown_profile_names_the_known_ones(tmp_path):
    store = ProfileStore(tmp_path)
    store.save(DeviceProfile(name="local-1t"))
    with pytest.raises(SplitTracerError, match="no device profile named 'local-1' in") as caught:
        store.load("local-1")
    assert "local-1t" in (caught.value.hint or "")
    with pytest.raises(SplitTracerError, match="not a usable profile name"):
        store.load("../etc")


def test_a_damaged_profile_is_reported(tmp_path):
    (tmp_path / "bad.json").write_text('{"name": "bad", "models": 3}')
    with pytest.raises(SplitTracerError, match="not a valid device profile"):
        ProfileStore(tmp_path).load("bad")


def test_where_profiles_live(tmp_path, monkeypatch):
    monkeypatch.setenv("SPLITTRACER_CONFIG_DIR", str(tmp_path / "cfg"))
    assert default_profile_dir() == tmp_path / "cfg" / "profiles"
    monkeypatch.delenv("SPLITTRACER_CONFIG_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_profile_dir() == tmp_path / "xdg" / "splittracer" / "profiles"
    ws = init_workspace(tmp_path / "ws")
    assert profile_store(ws.root).directory == ws.results_dir / "profiles"
    monkeypatch.chdir(ws.experiments_dir)
    assert profile_store().directory == ws.results_dir / "profiles"
    monkeypatch.chdir(tmp_path)
    assert profile_store().directory == tmp_path / "xdg" / "splittracer" / "profiles"


def test_layer_costs_measured_or_predicted(alexnet_split, toy_record):
    import dataclasses

    graph = model_graph(alexnet_split.split)
    key = ("torchvision:alexnet", (1, 3, 224, 224), "leaf")
    fake = dataclasses.replace(
        toy_record,
        source=key[0],
        input_shape=key[1],
        layers=tuple(
            dataclasses.replace(
                toy_record.layers[0], index=x.index, name=x.name, units=x.units, median_ms=1.0
            )
            for x in graph.layers
        ),
    )
    profile = DeviceProfile(name="p").with_models([fake, toy_record])
    measured = layer_costs(profile, graph, key)
    assert measured.method == "measured" and measured.ms == (1.0,) * 21
    predicted = layer_costs(profile, graph, key, "regression")
    assert predicted.method == "regression" and predicted.trained_on == (TOY,)
    with pytest.raises(SplitTracerError, match="has no measurement"):
        layer_costs(DeviceProfile(name="q").with_models([toy_record]), graph, key, "measured")
    with pytest.raises(SplitTracerError, match="no other model"):
        layer_costs(DeviceProfile(name="q").with_models([fake]), graph, key, "regression")


def _layer(index: int, median: float, p25: float, p75: float) -> LayerRecord:
    return LayerRecord(index, f"l{index}", "Conv2d", median, p25, p75, ())


def _record(*layers: LayerRecord, at: str = "2026-01-01T00:00:00+00:00") -> ModelRecord:
    return ModelRecord("m", (1, 3), "leaf", 10, 2, sum(x.median_ms for x in layers), at, layers)


def test_unsteady_layers_are_the_wide_spread_ones_that_matter():
    record = _record(
        _layer(1, 30.0, 29.0, 31.0),  # steady: 7 %
        _layer(2, 20.0, 15.0, 40.0),  # disturbed: 125 %
        _layer(3, 0.01, 0.001, 0.05),  # too fast to judge
        _layer(4, 0.5, 0.1, 2.0),  # under 2 % of the model: cannot move a plan
    )
    assert record.layers[1].spread == pytest.approx(1.25)
    assert [x.name for x in record.unsteady_layers()] == ["l2"]
    assert record.spread == pytest.approx((2 + 25 + 0.049 + 1.9) / 50.51)
    assert _record(_layer(1, 30.0, 29.0, 31.0)).unsteady_layers() == ()


def test_replaced_by_names_the_records_a_new_measurement_replaces():
    old = _record(_layer(1, 30.0, 29.0, 31.0))
    profile = DeviceProfile(name="p").with_models([old])
    new = _record(_layer(1, 100.0, 60.0, 140.0), at="2026-01-02T00:00:00+00:00")
    other = dataclasses.replace(new, source="other")
    assert profile.replaced_by([new, other]) == (old,)
    assert DeviceProfile(name="p").replaced_by([new]) == ()
