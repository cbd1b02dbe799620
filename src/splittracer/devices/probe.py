"""What a device has (OS, CPU, memory, Python, torch) and whether participants can run on it.

:func:`probe` runs one small Python script on the device. It is written for
any Python 3 so that a device with an old interpreter still reports what it
has, and the error can say exactly what to install. :func:`check_all` is the
fast reachability check behind ``device ls``: every device in parallel, each
with a short timeout.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import asyncssh

from ..version import __version__
from .errors import AuthenticationFailed, DeviceError, DeviceNotReady, HostKeyChanged, Unreachable
from .registry import Device, DeviceFacts, Registry, utcnow
from .ssh import Completed, Target, connect, quote, run

__all__ = [
    "LOGIN_FAILED",
    "LOGIN_HOST_KEY_CHANGED",
    "LOGIN_KEY_REFUSED",
    "LOGIN_OK",
    "MIN_PYTHON",
    "NO_ANSWER",
    "RUNTIME_DIR",
    "DeviceStatus",
    "Problem",
    "check_all",
    "check_device",
    "failed_status",
    "not_ready",
    "parse_facts",
    "probe",
    "problems",
    "require_ready",
    "select_python",
]

MIN_PYTHON = (3, 10)
RUNTIME_DIR = ".splittracer"  # under the remote home: venv/, runs/
VENV_PYTHON = f"$HOME/{RUNTIME_DIR}/venv/bin/python"
FACTS_PREFIX = "SPLITTRACER_FACTS="
LS_TIMEOUT_S = 2.0
PROBE_TIMEOUT_S = 120.0
# How a device's login went in ``device ls``: only NO_ANSWER means the device is not reachable.
LOGIN_OK = "ok"
LOGIN_KEY_REFUSED = "key refused"
LOGIN_HOST_KEY_CHANGED = "host key changed"
LOGIN_FAILED = "failed"
NO_ANSWER = "no answer"
_CANDIDATES = ("python3.14", "python3.13", "python3.12", "python3.11", "python3.10", "python3", "python")

# Python 3 of any age: no f-strings with '=', no walrus, no importlib.metadata assumed.
PROBE_SCRIPT = r"""
import json, os, platform, shutil, sys

def first_line(path, keys):
    try:
        with open(path) as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() in keys:
                    return value.strip()
    except OSError:
        pass
    return ""

def os_release():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()

def memory():
    kb = first_line("/proc/meminfo", ("MemTotal",)).split()
    if kb:
        return int(kb[0]) * 1024
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0

def version_of(dist):
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:
        return None

