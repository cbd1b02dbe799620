"""What the controller knows of starting participants: a :class:`Deployer` and its :class:`Deployment`.

A :class:`Deployer` starts ``python -m splittracer.participant`` somewhere and
returns a :class:`Deployment`: where its control endpoint is reachable from
the controller, where its peers reach it, where it finds the run's files,
whether it is still alive, how it ended, and the tail of what it printed.
The controller never cares which implementation it has:

- :mod:`.local`: a fresh subprocess (``launch`` is ``spawn``), or a child of
  the warm agent (:mod:`.agent_client`, ``launch`` is ``agent``);
- :mod:`.ssh`: a process on a paired device, reached through an SSH tunnel;
- :mod:`.select`: one deployer that starts each participant where the run placed it.

The constants and helpers every implementation shares live here, once.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..participant import PORT_PREFIX

if TYPE_CHECKING:  # the agent's server imports this module: it stays light
    from ..wire.tls import TlsBundle

__all__ = [
    "LOST",
    "PORT_PREFIX",
    "START_TIMEOUT_S",
    "Deployer",
    "Deployment",
    "describe_exit",
    "log_tail",
]

START_TIMEOUT_S = 60.0
"""How long a participant on this machine may take to listen (its imports included)."""
LOST = 255
"""Exit status of a participant whose end was not reported (its agent or its connection went first)."""


class Deployment(Protocol):
    """A started participant process."""

    @property
    def name(self) -> str:
        """The participant's name in the run."""
        ...

    @property
    def launch(self) -> str:
        """How it was started, as the run's metadata records it: ``spawn`` or ``agent``."""
        ...

    @property
    def address(self) -> str:
        """``host:port`` where the controller reaches its control endpoint."""
        ...

    @property
    def peer_address(self) -> str:
        """``host:port`` where the other participants reach it (may differ from ``address``)."""
        ...

    @property
    def workspace(self) -> str | None:
        """Its own copy of the run's files on its host, as a directory it runs in.

        There the workspace's user code, the run's files and the dataset folder
        sit under their base names. None: it runs on the controller's machine
        and reads them where they are.
        """
        ...

    def poll(self) -> int | None:
        """Exit status if it ended (negative: killed by that signal), else None."""
        ...

    def stop(self, timeout: float = 3.0) -> None:
        """End it: politely, then by force after ``timeout`` seconds; frees what it held."""
        ...

    def output_tail(self, lines: int = 20) -> str:
        """The last lines it wrote to stderr."""
        ...


class Deployer(Protocol):
    """Starts participants on one kind of device (or, mixed, on each where it belongs)."""

    def start(self, name: str, tls: TlsBundle) -> Deployment:
        """Start a participant process for ``name`` holding ``tls`` and wait until it listens."""
        ...

    def close(self) -> None:
        """Stop what is left and release connections; idempotent."""
        ...


def describe_exit(status: int | None) -> str:
    """'exited with status 3', 'killed by SIGKILL' or 'still running'."""
    if status is None:
        return "still running"
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exited with status {status}"


def log_tail(path: str | Path, lines: int) -> list[str] | None:
    """The last ``lines`` lines of a participant's log file (None if it cannot be read)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None
    return text.rstrip().splitlines()[-lines:]
