"""What the command line imports: the everyday commands load no heavy library.

A test of what is imported, not of time (the time depends on the machine):
torch, gRPC, asyncssh, matplotlib, pandas and numpy each take from a tenth of a
second to seconds to import, so a command that needs none of them must not
load them. Each case runs in a fresh interpreter and prints, at exit, which
of them ``sys.modules`` holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from splittracer.workspace import init_workspace

from ..manifests import pool5

HEAVY = ("torch", "grpc", "asyncssh", "matplotlib", "pandas", "numpy")
SRC = Path(__file__).resolve().parents[2] / "src"

# Imports the command line, runs ``argv`` with it (unless None) as the console script does, and
# reports the heavy modules loaded at exit.
WRAPPER = """
import atexit, json, sys
heavy = {heavy!r}
atexit.register(lambda: print("LOADED=" + json.dumps(sorted(m for m in heavy if m in sys.modules))))
from splittracer.cli import main
argv = {argv!r}
sys.exit(0 if argv is None else main(argv))
"""


def _loaded(argv: list[str] | None, cwd: Path) -> tuple[int, list[str]]:
    """The exit code and the heavy modules loaded by ``import splittracer.cli`` then ``argv``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER.format(heavy=HEAVY, argv=argv)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("LOADED=")), None)
    assert line is not None, done.stderr
    return done.returncode, list(json.loads(line.removeprefix("LOADED=")))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_workspace(tmp_path_factory.mktemp("ws") / "ws").root


def test_importing_the_command_line_loads_no_heavy_library(tmp_path):
    assert _loaded(None, tmp_path) == (0, [])


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["results", "ls", "--workspace", "{ws}"],
        ["results", "ls", "--workspace", "{ws}", "--json"],
        ["experiment", "ls", "--workspace", "{ws}"],
        ["device", "ls", "--registry", "{ws}/no-devices.yaml"],
        ["agent", "status"],
    ],
    ids=" ".join,
)
def test_everyday_commands_load_no_heavy_library(argv, workspace, tmp_path):
    command = [arg.format(ws=workspace) for arg in argv]
    assert _loaded(command, tmp_path) == (0, [])


def test_a_command_that_needs_torch_is_seen_loading_it(tmp_path):
    # The checks above can fail: the wrapper does see what a command imports.
    code, loaded = _loaded(["model", "inspect", "torchvision:alexnet", "--input-shape", "x"], tmp_path)
    assert code == 2 and "torch" in loaded


@pytest.mark.slow
def test_a_run_of_the_built_in_roles_keeps_torch_out_of_the_controller(tmp_path, monkeypatch):
    # Real participants (spawned: they import torch), a real controller in its own interpreter.
    # The first run captures the model to check the playbook's split (torch, once); its layer
    # count is cached, so the next run's controller must load no torch at all.
    monkeypatch.setenv("SPLITTRACER_AGENT", "off")
    ws = init_workspace(tmp_path / "ws").root
    (ws / "experiments" / "pool5.yaml").write_text(pool5(count=1))
    argv = ["run", "pool5", "--workspace", str(ws), "--no-plot"]
    code, first = _loaded(argv, tmp_path)
    assert code == 0 and "torch" in first
    code, second = _loaded(argv, tmp_path)
    assert code == 0, second
    assert "torch" not in second
