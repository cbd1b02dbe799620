"""``splittracer device``: pair, list, check, set up and forget remote devices."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from ..errors import SplitTracerError
from ._render import console, err_console, print_json, print_table

if TYPE_CHECKING:  # the registry and SSH (asyncssh) load in the commands, not with the command line
    from ..devices.forget import ForgetResult
    from ..devices.pairing import AskPassword, PairingResult
    from ..devices.probe import DeviceStatus
    from ..devices.registry import Device, DeviceFacts, Registry

app = typer.Typer(
    help="Pair, list, check, set up and forget remote devices (over SSH).", no_args_is_help=True
)

NameArg = Annotated[str, typer.Argument(help="The device's name in the registry")]
RegistryOpt = Annotated[
    Path | None,
    typer.Option(
        "--registry",
        help="Registry file (default: $SPLITTRACER_DEVICES, the workspace's devices.yaml, "
        "else ~/.config/splittracer/devices.yaml)",
    ),
]
WorkspaceOpt = Annotated[Path | None, typer.Option("--workspace", help="Workspace whose devices.yaml to use")]
TimeoutOpt = Annotated[float, typer.Option(help="Seconds to wait for each device's SSH server")]


@app.command("add")
def add(
    name: NameArg,
    host: Annotated[
        str | None, typer.Option(help="Address, DNS name or ~/.ssh/config alias (default: as paired)")
    ] = None,
    user: Annotated[str | None, typer.Option(help="Login user (default: ssh config, else yours)")] = None,
    port: Annotated[int | None, typer.Option(help="SSH port (default: ssh config, else 22)")] = None,
    key: Annotated[Path | None, typer.Option(help="Private key to log in with (and to install)")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="A tag for the device (repeatable)")] = None,
    trust: Annotated[bool, typer.Option(help="Pin the host key on first contact without asking")] = False,
    repin: Annotated[bool, typer.Option(help="Accept and pin a host key that changed")] = False,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin if needed")] = False,
    password_env: Annotated[str | None, typer.Option(help="Take the password from this variable")] = None,
    python: Annotated[str | None, typer.Option(help="Python on the device (default: newest python3)")] = None,
    listen_host: Annotated[str | None, typer.Option(help="Address participants listen on")] = None,
    timeout: TimeoutOpt = 10.0,
    registry: RegistryOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Pair a device: pin its host key, make sure a key logs in (installing one if needed), probe it."""
    from ..devices.pairing import PairingOptions, pair

    interactive = sys.stdin.isatty() and not password_stdin
    options = PairingOptions(
        trust=trust,
        repin=repin,
        confirm=_confirm_host_key if interactive else None,
        password=_password_source(password_stdin, password_env, interactive),
        timeout=timeout,
    )
    result = pair(
        _registry(registry, workspace),
        name,
        host,
        port=port,
        user=user,
        key=key,
        tags=tag or (),
        python=python,
        listen_host=listen_host,
        options=options,
    )
    _print_paired(result)


