"""One test session at a time per test-lab name; what a killed session left is removed first.

A test lab is torn down when its session ends, but a session killed mid-run (SIGKILL,
a timeout, the machine's job limit) leaves its namespaces, links and users behind, and
the next session's ``up`` then refuses the taken names. Each test lab is therefore
claimed for the session by binding an abstract Unix socket named after its prefix: the
kernel releases it when the holder dies, so a session that gets the claim knows that
whatever lab of that name exists belongs to no live session and removes it. A session
that cannot get the claim fails at once, naming the lab, instead of destroying a live one.
Only the tests' own lab names are claimed: a user's lab (the default names) is never touched.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from splittracer.lab import LabNetwork, Testbed


@contextlib.contextmanager
def claimed_lab(network: LabNetwork, scratch: Path) -> Iterator[list[str]]:
    """Hold ``network``'s names for this block; yield what a dead session left and was removed."""
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        claim.bind(f"\0splittracer-test-lab-{network.prefix}")
    except OSError:
        claim.close()
        pytest.fail(f"another live test session is using the test lab '{network.prefix}'")
    try:
        stale = Testbed(scratch, network)
        yield stale.down() if stale.leftovers() else []
    finally:
        claim.close()
