"""Which torchvision builders split, how, and whether every split is exact: a table for the docs.

For each builder in ``torchvision.models.list_models()`` (random weights,
nothing downloaded), one child process builds the model, finds the smallest
of a few candidate inputs the plain model runs on, captures it (export, fx,
hooks, eager: whichever works first) and verifies every split point against
the full model. A builder that fails gives the one-line reason. Each child
runs with one torch thread, a CPU-time cap and a memory cap (and a wall-time
backstop), so one that hangs, exhausts memory or crashes costs only its own
row. Run it niced on a shared machine:

    nice -n 19 python bench/capture_table.py --all            # every builder (hours on 2 cores)
    nice -n 19 python bench/capture_table.py --only 'resnet18|fasterrcnn_mobilenet'
    python bench/capture_table.py --all --table-only          # rewrite the page from the rows so far

Rows are appended to ``--rows`` as they finish; a builder already there is
not run again, so a walk that was stopped resumes where it left off.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

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


def candidate_shapes(name: str) -> list[str]:
    """Inputs to try, smallest first: the first one the plain model runs on is the row's input."""
    kind = family(name)
    if kind == "video":
        return [f"1,3,{t},{s},{s}" for t, s in ((4, 32), (8, 64), (8, 112), (16, 112), (16, 224))]
    if kind == "optical flow":
        return ["1,2,3,128,128", "1,2,3,224,224"]  # two frames
    return [f"1,3,{s},{s}" for s in (32, 64, 96, 128, 224, 299)]


def one(name: str, granularity: str) -> dict[str, object]:
    """Capture and verify one builder in this process (the child's work)."""
    import torch

    from splittracer.errors import SplitTracerError
    from splittracer.split.capture import muffled

    torch.set_num_threads(1)
    row: dict[str, object] = {"model": name, "family": family(name)}
    started = time.perf_counter()
    try:
        with muffled():
            _capture_and_verify(name, granularity, row)
    except SplitTracerError as exc:
        row["reason"] = _one_line(exc.message)
    except Exception as exc:  # a model that fails in torch: its row says how
        short = isinstance(exc, MemoryError) or "can't allocate memory" in str(exc)
        row["reason"] = (
            "out of memory under the memory cap" if short else _one_line(f"{type(exc).__name__}: {exc}")
        )
    row["seconds"] = round(time.perf_counter() - started, 1)
    row["cpu_s"] = round(time.process_time(), 1)  # the whole child, imports included
    return row


def _capture_and_verify(name: str, granularity: str, row: dict[str, object]) -> None:
    """Build with random weights, find the smallest input it runs on, capture, verify every split."""
    import torch

    from splittracer.models import example_input, load_model, parse_input_shape
    from splittracer.split.model import SplitModel
    from splittracer.split.profile import verify_splits

    torch.manual_seed(0)
    model = load_model(f"torchvision:{name}").module
    shape, x, error = "", None, ""
    for shape in candidate_shapes(name):
        x = example_input(parse_input_shape(shape), seed=0)
        error = _fails(model, x)
        if not error:
            break
        x = None
    row["shape"] = shape
    if x is None:
        row["reason"] = f"the model itself fails on one input tensor: {error}"
        return
    sm = SplitModel(model, x, granularity=granularity)
    row.update(method=sm.method, points=sm.num_layers + 1)
    checks = verify_splits(sm, x)
    bad = [c.index for c in checks if not c.ok]
    row["verified"] = f"{len(checks) - len(bad)}/{len(checks)}"
    if bad:
        row["reason"] = f"splits {bad[:5]} differ from the full model"


def _fails(model: object, x: object) -> str:
    """Why the plain model fails on ``x`` (empty: it runs)."""
    import torch

    try:
        with torch.no_grad():
            model(x)  # type: ignore[operator]
    except Exception as exc:  # too small for this model: the next candidate is larger
        return f"{type(exc).__name__}: {exc}"
    return ""


