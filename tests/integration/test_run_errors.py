"""A user's handler that fails at run time, as ``splittracer run`` shows it: once, in the user's terms.

The workspace's own roles.py holds the failing roles, as a user writes
them; no model is loaded, so each run takes seconds.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import splittracer

from .test_cli_run import splittracer as cli

pytestmark = pytest.mark.slow

PACKAGE = str(Path(splittracer.__file__).resolve().parent)

ROLES = '''

class WrongType(Role):
    """Sends a Greeting whose text is not a str."""

    @handles(Greeting)
    def greet(self, task: Greeting, ctx: Context) -> None:
        ctx.send("b", Greeting(text=3))


class Raises(Role):
    """Fails in a helper of its own."""

    @handles(Greeting)
    def greet(self, task: Greeting, ctx: Context) -> None:
        refuse(task)


def refuse(task: Greeting) -> None:
    raise ValueError(f"no greeting for {task.text}")


class Caller(Role):
    """Calls 'b' and waits for its answer."""

    @handles(Greeting)
    def greet(self, task: Greeting, ctx: Context) -> None:
        ctx.call("b", Greeting(text="there"))
        ctx.finish()
'''

MANIFEST = """
name: {name}
participants:
  a: {{role: "roles:{first}"}}
  b: {{role: "roles:{second}"}}
playbook:
  a:
    - task: Greeting
      params: {{text: hi}}
"""

EXPERIMENTS = {
    "wrong": ("WrongType", "Echo"),
    "raises": ("Raises", "Echo"),
    "consequence": ("Caller", "Raises"),
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("errors") / "ws"
    assert cli("init", str(ws)).returncode == 0
    (ws / "roles.py").write_text((ws / "roles.py").read_text() + ROLES)
    for name, (first, second) in EXPERIMENTS.items():
        text = MANIFEST.format(name=name, first=first, second=second)
        (ws / "experiments" / f"{name}.yaml").write_text(textwrap.dedent(text))
    return ws


def line_of(ws: Path, code: str) -> str:
    """How a traceback names the line of roles.py that holds ``code``."""
    lines = (ws / "roles.py").read_text().splitlines()
    number = next(i for i, line in enumerate(lines, 1) if code in line)
    return f'roles.py", line {number}'


def run(ws: Path, name: str, *options: str) -> tuple[str, str]:
    result = cli(*options, "run", name, "--workspace", str(ws), "--no-plot")
    assert result.returncode == 1, result.stdout + result.stderr
    return result.stdout, result.stderr


def newest_log(ws: Path, participant: str) -> str:
    runs = sorted((ws / "results" / "logs").iterdir())
    return (runs[-1] / f"{participant}.log").read_text()


def test_a_handler_that_raised_shows_the_users_traceback_once(workspace):
    out, err = run(workspace, "raises")
    both = out + err
    assert both.count("no greeting for hi") == 2  # the error's line and the exception's line
    assert both.count("Traceback (most recent call last)") == 1
    assert both.count(line_of(workspace, "refuse(task)")) == 1
    assert both.count(line_of(workspace, "raise ValueError")) == 1
    assert PACKAGE not in both and "runtime.py" not in both
    # The participant's log keeps every frame.
    log = newest_log(workspace, "a")
    assert f"{PACKAGE}/participant/runtime.py" in log and "no greeting for hi" in log


def test_a_wrong_field_type_is_one_message_with_the_users_line(workspace):
    out, err = run(workspace, "wrong")
    both = out + err
    assert both.count("task Greeting: field 'text' must be str, got int") == 1
    assert both.count(line_of(workspace, "Greeting(text=3)")) == 1
    assert "Traceback" not in both and PACKAGE not in both
    assert "ValidationError" not in both


def test_debug_shows_the_internal_frames(workspace):
    _, err = run(workspace, "wrong", "--debug")
    assert f"{PACKAGE}/tasks.py" in err and f"{PACKAGE}/participant/runtime.py" in err
    assert "field 'text' must be str, got int" in err


def test_a_peers_failure_is_the_cause_and_shown_once(workspace):
    out, err = run(workspace, "consequence")
    both = out + err
    assert both.count("Traceback (most recent call last)") == 1
    assert both.count(line_of(workspace, "raise ValueError")) == 1
    assert "participant 'b'" in err and PACKAGE not in both
