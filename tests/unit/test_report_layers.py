"""Every layer's compute time on each participant, derived from the parts a sweep timed."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from splittracer.metrics import Span
from splittracer.report.layers import describe_layer_times, layer_times

MS = 1_000_000
LAYER_MS = {"phone": [4.0, 1.0, 2.0, 8.0, 0.5], "cloud": [0.4, 0.1, 0.2, 0.8, 0.05]}
CALL_MS = {"phone": 0.7, "cloud": 0.3}  # a fixed cost of every call, which the differences cancel
JITTER = (-0.05, 0.0, 0.05)


def compute(who: str, start: int, end: int, ms: float, *, warmup: bool = False) -> Span:
    return Span(
        run_id="r",
        participant=who,
        stage=0 if who == "phone" else 1,
        kind="compute",
        inference=0,
        split=start if who == "cloud" else end,
        start_layer=start,
        end_layer=end,
        start_ns=0,
        end_ns=round(ms * MS),
        attrs={"warmup": True} if warmup else {},
    )


def sweep(splits: Sequence[int], *, warmup: bool = True) -> list[Span]:
    """The head runs 1..k and the tail k+1..L at every split k, three times, with jitter."""
    layers = len(LAYER_MS["phone"])
    spans = []
    for k in splits:
        for jitter in JITTER:
            head = CALL_MS["phone"] + sum(LAYER_MS["phone"][:k]) + jitter
            tail = CALL_MS["cloud"] + sum(LAYER_MS["cloud"][k:]) + jitter
            spans += [compute("phone", 0, k, head), compute("cloud", k, layers, tail)]
        if warmup:  # far off: would show if warm-up counted
            spans += [
                compute("phone", 0, k, 999.0, warmup=True),
                compute("cloud", k, layers, 999.0, warmup=True),
            ]
    return spans


def test_a_full_sweep_gives_every_layer_on_both_participants() -> None:
    times = layer_times(sweep(range(0, 6)))
    assert list(times) == ["phone", "cloud"]
    for who, expected in LAYER_MS.items():
        assert sorted(times[who]) == [1, 2, 3, 4, 5]
        for k, ms in enumerate(expected, start=1):
            assert times[who][k].time.median == pytest.approx(ms), (who, k)


def test_a_sweep_uses_differences_even_for_the_layers_it_ran_alone() -> None:
    times = layer_times(sweep(range(0, 6)))
    # Split 1 ran layer 1 alone on the phone, but split 0 lets its call cost cancel too.
    assert times["phone"][1].method == "difference" and times["phone"][1].parts == ((0, 1), (0, 0))
    assert times["phone"][3].parts == ((0, 3), (0, 2)) and times["phone"][3].samples == 3
    assert times["cloud"][2].parts == ((1, 5), (2, 5))
    assert times["cloud"][5].parts == ((4, 5), (5, 5))


def test_layers_timed_alone_are_used_where_no_two_parts_differ_by_them() -> None:
    spans = [compute("phone", k - 1, k, CALL_MS["phone"] + ms) for k, ms in enumerate(LAYER_MS["phone"], 1)]
    times = layer_times(spans)["phone"]
    assert {t.method for t in times.values()} == {"alone"} and times[2].parts == ((1, 2),)
    assert times[4].time.median == pytest.approx(CALL_MS["phone"] + 8.0)  # its own span, call included


def test_the_spread_is_that_of_every_pairwise_difference() -> None:
    layer = layer_times(sweep(range(0, 6)))["phone"][4]
    # Differences of (-0.05, 0, 0.05) with itself: nine values from -0.1 to 0.1, quartiles at ±0.05.
    assert (layer.time.p25, layer.time.p75) == pytest.approx((8.0 - 0.05, 8.0 + 0.05))


def test_a_gap_in_the_sweep_leaves_only_the_layers_it_can_tell() -> None:
    times = layer_times(sweep(range(0, 6, 2), warmup=False))  # splits 0, 2, 4
    # Nothing differs by one layer on the phone; the cloud ran layer 5 alone at split 4.
    assert sorted(times["phone"]) == [] and sorted(times["cloud"]) == [5]
    assert times["cloud"][5].method == "alone"
    times = layer_times(sweep([0, 2, 3], warmup=False))
    assert sorted(times["phone"]) == sorted(times["cloud"]) == [3]
    assert times["cloud"][3].time.median == pytest.approx(LAYER_MS["cloud"][2])
    notes = describe_layer_times(times, 5)
    assert notes[1] == "cloud: 1 of 5 layers — 1 from differences of two parts (layer 3)."
    assert "pairwise difference" in notes[-1]


def test_notes_say_how_each_layer_was_obtained() -> None:
    notes = describe_layer_times(layer_times(sweep(range(0, 6))), 5)
    assert notes[0] == "phone: 5 of 5 layers — 5 from differences of two parts (layers 1–5)."
    assert "the head at splits k and k−1" in notes[-1]
