"""The lab's network: its names and addresses, the bridge, one namespace and veth pair per host.

For host ``i`` of a lab with prefix ``st`` and subnet ``0``: a network namespace ``st-hI``
with ``lo`` up and ``eth0`` at ``198.18.0.(10+I)/24``, and ``eth0``'s veth peer ``st-hI-br``
on the bridge ``st-br0`` (``198.18.0.1/24``) in the root namespace, so the controller
reaches every host and hosts reach each other. Everything is found again by name, so a lab
an interrupted ``up`` left is removed as well as one that was saved.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .errors import TestbedError
from .system import Progress, run, stop, wait_for

__all__ = [
    "HOST_IFACE",
    "MAX_HOSTS",
    "LabNetwork",
    "add_bridge",
    "add_host_link",
    "bridge_commands",
    "check_free",
    "check_host_count",
    "host_link_commands",
    "leftover_links",
    "links",
    "namespace_pids",
    "namespaces",
    "remove_links",
    "remove_namespaces",
]

HOST_IFACE = "eth0"
MAX_HOSTS = 64


@dataclass(frozen=True)
class LabNetwork:
    """Names and addresses of one lab: ``{prefix}-hI`` hosts on ``198.18.{subnet}.0/24``."""

    prefix: str = "st"
    subnet: int = 0

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z]{1,4}", self.prefix):
            raise TestbedError(f"lab prefix '{self.prefix}' must be 1 to 4 lower-case letters")
        if not 0 <= self.subnet <= 255:
            raise TestbedError(f"lab subnet {self.subnet} must be 0..255 (198.18.SUBNET.0/24)")

    @property
    def bridge(self) -> str:
        return f"{self.prefix}-br0"

    @property
    def bridge_address(self) -> str:
        return f"198.18.{self.subnet}.1"

    @property
    def cidr(self) -> str:
        return f"198.18.{self.subnet}.0/24"

    def namespace(self, index: int) -> str:
        return f"{self.prefix}-h{index}"

    def address(self, index: int) -> str:
        return f"198.18.{self.subnet}.{10 + index}"

    def bridge_veth(self, index: int) -> str:
        return f"{self.prefix}-h{index}-br"

    def user(self, index: int) -> str:
        return f"splittracer-{self.prefix}-h{index}"

    def owns_namespace(self, name: str) -> bool:
        return re.fullmatch(rf"{self.prefix}-h\d+", name) is not None

    def owns_link(self, name: str) -> bool:
        return name == self.bridge or re.fullmatch(rf"{self.prefix}-h\d+-br", name) is not None

    def owns_user(self, name: str) -> bool:
        return re.fullmatch(rf"splittracer-{self.prefix}-h\d+", name) is not None


def check_host_count(hosts: int) -> int:
    """``hosts`` when a lab can have that many, else :class:`TestbedError`."""
    if not 1 <= hosts <= MAX_HOSTS:
        raise TestbedError(f"--hosts {hosts}: a lab has 1 to {MAX_HOSTS} hosts")
    return hosts


def bridge_commands(net: LabNetwork) -> list[list[str]]:
    """The bridge in the root namespace, with the controller's address on the lab subnet."""
    return [
        ["ip", "link", "add", net.bridge, "type", "bridge"],
        ["ip", "addr", "add", f"{net.bridge_address}/24", "dev", net.bridge],
        ["ip", "link", "set", net.bridge, "up"],
    ]


def host_link_commands(net: LabNetwork, index: int) -> list[list[str]]:
    """Host ``index``'s namespace and its veth pair: ``eth0`` inside, the peer on the bridge."""
    ns, veth = net.namespace(index), net.bridge_veth(index)
    return [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", veth, "type", "veth", "peer", "name", HOST_IFACE, "netns", ns],
        ["ip", "link", "set", veth, "master", net.bridge, "up"],
        ["ip", "-n", ns, "addr", "add", f"{net.address(index)}/24", "dev", HOST_IFACE],
        ["ip", "-n", ns, "link", "set", HOST_IFACE, "up"],
        ["ip", "-n", ns, "link", "set", "lo", "up"],
        # Each task is one burst after an idle gap; restarting TCP's slow start after every gap
        # would add round trips to each message that a link of this rate does not cost.
        ["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.tcp_slow_start_after_idle=0"],
    ]


def add_bridge(net: LabNetwork) -> None:
    """Make the lab's bridge."""
    for cmd in bridge_commands(net):
        run(cmd)


def add_host_link(net: LabNetwork, index: int) -> None:
    """Make host ``index``'s namespace and link it to the bridge."""
    for cmd in host_link_commands(net, index):
        run(cmd)


def check_free(net: LabNetwork, hint: str) -> None:
    """Raise :class:`TestbedError` when this lab's names or subnet are taken on this machine."""
    if net.bridge in links() or any(net.owns_namespace(ns) for ns in namespaces()):
        raise TestbedError(f"lab links or namespaces named {net.prefix}-* already exist", hint=hint)
    used = run(["ip", "-o", "addr", "show", "to", net.cidr], check=False).stdout.strip()
    if used:
        raise TestbedError(f"{net.cidr} is already in use here: {used.splitlines()[0]}", hint=hint)


def namespaces() -> list[str]:
    """Every network namespace on this machine."""
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def links() -> list[str]:
    """Every link in the root namespace."""
    out = run(["ip", "-o", "link", "show"], check=False).stdout
    return [line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line]


def namespace_pids(namespace: str) -> list[int]:
    """The processes running in ``namespace`` (never this one)."""
    out = run(["ip", "netns", "pids", namespace], check=False).stdout
    return [int(tok) for tok in out.split() if tok.isdigit() and int(tok) != os.getpid()]


def remove_namespaces(net: LabNetwork, say: Progress) -> list[str]:
    """Stop every process in the lab's namespaces (sshd and its sessions), then delete them."""
    removed = []
    for ns in (n for n in namespaces() if net.owns_namespace(n)):
        say(f"namespace {ns}")
        stop(namespace_pids(ns))
        run(["ip", "netns", "del", ns])
        removed.append(f"namespace {ns}")
    return removed


def remove_links(net: LabNetwork) -> list[str]:
    """Delete the bridge and any veth its namespace did not take with it."""
    # A veth goes with its namespace, but the kernel removes it asynchronously.
    wait_for(lambda: not any(net.owns_link(n) and n != net.bridge for n in links()), 5.0)
    removed = []
    for link in (n for n in links() if net.owns_link(n)):
        run(["ip", "link", "del", link], check=False)
        removed.append(f"link {link}")
    return removed


def leftover_links(net: LabNetwork) -> list[str]:
    """The lab's namespaces and links that still exist."""
    found = [f"namespace {n}" for n in namespaces() if net.owns_namespace(n)]
    return found + [f"link {n}" for n in links() if net.owns_link(n)]