@app.command("ls")
def ls(
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False,
    timeout: TimeoutOpt = 2.0,
    registry: RegistryOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Every device: reachable now (checked in parallel), ready to run participants, what it has."""
    reg = _registry(registry, workspace)
    devices = list(reg.devices().values())
    statuses = _check_all(devices, timeout) if devices else []
    seen = {s.device.name: s.last_seen for s in statuses if s.reachable and s.last_seen is not None}
    if seen:
        reg.touch(seen)
    if json:
        print_json([_status_dict(s) for s in statuses])
        return
    if not statuses:
        console.print(f"No devices in {reg.path}. Pair one with 'splittracer device add NAME --host HOST'.")
        return
    rows = [_status_row(s) for s in statuses]
    print_table(f"devices ({reg.path})", _LS_COLUMNS, rows)
    for s in statuses:
        if s.error:
            hint = f"\n  {escape(s.hint)}" if s.hint else ""
            err_console.print(f"[yellow]{s.device.name}[/]: {escape(s.error)}{hint}", highlight=False)


@app.command("check")
def check(
    name: NameArg, timeout: TimeoutOpt = 10.0, registry: RegistryOpt = None, workspace: WorkspaceOpt = None
) -> None:
    """Connect, probe and say whether the device can run participants (and if not, what to do)."""
    from ..devices.probe import check_device, not_ready

    device, found = check_device(_registry(registry, workspace), name, timeout)
    assert device.facts is not None
    print_table(f"{name} ({device.destination})", ("fact", "value"), _fact_rows(device.facts))
    if found:
        raise not_ready(device, found)
    console.print(f"[green]{name} is ready[/]")


@app.command("setup")
def setup(
    name: NameArg,
    torch: Annotated[bool, typer.Option("--torch/--no-torch", help="Install torch if missing")] = True,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="The device has no network: upload wheels from this machine "
            "(pip download for the device's platform, or --wheels)",
        ),
    ] = False,
    wheels: Annotated[
        Path | None,
        typer.Option(
            "--wheels",
            help="A folder of wheels to install from (implies --offline)",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    timeout: TimeoutOpt = 10.0,
    registry: RegistryOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Create or update the device's runtime (~/.splittracer/venv): this splittracer and torch."""
    from ..devices.probe import not_ready, problems
    from ..devices.setup import Offline, setup_device

    with console.status(f"setting up {name}") as status:
        report = setup_device(
            _registry(registry, workspace),
            name,
            torch=torch,
            progress=lambda text: status.update(f"{name}: {text}"),
            timeout=timeout,
            offline=Offline(wheels) if offline or wheels is not None else None,
        )
    for step in report.steps:
        mark = "[green]changed[/]" if step.changed else "[dim]ok[/]"
        console.print(f"{mark:>20}  {step.name}: {step.detail}", highlight=False)
    facts = report.device.facts
    found = problems(facts, name, need_torch=torch) if facts else []
    if found:
        raise not_ready(report.device, found)
    console.print(f"[green]{name} is ready[/]")


@app.command("rm")
def rm(
    name: NameArg,
    keep_key: Annotated[
        bool,
        typer.Option("--keep-key", help="Leave the key pairing installed in the device's authorized_keys"),
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False,
    timeout: TimeoutOpt = 5.0,
    registry: RegistryOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Forget a device; remove the key pairing installed on it (only that line) if it is reachable."""
    from ..devices.forget import KeyOutcome, forget_device

    reg = _registry(registry, workspace)
    result = forget_device(reg, name, keep_key=keep_key, timeout=timeout)
    if json:
        print_json(_forget_dict(result))
        return
    console.print(f"removed {name} ({result.device.destination}) from {reg.path}", highlight=False)
    line = _FORGET_LINES[result.key.value].format(others=", ".join(result.shared_with))
    if result.key is KeyOutcome.UNREACHABLE:
        assert result.error is not None
        err_console.print(f"[yellow]{escape(result.error.message)}[/]", highlight=False)
        err_console.print(line, highlight=False)
        err_console.print(f"  {result.manual}", markup=False, highlight=False, soft_wrap=True)
    else:
        console.print(f"  {line}", highlight=False)


_FORGET_LINES = {  # by KeyOutcome's value
    "removed": "removed the key SplitTracer installed from ~/.ssh/authorized_keys on the device "
    "(nothing else there changed)",
    "not found": "the key SplitTracer installed was already gone from the device's authorized_keys",
    "kept": "left the key SplitTracer installed in the device's authorized_keys (--keep-key)",
    "shared": "left the key SplitTracer installed on the device: {others} still log(s) in with it",
    "none installed": "SplitTracer installed no key on the device: nothing changed there",
    "unreachable": "The key SplitTracer installed stays in ~/.ssh/authorized_keys on the device. "
    "To remove that line by hand, run on the device:",
}


def _forget_dict(result: ForgetResult) -> dict[str, object]:
    return {
        "name": result.device.name,
        "host": result.device.host,
        "removed": True,
        "key": result.key.value,
        "removed_lines": result.removed_lines,
        "shared_with": list(result.shared_with),
        "error": result.error.message if result.error else None,
        "manual": result.manual,
    }


def _check_all(devices: list[Device], timeout: float) -> list[DeviceStatus]:
    from ..devices.probe import check_all  # SSH: only when there is a device to reach

    return check_all(devices, timeout)


def _registry(explicit: Path | None, workspace: Path | None) -> Registry:
    from ..devices.registry import Registry
    from ..manifest import find_workspace_root

    return Registry.locate(explicit, workspace or find_workspace_root(Path.cwd()))


def _confirm_host_key(who: str, fingerprint: str) -> bool:
    err_console.print(f"The host key of {who} is\n  [bold]{fingerprint}[/]", highlight=False)
    return typer.confirm("Is this the device's key? Pin it", default=False, err=True)


def _password_source(from_stdin: bool, env: str | None, interactive: bool) -> AskPassword:
    def ask(who: str) -> str | None:
        if from_stdin:
            return sys.stdin.readline().rstrip("\r\n") or None
        if env is not None:
            if env not in os.environ:
                raise SplitTracerError(f"--password-env {env}: the variable is not set")
            return os.environ[env]
        if interactive:
            return str(typer.prompt(f"No key was accepted. Password for {who}", hide_input=True, err=True))
        return None

    return ask


def _print_paired(result: PairingResult) -> None:
    device = result.device
    pin = "pinned now" if result.pinned else "already pinned"
    console.print(f"paired [bold]{device.name}[/]: {device.destination}", highlight=False)
    console.print(f"  host key {device.fingerprint} ({pin})", highlight=False)
    if result.installed_key:
        console.print(f"  installed {result.installed_key}.pub in ~/.ssh/authorized_keys on the device")
    if device.facts:
        console.print(f"  {_summary(device.facts)}", highlight=False)
    for problem in result.problems:
        err_console.print(f"[yellow]not ready:[/] {problem.message}\n  {problem.hint}", highlight=False)


def _summary(facts: DeviceFacts) -> str:
    torch = f"torch {facts.torch}" + (" (CUDA)" if facts.cuda else "") if facts.torch else "no torch"
    memory = facts.memory_bytes / 2**30
    return (
        f"{facts.os_release or facts.os} {facts.arch}, Python {facts.python}, {torch}, "
        f"{facts.cpu_cores} cores ({facts.cpu_model}), {memory:.1f} GiB"
    )


_LS_COLUMNS = ("name", "host", "reachable", "login", "ready", "arch", "Python", "torch", "last seen")


def _status_row(s: DeviceStatus) -> list[object]:
    from ..devices.probe import LOGIN_OK

    facts = s.device.facts
    return [
        s.device.name,
        s.device.destination,
        "[green]yes[/]" if s.reachable else "[red]no[/]",
        f"[green]{s.login}[/]" if s.login == LOGIN_OK else f"[red]{s.login}[/]",
        "[green]yes[/]" if s.ready else "[yellow]no[/]",
        facts.arch if facts else None,
        facts.python if facts else None,
        (facts.torch or "none") if facts else None,
        _ago(s.last_seen),
    ]


def _status_dict(s: DeviceStatus) -> dict[str, object]:
    facts = s.device.facts
    return {
        "name": s.device.name,
        "host": s.device.host,
        "port": s.device.port,
        "user": s.device.user,
        "tags": list(s.device.tags),
        "reachable": s.reachable,
        "login": s.login,
        "ready": s.ready,
        "error": s.error,
        "hint": s.hint,
        "problems": [p.message for p in s.problems],
        "arch": facts.arch if facts else None,
        "python": facts.python if facts else None,
        "torch": facts.torch if facts else None,
        "cuda": facts.cuda if facts else None,
        "last_seen": s.last_seen.isoformat() if s.last_seen else None,
    }


def _fact_rows(facts: DeviceFacts) -> list[tuple[str, object]]:
    return [
        ("os", facts.os_release or facts.os),
        ("arch", facts.arch),
        ("python", f"{facts.python} ({facts.python_path})"),
        ("runtime", "yes" if facts.runtime else "no"),
        ("splittracer", facts.splittracer),
        ("cpu", f"{facts.cpu_model}, {facts.cpu_cores} cores"),
        ("memory", f"{facts.memory_bytes / 2**30:.1f} GiB"),
        ("free disk", f"{facts.disk_free_bytes / 2**30:.1f} GiB"),
        ("torch", facts.torch or f"not installed{f' ({facts.torch_error})' if facts.torch_error else ''}"),
        ("cuda", ", ".join(facts.cuda_devices) if facts.cuda else "no"),
    ]


def _ago(when: datetime | None) -> str | None:
    if when is None:
        return None
    seconds = (datetime.now(timezone.utc) - when).total_seconds()
    if seconds < 90:
        return "just now"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h ago"
    return when.astimezone().strftime("%Y-%m-%d")
