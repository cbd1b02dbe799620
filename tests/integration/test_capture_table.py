"""``bench/capture_table.py``: one process per builder, a capped builder is one row, the walk resumes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "bench" / "capture_table.py"


def walk(tmp_path: Path, *args: str) -> tuple[list[dict[str, object]], str]:
    rows, page = tmp_path / "rows.jsonl", tmp_path / "table.md"
    command = [sys.executable, str(SCRIPT), "--rows", str(rows), "--out", str(page), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in rows.read_text().splitlines()], page.read_text()


@pytest.mark.slow
def test_a_builder_over_its_cap_is_a_row_and_the_next_walk_resumes(tmp_path):
    rows, page = walk(tmp_path, "--only", "^squeezenet1_1$", "--limit-s", "1")
    assert rows == [{"model": "squeezenet1_1", "family": "classification", "reason": rows[0]["reason"]}]
    assert rows[0]["reason"] == "over the 1 s CPU-time cap (one thread)"  # torch alone takes longer
    assert "| classification | 1 | 1 | 0 | 0 | 1 |" in page  # counted as over a cap, not as failed
    rows, page = walk(tmp_path, "--only", "^(squeezenet1_1|alexnet)$")
    assert [r["model"] for r in rows] == ["squeezenet1_1", "alexnet"]  # squeezenet1_1 is not run again
    assert rows[1]["shape"] == "1,3,64,64"  # 32 pixels are too few for alexnet's pooling
    assert (rows[1]["method"], rows[1]["verified"]) == ("export", "22/22") and "reason" not in rows[1]
    assert "- command: `nice -n 19 python bench/capture_table.py --only" in page
    assert "| alexnet | classification | 1,3,64,64 | export | 22 | 22/22 |  |" in page
