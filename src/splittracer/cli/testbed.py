"""``splittracer testbed``: a lab of real SSH hosts on this Linux machine (root)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._render import console, print_json, print_table

if TYPE_CHECKING:  # the lab loads in the commands, not with the command line
    from ..lab import LabHost, Testbed, TestbedState, TestbedStatus

app = typer.Typer(
    help="A lab of real SSH hosts (network namespaces, sshd, tc-shaped links) on this Linux machine.",
    no_args_is_help=True,
)

StateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Where the lab keeps its state (default: $XDG_STATE_HOME/splittracer/testbed)",
    ),
]


def _testbed(state_dir: Path | None) -> Testbed:
    from ..lab import Testbed, default_state_dir

    return Testbed(state_dir or default_state_dir())


@app.command("up")
def up(
    hosts: Annotated[int, typer.Option("--hosts", "-n", help="How many hosts (1-64)")],
    bandwidth: Annotated[
        str | None, typer.Option(help="Shape every host's link with tbf: 10mbit, lte, 5.85mbit")
    ] = None,
    cpu: Annotated[
        str | None,
        typer.Option(help="CPU limit per host, a fraction of one CPU: 0.1,1.0 (one value: every host)"),
    ] = None,
    memory: Annotated[
        str | None, typer.Option(help="Memory limit per host: 2GiB,8GiB (one value: every host)")
    ] = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Make HOSTS namespaces on a bridge, each with a real sshd and its own user."""
    from ..lab import parse_host_limits

    testbed = _testbed(state_dir)
    limits = parse_host_limits(cpu, memory, hosts)
    with console.status("building the testbed") as spinner:
        state = testbed.up(
            hosts, bandwidth, progress=lambda step: spinner.update(f"testbed: {step}"), limits=limits
        )
    _print_hosts(state)
    console.print(f"password (every host's user): {state.password}", highlight=False)
    console.print(f"devices: {state.registry}\nknown hosts: {state.known_hosts}", highlight=False)
    _print_links(state)
    _print_next_steps(state)


@app.command("status")
def status(
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False,
    state_dir: StateDirOpt = None,
) -> None:
    """Whether the lab is up, and each host's namespace, sshd and shaping. Exit 1 if a host is down."""
    from ..lab import status_document

    testbed = _testbed(state_dir)
    found = testbed.status()
    if json:
        print_json(status_document(found, testbed.state_dir))
    elif found.state is None:
        console.print(f"No testbed is up from {testbed.state_dir}.", highlight=False)
    else:
        _print_status(found)
    if found.up and not found.healthy:
        raise typer.Exit(1)


@app.command("down")
def down(state_dir: StateDirOpt = None) -> None:
    """Stop every sshd, delete the namespaces, links, users and state the lab made."""
    with console.status("removing the testbed") as spinner:
        removed = _testbed(state_dir).down(progress=lambda step: spinner.update(f"removing {step}"))
    console.print(f"Removed {len(removed)} things." if removed else "Nothing to remove.", highlight=False)


def _print_hosts(state: TestbedState) -> None:
    rows = [
        [h.name, h.address, h.user, str(h.sshd_pid), _limits(h), h.host_key_fingerprint] for h in state.hosts
    ]
    print_table("Testbed hosts", ["host", "address", "user", "sshd pid", "limits", "host key"], rows)


LAB_WORKSPACE = "lab-demo"
LAB_EXPERIMENT = "lab-neurosurgeon"


def run_commands(state: TestbedState, workspace: str = LAB_WORKSPACE) -> list[str]:
    """The commands that run the workspace scaffold's lab experiment on this lab's hosts."""
    registry = shlex.quote(str(state.registry))
    return [
        f"splittracer init {workspace}",
        f"SPLITTRACER_DEVICES={registry} splittracer run {LAB_EXPERIMENT} --workspace {workspace}",
    ]


def _print_next_steps(state: TestbedState) -> None:
    if state.client_key is None:
        return
    names = ", ".join(h.name for h in state.hosts)
    console.print(
        f"\n{names}: paired as root in {state.registry.name}, with a runtime (this machine's Python).",
        highlight=False,
    )
    if len(state.hosts) < 2:
        console.print("The workspace's lab experiment needs two hosts: 'testbed up --hosts 2'.")
        return
    console.print("Run Neurosurgeon across two lab hosts:")
    for command in run_commands(state):
        console.print(f"  {command}", markup=False, highlight=False, soft_wrap=True)


def _print_links(state: TestbedState) -> None:
    from ..lab import describe_rate

    console.print(f"links: {describe_rate(state)}", highlight=False)
    if not state.netem:
        console.print("netem unavailable on this kernel: links are shaped with tbf only (no delay, no loss)")


def _print_status(found: TestbedStatus) -> None:
    assert found.state is not None
    limits = {h.name: _limits(h) for h in found.state.hosts}
    rows = [
        [
            h.name,
            h.address,
            _yes(h.namespace),
            _yes(h.sshd_running),
            h.banner or "no answer",
            _yes(h.shaped),
            limits[h.name],
        ]
        for h in found.hosts
    ]
    print_table("Testbed", ["host", "address", "namespace", "sshd", "banner", "shaped", "limits"], rows)
    _print_links(found.state)


def _limits(host: LabHost) -> str:
    from ..lab import describe_limits

    return describe_limits(host.cpu_limit, host.memory_limit_bytes)


def _yes(value: bool) -> str:
    return "yes" if value else "NO"
