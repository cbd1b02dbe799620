"""The lab: real sshd hosts in network namespaces, shared by every e2e test of a session.

Needs Linux, root, iproute2 and OpenSSH's server (CI installs ``openssh-server``);
elsewhere every test that asks for ``lab`` is skipped, saying why.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from splittracer.lab import LabNetwork, Testbed, TestbedError, TestbedState, check_environment

from .labclaim import claimed_lab

LAB_HOSTS = 2
LAB_BANDWIDTH = "10mbit"
# Not the default names: a test may build the default lab from the command line beside this one.
LAB_NETWORK = LabNetwork(prefix="et", subnet=2)


def lab_skip_reason() -> str | None:
    """Why the lab cannot be built here, or ``None`` when it can."""
    try:
        check_environment(shaping=True)
    except TestbedError as exc:
        return exc.render()
    return None


@pytest.fixture(scope="session", autouse=True)
def no_stale_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep a lab host's participants on this checkout's code for the session.

    Lab hosts log in as root, and participants run root's runtime (``~/.splittracer/venv``)
    whenever it exists. One left by an earlier session (a killed ``testbed up``) holds the
    splittracer of that session; tasks that gained a field since are refused there. A runtime
    whose recorded source is not this checkout's is set aside for the session and put back
    after it (where nothing took its place), so nothing of the user's is lost.
    """
    from splittracer.devices.setup import MARKER, source_checkout, source_digest
    from splittracer.lab.ready import runtime_dir
    from splittracer.version import __version__

    venv, root = runtime_dir(), source_checkout()
    marker = venv / MARKER
    current = (
        root is not None
        and marker.is_file()
        and marker.read_text().strip() == (f"{__version__} {source_digest(root)}")
    )
    if not venv.exists() or current:
        yield
        return
    aside = tmp_path_factory.mktemp("stale-runtime") / "venv"
    shutil.move(venv, aside)
    try:
        yield
    finally:
        if not venv.exists():
            shutil.move(aside, venv)


@pytest.fixture(scope="session")
def lab_testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """A 2-host lab on a 10 Mbit/s tbf-shaped link; removed, and checked removed, at the end.

    Its hosts are left unpaired (``ready=False``): each test pairs them its own way.
    """
    reason = lab_skip_reason()
    if reason is not None:
        pytest.skip(f"no testbed: {reason}")
    with claimed_lab(LAB_NETWORK, tmp_path_factory.mktemp("stale")):
        testbed = Testbed(tmp_path_factory.mktemp("testbed"), LAB_NETWORK)
        testbed.up(LAB_HOSTS, LAB_BANDWIDTH, ready=False)
        try:
            yield testbed
        finally:
            testbed.down()
    left = testbed.leftovers()
    assert not left, f"testbed down left {left}"


@pytest.fixture(scope="session")
def lab(lab_testbed: Testbed) -> TestbedState:
    """The lab's state: hosts, addresses, users, the password, host keys."""
    state = lab_testbed.read_state()
    assert state is not None
    return state


@pytest.fixture
def claim_lab(tmp_path: Path) -> Iterator[Callable[[LabNetwork], list[str]]]:
    """Claim a test's own lab names until the test ends (see :mod:`.labclaim`)."""
    with contextlib.ExitStack() as stack:
        yield lambda network: stack.enter_context(claimed_lab(network, tmp_path / f"stale-{network.prefix}"))
