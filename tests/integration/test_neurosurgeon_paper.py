"""The built-in replication shows Neurosurgeon's finding: with a CPU-limited phone much slower
than the cloud, the best split moves toward the cloud as the uplink gets faster.

A shorter sweep of the quick start's ``neurosurgeon`` experiment (the input, pool5 = after
``features.12``, and the whole model on the phone) over 3G, LTE and Wi-Fi. The splits expected
best are computed from the same run's measured components (each split's compute, pooled over
the three links, plus its bytes at the link's rate), never hard-coded, and near ties are allowed:
a loaded 2-core machine may swap two splits whose totals differ by a few percent.

The phone's CPU limit is a cgroup where one can be written (root), signals otherwise: this test
runs anywhere, as the quick start does.
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path

from splittracer.report.limits import whole_model_ratio
from splittracer.report.runs import run_summary
from splittracer.report.uplinks import UplinkSweep
from splittracer.units import parse_rate
from tests.integration.helpers import run, workspace_with

POOL5 = 13  # after features.12, AlexNet's last pooling layer
NEAR = 0.15  # totals within 15% of the best are a tie on a shared machine


def _shorter(ws_text: str) -> str:
    return (
        ws_text.replace("name: neurosurgeon\n", "name: paper-short\n")
        .replace("splits: all", f"splits: [0, {POOL5}, 21]")
        .replace("repeats: 2", "repeats: 3")
        .replace("warmup: 0", "timeout: 600s\n  warmup: 1")
    )


def _expected_best(sweeps: tuple[UplinkSweep, ...]) -> dict[str, int]:
    """Per link, the split whose pooled compute plus bytes at the link's rate is least."""
    compute: dict[int, list[float]] = {}
    for sweep in sweeps:
        for row in sweep.rows:
            compute.setdefault(row.split, []).append(row.head.median + row.tail.median)
    bytes_at = {row.split: row.bytes_raw for row in sweeps[0].rows}
    expected = {}
    for sweep in sweeps:
        rate = parse_rate(sweep.uplink)
        cost = {k: statistics.median(ms) + 8000 * bytes_at[k] / rate for k, ms in compute.items()}
        expected[sweep.uplink] = min(cost, key=lambda k: cost[k])
    return expected


def _near_best(sweep: UplinkSweep, split: int) -> bool:
    totals = {row.split: row.total.median for row in sweep.rows}
    return totals[split] <= (1 + NEAR) * min(totals.values())


def test_best_split_moves_toward_the_cloud_as_the_link_gets_faster(tmp_path: Path):
    scaffold = workspace_with(tmp_path / "scaffold", {})
    paper = (scaffold.experiments_dir / "neurosurgeon.yaml").read_text()
    ws = workspace_with(tmp_path, {"paper-short": _shorter(paper)})
    outcome, store = run(ws, "paper-short")
    assert outcome.status == "succeeded", outcome.error
    summary = run_summary(store, outcome.run_id)
    sweeps = summary.uplinks
    assert [s.uplink for s in sweeps] == ["3g", "lte", "wifi"]
    assert all([r.split for r in s.rows] == [0, POOL5, 21] for s in sweeps)
    ratio = whole_model_ratio(summary.rows, summary.layers)
    chosen = {s.uplink: s.best.split for s in sweeps}
    expected = _expected_best(sweeps)
    told = f"chosen {chosen}, expected from the measured parts {expected}, phone/cloud {ratio}"
    print(told)  # the record of the test run (pytest -s)
    assert ratio is not None and ratio.ratio > 3.0, told
    for sweep in sweeps:
        assert _near_best(sweep, expected[sweep.uplink]), told
    # Toward the cloud as the link gets faster: a faster link's best is at or before a slower one's,
    # unless the slower link's choice is a near tie on the faster link too.
    for slow, fast in itertools.pairwise(sweeps):
        assert chosen[fast.uplink] <= chosen[slow.uplink] or _near_best(fast, chosen[slow.uplink]), told
    assert expected["3g"] >= expected["lte"] >= expected["wifi"], told
