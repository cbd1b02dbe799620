"""What a run needs to be repeated: the manifest it ran and a fingerprint of the code.

A run stores its manifest text, and here the SHA-256 of every file of user
code it depended on (the workspace's ``roles.py`` and ``tasks.py``, each
role's module, the model override) plus the packages' versions. A rerun
compares the fingerprint with the code of today and says what changed.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

from ..manifest import Manifest


def code_fingerprint(manifest: Manifest, workspace: Path | None) -> dict[str, str]:
    """SHA-256 of each file of user code ``manifest`` runs, keyed by a readable name."""
    files: dict[str, Path] = {}
    if workspace is not None:
        for name in ("roles.py", "tasks.py"):
            if (workspace / name).is_file():
                files[name] = workspace / name
    for participant in manifest.participants.values():
        module = participant.role.partition(":")[0]
        origin = _module_file(module)
        if origin is not None:
            files.setdefault(module, origin)
        if participant.model is not None and participant.model.override is not None:
            files[f"override ({participant.name})"] = Path(participant.model.override)
    if manifest.model is not None and manifest.model.override is not None:
        files["override"] = Path(manifest.model.override)
    return {name: _sha256(path) for name, path in sorted(files.items()) if path.is_file()}


def changed_code(before: dict[str, Any], now: dict[str, str]) -> list[str]:
    """Names whose fingerprint differs between a stored run and today."""
    return sorted(name for name in set(before) | set(now) if before.get(name) != now.get(name))


def _module_file(module: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin else None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
