"""``splittracer model``: inspect, verify and profile split points of a model."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._render import console, print_json, print_table, settings

if TYPE_CHECKING:  # torch loads in the commands, not with the command line
    from ..split.load import LoadedSplit
    from ..split.model import SplitModel

app = typer.Typer(help="Inspect, verify and profile where a model can be split.", no_args_is_help=True)

ModelArg = Annotated[
    str,
    typer.Argument(help="torchvision:NAME, ultralytics:FILE.yaml, timm:NAME or module:callable"),
]
ShapeOpt = Annotated[str | None, typer.Option("--input-shape", help="Input shape, e.g. 1,3,224,224")]
GranularityOpt = Annotated[str, typer.Option(help="leaf, block or depth=N")]
OverrideOpt = Annotated[Path | None, typer.Option(help="YAML override: splits, groups, sequence")]
WeightsOpt = Annotated[Path | None, typer.Option(help="Local state_dict file (nothing is downloaded)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
PlacementOpt = Annotated[
    str | None,
    typer.Option(
        "--placement",
        help="Layers on the first device, e.g. 0-5,layer3.0, as JSON or a YAML/JSON file: show what crosses",
    ),
]


def _load(
    model: str, shape: str | None, granularity: str, override: Path | None, weights: Path | None
) -> LoadedSplit:
    from ..models import parse_input_shape
    from ..split.capture import muffled
    from ..split.load import load_split_model

    quiet = contextlib.nullcontext() if settings.debug else muffled()
    with console.status(f"capturing {model}…", spinner="dots"), quiet:
        return load_split_model(
            model,
            input_shape=parse_input_shape(shape) if shape else None,
            granularity=granularity,
            override=override,
            weights=weights,
        )


@app.command()
def inspect(
    model: ModelArg,
    input_shape: ShapeOpt = None,
    granularity: GranularityOpt = "leaf",
    override: OverrideOpt = None,
    weights: WeightsOpt = None,
    placement: PlacementOpt = None,
    json: JsonOpt = False,
) -> None:
    """Per-layer table: shapes, bytes, params, MACs and what crosses each cut (or a placement)."""
    loaded = _load(model, input_shape, granularity, override, weights)
    if placement is not None:
        _show_placement(model, loaded.split, placement, json)
    elif json:
        print_json(describe(model, loaded))
    else:
        _show_layers(model, loaded.split)


def _show_layers(model: str, sm: SplitModel) -> None:
    """The per-layer table with what crosses each cut."""
    rows: list[list[Any]] = [
        [
            0,
            "input",
            "",
            _shape(sm.points[0]),
            sm.points[0].bytes,
            0,
            0,
            len(sm.points[0].tensors),
            sm.points[0].bytes,
        ]
    ]
    for layer, point in zip(sm.layers, sm.points[1:]):
        shape = "×".join(map(str, layer.output.shape)) if layer.output else "—"
        crossing = len(point.tensors) if point.allowed else "not allowed"
        rows.append(
            [
                layer.index,
                layer.name,
                layer.type,
                shape,
                layer.output.bytes if layer.output else None,
                layer.params,
                layer.macs,
                crossing,
                point.bytes,
            ]
        )
    print_table(
        f"{model} — {sm.num_layers} layers, {sm.num_layers + 1} split points (captured with {sm.method})",
        [
            "#",
            "layer",
            "type",
            "output shape",
            "bytes",
            "params",
            "MACs",
            "cut: tensors",
            "cut: bytes",
        ],
        rows,
    )


@app.command()
def verify(
    model: ModelArg,
    input_shape: ShapeOpt = None,
    granularity: GranularityOpt = "leaf",
    override: OverrideOpt = None,
    tolerance: Annotated[float, typer.Option(help="Largest allowed absolute difference")] = 1e-4,
    splits: Annotated[
        str | None, typer.Option("--splits", help="Only these split points, e.g. 3,5,21 (default: every one)")
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Run head then tail at every split (or the chosen ones) and compare with the full model."""
    from ..split.profile import verify_splits

    loaded = _load(model, input_shape, granularity, override, None)
    chosen = _split_list(splits) if splits else None
    with console.status("running the splits…", spinner="dots"):
        checks = verify_splits(loaded.split, loaded.example, tolerance=tolerance, splits=chosen)
    bad = [c for c in checks if not c.ok]
    if json:
        print_json({"model": model, "tolerance": tolerance, "ok": not bad, "splits": checks})
    else:
        rows = [[c.index, c.after, c.max_abs_diff, "ok" if c.ok else "DIFFERS"] for c in checks]
        print_table(
            f"{model} — {'every split' if chosen is None else 'chosen splits'} vs the full model",
            ["split", "after layer", "max |diff|", "result"],
            rows,
        )
        summary = f"{len(checks) - len(bad)} of {len(checks)} splits reproduce the model's output"
        console.print(summary + ("." if not bad else f"; differing after: {', '.join(c.after for c in bad)}"))
    if bad:
        raise typer.Exit(1)


