"""Lab host limits from the command line: one value for every host, or one per host."""

from __future__ import annotations

import pytest

from splittracer.devices.limits import ResourceLimits
from splittracer.lab import TestbedError, describe_limits, parse_host_limits


def test_one_value_per_host() -> None:
    limits = parse_host_limits("0.1,1.0", "2GiB,8GiB", 2)
    assert limits == [ResourceLimits(0.1, 2 << 30), ResourceLimits(1.0, 8 << 30)]


def test_one_value_for_every_host_and_none_for_no_limit() -> None:
    assert parse_host_limits("0.5", None, 3) == [ResourceLimits(0.5, None)] * 3
    assert parse_host_limits(None, None, 2) == [ResourceLimits(), ResourceLimits()]


@pytest.mark.parametrize(
    ("cpu", "memory", "message"),
    [
        ("0.1,0.2,0.3", None, "--cpu gives 3 values for 2 hosts"),
        ("fast", None, "--cpu"),
        ("0", None, "between 0.001 and 1024"),
        (None, "lots", "--memory"),
    ],
)
def test_mistakes_are_named_by_their_option(cpu: str | None, memory: str | None, message: str) -> None:
    with pytest.raises(TestbedError, match=message):
        parse_host_limits(cpu, memory, 2)


def test_limits_described_for_status() -> None:
    assert describe_limits(0.1, 2 << 30) == "cpu 0.1, memory 2 GiB"
    assert describe_limits(None, None) == "none"
