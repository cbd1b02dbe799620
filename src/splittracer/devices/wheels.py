"""Wheels the controller provides to a device that cannot reach a package index (``device setup --offline``).

The device says what it has (every installed distribution the runtime sees,
and the wheel tags its pip accepts); the controller works out which of
splittracer's requirements are missing there and brings wheels for them:
from a wheelhouse the user names (``--wheels DIR``), else downloaded here
with ``pip download`` for the device's platform and Python (which reuses
this machine's pip cache). They are uploaded over SFTP and installed with
``pip install --no-index``: the device never goes to the network.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..version import __version__
from .errors import DeviceError

__all__ = [
    "INSTALLED_SCRIPT",
    "TAGS_SCRIPT",
    "download_command",
    "find_wheel",
    "missing_requirements",
    "parse_installed",
    "wheels_for",
]

# Run with the runtime's Python on the device: what it can import, and which wheels its pip accepts.
INSTALLED_SCRIPT = (
    "import json, importlib.metadata as m, platform\n"
    "found = {d.metadata['Name']: d.version for d in m.distributions() if d.metadata['Name']}\n"
    "print(json.dumps({'python': platform.python_version(), 'installed': found}))\n"
)
TAGS_SCRIPT = (
    "import json\n"
    "from pip._vendor.packaging.tags import sys_tags\n"
    "print(json.dumps([str(t) for t in sys_tags()]))\n"
)
DOWNLOAD_TIMEOUT_S = 3600.0


def parse_installed(output: str) -> tuple[str, dict[str, str]]:
    """The device's Python version and its installed distributions (canonical names) from
    :data:`INSTALLED_SCRIPT`'s output."""
    data = json.loads(output.strip().splitlines()[-1])
    installed = {str(canonicalize_name(name)): str(version) for name, version in data["installed"].items()}
    return str(data["python"]), installed


def missing_requirements(requirements: Iterable[str], installed: dict[str, str], python: str) -> list[str]:
    """The requirements that ``installed`` (canonical name -> version) does not satisfy on a
    device whose Python is ``python``; those whose marker excludes that Python are left out."""
    environment = {"python_version": ".".join(python.split(".")[:2]), "python_full_version": python}
    missing = []
    for text in requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            missing.append(text)
            continue
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        have = installed.get(canonicalize_name(requirement.name))
        if have is None or not requirement.specifier.contains(have, prereleases=True):
            missing.append(text)
    return missing


def download_command(requirements: list[str], dest: Path, tags: list[str], python: str) -> list[str]:
    """``pip download`` of binary wheels of ``requirements`` (and what they need) for a device
    whose pip accepts ``tags`` (``cp311-cp311-manylinux_2_17_x86_64`` ...) and runs ``python``."""
    parts = [tag.split("-") for tag in tags if tag.count("-") == 2]
    platforms = _unique(p[2] for p in parts)
    abis = _unique(p[1] for p in parts)
    command = [sys.executable, "-m", "pip", "download", "--dest", str(dest), "--only-binary=:all:"]
    command += ["--python-version", ".".join(python.split(".")[:2]), "--implementation", "cp"]
    command += [f"--platform={p}" for p in platforms] + [f"--abi={a}" for a in abis]
    return [*command, "--disable-pip-version-check", "--no-input", "--quiet", *requirements]


def find_wheel(directory: Path, name: str = "splittracer", version: str = __version__) -> Path | None:
    """The wheel of ``name`` ``version`` in ``directory``, if there is one."""
    found = sorted(directory.glob(f"{name}-{version}-*.whl"))
    return found[-1] if found else None


def wheels_for(
    missing: list[str], dest: Path, *, wheelhouse: Path | None, tags: list[str], python: str, host: str
) -> list[Path]:
    """The wheels to upload for ``missing``: the whole ``wheelhouse`` when given (pip picks what it
    needs there), else those ``pip download`` fetches into ``dest``."""
    if wheelhouse is not None:
        return sorted(wheelhouse.glob("*.whl"))
    if not missing:
        return []
    command = download_command(missing, dest, tags, python)
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=DOWNLOAD_TIMEOUT_S)
    if result.returncode != 0:
        raise DeviceError(
            f"cannot download wheels for the device's platform: {', '.join(missing)}",
            host=host,
            command="pip download " + " ".join(missing),
            exit_status=result.returncode,
            output=result.stdout + result.stderr,
            hint="Give the wheels yourself: put them in a folder and pass '--wheels DIR' "
            "(for example 'pip download --dest DIR --platform ... --python-version ...' on a "
            "machine that has the network), or install what is missing on the device first.",
        )
    return sorted(dest.glob("*.whl"))


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
