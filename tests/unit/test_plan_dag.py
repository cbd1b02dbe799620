"""DAG placement by minimum cut: never worse than a chain split, sometimes strictly better."""

from __future__ import annotations

import math

import pytest

from splittracer.errors import SplitTracerError
from splittracer.plan.chain import Link, plan_chain
from splittracer.plan.dag import estimate_placement, min_cut, plan_dag, top_placements
from splittracer.plan.graph import LayerInfo, ModelGraph, ValueInfo, model_graph


def test_min_cut_of_a_small_network():
    # The classic CLRS network: maximum flow 23.
    edges = [
        (0, 1, 16),
        (0, 2, 13),
        (1, 3, 12),
        (2, 1, 4),
        (2, 4, 14),
        (3, 2, 9),
        (3, 5, 20),
        (4, 3, 7),
        (4, 5, 4),
    ]
    flow, side = min_cut(6, edges, 0, 5)
    assert flow == pytest.approx(23)
    assert side == {0, 1, 2, 4}


def test_min_cut_refuses_an_infinite_cut():
    with pytest.raises(SplitTracerError, match="no finite cut"):
        min_cut(2, [(0, 1, math.inf)], 0, 1)


def _branchy() -> ModelGraph:
    """x -> R (reduces x) -> H (heavy) ; x -> L (light reducer) ; H, L -> M -> output.

    Layers in execution order: R=1, H=2, L=3, M=4. Every chain split either
    sends x (L still needs it) or runs H on the slow first device; the DAG
    placement runs R and L first and sends their small outputs.
    """
    layers = tuple(LayerInfo(i, n, "T", ()) for i, n in enumerate("RHLM", start=1))
    values = (
        ValueInfo("x", 0, (1, 3), 1_000_000),
        ValueInfo("r", 1, (2,), 100),
        ValueInfo("h", 2, (4,), 100),
        ValueInfo("l", 3, (4,), 100),
        ValueInfo("out", 4, (5,), 10),
    )
    split_bytes = (1_000_000, 1_000_100, 1_000_100, 200, 10)
    return ModelGraph(layers, values, split_bytes, (True,) * 5)


def test_dag_placement_strictly_better_than_every_split():
    graph = _branchy()
    first, second = [1.0, 100.0, 1.0, 1.0], [0.1, 1.0, 0.1, 0.1]
    link = Link(1e6, 0.01)
    chain = plan_chain(["phone", "cloud"], [first, second], graph.split_bytes, [link])
    dag = plan_dag(graph, first, second, link)
    assert dag.first == (1, 3) and dag.second == (2, 4) and not dag.contiguous
    assert dag.placement == "1,3"
    assert dag.sent == ("r", "l") and dag.bytes == 200
    assert dag.total_ms == pytest.approx(2.0 + 1.1 + 8 * 200 / 1e6 * 1000 + 10)
    assert dag.total_ms < chain.best.total_ms / 5  # 14.7 ms against 113 ms


def test_a_tensor_read_twice_on_the_far_side_is_paid_once():
    graph = _branchy()
    # Everything is far faster on the second device, so it sends x, read there by R and L.
    dag = plan_dag(graph, [50.0] * 4, [0.0] * 4, Link(1e9))
    assert dag.first == () and dag.sent == ("x",) and dag.bytes == 1_000_000


def test_resnet18_dag_never_worse_than_the_best_split(resnet18_split):
    graph = model_graph(resnet18_split.split)
    # A deterministic stand-in for two devices: time grows with MACs and bytes moved.
    first = [
        sum(1e-7 * u.macs + 2e-6 * (u.in_bytes + u.out_bytes) + 0.02 for u in x.units) for x in graph.layers
    ]
    second = [t / 8 for t in first]
    for rate in (1e5, 1.1e6, 5.85e6, 18.88e6, 1e8, 1e10):
        link = Link(rate, 0.01)
        chain = plan_chain(["a", "b"], [first, second], graph.split_bytes, [link], allowed=graph.allowed)
        dag = plan_dag(graph, first, second, link)
        assert dag.total_ms <= chain.best.total_ms + 1e-9, rate
        placed = resnet18_split.split.placement(dag.placement)  # the engine builds what the plan placed
        assert placed.first == dag.first and placed.bytes == dag.bytes
        assert tuple(t.name for t in placed.tensors) == dag.sent
        if dag.contiguous:  # then it is a split, and the best one
            assert dag.total_ms == pytest.approx(chain.best.total_ms)


def test_a_given_placement_is_priced_as_the_min_cut_prices_its_own():
    graph = _branchy()
    first, second = [1.0, 100.0, 1.0, 1.0], [0.1, 1.0, 0.1, 0.1]
    link, reply = Link(1e6, 0.01), Link(1e7, 0.002)
    dag = plan_dag(graph, first, second, link, reply=reply)
    assert estimate_placement(graph, dag.first, first, second, link, reply=reply) == dag
    # Layer 1 alone: x (still read by L) and r cross.
    alone = estimate_placement(graph, [1], first, second, link)
    assert alone.sent == ("x", "r") and alone.bytes == 1_000_100
    assert alone.total_ms == pytest.approx(1.0 + 1.2 + link.transfer_ms(1_000_100))


def test_top_placements_start_with_the_min_cut_and_are_ordered():
    graph = _branchy()
    first, second = [1.0, 100.0, 1.0, 1.0], [0.1, 1.0, 0.1, 0.1]
    link = Link(1e6, 0.01)
    top = top_placements(graph, first, second, link, 3)
    assert len(top) == 3 and top[0] == plan_dag(graph, first, second, link)
    assert [p.total_ms for p in top] == sorted(p.total_ms for p in top)
    assert len({p.first for p in top}) == 3
    # Every candidate is a prefix cut or some rate's min cut: never more than there are.
    assert len(top_placements(graph, first, second, link, 100)) <= 5 + len(graph.allowed)