@app.command()
def profile(
    model: ModelArg,
    input_shape: ShapeOpt = None,
    granularity: GranularityOpt = "leaf",
    override: OverrideOpt = None,
    repeats: Annotated[int, typer.Option(min=1, help="Timed runs per layer")] = 20,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs first")] = 3,
    threads: Annotated[int | None, typer.Option(help="torch threads")] = None,
    json: JsonOpt = False,
) -> None:
    """Median compute time and output size of every layer."""
    import torch
    from rich.progress import Progress

    from ..split.profile import profile_layers

    if threads:
        torch.set_num_threads(threads)
    loaded = _load(model, input_shape, granularity, override, None)
    with Progress(console=console, transient=True, disable=json) as bar:
        task = bar.add_task("profiling", total=repeats + warmup)
        result = profile_layers(
            loaded.split,
            loaded.example,
            repeats=repeats,
            warmup=warmup,
            progress=lambda done, _t: bar.update(task, completed=done),
        )
    if json:
        print_json({"model": model, **_asdict(result), "layers_total_ms": result.layers_total_ms})
        return
    rows = [[t.index, t.name, t.type, t.median_ms, t.p25_ms, t.p75_ms, t.output_bytes] for t in result.layers]
    print_table(
        f"{model} — median of {repeats} runs after {warmup} warm-up",
        ["#", "layer", "type", "median ms", "p25 ms", "p75 ms", "output bytes"],
        rows,
    )
    console.print(
        f"sum of layers {result.layers_total_ms:.2f} ms; plain forward {result.forward_median_ms:.2f} ms"
    )


def describe(model: str, loaded: LoadedSplit) -> dict[str, Any]:
    """The inspect result as plain data (for --json)."""
    sm: SplitModel = loaded.split
    return {
        "model": model,
        "input_shape": list(loaded.spec.input_shape),
        "method": sm.method,
        "attempts": [{"method": a.method, "error": a.error} for a in sm.attempts],
        "granularity": sm.granularity.kind
        if sm.granularity.kind != "depth"
        else f"depth={sm.granularity.depth}",
        "layers": sm.layers,
        "splits": [
            {
                "index": p.index,
                "after": p.after,
                "bytes": p.bytes,
                "allowed": p.allowed,
                "reason": p.reason,
                "tensors": p.tensors,
            }
            for p in sm.points
        ],
    }


def _show_placement(model: str, sm: SplitModel, text: str, json: bool) -> None:
    """The layers on each device and the tensors crossing between them."""
    from ..split.placement import named_ranges, read_placement

    chosen = sm.placement(read_placement(text))
    names = [layer.name for layer in sm.layers]
    if json:
        print_json(
            {
                "model": model,
                "placement": chosen.label,
                "split": chosen.split,
                "first": chosen.first,
                "second": chosen.second,
                "first_names": [names[i - 1] for i in chosen.first],
                "second_names": [names[i - 1] for i in chosen.second],
                "bytes": chosen.bytes,
                "tensors": chosen.tensors,
            }
        )
        return
    rows = [[t.name, "×".join(map(str, t.shape)), t.dtype, t.bytes] for t in chosen.tensors]
    print_table(
        f"{model} — placement {chosen.label}: what crosses", ["tensor", "shape", "dtype", "bytes"], rows
    )
    console.print(f"first device: {named_ranges(chosen.first, names)}", highlight=False)
    console.print(f"second device: {named_ranges(chosen.second, names)}", highlight=False)
    same = f"; the same as split {chosen.split}" if chosen.split is not None else ""
    console.print(f"{len(chosen.tensors)} tensors, {chosen.bytes:,} bytes cross{same}.", highlight=False)


def _split_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"'{text}' is not a list of split indices; write e.g. 3,5,21") from None


def _shape(point: Any) -> str:
    return ", ".join("×".join(map(str, t.shape)) for t in point.tensors)


def _asdict(value: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(value)
