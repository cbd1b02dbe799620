"""One exception tree for everything SplitTracer reports.

Library code raises these; only the command line turns them into text and an
exit code. Every error carries a one-paragraph ``message`` (what went wrong),
an optional ``hint`` (what to do about it) and an ``exit_code``: 2 for a
user's mistake, 1 for a failure of the run or the environment.
"""

from __future__ import annotations

USER_ERROR = 2
RUN_FAILURE = 1
INTERRUPTED_EXIT = 130  # what shells expect of a program stopped by Ctrl-C (128 + SIGINT)


class SplitTracerError(Exception):
    """Root of every error SplitTracer raises on purpose."""

    exit_code: int = USER_ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        """The paragraph shown to a user: the message, then the hint."""
        return self.message if not self.hint else f"{self.message}\n{self.hint}"


class ConfigError(SplitTracerError):
    """A YAML file (manifest, override, settings) is malformed or invalid.

    ``path``, ``line`` and ``key`` locate the mistake when they are known.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = _location(path, line, key)
        super().__init__(f"{where}: {message}" if where else message, hint=hint)
        self.path, self.line, self.key = path, line, key
        self.detail = message  # without the location, to re-locate it


class ModelError(SplitTracerError):
    """A model could not be found, built or fed the given input."""


class CaptureError(SplitTracerError):
    """No capture method could turn the model into a graph that can be split."""


class SplitError(SplitTracerError):
    """A split point or layer range is out of range or not allowed."""


class UserCodeError(SplitTracerError):
    """A user's role, task or model code could not be imported or is misused."""


class RunError(SplitTracerError):
    """An experiment run failed after it started (a participant died, a handler raised)."""

    exit_code = RUN_FAILURE


class PeerError(RunError):
    """A task sent to another participant failed there, or the peer could not be reached.

    ``peer`` names it, so the controller can report the peer's own error as
    the cause rather than this consequence of it.
    """

    def __init__(self, message: str, *, peer: str, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.peer = peer


class WireError(SplitTracerError):
    """Bytes from a peer are not a valid task: bad header, unknown type or field, bad tensor."""

    exit_code = RUN_FAILURE


class CodecError(SplitTracerError):
    """A compression codec is unknown or its package is not installed."""


class DeviceError(SplitTracerError):
    """A device could not be reached, trusted, logged into, or ran a command that failed.

    ``host``, ``command``, ``exit_status`` and ``output`` (the tail of what the
    command printed) are part of the message when they are known.
    """

    exit_code = RUN_FAILURE

    def __init__(
        self,
        message: str,
        *,
        host: str | None = None,
        command: str | None = None,
        exit_status: int | None = None,
        output: str = "",
        hint: str | None = None,
    ) -> None:
        text = f"{host}: {message}" if host else message
        if command:
            status = "" if exit_status is None else f" (exit status {exit_status})"
            text += f"\ncommand: {command}{status}"
        if output.strip():
            text += "\nlast output:\n" + "\n".join(output.rstrip().splitlines()[-15:])
        super().__init__(text, hint=hint)
        self.host, self.command, self.exit_status, self.output = host, command, exit_status, output


def _location(path: str | None, line: int | None, key: str | None) -> str:
    parts = []
    if path:
        parts.append(f"{path}:{line}" if line else path)
    if key:
        parts.append(f"key '{key}'")
    return ", ".join(parts)
