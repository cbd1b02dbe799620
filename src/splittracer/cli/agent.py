"""``splittracer agent``: the warm agent that forks local participants (fast launches)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ..deploy import agent_client as agent_mod
from ..errors import ConfigError, RunError
from ._render import console, print_json, print_table

app = typer.Typer(
    help="A warm agent that forks local participants with torch already imported (fast launches).",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
START_WAIT_S = 120.0
STOP_WAIT_S = 15.0
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(s|sec|m|min|h)?\s*$")
_FACTORS = {None: 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_idle_timeout(text: str) -> float:
    """Seconds in ``text``: ``90``, ``90s``, ``15m``, ``1h``; above zero."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(
            f"--idle-timeout '{text}' is not a duration",
            hint="Write seconds, minutes or hours: 90s, 15m, 1h.",
        )
    return float(match.group(1)) * _FACTORS[match.group(2)]


@app.command("start")
def start(
    idle_timeout: Annotated[
        str, typer.Option("--idle-timeout", help="Exit after this long with no participant and no request")
    ] = "15m",
    json: JsonOpt = False,
) -> None:
    """Start the warm agent in the background (or say that a compatible one runs)."""
    seconds = parse_idle_timeout(idle_timeout)
    found = agent_mod.agent_status()
    replaced: int | None = None
    if found is not None:
        mismatch = agent_mod.differences(found.get("fingerprint", {}), agent_mod.fingerprint())
        if not mismatch:
            _report_started(found, started=False, replaced=None, json=json)
            return
        if found.get("children"):
            raise RunError(
                f"a warm agent (pid {found['pid']}) runs other code or settings "
                f"({'; '.join(mismatch)}) and has {len(found['children'])} participant(s) running",
                hint="Stop it once its runs are over: splittracer agent stop",
            )
        _stop(int(found["pid"]))
        replaced = int(found["pid"])
    directory = agent_mod.ensure_private_dir(agent_mod.agent_dir())
    command = [sys.executable, "-m", "splittracer.deploy.agent_server", "--detach"]
    command += ["--idle-timeout", str(seconds)]
    try:
        done = subprocess.run(
            command,
            cwd=directory,  # nothing importable there shadows a package
            env=agent_mod.user_env(),  # as the user set it: what this process's imports set is no setting
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=START_WAIT_S,
        )
    except subprocess.TimeoutExpired:
        raise RunError(f"the warm agent did not listen within {START_WAIT_S:.0f} s") from None
    status = agent_mod.agent_status()
    if done.returncode != 0 or status is None:
        raise RunError(
            "the warm agent did not start\n" + _log_tail(directory / agent_mod.LOG_NAME),
            hint=f"Its log: {directory / agent_mod.LOG_NAME}",
        )
    _report_started(status, started=True, replaced=replaced, json=json)


@app.command("stop")
def stop(json: JsonOpt = False) -> None:
    """Stop the warm agent (its running participants are terminated first)."""
    found = agent_mod.agent_status()
    if found is None:
        if json:
            print_json({"stopped": None, "socket": str(agent_mod.socket_path())})
        else:
            console.print("no warm agent is running", highlight=False)
        return
    pid = int(found["pid"])
    _stop(pid)
    if json:
        print_json({"stopped": pid, "socket": found.get("socket")})
    else:
        console.print(f"stopped the warm agent (pid {pid})", highlight=False)


@app.command("status")
def status(json: JsonOpt = False) -> None:
    """Whether the warm agent runs, whether this controller may use it, and its participants."""
    found = agent_mod.agent_status()
    if found is None:
        if json:
            print_json({"running": False, "socket": str(agent_mod.socket_path())})
        else:
            console.print(f"no warm agent is running ({agent_mod.socket_path()})", highlight=False)
        return
    mismatch = agent_mod.differences(found.get("fingerprint", {}), agent_mod.fingerprint())
    enabled = agent_mod.agent_enabled()
    info = {
        "running": True,
        "pid": found["pid"],
        "socket": found["socket"],
        "fingerprint_match": not mismatch,
        "differences": mismatch,
        "used_by_runs": enabled and not mismatch,
        "uptime_s": found["uptime_s"],
        "idle_timeout_s": found["idle_timeout_s"],
        "children": found["children"],
        "fingerprint": found["fingerprint"],
    }
    if json:
        print_json(info)
        return
    match = "yes" if not mismatch else "no: " + "; ".join(mismatch)
    rows: list[list[Any]] = [
        ["pid", str(found["pid"])],
        ["socket", found["socket"]],
        ["fingerprint matches", match],
        ["used by runs", _used(enabled, mismatch)],
        ["uptime", _duration(found["uptime_s"])],
        ["idle timeout", _duration(found["idle_timeout_s"])],
        ["participants", ", ".join(f"{c['name']} (pid {c['pid']})" for c in found["children"]) or "none"],
    ]
    print_table("warm agent", ["", "value"], rows)


def _used(enabled: bool, mismatch: list[str]) -> str:
    if not enabled:
        return f"no: ${agent_mod.USE_ENV} turns it off"
    return "no: its fingerprint differs" if mismatch else "yes"


def _report_started(found: dict[str, Any], *, started: bool, replaced: int | None, json: bool) -> None:
    if json:
        print_json(
            {
                "pid": found["pid"],
                "socket": found["socket"],
                "started": started,
                "replaced": replaced,
                "idle_timeout_s": found["idle_timeout_s"],
            }
        )
    elif started:
        also = f" (replaced pid {replaced}, which ran other code)" if replaced else ""
        console.print(
            f"warm agent started: pid {found['pid']}, {found['socket']}, "
            f"exits after {_duration(found['idle_timeout_s'])} idle{also}",
            highlight=False,
        )
    else:
        console.print(f"a warm agent already runs: pid {found['pid']}, {found['socket']}", highlight=False)


def _stop(pid: int) -> None:
    """SIGTERM the agent and wait until it is gone (SIGKILL if it lingers)."""
    from ..metrics.processes import pid_alive

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_WAIT_S
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        raise RunError(f"the warm agent (pid {pid}) did not stop within {STOP_WAIT_S:.0f} s; killed it")


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").rstrip().splitlines()[-lines:])
    except OSError:
        return ""


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
