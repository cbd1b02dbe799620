"""Chain planning: the dynamic programme agrees with trying every choice of cuts."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from splittracer.errors import SplitTracerError
from splittracer.plan.chain import Link, estimate_cuts, plan_chain


def _random_model(seed: int, layers: int, devices: int):
    rng = random.Random(seed)
    costs = [[rng.uniform(0.1, 5.0) / (d + 1) for _ in range(layers)] for d in range(devices)]
    sizes = [rng.randint(100, 100_000) for _ in range(layers + 1)]
    links = [Link(rng.choice([1e6, 5.85e6, 1e8]), rng.choice([0.0, 0.01])) for _ in range(devices - 1)]
    return costs, sizes, links


def test_link_transfer_time():
    assert Link(8e6, 0.01).transfer_ms(1_000_000) == pytest.approx(1000 + 10)
    assert Link().transfer_ms(10**9) == 0.0
    assert "5.85 Mbit/s" in Link(5.85e6, 0.01).describe()


@pytest.mark.parametrize("seed", range(5))
def test_two_devices_every_split_is_a_row(seed):
    costs, sizes, links = _random_model(seed, 8, 2)
    plan = plan_chain(["a", "b"], costs, sizes, links)
    assert [r.cuts for r in plan.rows] == [(k,) for k in range(9)]
    for row in plan.rows:
        k = row.cuts[0]
        expected = sum(costs[0][:k]) + sum(costs[1][k:]) + links[0].transfer_ms(sizes[k])
        assert row.total_ms == pytest.approx(expected)
    assert plan.best.total_ms == min(r.total_ms for r in plan.rows)
    assert plan.ranking()[0] == plan.best


@pytest.mark.parametrize(("seed", "devices"), [(0, 3), (1, 3), (2, 4), (3, 4)])
def test_dynamic_programme_equals_brute_force(seed, devices):
    costs, sizes, links = _random_model(seed, 7, devices)
    replies = [Link(2e6, 0.005)] * (devices - 1)
    plan = plan_chain([f"d{i}" for i in range(devices)], costs, sizes, links, reply_links=replies)
    every = [
        estimate_cuts(cuts, costs, sizes, links, reply_links=replies)
        for cuts in itertools.combinations_with_replacement(range(8), devices - 1)
    ]
    assert plan.best.total_ms == pytest.approx(min(e.total_ms for e in every))
    for row in plan.rows:  # each row is the best among the choices with that first cut
        same_first = [e.total_ms for e in every if e.cuts[0] == row.cuts[0]]
        assert row.total_ms == pytest.approx(min(same_first))


def test_disallowed_splits_are_never_chosen():
    costs = [[1.0, 1.0, 1.0], [0.1, 0.1, 0.1]]
    sizes = [10**9, 10, 10**9, 10]
    allowed = [True, False, True, True]
    plan = plan_chain(["a", "b"], costs, sizes, [Link(1e6)], allowed=allowed)
    assert [r.cuts[0] for r in plan.rows] == [0, 2, 3]
    assert plan.best.cuts == (3,)


def test_reply_is_the_same_at_every_split():
    costs, sizes, links = _random_model(7, 5, 2)
    plan = plan_chain(["a", "b"], costs, sizes, links, reply_links=[Link(1e6, 0.02)])
    for row in plan.rows:
        assert row.reply_ms == pytest.approx(8 * sizes[-1] / 1e6 * 1000 + 20)


def test_mistakes_are_reported():
    costs, sizes, links = _random_model(0, 4, 3)
    with pytest.raises(SplitTracerError, match="need 2 link"):
        plan_chain(["a", "b", "c"], costs, sizes, links[:1])
    with pytest.raises(SplitTracerError, match="two or more devices"):
        plan_chain(["a"], costs[:1], sizes, [])
    with pytest.raises(SplitTracerError, match="non-decreasing"):
        estimate_cuts([3, 1], costs, sizes, links)
    with pytest.raises(SplitTracerError, match="nothing to plan"):
        plan_chain(["a", "b"], costs[:2], sizes, links[:1], allowed=[False] * 5)
    assert math.isinf(Link().bandwidth_bps)


def test_the_throughput_objective_minimises_the_slowest_pipeline_stage():
    # Four layers, a slow phone and a fast server; each later cut sends less. One at a time the
    # fastest is everything on the server (cut 0: 1 ms on the link + 4 ms); streaming, the link and
    # the server work on other frames, so a frame leaves every max(phone, link, server) ms.
    costs = [[4.0, 4.0, 4.0, 4.0], [1.0, 1.0, 1.0, 1.0]]
    sizes = [10_000, 8_000, 6_000, 2_000, 100]
    link = Link(8e6)  # 1 ms per 1,000 bytes
    latency = plan_chain(["phone", "server"], costs, sizes, [link])
    assert latency.best.cuts == (0,)  # 10 + 4 = 14 ms, the least one at a time
    flow = plan_chain(["phone", "server"], costs, sizes, [link], objective="throughput")
    cycles = {r.cuts[0]: r.cycle_ms() for r in flow.rows}
    assert cycles == pytest.approx({0: 10.0, 1: 8.0, 2: 8.0, 3: 12.0, 4: 16.0})
    assert flow.best.cuts == (1,)  # ties (cuts 1 and 2 at 8 ms) go to the lower latency
    assert flow.best.frames_per_s() == pytest.approx(125.0)
    # Eight clients share the server: its 3 ms per frame become 24 ms a cycle, so more of the
    # work moves to the clients' own devices.
    shared = plan_chain(["phone", "server"], costs, sizes, [link], objective="throughput", clients=8)
    assert {r.cuts[0]: r.cycle_ms(8) for r in shared.rows} == pytest.approx(
        {0: 32.0, 1: 24.0, 2: 16.0, 3: 12.0, 4: 16.0}
    )
    assert shared.best.cuts == (3,) and shared.best.frames_per_s(8) == pytest.approx(8 * 1000 / 12)
    with pytest.raises(SplitTracerError, match="clients"):
        plan_chain(["phone", "server"], costs, sizes, [link], objective="throughput", clients=0)
