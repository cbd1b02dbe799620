"""Rates and durations as written in manifests."""

from __future__ import annotations

import math

import pytest

from splittracer.units import LINK_PROFILES, format_duration, format_rate, parse_duration, parse_rate


@pytest.mark.parametrize(
    ("text", "bps"),
    [
        ("5.85mbit", 5.85e6),
        ("5.85Mbit/s", 5.85e6),
        ("5.85mbps", 5.85e6),
        ("5.85 Mb/s", 5.85e6),
        ("100kbit", 100e3),
        ("1gbit", 1e9),
        ("1000bit", 1000.0),
        ("10MB/s", 80e6),
        ("10MBps", 80e6),
        ("2KB", 16e3),
        ("3B/s", 24.0),
        ("1e3kbit", 1e6),
    ],
)
def test_parse_rate_units(text: str, bps: float) -> None:
    assert parse_rate(text) == pytest.approx(bps)


def test_named_profiles_match_the_neurosurgeon_links() -> None:
    assert parse_rate("3g") == pytest.approx(1.1e6)
    assert parse_rate("LTE") == pytest.approx(5.85e6)
    assert parse_rate("wifi") == pytest.approx(18.88e6)
    assert set(LINK_PROFILES) == {"3g", "lte", "wifi"}


@pytest.mark.parametrize("text", ["unlimited", "none", "Unlimited"])
def test_unlimited_is_infinite(text: str) -> None:
    assert parse_rate(text) == math.inf


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("5 parsecs", "unknown rate unit 'parsecs'"),
        ("100", "has no unit"),
        ("5Mb", "ambiguous"),
        ("0mbit", "above zero"),
        ("fast", "is not a rate"),
        ("-1mbit", "is not a rate"),
    ],
)
def test_bad_rates_say_what_to_write(text: str, phrase: str) -> None:
    with pytest.raises(ValueError, match=phrase) as info:
        parse_rate(text)
    assert "; write " in str(info.value), "every message says what to write instead"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("20ms", 0.02), ("0.5s", 0.5), ("500us", 5e-4), ("10ns", 1e-8), ("20 ms", 0.02), ("0s", 0.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("20", "has no unit"),
        ("1m", "unknown duration unit 'm'"),
        ("2min", "unknown duration unit"),
        ("soon", "not a duration"),
    ],
)
def test_bad_durations_list_the_units(text: str, phrase: str) -> None:
    with pytest.raises(ValueError, match=phrase) as info:
        parse_duration(text)
    assert "s, ms, us or ns" in str(info.value)


def test_format_rate_round_trips() -> None:
    assert format_rate(5.85e6) == "5.85 Mbit/s"
    assert format_rate(100e3) == "100 kbit/s"
    assert format_rate(1e9) == "1 Gbit/s"
    assert format_rate(12.0) == "12 bit/s"
    assert format_rate(math.inf) == "unlimited"
    assert parse_rate(format_rate(18.88e6).replace(" ", "")) == pytest.approx(18.88e6)


def test_format_duration() -> None:
    assert format_duration(0.02) == "20 ms"
    assert format_duration(1.5) == "1.5 s"
    assert format_duration(0) == "0 s"