home = os.path.expanduser("~")
venv = os.path.realpath(os.path.join(home, ".splittracer", "venv"))
facts = {
    "os": platform.system(),
    "os_release": os_release(),
    "arch": platform.machine(),
    "python": platform.python_version(),
    "python_path": sys.executable,
    "runtime": os.path.realpath(sys.prefix) == venv,
    "splittracer": version_of("splittracer"),
    "cpu_model": first_line("/proc/cpuinfo", ("model name", "Model", "Hardware")) or platform.processor(),
    "cpu_cores": os.cpu_count() or 0,
    "memory_bytes": memory(),
    "disk_free_bytes": shutil.disk_usage(home).free,
    "torch": None,
    "cuda": False,
    "cuda_devices": [],
}
try:
    import torch
    facts["torch"] = str(torch.__version__)
    facts["cuda"] = bool(torch.cuda.is_available())
    if facts["cuda"]:
        facts["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
except ImportError:
    pass
except Exception as exc:
    facts["torch_error"] = "%s: %s" % (type(exc).__name__, exc)
print("SPLITTRACER_FACTS=" + json.dumps(facts))
"""


@dataclass(frozen=True)
class Problem:
    """Why a device cannot run participants yet, and what to do."""

    message: str
    hint: str


@dataclass(frozen=True)
class DeviceStatus:
    """One device's line in ``device ls``: reachability and login now, readiness from its facts.

    ``reachable`` says an SSH server answered; ``login`` how logging in went
    (:data:`LOGIN_OK`, :data:`LOGIN_KEY_REFUSED`, :data:`LOGIN_HOST_KEY_CHANGED`,
    :data:`LOGIN_FAILED`, or :data:`NO_ANSWER` when nothing answered), so a device
    that refused the key is never reported as unreachable.
    """

    device: Device
    reachable: bool
    error: str | None = None
    problems: tuple[Problem, ...] = field(default_factory=tuple)
    last_seen: datetime | None = None
    login: str = LOGIN_OK
    hint: str | None = None

    @property
    def ready(self) -> bool:
        """Logged in, probed, and nothing missing."""
        return self.login == LOGIN_OK and self.device.facts is not None and not self.problems


def select_python(system: str | None = None, *, runtime: bool = True) -> str:
    """POSIX shell that sets ``$py`` to the interpreter participants use, or exits 127.

    The runtime's venv first (unless ``runtime`` is False), then ``system``
    if given (a device's ``python:``), else the newest ``python3.X`` on PATH
    that actually runs (pyenv shims exist for versions that are not active).
    """
    candidates = quote(system) if system else " ".join(_CANDIDATES)
    if runtime:
        candidates = f'"{VENV_PYTHON}" {candidates}'
    return (
        f"py=; for c in {candidates}; do "
        'if command -v "$c" >/dev/null 2>&1 && "$c" -c "" </dev/null >/dev/null 2>&1; then '
        'py=$(command -v "$c"); break; fi; done; '
        'if [ -z "$py" ]; then echo "no python3 found on PATH" >&2; exit 127; fi'
    )


async def probe(conn: asyncssh.SSHClientConnection, target: Target, python: str | None = None) -> DeviceFacts:
    """Run the probe script with the device's interpreter and parse what it found."""
    command = f'{select_python(python)}; exec "$py" -'
    result = await run(
        conn,
        target,
        command,
        input=PROBE_SCRIPT,
        timeout=PROBE_TIMEOUT_S,
        check=False,
        label="probe (python3 -)",
    )
    if result.exit_status == 127:
        raise DeviceNotReady(
            "no Python 3 interpreter was found on the device",
            host=target.label,
            command="probe (python3 -)",
            exit_status=127,
            output=result.output,
            hint=_INSTALL_PYTHON,
        )
    return parse_facts(result, target)


def parse_facts(result: Completed, target: Target) -> DeviceFacts:
    """The facts line of the probe's output; DeviceNotReady with the output if there is none."""
    for line in reversed(result.stdout.splitlines()):
        if line.startswith(FACTS_PREFIX):
            data = json.loads(line.removeprefix(FACTS_PREFIX))
            data["probed_at"] = utcnow().isoformat()
            return DeviceFacts.model_validate(data)
    raise DeviceNotReady(
        "the probe script did not run (is the device's Python 3 working?)",
        host=target.label,
        command="probe (python3 -)",
        exit_status=result.exit_status,
        output=result.output,
        hint=_INSTALL_PYTHON,
    )


def problems(facts: DeviceFacts, name: str = "NAME", *, need_torch: bool = True) -> list[Problem]:
    """What keeps participants from running with ``facts``; empty when the device is ready."""
    found: list[Problem] = []
    if facts.python_tuple < MIN_PYTHON:
        found.append(
            Problem(f"Python {facts.python or '?'} is too old: participants need 3.10+", _INSTALL_PYTHON)
        )
        return found
    if need_torch and facts.torch is None:
        why = f" ({facts.torch_error})" if facts.torch_error else ""
        found.append(
            Problem(
                f"torch is not installed for {facts.python_path}{why}",
                f"Run 'splittracer device setup {name}' to install it in the device's runtime "
                "(on a Jetson, install NVIDIA's torch wheel system-wide first; the runtime reuses it).",
            )
        )
    if facts.splittracer != __version__:
        have = f"version {facts.splittracer}" if facts.splittracer else "not installed"
        found.append(
            Problem(
                f"splittracer {__version__} is needed on the device ({have})",
                f"Run 'splittracer device setup {name}'.",
            )
        )
    return found


def require_ready(device: Device, facts: DeviceFacts, *, need_torch: bool = True) -> None:
    """DeviceNotReady naming the first problem, if any."""
    found = problems(facts, device.name, need_torch=need_torch)
    if found:
        raise not_ready(device, found)


def not_ready(device: Device, found: list[Problem]) -> DeviceNotReady:
    """The error for a device with ``found`` problems: the first one's hint, every message."""
    extra = "".join(f"\nalso: {p.message}" for p in found[1:])
    return DeviceNotReady(
        f"not ready: {found[0].message}{extra}", host=Target.of(device).label, hint=found[0].hint
    )


def check_device(registry: Registry, name: str, timeout: float = 10.0) -> tuple[Device, list[Problem]]:
    """Connect, probe, store the facts; the updated device and what it still lacks."""
    device = registry.get(name)

    async def go() -> DeviceFacts:
        target = Target.of(device)
        conn = await connect(target, keys=_keys(device), timeout=timeout)
        try:
            return await probe(conn, target, device.python)
        finally:
            conn.close()

    facts = asyncio.run(go())
    device = registry.put(device.model_copy(update={"facts": facts, "last_seen": utcnow()}))
    return device, problems(facts, name)


def check_all(devices: list[Device], timeout: float = LS_TIMEOUT_S) -> list[DeviceStatus]:
    """Every device's status, checked in parallel; one slow or broken device never delays the rest."""
    if not devices:
        return []

    async def go() -> list[DeviceStatus]:
        return list(await asyncio.gather(*(_status(d, timeout) for d in devices)))

    return asyncio.run(go())


async def _status(device: Device, timeout: float) -> DeviceStatus:
    target = Target.of(device)
    found = tuple(problems(device.facts, device.name)) if device.facts else ()
    try:
        conn = await asyncio.wait_for(connect(target, keys=_keys(device), timeout=timeout), timeout + 0.5)
    except DeviceError as exc:
        return failed_status(device, exc, found)
    except (asyncio.TimeoutError, TimeoutError):
        why = f"no SSH answer within {timeout:g} s"
        return DeviceStatus(device, False, why, found, device.last_seen, NO_ANSWER)
    conn.close()
    return DeviceStatus(device, True, None, found, utcnow())


def failed_status(device: Device, exc: DeviceError, found: tuple[Problem, ...] = ()) -> DeviceStatus:
    """The status of a device whose login failed with ``exc``: answered or not, and why."""
    login = _LOGIN_OF.get(type(exc), LOGIN_FAILED)
    answered = login != NO_ANSWER
    seen = utcnow() if answered else device.last_seen
    return DeviceStatus(device, answered, exc.message, found, seen, login, exc.hint)


_LOGIN_OF: dict[type[DeviceError], str] = {
    Unreachable: NO_ANSWER,
    AuthenticationFailed: LOGIN_KEY_REFUSED,
    HostKeyChanged: LOGIN_HOST_KEY_CHANGED,
}


def _keys(device: Device) -> tuple[Path, ...]:
    return (device.key,) if device.key else ()


_INSTALL_PYTHON = (
    "Install Python 3.10 or newer on the device (Debian/Raspberry Pi OS 12+: 'sudo apt install python3 "
    "python3-venv'; older systems: the deadsnakes PPA, pyenv or conda), or name an interpreter with "
    "'python:' in the device's registry entry; then run 'splittracer device setup NAME'."
)
