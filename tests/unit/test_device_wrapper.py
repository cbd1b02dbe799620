"""The shell wrapper that runs a participant on a device: it ends the participant when the SSH
session's stdin closes, and removes the run's folder however the participant ended, a lost
session (its pipes closed) included."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

from splittracer.deploy.ssh import removal
from splittracer.devices.ssh import watched_python


def _start(run_dir: Path, seconds: float) -> subprocess.Popen[bytes]:
    command = watched_python(
        f"-c 'import time; time.sleep({seconds})'",
        prologue=f"cd {run_dir} || exit 97\npy={sys.executable}\n",
        on_start='echo "PID=$pid"\n',
        epilogue=f"cd / && {removal(str(run_dir))}\n",
    )
    process = subprocess.Popen(
        shlex.split(command),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stdout.readline().startswith(b"PID=")
    return process


def _run_dir(home: Path) -> Path:
    run_dir = home / ".splittracer" / "runs" / "abc123" / "cloud"
    (run_dir / "tls").mkdir(parents=True)
    (run_dir / "tls" / "key.pem").write_text("secret")
    (home / ".splittracer" / "venv").mkdir()  # not the run's: stays
    return run_dir


def _wait(process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 10
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is not None, "the wrapper did not end"
    return process.returncode


def test_a_lost_session_ends_the_participant_and_removes_the_folder(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    process = _start(run_dir, 60)
    assert process.stdout is not None and process.stderr is not None and process.stdin is not None
    process.stdout.close()  # the session is gone: nothing reads what the wrapper writes
    process.stderr.close()
    process.stdin.close()
    assert _wait(process) == 128 + 15  # the participant got SIGTERM
    assert not (tmp_path / ".splittracer" / "runs").exists()
    assert (tmp_path / ".splittracer" / "venv").is_dir()


def test_a_participant_that_ends_by_itself_leaves_no_folder(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    other = tmp_path / ".splittracer" / "runs" / "abc123" / "phone"
    other.mkdir()
    process = _start(run_dir, 0)
    assert _wait(process) == 0
    process.communicate()
    assert not run_dir.exists() and other.is_dir()  # another participant's folder of the run stays
