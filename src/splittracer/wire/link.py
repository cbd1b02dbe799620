"""One link interface between two participants, whichever path carries the tasks.

A :class:`Link` sends one task to one peer and returns the task that peer
answered with, if any. Two implementations: :class:`~.datalink.SocketLink`
(the data plane, for a peer that announced a data port) and
:class:`~.grpc_path.GrpcLink` (gRPC ``Deliver`` calls, for one that did
not). Both raise :class:`~splittracer.errors.PeerError` the same way, so a
sender need not know which path it used.

On the receiving side both paths hand a :data:`Handler` a function that
reads the task (so a task that cannot be read becomes an error answer, not
a broken connection) and send back the :data:`Answer` it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..errors import PeerError
from .envelope import Incoming, Outgoing
from .messages import Reply

# What a receiver answers: the Reply and, for ``ctx.call``, the handler's answer to send back
Answer = tuple[Reply, "Outgoing | None"]
Handler = Callable[[Callable[[], Incoming]], Answer]


class Link(Protocol):
    """A way to send tasks to one peer."""

    def send(self, outgoing: Outgoing, timeout: float | None = None) -> Incoming | None:
        """Deliver ``outgoing``; the task the peer answered with (not yet decoded), or None.

        Raises PeerError when the peer cannot be reached or its handler failed.
        """
        ...

    def close(self) -> None:
        """Release the link's connections."""
        ...


def unreachable(peer: str, detail: str) -> PeerError:
    """The error for a peer that could not be reached (``detail`` says why)."""
    return PeerError(f"cannot reach '{peer}': {detail}", peer=peer)


def check_reply(peer: str, outgoing: Outgoing, reply: Reply) -> None:
    """Raise PeerError when ``peer`` answered ``outgoing`` with an error."""
    if not reply.ok:
        name = outgoing.task_name or "a task"
        raise PeerError(f"'{peer}' failed on {name}: {reply.error}", peer=peer)
