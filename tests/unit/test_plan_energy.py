"""The energy objective: the first device's compute + transmit energy decides the split."""

from __future__ import annotations

import dataclasses
import math

import pytest

from splittracer.errors import SplitTracerError
from splittracer.plan.chain import FirstDeviceEnergy, Link, estimate_cuts, plan_chain
from splittracer.plan.energy import RadioPower, compute_energy, parse_tx_power, whole_device_domains
from splittracer.plan.planner import predict_loaded, prediction_to_dict
from splittracer.plan.profiles import DeviceProfile, ModelRecord, profile_local
from splittracer.split.load import load_split_model

TOY = "tests.unit.toy_models:chain_of_opaque"
WATT = RadioPower(1.0, "given")


def test_radio_power_in_watts_or_from_the_measured_models():
    assert parse_tx_power("1.2W", 5e6).watts == pytest.approx(1.2)
    assert parse_tx_power("800 mW", 5e6).watts == pytest.approx(0.8)
    lte = parse_tx_power("lte", 5.85e6)
    assert lte.watts == pytest.approx((438.39 * 5.85 + 1288.04) / 1000)
    assert "Huang" in lte.source and "5.85 Mbit/s" in lte.source
    assert parse_tx_power("WiFi", 18.88e6).watts > parse_tx_power("3g", 1.1e6).watts
    with pytest.raises(SplitTracerError, match="not a radio power") as caught:
        parse_tx_power("loud", 5e6)
    assert "3g, lte or wifi" in (caught.value.hint or "")
    with pytest.raises(SplitTracerError, match="unlimited"):
        parse_tx_power("lte", math.inf)
    assert WATT.transmit_mj(1000, 8e6) == pytest.approx(1.0)  # 1 ms at 1 W


# Device 0 is slow and its layers cost energy; sending early costs more radio time.
COSTS = [[10.0, 10.0, 10.0], [1.0, 1.0, 1.0]]
SIZES = [1_000_000, 100_000, 10_000, 1_000]
LINK = Link(10e6, 0.005)
ENERGY = FirstDeviceEnergy((100.0, 100.0, 100.0), WATT)


def test_energy_and_latency_choose_different_splits():
    by_latency = plan_chain(["phone", "cloud"], COSTS, SIZES, [LINK], energy=ENERGY)
    by_energy = plan_chain(["phone", "cloud"], COSTS, SIZES, [LINK], energy=ENERGY, objective="energy")
    assert by_latency.best.cuts == (2,)  # 20 + 1 ms of compute and 8 ms for 10 kB: 34 ms with latency
    assert by_energy.best.cuts == (1,)  # 100 mJ + 80 mJ beats 300 mJ + 0.8 mJ
    row = by_energy.rows[1]
    assert row.compute_energy_mj == pytest.approx(100.0)
    assert row.transmit_energy_mj == pytest.approx(80.0)  # 1 W for 8e5 bits at 10 Mbit/s; no latency
    assert [r.cuts[0] for r in by_energy.ranking()] == [1, 2, 3, 0]
    assert by_latency.rows == by_energy.rows  # the same predictions, another choice
    again = estimate_cuts((1,), COSTS, SIZES, [LINK], energy=ENERGY)
    assert again.energy_mj == pytest.approx(180.0)


def test_three_devices_energy_picks_the_first_cut_and_the_fastest_rest():
    costs = [*COSTS, [0.5, 0.5, 0.5]]
    links = [LINK, Link(100e6)]
    plan = plan_chain(["a", "b", "c"], costs, SIZES, links, energy=ENERGY, objective="energy")
    assert plan.best.cuts[0] == 1
    fastest = min((estimate_cuts((1, j), costs, SIZES, links) for j in range(1, 4)), key=lambda r: r.total_ms)
    assert plan.best.cuts == fastest.cuts


def test_energy_objective_needs_energy():
    with pytest.raises(SplitTracerError, match="needs the first device's per-layer energy"):
        plan_chain(["a", "b"], COSTS, SIZES, [LINK], objective="energy")
    with pytest.raises(SplitTracerError, match="one energy per layer"):
        plan_chain(["a", "b"], COSTS, SIZES, [LINK], energy=FirstDeviceEnergy((1.0,), WATT))


