"""``splittracer profile NAME MODEL...``: measure models layer by layer and store a device profile."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress

from ..errors import SplitTracerError
from ..models import parse_input_shape
from ..plan.profiles import DeviceProfile, profile_local, profile_store
from ._render import console, print_json, print_table

__all__ = ["profile"]


def profile(
    name: Annotated[str, typer.Argument(help="Profile name, e.g. local-1t, pi4, cloud")],
    models: Annotated[
        list[str] | None, typer.Argument(help="Models to measure; none: show the stored profile")
    ] = None,
    device: Annotated[str, typer.Option(help="Device that runs the models (only 'local' so far)")] = "local",
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads (emulates a smaller CPU)")] = None,
    repeats: Annotated[int, typer.Option(min=1, help="Timed runs per layer")] = 10,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs first")] = 2,
    input_shape: Annotated[str | None, typer.Option("--input-shape", help="e.g. 1,3,224,224")] = None,
    granularity: Annotated[str, typer.Option(help="leaf, block or depth=N")] = "leaf",
    workspace: Annotated[Path | None, typer.Option("--workspace", "-w", help="Workspace directory")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the profile as JSON")] = False,
) -> None:
    """Measure every layer of MODELS on a device and add them to profile NAME."""
    store = profile_store(workspace)
    if models:
        if device != "local":
            raise SplitTracerError(
                f"device '{device}' cannot be profiled yet: profiling runs on only 'local' so far",
                hint="Profile on this machine with --threads N to stand in for a slower device.",
            )
        stored = store.load_or_new(name, device=device, threads=threads)
        if stored.models and stored.threads != threads:
            raise SplitTracerError(
                f"profile '{name}' was measured with threads={stored.threads}, not {threads}",
                hint="Use the same --threads, or another profile name.",
            )
        with Progress(console=console, transient=True, disable=json) as bar:
            task = bar.add_task("profiling", total=None)
            records = profile_local(
                models,
                threads=threads,
                repeats=repeats,
                warmup=warmup,
                input_shape=parse_input_shape(input_shape) if input_shape else None,
                granularity=granularity,
                progress=lambda m, done, total: bar.update(task, description=m, completed=done, total=total),
            )
        store.save(stored.with_models(records))
    result = store.load(name)
    if json:
        print_json({"path": str(store.path(name)), **_plain(result)})
        return
    _show(result, store.path(name))


def _show(profile: DeviceProfile, path: Path) -> None:
    rows = [
        [
            m.source,
            "×".join(map(str, m.input_shape)),
            m.granularity,
            len(m.layers),
            sum(layer.median_ms for layer in m.layers),
            m.forward_ms,
            m.measured_at,
        ]
        for m in profile.models
    ]
    threads = "default" if profile.threads is None else profile.threads
    print_table(
        f"profile {profile.name} — device {profile.device}, threads {threads}, {profile.host.cpu_model}",
        ["model", "input", "granularity", "layers", "sum of layers ms", "forward ms", "measured"],
        rows,
    )
    console.print(f"stored in {path}")


def _plain(profile: DeviceProfile) -> dict[str, object]:
    import msgspec

    return dict(msgspec.to_builtins(profile))
