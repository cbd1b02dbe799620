"""Link emulation: a lab of real SSH hosts on one Linux machine (:mod:`.testbed`)."""

from __future__ import annotations

from .testbed import (
    HostStatus,
    LabHost,
    LabNetwork,
    Testbed,
    TestbedCommandError,
    TestbedError,
    TestbedState,
    TestbedStatus,
    default_state_dir,
    netem_available,
)

__all__ = [
    "HostStatus",
    "LabHost",
    "LabNetwork",
    "Testbed",
    "TestbedCommandError",
    "TestbedError",
    "TestbedState",
    "TestbedStatus",
    "default_state_dir",
    "netem_available",
]
