"""Link shaping with ``tc``: a ``tbf`` qdisc at the lab's rate on both ends of each host's veth.

Each direction is then shaped once on the way out of a host and once on the way in.
``netem`` is not used: it is missing on some kernels (:func:`netem_available` probes).
"""

from __future__ import annotations

import math
import os
import sys

from ..units import format_rate, parse_rate
from .errors import TestbedError
from .network import HOST_IFACE, LabNetwork
from .system import run, which

__all__ = [
    "TBF_LATENCY",
    "TBF_MIN_BURST",
    "describe_shaping",
    "is_shaped",
    "netem_available",
    "parse_bandwidth",
    "shape_host",
    "shaping_commands",
    "tbf_args",
    "tbf_burst_bytes",
]

# The queue tbf may hold, as time at the rate. A short queue drops packets as soon as TCP's
# window outgrows it, and the link then idles while TCP recovers: at 50 ms a 10 Mbit/s link
# carried large tensors 10-15% slower than its rate. A queue of a second never drops one
# message's packets, so the link stays busy and a transfer takes bytes / rate (plus headers).
TBF_LATENCY = "1000ms"
# tbf must hold one full frame (1500 + 14 bytes of Ethernet header); a burst of more than
# about a millisecond of traffic would let small messages through unshaped.
TBF_MIN_BURST = 1600


def parse_bandwidth(bandwidth: str | None) -> float | None:
    """Bits per second to shape at, or ``None`` for an unshaped lab."""
    if bandwidth is None:
        return None
    try:
        rate = parse_rate(bandwidth)
    except ValueError as exc:
        raise TestbedError(f"--bandwidth: {exc}") from exc
    return None if math.isinf(rate) else rate


def tbf_burst_bytes(rate_bps: float) -> int:
    """About a millisecond of traffic, and never less than one full frame."""
    return max(TBF_MIN_BURST, math.ceil(rate_bps / 8 * 1e-3))


def tbf_args(rate_bps: float) -> list[str]:
    """``tc qdisc add dev X`` arguments for a root tbf at ``rate_bps``."""
    burst = tbf_burst_bytes(rate_bps)
    return ["root", "tbf", "rate", f"{round(rate_bps)}bit", "burst", str(burst), "latency", TBF_LATENCY]


def shaping_commands(net: LabNetwork, index: int, rate_bps: float) -> list[list[str]]:
    """tbf on the host's end (its uplink) and on the bridge's end (its downlink)."""
    tbf = tbf_args(rate_bps)
    return [
        ["tc", "-n", net.namespace(index), "qdisc", "add", "dev", HOST_IFACE, *tbf],
        ["tc", "qdisc", "add", "dev", net.bridge_veth(index), *tbf],
    ]


def shape_host(net: LabNetwork, index: int, rate_bps: float) -> None:
    """Shape host ``index``'s link both ways."""
    for cmd in shaping_commands(net, index, rate_bps):
        run(cmd)


def is_shaped(namespace: str, interface: str) -> bool:
    """Whether ``interface`` in ``namespace`` has a tbf qdisc now."""
    qdisc = run(["tc", "-n", namespace, "qdisc", "show", "dev", interface], check=False)
    return " tbf " in f" {qdisc.stdout} "


def describe_shaping(rate_bps: float | None, burst: int | None) -> str:
    """``10 Mbit/s (tbf, burst 1600 B, latency 1000ms)`` or ``unshaped``."""
    if rate_bps is None:
        return "unshaped"
    return f"{format_rate(rate_bps)} (tbf, burst {burst} B, latency {TBF_LATENCY})"


def netem_available() -> bool:
    """Whether this kernel has the ``netem`` qdisc: add one to ``lo`` in a throwaway namespace."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or which("tc") is None:
        return False
    probe = f"st-netem-probe-{os.getpid()}"
    try:
        run(["ip", "netns", "add", probe], timeout=10)
    except TestbedError:
        return False
    try:
        added = run(
            ["tc", "-n", probe, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
            check=False,
            timeout=10,
        )
        return added.returncode == 0
    finally:
        run(["ip", "netns", "del", probe], check=False, timeout=10)