def _one_line(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first.replace("|", "/")[:160]


ORDER = ["detection", "segmentation", "classification", "quantized", "video", "optical flow"]


def walk(names: list[str], args: argparse.Namespace) -> None:
    """Every builder in its own process, ``args.jobs`` at a time; each row is appended to ``args.rows``.

    A builder already in ``args.rows`` is not run again, so a walk that was
    stopped resumes where it left off.
    """
    done = {str(r["model"]) for r in read_rows(args.rows) if not (args.retry_capped and _capped(r))}
    todo = sorted((n for n in names if n not in done), key=lambda n: (ORDER.index(family(n)), n))
    running: dict[str, tuple[Child, float]] = {}
    while todo or running:
        while todo and len(running) < args.jobs:
            name = todo.pop(0)
            running[name] = (_start(name, args), time.monotonic())
        for name, ((child, out, err), started) in list(running.items()):
            over = time.monotonic() - started > args.wall_s
            if child.poll() is None and not over:
                continue
            if over:
                child.kill()
            child.wait()
            row = _row(name, child.returncode, _read(out), _read(err), over, args)
            with args.rows.open("a") as rows:
                rows.write(json.dumps(row) + "\n")
            print(_line(row), file=sys.stderr, flush=True)
            del running[name]
        time.sleep(0.5)


Child = tuple[subprocess.Popen[str], IO[str], IO[str]]  # the process and its stdout and stderr files


def _start(name: str, args: argparse.Namespace) -> Child:
    """One child: one torch thread, a CPU-time cap and a memory cap the kernel enforces."""
    import os
    import resource

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (args.limit_s, args.limit_s + 5))
        memory = args.memory_gib << 30
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    command = [sys.executable, __file__, "--one", name, "--granularity", args.granularity]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    # Files, not pipes: a child that prints a lot must not block on a pipe nobody reads until it
    # ends. They outlive this function: _read closes them when the child is done.
    out = tempfile.TemporaryFile("w+")  # noqa: SIM115
    err = tempfile.TemporaryFile("w+")  # noqa: SIM115
    child = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env, preexec_fn=limits)
    return child, out, err


def _read(stream: IO[str]) -> str:
    """All a child wrote to one of its files."""
    stream.seek(0)
    text = stream.read()
    stream.close()
    return text


def _row(
    name: str, code: int | None, out: str, err: str, over: bool, args: argparse.Namespace
) -> dict[str, object]:
    """The child's own row, or what its end says: a time cap, a memory cap, a crash."""
    import signal

    lines = out.strip().splitlines()
    if code == 0 and lines:
        row: dict[str, object] = json.loads(lines[-1])
        return row
    if over:
        reason = f"over the wall-time cap ({args.wall_s} s) on this loaded machine"
    elif code in (-signal.SIGXCPU, -signal.SIGKILL) and "MemoryError" not in err:
        reason = f"over the {args.limit_s} s CPU-time cap (one thread)"
    elif "MemoryError" in err or "alloc" in err.lower():
        reason = f"out of memory under the {args.memory_gib} GiB cap"
    else:
        tail = (err.strip().splitlines() or [f"exit code {code}"])[-1]
        reason = f"crashed: {_one_line(tail)}"
    return {"model": name, "family": family(name), "reason": reason}


def read_rows(path: Path) -> list[dict[str, object]]:
    """The rows a walk has written so far: the latest of each builder."""
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return list({str(r["model"]): r for r in rows}.values())


def _capped(row: dict[str, object]) -> bool:
    return "cap" in str(row.get("reason", ""))


