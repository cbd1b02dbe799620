"""What a user is shown when their role's code failed, without SplitTracer's own frames.

A handler that raised is the user's bug: they need their own traceback,
not thirty lines of the runtime, the context and the task encoder around
it. Where SplitTracer refused something the user did (a field of the wrong
type, an unknown peer: a :class:`~splittracer.errors.SplitTracerError`), its
message already says what is wrong, so one paragraph and the user's line
that did it are enough. The full traceback still goes to the participant's
log, and the controller logs it at debug level (``splittracer --debug``).
"""

from __future__ import annotations

import traceback
from pathlib import Path

from ..errors import SplitTracerError

_PACKAGE = Path(__file__).resolve().parent.parent


def is_internal(filename: str) -> bool:
    """Whether a frame's file is part of the SplitTracer package itself."""
    try:
        return Path(filename).resolve().is_relative_to(_PACKAGE)
    except (OSError, ValueError):
        return False


def user_traceback(exc: BaseException) -> str:
    """What the user is shown of ``exc`` below its message: their own frames, or their line
    that SplitTracer refused and the error's hint.

    '' when no frame of the traceback is user code (a built-in role failed).
    """
    if isinstance(exc, SplitTracerError):
        return "\n".join(part for part in (_user_line(exc), exc.hint) if part)
    shown = traceback.TracebackException.from_exception(exc)
    if not _drop_internal_frames(shown, set()):
        return ""
    return "".join(shown.format()).rstrip()


def describe(exc: BaseException) -> str:
    """``exc`` in one line: SplitTracer's own message (its hint follows the user's line), or type and text."""
    return exc.message if isinstance(exc, SplitTracerError) else repr(exc)


def full_traceback(exc: BaseException) -> str:
    """Every frame of ``exc`` and its causes, for the log and ``--debug``."""
    return "".join(traceback.format_exception(exc)).rstrip()


def _user_line(exc: BaseException) -> str:
    """The innermost frame of user code in ``exc``'s traceback, formatted as a traceback shows it."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not is_internal(f.filename)]
    if not frames:
        return ""
    return "".join(traceback.StackSummary.from_list(frames[-1:]).format()).rstrip()


def _drop_internal_frames(shown: traceback.TracebackException, seen: set[int]) -> bool:
    """Remove SplitTracer's frames from ``shown`` and its chained exceptions; whether a user frame is left."""
    if id(shown) in seen:
        return False
    seen.add(id(shown))
    kept = [f for f in shown.stack if not is_internal(f.filename)]
    shown.stack = traceback.StackSummary.from_list(kept)
    found = bool(kept)
    for chained in (shown.__cause__, shown.__context__):
        if chained is not None:
            found = _drop_internal_frames(chained, seen) or found
    return found
