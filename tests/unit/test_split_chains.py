"""Chains of placements: N devices, each running a dependency-closed set with those before it."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils import _pytree as pytree

from splittracer.errors import SplitError
from splittracer.split import SplitModel

from .toy_models import InceptionToy

PROPERTY = settings(
    max_examples=10, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def inception():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 16, 16)
    return SplitModel(InceptionToy(), x), x


def random_chain(sm: SplitModel, data: st.DataObject) -> list[list[int]]:
    """Two or three devices before the last, each adding a few layers and all they read from."""
    held: frozenset[int] = frozenset()
    chain = []
    for _ in range(data.draw(st.integers(2, 3))):
        chosen = data.draw(st.sets(st.integers(1, sm.num_layers), max_size=3))
        grown = frozenset(sm.close(sorted(held | chosen)).first)
        chain.append(sorted(grown - held))
        held = grown
    return chain


def run_chain(sm: SplitModel, chain: list[list[int]], x: torch.Tensor):
    values = (x,)
    parts = sm.place_chain(chain)
    with torch.no_grad():
        for part in parts[:-1]:
            values = part(*values)
        return parts[-1](*values)


@PROPERTY
@given(data=st.data())
def test_random_chains_of_an_inception_model_are_exact(inception, data):
    sm, x = inception
    chain = random_chain(sm, data)
    with torch.no_grad():
        expected = pytree.tree_leaves(sm.model(x))
    got = pytree.tree_leaves(run_chain(sm, chain, x))
    assert all(torch.equal(a, b) for a, b in zip(got, expected)), chain


@settings(PROPERTY, max_examples=4)
@given(data=st.data())
def test_random_chains_of_resnet18_are_exact(resnet18_split, data):
    sm, x = resnet18_split.split, resnet18_split.example
    chain = random_chain(sm, data)
    with torch.no_grad():
        expected = pytree.tree_leaves(sm.model(x))
    got = pytree.tree_leaves(run_chain(sm, chain, x))
    assert max(float((a - b).abs().max()) for a, b in zip(got, expected)) <= 1e-5, chain


def test_one_spec_is_a_placement_and_prefix_chains_are_cuts(inception):
    sm, _ = inception
    head, tail = sm.place("1-3,7-9")
    (first, last) = sm.place_chain(["1-3,7-9"])
    assert (first.layers, last.layers) == (head.layers, tail.layers)
    parts = sm.place_chain(["1-2", "3-11"])
    assert [p.layers for p in parts] == [p.layers for p in sm.chain([2, 11])]


def test_a_device_that_reads_a_later_devices_value_is_named(inception):
    sm, _ = inception
    with pytest.raises(SplitError, match=r"devices 1\.\.2 together: layer 7 \(block1\.b3\.0\) .* layer 2"):
        sm.place_chain(["1", "7-9"])
    with pytest.raises(SplitError, match=r"layer 2 \(stem\.1\) is placed on device 2 and before it"):
        sm.place_chain(["1-2", "2-3"])
