"""When a run is over: every participant with a playbook (a client) has finished it.

One client ending its playbook does not end a fleet's run: the controller
waits for every client. A participant without a playbook that finishes (a
server told to stop), or any participant finishing for ``everyone``, ends
the run at once. When several clients share a run, one that fails is set
aside and reported once the others are done: the run fails, naming it.
"""

from __future__ import annotations

from ..errors import RunError


class Clients:
    """The clients of one run and how far each is."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.done: set[str] = set()
        self.errors: dict[str, str] = {}
        self._ended = False

    def finished(self, participant: str, *, everyone: bool = False) -> None:
        """``participant`` said it is done (``ctx.finish``)."""
        if everyone or participant not in self.names:
            self._ended = True
        self.done.add(participant)

    def failed(self, participant: str, error: str) -> bool:
        """Set aside a client that failed while others go on; False when its failure ends the run
        (it is no client, or the only one)."""
        if participant not in self.names or len(self.names) < 2:
            return False
        self.errors[participant] = error
        self.done.add(participant)
        return True

    @property
    def all_done(self) -> bool:
        """Whether the run is over."""
        return self._ended or all(name in self.done for name in self.names)

    def raise_failures(self) -> None:
        """RunError naming every client that failed, if any did."""
        if self.errors:
            names = ", ".join(sorted(self.errors))
            detail = "\n".join(self.errors[name] for name in sorted(self.errors))
            raise RunError(f"{len(self.errors)} of {len(self.names)} clients failed ({names}):\n{detail}")
