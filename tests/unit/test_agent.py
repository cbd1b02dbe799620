"""The warm agent's pure parts: where it lives, its fingerprint, its wire format, the CLI's parsing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from splittracer.cli import main
from splittracer.cli.agent import parse_idle_timeout
from splittracer.deploy import agent_client as agent
from splittracer.errors import ConfigError


def test_agent_dir_prefers_the_override_then_the_runtime_dir_then_the_cache(tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir()
    home = tmp_path / "home"
    assert agent.agent_dir({agent.DIR_ENV: "/x/y", "XDG_RUNTIME_DIR": str(runtime)}) == Path("/x/y")
    assert agent.agent_dir({"XDG_RUNTIME_DIR": str(runtime), "HOME": str(home)}) == runtime / "splittracer"
    # A runtime dir that does not exist (a su'd shell) is not used.
    missing = {"XDG_RUNTIME_DIR": str(tmp_path / "gone"), "HOME": str(home)}
    assert agent.agent_dir(missing) == home / ".cache" / "splittracer"
    assert agent.socket_path({"HOME": str(home)}) == home / ".cache" / "splittracer" / "agent.sock"


def test_agent_can_be_turned_off_for_controllers():
    assert agent.agent_enabled({})
    assert agent.agent_enabled({agent.USE_ENV: "1"})
    for off in ("0", "off", "OFF", "no", "false"):
        assert not agent.agent_enabled({agent.USE_ENV: off})


def test_private_dir_is_created_0700_and_a_loose_one_is_tightened(tmp_path):
    made = agent.ensure_private_dir(tmp_path / "a" / "b")
    assert made.stat().st_mode & 0o777 == 0o700
    assert agent.is_private_dir(made)
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    assert not agent.is_private_dir(loose)
    agent.ensure_private_dir(loose)
    assert loose.stat().st_mode & 0o777 == 0o700
    assert not agent.is_private_dir(tmp_path / "missing")


def test_source_digest_changes_with_any_py_file(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "sub" / "b.py").write_text("y = 2\n")
    (package / "notes.txt").write_text("ignored")
    first = agent.source_digest(package)
    assert agent.source_digest(package) == first
    (package / "notes.txt").write_text("still ignored")
    assert agent.source_digest(package) == first
    (package / "sub" / "b.py").write_text("y = 22\n")  # size changes
    second = agent.source_digest(package)
    assert second != first
    stat = (package / "a.py").stat()
    os.utime(package / "a.py", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # mtime only
    assert agent.source_digest(package) != second
    (package / "c.py").write_text("")
    assert len({first, second, agent.source_digest(package)}) == 3


def test_fingerprint_compares_code_interpreter_and_import_time_environment():
    base = {"PATH": "/bin", "HOME": "/h", "OMP_NUM_THREADS": "1"}
    mine = agent.fingerprint(env=base)
    assert agent.differences(mine, agent.fingerprint(env=base)) == []
    assert mine["python"] == agent.interpreter(sys.executable)
    assert mine["source"] == agent.source_digest()
    # Variables no import reads, and the agent's own, do not matter.
    other = {**base, "PATH": "/usr/bin", agent.DIR_ENV: "/tmp/x", agent.USE_ENV: "1", "PYTHONUNBUFFERED": "1"}
    assert agent.differences(mine, agent.fingerprint(env=other)) == []
    # One read at import time does: a clock shift, a thread count, a PYTHONPATH.
    for name in ("SPLITTRACER_CLOCK_SHIFT_NS", "OMP_NUM_THREADS", "PYTHONPATH"):
        changed = agent.differences(mine, agent.fingerprint(env={**base, name: "7"}))
        assert len(changed) == 1 and changed[0].startswith(f"${name}:")
    stale = {**mine, "source": "0" * 20}
    assert [d.split(":")[0] for d in agent.differences(stale, mine)] == ["source"]
    elsewhere = agent.fingerprint("/opt/py/bin/python", base)
    assert [d.split(":")[0] for d in agent.differences(mine, elsewhere)] == ["python"]


def test_interpreter_names_the_real_file_and_the_virtual_environment(tmp_path):
    real = tmp_path / "base" / "bin" / "python3.11"
    real.parent.mkdir(parents=True)
    real.write_text("")
    alias = real.parent / "python"
    alias.symlink_to(real)
    assert agent.interpreter(str(alias)) == agent.interpreter(str(real)) == str(real)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = base\n")
    (venv / "bin" / "python").symlink_to(real)
    assert agent.interpreter(str(venv / "bin" / "python")) == f"{real} (venv {venv})"


def _short_private_dir() -> Path:
    # Unix socket paths are limited to ~100 bytes: pytest's tmp_path can be longer.
    return Path(tempfile.mkdtemp(prefix="st-agent-", dir="/tmp"))


def test_a_stale_socket_or_an_unsafe_directory_is_never_used(tmp_path):
    directory = _short_private_dir()
    try:
        path = directory / agent.SOCKET_NAME
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
            stale.bind(str(path))  # the file stays; nobody listens
        assert path.exists()
        assert agent.connect(path) is None
        assert agent.agent_status(path) is None
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
            path.unlink()
            live.bind(str(path))
            live.listen(1)
            found = agent.connect(path)
            assert found is not None
            found.close()
            directory.chmod(0o755)  # others could have put it there
            assert agent.connect(path) is None
    finally:
        directory.chmod(0o700)
        for item in directory.iterdir():
            item.unlink()
        directory.rmdir()


def test_line_reader_splits_joins_and_hands_back_pending_messages():
    left, right = socket.socketpair()
    with left, right:
        reader = agent.LineReader(right)
        left.sendall(b'{"pid": 5}\n{"po')
        assert reader.read(1.0) == {"pid": 5}
        left.sendall(b'rt": 7}\n')
        assert reader.read(1.0) == {"port": 7}
        reader.pending.append({"early": True})
        assert reader.read(1.0) == {"early": True}
        with pytest.raises(TimeoutError):
            reader.read(0.05)
        agent.send_message(left, {"exit": -9})
        left.close()
        assert reader.read(1.0) == {"exit": -9}
        assert reader.read(1.0) is None and reader.closed


def test_idle_timeout_parsing():
    assert parse_idle_timeout("15m") == 900
    assert parse_idle_timeout("90") == 90
    assert parse_idle_timeout("90s") == 90
    assert parse_idle_timeout("1.5h") == 5400
    for bad in ("soon", "0", "-5m", "10ms"):
        with pytest.raises(ConfigError):
            parse_idle_timeout(bad)


def test_cli_refuses_a_bad_idle_timeout_with_exit_code_2(capsys):
    assert main(["agent", "start", "--idle-timeout", "soon"]) == 2
    assert "not a duration" in capsys.readouterr().err


def test_a_fingerprint_taken_after_torchs_compiler_import_still_matches_the_agents():
    # The agent takes its fingerprint before importing anything; a controller that imported
    # torch's compiler (split: auto) has TORCHINDUCTOR_CACHE_DIR set by that import, not by the user.
    code = (
        "import json, os\n"
        "from splittracer.deploy import agent_client as agent\n"
        "before = agent.fingerprint()\n"
        "import torch._inductor.config\n"
        "assert 'TORCHINDUCTOR_CACHE_DIR' in os.environ\n"
        "child = {**os.environ, 'PYTHONUNBUFFERED': '1'}\n"  # what a spawned participant would get
        "print(json.dumps(agent.differences(before, agent.fingerprint(env=child))))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in agent.SET_BY_IMPORTS}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_a_variable_the_user_set_still_counts(monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    base = agent.fingerprint()
    # Set in this process after start, to the value this process has: what an import does.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/tmp/set-by-an-import")
    assert agent.differences(base, agent.fingerprint()) == []
    assert "TORCHINDUCTOR_CACHE_DIR" not in agent.user_env()
    # Another value than this process's own: the caller chose it for the participant.
    chosen = agent.fingerprint(env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": "/elsewhere"})
    assert [d.split(":")[0] for d in agent.differences(base, chosen)] == ["$TORCHINDUCTOR_CACHE_DIR"]
    # A variable outside SET_BY_IMPORTS set after start is the user's (a script may set it).
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert [d.split(":")[0] for d in agent.differences(base, agent.fingerprint())] == ["$OMP_NUM_THREADS"]


def _refusing_agent(directory: Path, error: str) -> threading.Thread:
    """A fake agent on ``directory``'s socket that refuses one start request with ``error``."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(directory / agent.SOCKET_NAME))
    listener.listen(1)

    def serve() -> None:
        with listener, listener.accept()[0] as conn:
            agent.LineReader(conn).read(5.0)
            agent.send_message(conn, {"ok": False, "error": error})

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_a_refusal_is_told_in_one_line_instead_of_the_tip(monkeypatch, tmp_path, capsys):
    from splittracer.cli.run import _print_launch

    directory = _short_private_dir()
    monkeypatch.setenv(agent.DIR_ENV, str(directory))
    monkeypatch.setenv(agent.USE_ENV, "1")
    try:
        why = "incompatible: $OMP_NUM_THREADS: agent None,\nhere '3'"
        server = _refusing_agent(directory, why)
        with (tmp_path / "log").open("wb") as log:
            assert agent.fork_participant("cloud", "127.0.0.1", tmp_path, log, {}, sys.executable) is None
        server.join(5.0)
        assert agent.last_refusal() == "incompatible: $OMP_NUM_THREADS: agent None, here '3'"
        _print_launch({"phone": "spawn", "cloud": "spawn"})
        out = capsys.readouterr().out
        assert out.splitlines() == [
            "warm agent not used: incompatible: $OMP_NUM_THREADS: agent None, here '3'"
        ]
        (directory / agent.SOCKET_NAME).unlink()
        with (tmp_path / "log").open("wb") as log:  # no agent at all: nothing refused, the tip
            assert agent.fork_participant("cloud", "127.0.0.1", tmp_path, log, {}, sys.executable) is None
        assert agent.last_refusal() is None
        _print_launch({"cloud": "spawn"})
        assert "tip: `splittracer agent start`" in capsys.readouterr().out
    finally:
        for item in directory.iterdir():
            item.unlink()
        directory.rmdir()