def test_whole_device_domains_count_nothing_twice():
    rapl = ["rapl/package-0", "rapl/package-0/core", "rapl/package-0/uncore", "rapl/dram"]
    assert whole_device_domains(rapl) == ("rapl/package-0", "rapl/dram")
    assert whole_device_domains([*rapl, "rapl/psys"]) == ("rapl/psys",)
    jetson = ["jetson/VDD_GPU_SOC", "jetson/VDD_CPU_CV", "jetson/VDD_IN"]
    assert whole_device_domains(jetson) == ("jetson/VDD_IN",)
    assert whole_device_domains([*jetson[:2], "nvml/0"]) == (*jetson[:2], "nvml/0")
    assert whole_device_domains([]) == ()


@pytest.fixture(scope="module")
def toy():
    (record,) = profile_local([TOY], threads=1, repeats=1, warmup=0, input_shape=(2, 8))
    return record, load_split_model(TOY, input_shape=(2, 8))


def _record(record: ModelRecord, ms, mj=None) -> ModelRecord:
    layers = tuple(
        dataclasses.replace(layer, median_ms=t, energy_mj=None if mj is None else e)
        for layer, t, e in zip(record.layers, ms, mj or ms)
    )
    return dataclasses.replace(record, layers=layers, energy_domains=("rapl/package-0",) if mj else ())


def test_a_plan_for_energy_differs_from_the_plan_for_latency(toy):
    record, loaded = toy
    # Layer c is slow and costly on the phone; every cut but the last sends 64 bytes, the last 32.
    phone = DeviceProfile(name="phone").with_models([_record(record, [1.0, 1.0, 100.0], [1.0, 1.0, 2000.0])])
    cloud = DeviceProfile(name="cloud").with_models([_record(record, [0.1, 0.1, 0.1])])
    link = [Link(1000.0)]  # 64 bytes take 512 ms
    fast = predict_loaded(TOY, loaded, [phone, cloud], link, tx_power=WATT)
    frugal = predict_loaded(TOY, loaded, [phone, cloud], link, objective="energy", tx_power=WATT)
    assert fast.chain.best.cuts == (3,) and frugal.chain.best.cuts == (0,)
    assert frugal.costs[0].energy_method == "measured"
    assert frugal.chain.best.energy_mj == pytest.approx(512.0)
    data = prediction_to_dict(frugal)
    assert data["objective"] == "energy" and data["best"]["cuts"] == [0]
    assert data["tx_power"] == {"watts": 1.0, "source": "given"}
    assert [layer["energy_mj"] for layer in data["layers"]] == [1.0, 1.0, 2000.0]
    assert "energy_mj" not in prediction_to_dict(predict_loaded(TOY, loaded, [phone, cloud], link))["best"]


def test_a_predicted_model_gets_the_devices_mean_power(toy):
    record, loaded = toy
    other = dataclasses.replace(record, source="other:model")
    phone = DeviceProfile(name="phone").with_models([_record(other, [2.0, 2.0, 4.0], [4.0, 4.0, 8.0])])
    energy, method = compute_energy(phone, None, [1.0, 3.0])
    assert energy == pytest.approx((2.0, 6.0)) and "2.00 W" in method
    cloud = DeviceProfile(name="cloud").with_models([_record(other, [1.0, 1.0, 1.0])])
    plan = predict_loaded(TOY, loaded, [phone, cloud], [Link(1e6)], objective="energy", tx_power=WATT)
    assert plan.costs[0].method == "regression" and plan.costs[0].energy_method.startswith("mean power")


def test_no_energy_in_the_profile_is_a_clear_error(toy):
    record, loaded = toy
    phone = DeviceProfile(name="phone").with_models(
        [
            dataclasses.replace(
                _record(record, [1.0, 1.0, 1.0]), energy_note="energy not available (rapl: none)"
            )
        ]
    )
    cloud = DeviceProfile(name="cloud").with_models([_record(record, [0.1, 0.1, 0.1])])
    with pytest.raises(SplitTracerError, match="holds no energy measurement") as caught:
        predict_loaded(TOY, loaded, [phone, cloud], [Link(1e6)], objective="energy", tx_power=WATT)
    assert "rapl: none" in caught.value.message and "--objective latency" in (caught.value.hint or "")
    assert caught.value.exit_code == 2
    # the latency objective: energy reported when known
    quiet = predict_loaded(TOY, loaded, [phone, cloud], [Link(1e6)], tx_power=WATT)
    assert quiet.radio is None and quiet.chain.best.energy_mj is None
    with pytest.raises(SplitTracerError, match="radio power"):
        predict_loaded(TOY, loaded, [phone, cloud], [Link(1e6)], objective="energy")
    with pytest.raises(SplitTracerError, match="latency only"):
        predict_loaded(TOY, loaded, [phone, cloud], [Link(1e6)], objective="energy", tx_power=WATT, dag=True)
