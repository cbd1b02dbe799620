"""Planning during a run: the link fit and the adaptive re-planner, fed by hand."""

from __future__ import annotations

import math

import msgspec
import pytest

from splittracer.builtin import Infer, planned_mode
from splittracer.errors import RunError
from splittracer.plan.chain import Link, plan_chain
from splittracer.plan.online import AdaptivePlanner, PlannerInputs, decode_inputs, encode_inputs, fit_link

# Four layers: slow on the first device, fast on the second; each later cut sends 10x less.
COSTS = [[10.0, 10.0, 10.0, 10.0], [1.0, 1.0, 1.0, 1.0]]
SPLIT_BYTES = [1_000_000, 100_000, 10_000, 1_000, 100]
ALLOWED = [True] * 5


def inputs(threshold: float = 0.25) -> PlannerInputs:
    return PlannerInputs(
        devices=["slow", "fast"],
        methods=["measured", "measured"],
        costs=COSTS,
        bandwidths_bps=[0.0],
        sources=["measure"],
        latencies_s=[0.0],
        reply_bps=[math.inf],
        reply_latencies_s=[0.0],
        threshold=threshold,
    )


def best_at(bps: float) -> tuple[int, ...]:
    return plan_chain(["slow", "fast"], COSTS, SPLIT_BYTES, [Link(bps)]).best.cuts


def test_the_toy_model_moves_its_best_split_with_bandwidth():
    # The premise of the tests below: 1 Gbit/s sends the input, 10 Mbit/s cuts at 2, 1 Mbit/s at 3.
    assert [best_at(b) for b in (1e9, 1e7, 1e6)] == [(0,), (2,), (3,)]


def test_no_replan_while_the_bandwidth_stays_within_the_threshold():
    planner = AdaptivePlanner(inputs(), SPLIT_BYTES, ALLOWED, [1e7])
    assert planner.cuts == [2]
    for bps in (0.9e7, 1.1e7, 0.85e7, 1.2e7, 1e7):
        planner.observe(0, 10_000, 8 * 10_000 / bps)
        assert planner.replan() is None
    assert planner.cuts == [2] and planner.planned_bps == (1e7,)


def test_a_drop_replans_at_once_and_settles_on_the_slow_links_split():
    planner = AdaptivePlanner(inputs(), SPLIT_BYTES, ALLOWED, [1e7])
    planner.observe(0, 10_000, 8 * 10_000 / 1e6)  # cut 2's tensor took as long as at 1 Mbit/s
    # A geometric EWMA: 1e7 * (1e6 / 1e7) ** 0.3 = 5.01 Mbit/s, 50 % down.
    assert planner.estimate_bps(0) == pytest.approx(1e7 * 0.1**0.3)
    new = planner.replan()
    assert new is not None and new.cuts == best_at(1e7 * 0.1**0.3) == (3,)
    assert planner.planned_bps == pytest.approx((1e7 * 0.1**0.3,))
    replans = []
    for _ in range(15):
        planner.observe(0, SPLIT_BYTES[planner.cuts[0]], 8 * SPLIT_BYTES[planner.cuts[0]] / 1e6)
        if planner.replan() is not None:
            replans.append(planner.planned_bps[0])
    # Further re-plans only while the estimate still moves by more than 25 %, each one closer to 1 Mbit/s.
    assert replans and replans == sorted(replans, reverse=True) and len(replans) <= 4
    assert replans[-1] == pytest.approx(1e6, rel=0.25)
    assert planner.estimate_bps(0) == pytest.approx(1e6, rel=0.01)
    assert planner.cuts == [3]


def test_a_rise_replans_towards_sending_the_input():
    planner = AdaptivePlanner(inputs(), SPLIT_BYTES, ALLOWED, [1e6])
    assert planner.cuts == [3]
    chosen = []
    for _ in range(20):
        cut = planner.cuts[0]
        planner.observe(0, SPLIT_BYTES[cut], 8 * SPLIT_BYTES[cut] / 1e9)
        if (plan := planner.replan()) is not None:
            chosen.append(plan.cuts[0])
            assert plan.cuts == best_at(planner.planned_bps[0])  # each re-plan is the planner's own choice
    assert chosen and chosen[-1] == 0 and planner.cuts == [0]


def test_threshold_is_relative_and_exclusive():
    planner = AdaptivePlanner(inputs(threshold=0.5), SPLIT_BYTES, ALLOWED, [1e7], alpha=1.0)
    planner.observe(0, 10_000, 8 * 10_000 / 1.5e7)  # exactly +50 %
    assert planner.replan() is None
    planner.observe(0, 10_000, 8 * 10_000 / 0.45e7)  # -55 %
    assert planner.replan() is not None and planner.planned_bps == pytest.approx((0.45e7,))


def test_an_unlimited_start_replans_on_the_first_measurement():
    planner = AdaptivePlanner(inputs(), SPLIT_BYTES, ALLOWED, [math.inf])
    assert planner.cuts == [0] and planner.estimate_bps(0) == math.inf
    planner.observe(0, 1_000_000, 8.0)  # 1 Mbit/s
    assert planner.replan() is not None and planner.cuts != [0]


