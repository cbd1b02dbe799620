"""What a participant shows of a user's failed handler: the user's frames, never SplitTracer's."""

from __future__ import annotations

import pytest

from splittracer.participant.failure import describe, full_traceback, user_traceback
from splittracer.tasks import Task, encode_task


class FailureNote(Task):
    """A task with one typed field."""

    text: str


def send_wrong() -> None:
    encode_task(FailureNote(text=3))  # type: ignore[arg-type]


def fail_in_user_code() -> None:
    raise ValueError("the user's own bug")


def caught(call) -> BaseException:  # type: ignore[no-untyped-def]
    with pytest.raises(Exception) as info:
        call()
    return info.value


def test_a_refused_value_is_its_message_and_the_users_line() -> None:
    exc = caught(send_wrong)
    assert describe(exc).endswith("FailureNote: field 'text' must be str, got int")
    shown = user_traceback(exc)
    assert "test_failure.py" in shown and "encode_task(FailureNote(text=3))" in shown
    assert "tasks.py" not in shown and "Traceback" not in shown
    assert shown.endswith("set the field to a value of its declared type before sending")
    assert "tasks.py" in full_traceback(exc) and "ValidationError" in full_traceback(exc)


def test_a_plain_exception_keeps_the_users_frames() -> None:
    exc = caught(fail_in_user_code)
    shown = user_traceback(exc)
    assert shown.startswith("Traceback (most recent call last)")
    assert "fail_in_user_code" in shown and shown.endswith("ValueError: the user's own bug")
    assert describe(exc) == 'ValueError("the user\'s own bug")'