def page(rows: list[dict[str, object]], names: list[str], args: argparse.Namespace, listed: int) -> str:
    """The Markdown page: how it was made, counts per family, one row per builder walked."""
    import datetime
    import platform

    import torch
    import torchvision

    command = "nice -n 19 python bench/capture_table.py " + ("--all" if args.all else f"--only '{args.only}'")
    command += f" --granularity {args.granularity} --limit-s {args.limit_s} --memory-gib {args.memory_gib}"
    command += f" --wall-s {args.wall_s} --jobs {args.jobs}"
    head = [
        "# Which torchvision models split",
        "",
        "Written by `bench/capture_table.py`: each builder in its own process (one torch thread, "
        f"a {args.limit_s} s CPU-time cap and a {args.memory_gib} GiB memory cap, so a hang, an "
        "out-of-memory or a crash is one row), random weights, nothing downloaded, a synthetic "
        "input: the smallest of a few candidate shapes the plain model runs on (*input*; "
        "detectors resize it inside to 320 or 800 pixels, optical flow takes two frames). The "
        "model is captured (export, fx, sequence, eager: whichever works first; *captured by*) "
        f"at granularity `{args.granularity}`, and every split point is run as head then tail and "
        "compared with the full model (*verified*: exact within 1e-4). *seconds*: build, "
        "capture and verification, wall time on a machine busy with other work; *CPU s*: the "
        "child's CPU time, imports included (what the cap counts).",
        "",
        f"- machine: {os.cpu_count()} CPU cores ({platform.machine()}), {_memory_gib()} GiB memory, "
        f"shared with other work; torch {torch.__version__}, torchvision {torchvision.__version__}",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- command: `{command}`",
        f"- builders walked: {len(rows)} of the {listed} torchvision lists",
        *_not_walked(rows, names),
        "",
        "| family | builders | walked | split and verified | failed | over a cap |",
        "| --- | --- | --- | --- | --- | --- |",
        *_counts(rows, names),
        "",
        "| model | family | input | captured by | split points | verified | why not | seconds | CPU s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    order = sorted(rows, key=lambda r: (ORDER.index(str(r["family"])), str(r["model"])))
    return "\n".join(head + [row_line(r) for r in order]) + "\n"


def _counts(rows: list[dict[str, object]], names: list[str]) -> list[str]:
    lines = []
    for kind in [*ORDER, "all"]:
        mine = [r for r in rows if kind in ("all", r["family"])]
        total = sum(1 for n in names if kind in ("all", family(n)))
        good = sum(1 for r in mine if not r.get("reason") and r.get("verified"))
        capped = sum(1 for r in mine if _capped(r))
        failed = len(mine) - good - capped
        lines.append(f"| {kind} | {total} | {len(mine)} | {good} | {failed} | {capped} |")
    return lines


def _not_walked(rows: list[dict[str, object]], names: list[str]) -> list[str]:
    """The builders asked for that have no row yet: the walk was stopped (running it again resumes)."""
    walked = {r["model"] for r in rows}
    left = [n for n in names if n not in walked]
    if not left:
        return []
    return [f"- not walked yet ({len(left)}; the same command resumes the walk): {', '.join(left)}"]


def _memory_gib() -> int:
    return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)


def row_line(r: dict[str, object]) -> str:
    """One builder's row."""
    return (
        f"| {r['model']} | {r['family']} | {r.get('shape', '')} | {r.get('method', '—')} | "
        f"{r.get('points', '—')} | {r.get('verified', '—')} | {r.get('reason', '')} | "
        f"{r.get('seconds', '')} | {r.get('cpu_s', '')} |"
    )


def _line(row: dict[str, object]) -> str:
    return f"{row['model']}: {row.get('method', '-')} {row.get('verified', '')} {row.get('reason', '')}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="every builder torchvision lists")
    which.add_argument("--only", help="regular expression: builders whose name matches")
    parser.add_argument("--granularity", default="block")
    parser.add_argument("--limit-s", type=int, default=120, help="CPU-time cap per model (one thread)")
    parser.add_argument("--memory-gib", type=int, default=6, help="memory cap per model")
    parser.add_argument("--wall-s", type=int, help="wall-time backstop per model (default: 4 x --limit-s)")
    parser.add_argument("--jobs", type=int, default=1, help="models walked at once")
    parser.add_argument("--retry-capped", action="store_true", help="run builders over a cap again")
    parser.add_argument("--rows", type=Path, default=Path("capture-rows.jsonl"), help="rows so far (resumes)")
    parser.add_argument("--out", type=Path, default=Path("docs/capture-table.md"))
    parser.add_argument("--table-only", action="store_true", help="write the table from --rows, run nothing")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.wall_s = args.wall_s or 4 * args.limit_s  # a child behind other work waits for the CPU
    if args.one:
        print(json.dumps(one(args.one, args.granularity)))
        return
    import torchvision

    names = [
        n for n in torchvision.models.list_models() if args.all or (args.only and re.search(args.only, n))
    ]
    if not args.table_only:
        walk(names, args)
    rows = [r for r in read_rows(args.rows) if r["model"] in names]
    args.out.write_text(page(rows, names, args, len(torchvision.models.list_models())))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
