"""``device setup``: the runtime participants run in, on the device, made or brought up to date.

The runtime is a virtual environment at ``~/.splittracer/venv`` made with
``--system-site-packages``, so a torch that is already installed system-wide
(NVIDIA's wheel on a Jetson, a distribution package) is reused instead of
downloaded again. Into it go torch (unless present or skipped) and this
controller's own splittracer: from a source checkout a wheel is built here
and uploaded, otherwise the same version is installed from the package
index. Every step checks first and does nothing when already done, so
running setup twice changes nothing the second time.

Offline (``offline=True``, ``device setup --offline``) the device never
reaches the network: the controller uploads the splittracer wheel and wheels
for whatever requirement the device lacks (:mod:`.wheels`), and pip installs
from them alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import asyncssh

from ..version import __version__
from .errors import DeviceError, DeviceNotReady
from .probe import _INSTALL_PYTHON, MIN_PYTHON, RUNTIME_DIR, probe, select_python
from .registry import Device, Registry, utcnow
from .ssh import Target, connect, quote, remote_home, run
from .wheels import (
    INSTALLED_SCRIPT,
    TAGS_SCRIPT,
    find_wheel,
    missing_requirements,
    parse_installed,
    wheels_for,
)

__all__ = ["Offline", "SetupReport", "SetupStep", "setup_device", "source_checkout"]

VENV = f"{RUNTIME_DIR}/venv"
MARKER = "splittracer-source.txt"  # in the venv: what was installed, to skip reinstalling
INSTALL_TIMEOUT_S = 3600.0
TORCH_PACKAGES = ("torch", "torchvision")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SetupStep:
    """One step of setup: what it is, whether it changed anything, and a detail for the user."""

    name: str
    changed: bool
    detail: str


@dataclass(frozen=True)
class Offline:
    """Install without the device reaching a package index; ``wheels``: a wheelhouse to take them from."""

    wheels: Path | None = None


@dataclass(frozen=True)
class SetupReport:
    """The device after setup (facts re-probed) and what each step did."""

    device: Device
    steps: list[SetupStep]


def setup_device(
    registry: Registry,
    name: str,
    *,
    torch: bool = True,
    progress: Progress | None = None,
    timeout: float = 10.0,
    offline: Offline | None = None,
) -> SetupReport:
    """Create or update device ``name``'s runtime; its re-probed facts go into ``registry``.

    With ``offline`` every package comes from wheels this machine uploads (see :mod:`.wheels`).
    """
    device = registry.get(name)
    setup = _Setup(device, torch, progress or (lambda _: None), timeout)
    setup.offline = offline
    report = asyncio.run(setup.run())
    registry.put(report.device)
    return report


def source_checkout() -> Path | None:
    """The repository this splittracer runs from, when it is a source checkout (not an installed wheel)."""
    root = Path(__file__).resolve().parents[3]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "splittracer"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def source_digest(root: Path) -> str:
    """A hash of everything that goes into the wheel: same digest, same code on the device."""
    digest = hashlib.sha256(__version__.encode())
    for path in _source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


class _Setup:
    def __init__(self, device: Device, torch: bool, progress: Progress, timeout: float) -> None:
        self.device, self.torch, self.progress, self.timeout = device, torch, progress, timeout
        self.target = Target.of(device)
        self.steps: list[SetupStep] = []
        self.offline: Offline | None = None

    async def run(self) -> SetupReport:
        self.progress(f"connecting to {self.target.label}")
        keys = (self.device.key,) if self.device.key else ()
        async with await connect(self.target, keys=keys, timeout=self.timeout) as conn:
            self.conn = conn
            self.home = await remote_home(conn, self.target)
            self.venv_python = f"{self.home}/{VENV}/bin/python"
            await self._venv(await self._system_python())
            await self._torch()
            await self._splittracer()
            self.progress("probing the runtime")
            facts = await probe(conn, self.target, self.device.python)
        device = self.device.model_copy(update={"facts": facts, "last_seen": utcnow()})
        return SetupReport(device, self.steps)

    async def _sh(self, command: str, *, label: str | None = None, timeout: float = 300.0) -> str:
        return (await run(self.conn, self.target, command, label=label, timeout=timeout)).stdout.strip()

    def _done(self, name: str, changed: bool, detail: str) -> None:
        self.steps.append(SetupStep(name, changed, detail))

    async def _system_python(self) -> str:
        self.progress("finding Python 3.10+")
        command = f'{select_python(self.device.python, runtime=False)}; "$py" -c {quote(_VERSION_SCRIPT)}'
        result = await run(self.conn, self.target, command, check=False, label="python3 --version")
        fields = result.stdout.split()
        version = tuple(int(v) for v in fields[0].split(".")) if result.exit_status == 0 and fields else (0,)
        if version < MIN_PYTHON:
            found = ".".join(map(str, version)) if version != (0,) else "none"
            raise DeviceNotReady(
                f"Python 3.10+ is needed to make the runtime (found: {found})",
                host=self.target.label,
                hint=_INSTALL_PYTHON,
            )
        self._done("python", False, f"{fields[1]} ({fields[0]})")
        return fields[1]

    async def _venv(self, python: str) -> None:
        venv = f"{self.home}/{VENV}"
        check = f"[ -x {quote(self.venv_python)} ] && {quote(self.venv_python)} -c {quote(_VERSION_SCRIPT)}"
        have = await run(self.conn, self.target, check, check=False, label="check the runtime")
        want = await self._sh(f"{quote(python)} -c {quote(_VERSION_SCRIPT)}")
        if have.exit_status == 0 and have.stdout.split()[:1] == want.split()[:1]:
            self._done("venv", False, f"{venv} is up to date")
            return
        self.progress(f"creating the runtime {venv}")
        command = f"{quote(python)} -m venv --clear --system-site-packages {quote(venv)}"
        result = await run(self.conn, self.target, command, check=False, timeout=600.0)
        if result.exit_status != 0:
            raise DeviceError(
                "cannot create the runtime's virtual environment",
                host=self.target.label,
                command=command,
                exit_status=result.exit_status,
                output=result.output,
                hint="On Debian, Ubuntu and Raspberry Pi OS install the venv module: "
                "'sudo apt install python3-venv'.",
            )
        self._done("venv", True, f"created {venv}")

    async def _torch(self) -> None:
        import_torch = f"{quote(self.venv_python)} -c 'import torch; print(torch.__version__)'"
        have = await run(self.conn, self.target, import_torch, check=False, timeout=300.0)
        if have.exit_status == 0:
            self._done("torch", False, f"torch {have.stdout.strip()} is installed")
        elif not self.torch:
            self._done("torch", False, "skipped (--no-torch)")
        elif self.offline is not None:
            self._done("torch", False, "missing: installed from the uploaded wheels with splittracer")
        else:
            self.progress("installing torch (this can take a while)")
            await self._pip("install", *TORCH_PACKAGES, label="pip install torch torchvision")
            version = await self._sh(import_torch)
            self._done("torch", True, f"installed torch {version}")

    async def _splittracer(self) -> None:
        root = source_checkout()
        wanted = f"{__version__} {source_digest(root)}" if root else __version__
        marker = f"{self.home}/{VENV}/{MARKER}"
        current = await run(self.conn, self.target, f"cat {quote(marker)}", check=False)
        if current.exit_status == 0 and current.stdout.strip() == wanted:
            self._done("splittracer", False, f"splittracer {__version__} is up to date")
            return
        if self.offline is not None:
            await self._install_offline(root, self.offline)
        elif root is None:
            self.progress(f"installing splittracer {__version__} from the package index")
            await self._pip("install", "--no-deps", f"splittracer=={__version__}")
            await self._pip("install", *installed_requirements(torch=self.torch))
        else:
            await self._install_wheel(root)
        await self._sh(f"printf '%s\\n' {quote(wanted)} > {quote(marker)}")
        self._done(
            "splittracer", True, f"installed splittracer {__version__}" + (" (source)" if root else "")
        )

    async def _install_wheel(self, root: Path) -> None:
        self.progress("building a wheel of this checkout")
        with tempfile.TemporaryDirectory(prefix="splittracer-wheel-") as tmp:
            wheel = build_wheel(root, Path(tmp))
            requirements = wheel_requirements(wheel, torch=self.torch)
            remote_dir = f"{self.home}/{RUNTIME_DIR}/wheels"
            remote = f"{remote_dir}/{wheel.name}"
            self.progress(f"uploading {wheel.name}")
            try:
                async with self.conn.start_sftp_client() as sftp:
                    await sftp.makedirs(remote_dir, exist_ok=True)
                    await sftp.put(str(wheel), remote)
            except (asyncssh.Error, OSError) as exc:
                raise DeviceError(f"uploading {wheel.name} failed: {exc}", host=self.target.label) from exc
        self.progress("installing splittracer and its dependencies")
        await self._pip(
            "install", "--no-deps", "--force-reinstall", remote, label=f"pip install {wheel.name}"
        )
        await self._sh(f"rm -rf {quote(remote_dir)}")
        await self._pip("install", *requirements, label="pip install (splittracer's dependencies)")

    async def _install_offline(self, root: Path | None, offline: Offline) -> None:
        with tempfile.TemporaryDirectory(prefix="splittracer-wheels-") as tmp:
            wheel = self._local_wheel(root, offline, Path(tmp))
            python, missing = await self._missing(wheel_requirements(wheel, torch=self.torch))
            tags = await self._tags() if missing and offline.wheels is None else []
            self.progress(f"gathering wheels for {', '.join(missing)}" if missing else "nothing else missing")
            deps = Path(tmp) / "deps"
            where = self.target.label
            extra = wheels_for(missing, deps, wheelhouse=offline.wheels, tags=tags, python=python, host=where)
            remote_dir = await self._upload([wheel, *extra])
        self.progress("installing from the uploaded wheels")
        local = ["--no-index", "--find-links", remote_dir]
        await self._pip("install", *local, "--no-deps", "--force-reinstall", f"{remote_dir}/{wheel.name}")
        if missing:
            await self._pip(
                "install", *local, *missing, label="pip install --no-index (what the device lacked)"
            )
        await self._sh(f"rm -rf {quote(remote_dir)}")

    async def _missing(self, requirements: list[str]) -> tuple[str, list[str]]:
        """The runtime's Python version and which of ``requirements`` it does not satisfy."""
        shown = await self._sh(f"{quote(self.venv_python)} -c {quote(INSTALLED_SCRIPT)}", label="pip list")
        python, installed = parse_installed(shown)
        return python, missing_requirements(requirements, installed, python)

    async def _tags(self) -> list[str]:
        """The wheel tags the device's pip accepts, most specific first."""
        shown = await self._sh(f"{quote(self.venv_python)} -c {quote(TAGS_SCRIPT)}", label="wheel tags")
        return [str(tag) for tag in json.loads(shown)]

    def _local_wheel(self, root: Path | None, offline: Offline, tmp: Path) -> Path:
        """This splittracer as a wheel: built from the checkout, else from the wheelhouse or downloaded."""
        if root is not None:
            self.progress("building a wheel of this checkout")
            return build_wheel(root, tmp)
        found = find_wheel(offline.wheels) if offline.wheels is not None else None
        if found is not None:
            return found
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(tmp)]
        subprocess.run([*command, f"splittracer=={__version__}", "--quiet"], capture_output=True, check=False)
        found = find_wheel(tmp)
        if found is None:
            raise DeviceError(
                f"no wheel of splittracer {__version__} to upload",
                host="localhost",
                hint=f"Put splittracer-{__version__}-*.whl in the folder you pass with --wheels.",
            )
        return found

    async def _upload(self, wheels: list[Path]) -> str:
        remote_dir = f"{self.home}/{RUNTIME_DIR}/wheels"
        self.progress(f"uploading {len(wheels)} wheel(s)")
        try:
            async with self.conn.start_sftp_client() as sftp:
                await sftp.makedirs(remote_dir, exist_ok=True)
                for wheel in wheels:
                    await sftp.put(str(wheel), f"{remote_dir}/{wheel.name}")
        except (asyncssh.Error, OSError) as exc:
            raise DeviceError(f"uploading wheels failed: {exc}", host=self.target.label) from exc
        return remote_dir

    async def _pip(self, *args: str, label: str | None = None) -> None:
        command = " ".join([quote(self.venv_python), "-m", "pip", *map(quote, args)])
        command += " --disable-pip-version-check --no-input --quiet"
        await run(self.conn, self.target, command, label=label, timeout=INSTALL_TIMEOUT_S)