def test_costs_of_another_model_are_refused():
    with pytest.raises(RunError, match="4 layers"):
        AdaptivePlanner(inputs(), SPLIT_BYTES[:3], ALLOWED[:3], [1e7])


def test_fit_link_recovers_rate_and_overhead():
    rate, overhead = 5.85e6, 0.003
    samples = [(n, overhead + 8 * n / rate) for n in (4096, 16384, 65536, 262144)]
    fit = fit_link(samples)
    assert fit.bandwidth_bps == pytest.approx(rate, rel=1e-6)
    assert fit.overhead_s == pytest.approx(overhead, rel=1e-6) and fit.samples == 4


def test_fit_link_gives_a_lower_bound_when_time_does_not_grow():
    fit = fit_link([(1000, 0.002), (4000, 0.001)])
    assert fit.bandwidth_bps == pytest.approx(8 * 4000 / 0.001)
    with pytest.raises(RunError, match="two sizes"):
        fit_link([(1000, 0.002), (1000, 0.003)])


def test_inputs_travel_as_bytes():
    assert decode_inputs(encode_inputs(inputs())) == inputs()
    with pytest.raises(RunError, match="no planner inputs"):
        decode_inputs(b"")


@pytest.mark.parametrize(
    ("fields", "mode"),
    [
        ({"split": 3}, None),
        ({"cuts": [2, 5]}, None),
        ({"split": "auto"}, "auto"),
        ({"cuts": "adaptive"}, "adaptive"),
    ],
)
def test_planned_mode(fields, mode):
    assert planned_mode(Infer(next=["cloud"], **fields)) == mode


@pytest.mark.parametrize(
    ("fields", "phrase"),
    [
        ({"split": "sometimes"}, "expected split points, auto or adaptive"),
        ({"split": "auto", "cuts": [3]}, "both"),
    ],
)
def test_planned_mode_refuses_nonsense(fields, phrase):
    with pytest.raises(RunError, match=phrase):
        planned_mode(Infer(next=["cloud"], **fields))


def test_energy_objective_spares_the_first_devices_battery():
    # 5 mJ per layer on the first device, a 1 W radio: cut 3 costs 15 + 0.8 mJ, cut 2 (fastest) 10 + 8.
    frugal = msgspec.structs.replace(inputs(), objective="energy", energy_mj=[5.0] * 4, tx_power="1W")
    planner = AdaptivePlanner(frugal, SPLIT_BYTES, ALLOWED, [1e7])
    assert planner.cuts == [3] and best_at(1e7) == (2,)
    assert planner.best.energy_mj == pytest.approx(15.0 + 0.8)


def test_a_named_radio_is_priced_at_each_plans_rate():
    frugal = msgspec.structs.replace(inputs(), objective="energy", energy_mj=[5.0] * 4, tx_power="lte")
    slow, fast = (AdaptivePlanner(frugal, SPLIT_BYTES, ALLOWED, [b]).best for b in (1e6, 1e7))
    # Huang et al.'s LTE uplink, 438.39 mW per Mbit/s + 1288.04 mW: 1.73 W at 1 Mbit/s, so at that
    # rate even cut 3's 1 kB (13.8 mJ) costs more than a fourth layer (5 mJ) and cut 4 wins.
    assert slow.cuts == (4,)
    assert slow.transmit_energy_mj == pytest.approx((0.43839 + 1.28804) * 8 * 100 / 1e6 * 1000)
    assert fast.cuts == (3,)


def test_the_first_hops_codec_is_planned_with_the_cut_within_the_accuracy_budget():
    # At 10 Mbit/s cut 2 sends 10 KB (8 ms). A profile run measured int8 at cut 2 (a quarter of
    # the bytes, no accuracy lost) and int4 at cut 1 (1 % of the bytes, 5 % of accuracy lost).
    measured = [(1, "int4", 0.01, 0.05), (2, "int8", 0.25, 0.0)]
    plain = AdaptivePlanner(inputs(), SPLIT_BYTES, ALLOWED, [1e7])
    assert (plain.cuts, plain.codec) == ([2], None)

    def planned(budget: float) -> AdaptivePlanner:
        given = msgspec.structs.replace(inputs(), codec_qualities=measured, max_drop=budget)
        assert decode_inputs(encode_inputs(given)) == given  # what the Infer task carries
        return AdaptivePlanner(given, SPLIT_BYTES, ALLOWED, [1e7])

    strict = planned(0.01)  # int4 gives up too much: int8 at cut 2, 2.5 KB in 2 ms
    assert (strict.cuts, strict.codec, strict.best.bytes[0]) == ([2], "int8", 2_500)
    assert strict.best.total_ms == pytest.approx(plain.best.total_ms - 8.0 + 2.0)
    loose = planned(0.10)  # int4 at cut 1: 1 KB in 0.8 ms, one slow layer instead of two
    assert (loose.cuts, loose.codec, loose.best.bytes[0]) == ([1], "int4", 1_000)
    assert loose.best.total_ms < strict.best.total_ms
    none_better = planned(0.0)  # at 1 Gbit/s the input goes as it is: none at cut 0 stays best
    none_better.observe(0, 10_000, 8 * 10_000 / 1e9)
    for _ in range(30):
        none_better.observe(0, 10_000, 8 * 10_000 / 1e9)
    assert none_better.replan() is not None and none_better.codec == "none"
