"""``splittracer profile NAME MODEL...``: measure models layer by layer and store a device profile."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import SplitTracerError
from ._render import console, err_console, print_json, print_table

if TYPE_CHECKING:  # profiling (torch) loads when the command runs, not with the command line
    from rich.progress import Progress

    from ..plan.profiles import DeviceProfile, HostFacts, ModelRecord

__all__ = ["profile"]


def profile(
    name: Annotated[str, typer.Argument(help="Profile name, e.g. local-1t, pi4, cloud")],
    models: Annotated[
        list[str] | None, typer.Argument(help="Models to measure; none: show the stored profile")
    ] = None,
    device: Annotated[
        str, typer.Option(help="Device that runs the models: 'local' or a paired device's name")
    ] = "local",
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads (emulates a smaller CPU)")] = None,
    repeats: Annotated[int, typer.Option(min=1, help="Timed runs per layer")] = 10,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs first")] = 2,
    input_shape: Annotated[str | None, typer.Option("--input-shape", help="e.g. 1,3,224,224")] = None,
    granularity: Annotated[str, typer.Option(help="leaf, block or depth=N")] = "leaf",
    workspace: Annotated[Path | None, typer.Option("--workspace", "-w", help="Workspace directory")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the profile as JSON")] = False,
) -> None:
    """Measure every layer of MODELS on a device and add them to profile NAME."""
    from rich.progress import Progress

    from ..models import parse_input_shape
    from ..plan.profiles import DeviceProfile, host_facts
    from ..workspace import profile_store

    store = profile_store(workspace)
    replaced: tuple[ModelRecord, ...] = ()
    if models:
        stored = store.load(name) if store.exists(name) else None
        _check_stored(stored, device, threads)
        shape = parse_input_shape(input_shape) if input_shape else None
        settings = {"repeats": repeats, "warmup": warmup, "input_shape": shape, "granularity": granularity}
        with Progress(console=console, transient=True, disable=json) as bar:
            records, host = _measure(device, models, threads, settings, bar, workspace)
        base = stored or DeviceProfile(name=name, device=device, threads=threads, host=host or host_facts())
        replaced = base.replaced_by(records)
        store.save(dataclasses.replace(base, host=host or base.host).with_models(records))
    result = store.load(name)
    if json:
        print_json({"path": str(store.path(name)), **_plain(result)})
    else:
        _show(result, store.path(name))
    _say_replaced(name, replaced, result)
    for record in result.models:
        _warn_unsteady(record)


def _say_replaced(name: str, replaced: Sequence[ModelRecord], profile: DeviceProfile) -> None:
    """Name every stored measurement the new one replaced, with both whole-model times."""
    for old in replaced:
        new = profile.find(*old.key)
        now = f", {new.forward_ms:.2f} ms now" if new is not None else ""
        err_console.print(
            f"replaced in profile '{name}': {_describe(old)} measured {old.measured_at}, "
            f"forward {old.forward_ms:.2f} ms then{now}",
            highlight=False,
            soft_wrap=True,
        )


def _warn_unsteady(record: ModelRecord, shown: int = 5) -> None:
    """Warn when layers' samples spread widely: the machine was busy while they were measured."""
    from ..plan.profiles import UNSTEADY_SPREAD

    unsteady = record.unsteady_layers()
    if not unsteady:
        return
    named = ", ".join(
        f"{x.name} ({x.type}) {x.median_ms:.2f} ms, IQR {x.spread:.0%} of it" for x in unsteady[:shown]
    )
    more = f" and {len(unsteady) - shown} more" if len(unsteady) > shown else ""
    err_console.print(
        f"[bold yellow]warning:[/] {_describe(record)}: {len(unsteady)} of {len(record.layers)} layers "
        f"varied by more than {UNSTEADY_SPREAD:.0%} between runs (interquartile range over median): "
        f"{named}{more}. The machine was likely busy while they were measured; measure again when it "
        "is idle, or with more --repeats.",
        highlight=False,
        soft_wrap=True,
    )


def _describe(record: ModelRecord) -> str:
    return f"{record.source} (input {'×'.join(map(str, record.input_shape))}, {record.granularity})"


def _measure(
    device: str,
    models: list[str],
    threads: int | None,
    settings: dict[str, Any],
    bar: Progress,
    workspace: Path | None,
) -> tuple[list[ModelRecord], HostFacts | None]:
    """Measure in this process, or on the paired device (with its facts); progress on ``bar``."""
    from ..controller.profiling import profile_device
    from ..devices.registry import Registry
    from ..manifest import find_workspace_root
    from ..plan.profiles import profile_local

    task = bar.add_task("profiling", total=None)

    def report(model: str, done: int, total: int) -> None:
        bar.update(task, description=model, completed=done, total=total)

    if device == "local":
        return profile_local(models, threads=threads, progress=report, **settings), None
    paired = Registry.locate(workspace=workspace or find_workspace_root(Path.cwd())).get(device)
    bar.update(task, description=f"capturing the models, then measuring on {device}")
    return profile_device(paired, models, threads=threads, progress=report, **settings)


def _check_stored(stored: DeviceProfile | None, device: str, threads: int | None) -> None:
    """One profile, one device and one thread setting: refuse to mix measurements."""
    if stored is None or not stored.models:
        return
    if stored.device != device:
        raise SplitTracerError(
            f"profile '{stored.name}' was measured on device '{stored.device}', not '{device}'",
            hint=f"Use --device {stored.device}, or another profile name.",
        )
    if stored.threads != threads:
        raise SplitTracerError(
            f"profile '{stored.name}' was measured with threads={stored.threads}, not {threads}",
            hint="Use the same --threads, or another profile name.",
        )


def _show(profile: DeviceProfile, path: Path) -> None:
    rows = [
        [
            m.source,
            "×".join(map(str, m.input_shape)),
            m.granularity,
            len(m.layers),
            sum(layer.median_ms for layer in m.layers),
            f"{m.spread:.0%}",
            m.forward_ms,
            sum(layer.energy_mj or 0.0 for layer in m.layers) if m.has_energy else "—",
            m.measured_at,
        ]
        for m in profile.models
    ]
    threads = "default" if profile.threads is None else profile.threads
    print_table(
        f"profile {profile.name} — device {profile.device}, threads {threads}, {profile.host.cpu_model}",
        [
            "model",
            "input",
            "granularity",
            "layers",
            "sum of layers ms",
            "spread",
            "forward ms",
            "energy mJ",
            "measured",
        ],
        rows,
    )
    console.print(
        "spread: the layers' interquartile ranges over their medians, both summed (a few % if idle)"
    )
    notes = sorted({m.energy_note for m in profile.models if not m.has_energy and m.energy_note})
    for note in notes:
        console.print(f"no energy: {note}")
    console.print(f"stored in {path}")


def _plain(profile: DeviceProfile) -> dict[str, object]:
    import msgspec

    return dict(msgspec.to_builtins(profile))
