"""The environment the user started SplitTracer with, copied before any heavy import.

Imports may set variables of their own in their process (importing torch's
compiler sets ``TORCHINDUCTOR_CACHE_DIR``). What compares the environments of
two processes (the warm agent's fingerprint) must tell those apart from what
the user set. The root package imports this module first, so the copy is
taken before anything else of SplitTracer, torch included, is imported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType

AT_START: Mapping[str, str] = MappingProxyType(dict(os.environ))
"""``os.environ`` as it was when ``splittracer`` was first imported in this process."""


def set_here_since_start(name: str, value: str) -> bool:
    """Whether ``name=value`` was set in this process after start (it is not what the user started with)."""
    return AT_START.get(name) != value and os.environ.get(name) == value


CPU_LIMIT_ENV = "SPLITTRACER_CPU_LIMIT"
"""The CPU fraction a signal throttle holds its child to (:mod:`splittracer.devices.throttle` sets it)."""
CPU_LIMIT_BY_ENV = "SPLITTRACER_CPU_LIMIT_BY"
"""How the throttle enforces that limit: ``signals`` (read by :mod:`splittracer.metrics.cgroups`)."""