def build_wheel(root: Path, out: Path) -> Path:
    """A wheel of the checkout at ``root``, built from a clean copy (the checkout gets no build/)."""
    source = out / "src-copy"
    for path in _source_files(root):
        target = source / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    command += ["-w", str(out), str(source)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(out.glob("splittracer-*.whl"))
    if result.returncode != 0 or not wheels:
        raise DeviceError(
            "building a wheel of this checkout failed",
            host="localhost",
            command=" ".join(command[:6]) + " ...",
            exit_status=result.returncode,
            output=result.stdout + result.stderr,
            hint="Install the build backend: pip install 'setuptools>=68' wheel.",
        )
    return wheels[-1]


def wheel_requirements(wheel: Path, *, torch: bool = True) -> list[str]:
    """The wheel's own dependencies (no extras); torch and torchvision left out unless ``torch``."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(name).decode())
    return _runtime_requirements(metadata.get_all("Requires-Dist") or [], torch=torch)


def installed_requirements(*, torch: bool = True) -> list[str]:
    """The installed splittracer's dependencies, filtered as :func:`wheel_requirements` does."""
    return _runtime_requirements(importlib.metadata.requires("splittracer") or [], torch=torch)


def _runtime_requirements(requirements: list[str], *, torch: bool) -> list[str]:
    found = []
    for requirement in requirements:
        name = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
        if "extra ==" in requirement or name is None:
            continue
        if not torch and name.group(0).lower() in TORCH_PACKAGES:
            continue
        found.append(requirement)
    return found


def _source_files(root: Path) -> Iterator[Path]:
    for name in ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "MANIFEST.in"):
        if (root / name).is_file():
            yield root / name
    for path in sorted((root / "src").rglob("*")):
        skip = "__pycache__" in path.parts or any(p.endswith(".egg-info") for p in path.parts)
        if path.is_file() and not skip and path.suffix != ".pyc":
            yield path


_VERSION_SCRIPT = "import platform, sys; print(platform.python_version(), sys.executable)"
