"""Link rates and durations as people write them: ``5.85mbit``, ``lte``, ``20ms``.

Rates use decimal prefixes, as networking does (``1kbit`` is 1000 bit/s).
Lower-case ``b``/``bit``/``bps`` counts bits and upper-case ``B`` bytes;
``Mb`` alone is refused because people mean both. Durations need a unit:
a bare ``20`` could be seconds or milliseconds, and ``m`` could be minutes
or milli, so only ``s``, ``ms``, ``us`` and ``ns`` are accepted. Memory sizes
need a unit too: ``KiB``/``MiB``/``GiB`` are powers of 1024, ``kB``/``MB``/``GB``
powers of 1000, and ``B`` counts bytes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "LINK_PROFILES",
    "format_duration",
    "format_rate",
    "format_size",
    "parse_duration",
    "parse_rate",
    "parse_size",
]

LINK_PROFILES: Mapping[str, float] = MappingProxyType({"3g": 1.1e6, "lte": 5.85e6, "wifi": 18.88e6})
"""Named links in bit/s: the uplinks measured in the Neurosurgeon paper (Kang et al. 2017)."""

_UNLIMITED = ("unlimited", "none", "inf")
_PREFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
_NUMBER = re.compile(r"^\s*(?P<num>[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(?P<unit>[A-Za-z/]*)\s*$")
_BIT_UNIT = re.compile(r"^(?P<prefix>[kmg]?)(?:bit|bits|bps|bit/s|bits/s|b/s)$", re.IGNORECASE)
_BYTE_UNIT = re.compile(r"^(?P<prefix>[kKMG]?)B(?:ps|/s)?$")
_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_RATE_FORMS = (
    "a number and a unit such as 100kbit, 5.85mbit, 5.85Mbit/s, 5.85mbps, 1gbit or 10MB/s "
    f"(bytes: B, KB, MB, GB), a link profile ({', '.join(LINK_PROFILES)}) or unlimited"
)
_DURATION_FORMS = "a number and a unit: s, ms, us or ns, e.g. 20ms, 0.5s, 500us"
_SIZES = {"b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZES.update({"kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4})
_SIZE_FORMS = "a number and a unit: B, KiB, MiB, GiB (powers of 1024) or kB, MB, GB, e.g. 2GiB, 512MiB"


def parse_rate(text: str) -> float:
    """Bits per second named by ``text``; ``math.inf`` for ``unlimited``/``none``."""
    word = str(text).strip()
    if word.lower() in _UNLIMITED:
        return math.inf
    if word.lower() in LINK_PROFILES:
        return LINK_PROFILES[word.lower()]
    number, unit = _split(word, _RATE_FORMS, what="rate")
    bps = number * _rate_factor(word, unit)
    if bps <= 0:
        raise ValueError(f"rate '{word}' must be above zero; write unlimited for no limit")
    return bps


def parse_duration(text: str) -> float:
    """Seconds named by ``text`` (``20ms``, ``0.5s``, ``500us``, ``10ns``)."""
    word = str(text).strip()
    number, unit = _split(word, _DURATION_FORMS, what="duration")
    factor = _SECONDS.get(unit)
    if factor is None:
        raise ValueError(f"unknown duration unit '{unit}' in '{word}'; write {_DURATION_FORMS}")
    return number * factor


def parse_size(text: str) -> int:
    """Bytes named by ``text`` (``2GiB``, ``512MiB``, ``1.5GB``, ``4096B``)."""
    word = str(text).strip()
    number, unit = _split(word, _SIZE_FORMS, what="size")
    factor = _SIZES.get(unit.lower())
    if factor is None:
        raise ValueError(f"unknown size unit '{unit}' in '{word}'; write {_SIZE_FORMS}")
    if number * factor < 1:
        raise ValueError(f"size '{word}' must be at least one byte")
    return int(number * factor)


def format_size(octets: float) -> str:
    """A short human form of a byte count: ``2 GiB``, ``512 MiB``."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if octets >= factor:
            return f"{octets / factor:.4g} {unit}"
    return f"{octets:.4g} B"


def format_rate(bps: float) -> str:
    """A short human form of ``bps``: ``5.85 Mbit/s``, ``unlimited``."""
    if math.isinf(bps):
        return "unlimited"
    for prefix, factor in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if bps >= factor:
            return f"{bps / factor:.4g} {prefix}bit/s"
    return f"{bps:.4g} bit/s"


def format_duration(seconds: float) -> str:
    """A short human form of ``seconds``: ``20 ms``, ``1.5 s``."""
    for unit, factor in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= factor:
            return f"{seconds / factor:.4g} {unit}"
    return "0 s" if seconds == 0 else f"{seconds / 1e-9:.4g} ns"


def _split(word: str, forms: str, *, what: str) -> tuple[float, str]:
    match = _NUMBER.match(word)
    if match is None:
        raise ValueError(f"'{word}' is not a {what}; write {forms}")
    if not match["unit"]:
        raise ValueError(f"{what} '{word}' has no unit; write {forms}")
    return float(match["num"]), match["unit"]


def _rate_factor(word: str, unit: str) -> float:
    # Bytes first: the bit pattern ignores case, so it would also take "MBps".
    octets = _BYTE_UNIT.match(unit)
    if octets is not None:
        return 8 * _PREFIXES[octets["prefix"].lower()]
    bits = _BIT_UNIT.match(unit)
    if bits is not None:
        return _PREFIXES[bits["prefix"].lower()]
    if unit.lower() in ("b", "kb", "mb", "gb"):
        raise ValueError(
            f"rate unit '{unit}' in '{word}' is ambiguous; write bit (e.g. 5mbit) or B for bytes (5MB/s)"
        )
    raise ValueError(f"unknown rate unit '{unit}' in '{word}'; write {_RATE_FORMS}")
