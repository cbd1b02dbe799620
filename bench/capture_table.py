"""Which torchvision builders split, how, and whether every split is exact: a table for the docs.

For each builder in ``torchvision.models.list_models()`` (random weights,
nothing downloaded), one child process builds the model, captures it
(export, fx, hooks, eager: whichever works first), and verifies every
split point against the full model. A builder that fails gives the one-line
reason. Each model runs in its own process with a time limit, so one that
hangs or exhausts memory costs only its own row.

    python bench/capture_table.py                       # every builder (hours on a small machine)
    python bench/capture_table.py --only 'resnet18|fasterrcnn_mobilenet'
    python bench/capture_table.py --granularity block --out docs/capture-table.md

Input shapes are small where the model allows it (``--size``; detection
and segmentation models resize internally), so the walk stays affordable.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

VIDEO_SHAPE = "1,3,8,112,112"
FAMILIES = {
    "detection": "detection",
    "segmentation": "segmentation",
    "video": "video",
    "optical_flow": "optical flow",
    "quantization": "quantized",
}


def family(name: str) -> str:
    """The torchvision family of a builder, from the module that defines it."""
    import torchvision

    where = torchvision.models.get_model_builder(name).__module__
    return next((label for key, label in FAMILIES.items() if f".{key}." in where), "classification")


def shape_for(name: str, size: int) -> str:
    """A small input the builder accepts."""
    kind = family(name)
    if kind == "video":
        return VIDEO_SHAPE if not name.startswith(("mvit", "s3d")) else "1,3,16,224,224"
    if name.startswith(("vit_", "swin", "maxvit")) or "inception" in name or name == "googlenet":
        return "1,3,224,224" if "inception" not in name else "1,3,299,299"
    return f"1,3,{size},{size}"


def one(name: str, shape: str, granularity: str) -> dict[str, object]:
    """Capture and verify one builder in this process (the child's work)."""
    from splittracer.errors import SplitTracerError
    from splittracer.models import parse_input_shape
    from splittracer.split.capture import muffled
    from splittracer.split.load import load_split_model
    from splittracer.split.profile import verify_splits

    row: dict[str, object] = {"model": name, "family": family(name), "shape": shape}
    started = time.perf_counter()
    try:
        with muffled():
            loaded = load_split_model(
                f"torchvision:{name}", input_shape=parse_input_shape(shape), granularity=granularity
            )
            sm = loaded.split
            row.update(method=sm.method, points=sm.num_layers + 1)
            checks = verify_splits(sm, loaded.example)
    except SplitTracerError as exc:
        row["reason"] = exc.message.splitlines()[0][:160]
    except Exception as exc:  # a model that fails in torch: its row says how
        row["reason"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:140] if str(exc) else ''}"
    else:
        bad = [c.index for c in checks if not c.ok]
        row["verified"] = f"{len(checks) - len(bad)}/{len(checks)}"
        if bad:
            row["reason"] = f"splits {bad[:5]} differ from the full model"
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


def walk(names: list[str], size: int, granularity: str, limit_s: int) -> list[dict[str, object]]:
    """Every builder in its own process; a timeout or a crash is that row's reason."""
    rows = []
    for name in names:
        shape = shape_for(name, size)
        command = [sys.executable, __file__, "--one", name, "--shape", shape]
        command += ["--granularity", granularity]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=limit_s)
            lines = done.stdout.strip().splitlines()
            row = json.loads(lines[-1]) if done.returncode == 0 and lines else None
            if row is None:
                tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:160]
                row = {"model": name, "family": family(name), "shape": shape, "reason": f"crashed: {tail}"}
        except subprocess.TimeoutExpired:
            reason = f"over the {limit_s} s limit"
            row = {"model": name, "family": family(name), "shape": shape, "reason": reason}
        print(_line(row), file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def table(body: list[str], granularity: str, note: str) -> str:
    """The Markdown page: one row per builder."""
    head = [
        "# Which torchvision models split",
        "",
        f"Written by `bench/capture_table.py` (granularity `{granularity}`, random weights, synthetic "
        f"inputs; seconds: capture and verification, wall time on the machine that ran it). {note}",
        "",
        "| model | family | input | captured by | split points | verified | why not | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    return "\n".join(head + sorted(body)) + "\n"


def row_line(r: dict[str, object]) -> str:
    """One builder's row."""
    return (
        f"| {r['model']} | {r['family']} | {r.get('shape', '')} | {r.get('method', '—')} | "
        f"{r.get('points', '—')} | {r.get('verified', '—')} | {r.get('reason', '')} | "
        f"{r.get('seconds', '')} |"
    )


def merged(out: Path, rows: list[dict[str, object]]) -> list[str]:
    """Rows of an earlier table at ``out`` for the builders not run this time (``--update``)."""
    if not out.is_file():
        return []
    fresh = {str(r["model"]) for r in rows}
    lines = [line for line in out.read_text().splitlines() if line.startswith("| ") and "---" not in line]
    return [line for line in lines[1:] if line.split("|")[1].strip() not in fresh]  # [0]: the header


def _line(row: dict[str, object]) -> str:
    return f"{row['model']}: {row.get('method', '-')} {row.get('verified', '')} {row.get('reason', '')}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="regular expression: builders whose name matches")
    parser.add_argument("--granularity", default="leaf")
    parser.add_argument("--size", type=int, default=64, help="image side for models that allow it")
    parser.add_argument("--limit-s", type=int, default=900, help="time limit per model")
    parser.add_argument("--out", type=Path, default=Path("docs/capture-table.md"))
    parser.add_argument("--update", action="store_true", help="keep the other rows of an existing table")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.shape, args.granularity)))
        return
    import torchvision

    names = [n for n in torchvision.models.list_models() if not args.only or re.search(args.only, n)]
    rows = walk(names, args.size, args.granularity, args.limit_s)
    note = (
        "Every builder torchvision lists."
        if not args.only
        else f"A subset: builders matching `{args.only}` ({len(rows)} of "
        f"{len(torchvision.models.list_models())})."
    )
    body = [row_line(r) for r in rows] + (merged(args.out, rows) if args.update else [])
    if args.update:
        note = f"A subset: {len(body)} of {len(torchvision.models.list_models())} builders."
    text = table(body, args.granularity, note)
    args.out.write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
