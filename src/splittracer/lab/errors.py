"""What the lab raises: :class:`TestbedError`, and :class:`TestbedCommandError` for a failed command."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import RUN_FAILURE, SplitTracerError

__all__ = ["TestbedCommandError", "TestbedError"]


class TestbedError(SplitTracerError):
    """The lab cannot be built here, or was asked for something it cannot do."""

    __test__ = False


class TestbedCommandError(TestbedError):
    """A command run to build, check or remove the lab failed."""

    exit_code = RUN_FAILURE

    def __init__(self, argv: Sequence[str], status: int | None, output: str) -> None:
        command = " ".join(argv)
        what = "timed out" if status is None else f"exited with status {status}"
        tail = "\n".join(output.strip().splitlines()[-10:])
        super().__init__(
            f"testbed command '{command}' {what}" + (f":\n{tail}" if tail else ""),
            hint="run 'splittracer testbed down' to remove what was made, then try again",
        )
        self.argv, self.status, self.output = tuple(argv), status, output
