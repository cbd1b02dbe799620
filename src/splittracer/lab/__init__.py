"""The lab: real SSH hosts on one Linux machine, in network namespaces on a bridge, links shaped with ``tc``.

* :mod:`.testbed` — :class:`Testbed`, the facade that builds, checks and removes a lab;
* :mod:`.network` — names and addresses (:class:`LabNetwork`), the bridge, namespaces and veths;
* :mod:`.sshd` — each host's system user and real OpenSSH server;
* :mod:`.hostlimits` — each host's CPU and memory limits: its sshd started in its own cgroups;
* :mod:`.shaping` — ``tbf`` link shaping with ``tc``, and whether ``netem`` exists;
* :mod:`.state` — what a lab is (:class:`TestbedState`, :class:`TestbedStatus`) and its saved files;
* :mod:`.system` — running commands and stopping processes on this machine, and what the lab needs of it;
* :mod:`.errors` — :class:`TestbedError` and :class:`TestbedCommandError`.
"""

from __future__ import annotations

from .errors import TestbedCommandError, TestbedError
from .hostlimits import describe_limits, parse_host_limits
from .network import LabNetwork
from .shaping import netem_available
from .sshd import read_ssh_banner
from .state import (
    HostStatus,
    LabHost,
    TestbedState,
    TestbedStatus,
    default_state_dir,
    describe_rate,
    status_document,
)
from .system import check_environment, check_platform
from .testbed import Testbed

__all__ = [
    "HostStatus",
    "LabHost",
    "LabNetwork",
    "Testbed",
    "TestbedCommandError",
    "TestbedError",
    "TestbedState",
    "TestbedStatus",
    "check_environment",
    "check_platform",
    "default_state_dir",
    "describe_limits",
    "describe_rate",
    "netem_available",
    "parse_host_limits",
    "read_ssh_banner",
    "status_document",
]
