"""``splittracer plan --max-accuracy-drop``: the best split and codec together, within an accuracy budget."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SplitTracerError
from ._render import console, print_json, print_table

if TYPE_CHECKING:
    from ..plan.codecs import CodecChoice, CodecQuality
    from ..plan.planner import SplitPrediction
    from ..report.accuracy import AccuracyRow

__all__ = ["parse_drop", "qualities", "show_codec_plan"]


def parse_drop(text: str) -> float:
    """``1%`` or ``0.01`` as a share (0..1); SplitTracerError for anything else."""
    from ..plan.codecs import parse_drop as parse

    try:
        return parse(text)
    except ValueError:
        raise SplitTracerError(f"--max-accuracy-drop {text!r}: expected a share such as 1% or 0.01") from None


def qualities(rows: list[AccuracyRow]) -> list[CodecQuality]:
    """Per (split, codec) of a profile run: bytes relative to none and the drop against none."""
    from ..report.accuracy import codec_qualities

    return codec_qualities(rows)


def show_codec_plan(
    result: SplitPrediction, max_drop: str, run: str | None, workspace: Path | None, *, json: bool
) -> None:
    """Rank every (split, codec) the run measured within the drop and print the best."""
    from ..metrics.store import ResultsStore
    from ..plan.codecs import plan_codecs
    from ..report.accuracy import accuracy_rows
    from ..workspace import find_workspace

    budget = parse_drop(max_drop)
    if run is None:
        raise SplitTracerError(
            "--max-accuracy-drop needs the run that measured the codecs",
            hint="run a Sweep with codecs: [none, fp16, int8, ...] and pass --accuracy-from RUN (or latest)",
        )
    with ResultsStore(find_workspace(explicit=workspace).results_db) as store:
        run_id = store.get_run(run).id
        measured = qualities(accuracy_rows(store.spans(run_id), store.metrics(run_id)))
    if not measured:
        raise SplitTracerError(f"run {run_id} measured no codec against none with predictions to compare")
    choices = plan_codecs(result.chain.rows, result.links[0], measured, budget)
    if json:
        print_json({"max_accuracy_drop": budget, "from_run": run_id, "choices": [_dict(c) for c in choices]})
        return
    rows = [
        [c.split, result.label(c.split), c.codec, c.bytes, c.transfer_ms, c.total_ms, f"{100 * c.drop:.2f}%"]
        for c in choices[:15]
    ]
    title = f"Split and codec within {100 * budget:g}% of none's accuracy (codecs measured by {run_id})"
    print_table(title, ["split", "after", "codec", "bytes", "transfer ms", "total ms", "drop"], rows)
    best = choices[0]
    console.print(f"[bold]best: split {best.split} with {best.codec}[/] — predicted {best.total_ms:.2f} ms")


def _dict(choice: CodecChoice) -> dict[str, Any]:
    return {
        "split": choice.split,
        "cuts": list(choice.cuts),
        "codec": choice.codec,
        "bytes": choice.bytes,
        "transfer_ms": choice.transfer_ms,
        "total_ms": choice.total_ms,
        "drop": choice.drop,
    }
