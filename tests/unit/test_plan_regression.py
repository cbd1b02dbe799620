"""Non-negative least squares and the per-kind latency model."""

from __future__ import annotations

import numpy as np
import pytest

from splittracer.errors import SplitTracerError
from splittracer.plan.features import UnitFeatures
from splittracer.plan.profiles import LayerRecord, ModelRecord
from splittracer.plan.regression import fit_latency_model, nnls


def test_nnls_matches_an_exact_nonnegative_solution():
    rng = np.random.default_rng(1)
    a = rng.uniform(size=(40, 5))
    truth = np.array([0.5, 0.0, 2.0, 0.0, 1.0])
    assert np.allclose(nnls(a, a @ truth), truth, atol=1e-8)


def test_nnls_clips_what_plain_least_squares_makes_negative():
    a = np.array([[1.0, 1.0], [1.0, 1.1], [1.0, 1.2]])
    b = np.array([1.0, 0.9, 0.8])  # least squares wants a negative slope
    x = nnls(a, b)
    assert (x >= 0).all() and x[1] == 0.0
    assert x[0] == pytest.approx(0.9)


def _unit(kind: str, macs: int = 0, size: int = 0) -> UnitFeatures:
    return UnitFeatures(kind=kind, op=kind, macs=macs, in_bytes=size, out_bytes=size, param_bytes=0)


def _record(source: str, layers: list[tuple[UnitFeatures, ...]]) -> ModelRecord:
    def ms(units: tuple[UnitFeatures, ...]) -> float:  # the "device": 10 us per call + 1 ms per GMAC
        return sum(0.01 + u.macs / 1e9 + (u.in_bytes + u.out_bytes) / 1e9 for u in units)

    records = tuple(
        LayerRecord(i + 1, f"l{i}", "T", ms(units), ms(units), ms(units), units)
        for i, units in enumerate(layers)
    )
    return ModelRecord(source, (1, 3), "leaf", 1, 0, 0.0, "", records)


def test_fit_predicts_a_held_out_model_of_a_linear_device():
    a = _record("a", [(_unit("conv", 10**8 * k, 10**5 * (k * k % 7 + 1)),) for k in range(1, 6)])
    b = _record("b", [(_unit("activation", 0, 10**6 * k),) for k in range(1, 6)])
    c = _record("c", [(_unit("conv", 3 * 10**8, 10**5), _unit("activation", 0, 10**6)) for _ in range(3)])
    model = fit_latency_model([a, b])
    for layer in c.layers:
        assert model.predict_layer(layer.units) == pytest.approx(layer.median_ms, rel=1e-6)
    assert model.trained_on == ("a", "b") and model.samples == 10


def test_unseen_kinds_borrow_a_related_model():
    conv = _record("a", [(_unit("conv", 10**8 * k),) for k in range(1, 4)])
    model = fit_latency_model([conv])
    assert model.borrowed["depthwise"] == "conv"
    assert model.predict_unit(_unit("depthwise", 10**8)) == model.predict_unit(_unit("conv", 10**8))
    assert model.predict_unit(_unit("attention", 10**8)) > 0  # attention -> linear -> conv


def test_fit_refuses_an_empty_profile():
    with pytest.raises(SplitTracerError, match="no measured layers"):
        fit_latency_model([])
