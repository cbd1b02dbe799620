"""Importing a workspace's user code: its ``tasks.py`` and every participant's role."""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import KeyPath
from ..errors import SplitTracerError, UserCodeError
from .located import dotted
from .schema import Manifest, Participant

if TYPE_CHECKING:  # roles import torch: loaded only when the code is checked
    from ..roles import Role


def check_user_code(manifest: Manifest, workspace_dir: str | Path) -> dict[str, type[Role]]:
    """Import the workspace's ``tasks.py`` and every participant's role; name -> role class.

    Raises UserCodeError naming the participant, the manifest line of its
    ``role:`` and what was found instead of a Role subclass.
    """
    workspace = Path(workspace_dir).resolve()
    with on_sys_path(workspace):
        _import_workspace_tasks(workspace)
        return {name: _load_role(manifest, p, workspace) for name, p in manifest.participants.items()}


def _import_workspace_tasks(workspace: Path) -> None:
    file = workspace / "tasks.py"
    if not file.is_file():
        return
    _forget_foreign("tasks", workspace)
    try:
        importlib.import_module("tasks")
    except SplitTracerError as exc:
        raise UserCodeError(f"{file}: {exc.message}", hint=exc.hint) from exc
    except Exception as exc:
        raise UserCodeError(f"importing {file} failed: {exc!r}") from exc


def _load_role(manifest: Manifest, participant: Participant, workspace: Path) -> type[Role]:
    from ..models import import_object
    from ..roles import Role

    module, _, attr = participant.role.partition(":")
    where = where_text(manifest, ("participants", participant.name, "role"))
    _forget_foreign(module.split(".")[0], workspace)
    try:
        found = import_object(module, attr)
    except UserCodeError as exc:
        missing_module = isinstance(exc.__cause__, ModuleNotFoundError)
        raise UserCodeError(
            f"{where}: participant '{participant.name}' cannot load role '{participant.role}': {exc.message}",
            hint=_module_hint(module, workspace) if missing_module else exc.hint,
        ) from exc
    if not (isinstance(found, type) and issubclass(found, Role)):
        raise UserCodeError(
            f"{where}: participant '{participant.name}' has role '{participant.role}', which is "
            f"{_describe(found)}, not a subclass of splittracer.roles.Role",
            hint=f"Name a class written as: class {attr.split('.')[-1]}(Role) with @handles methods.",
        )
    if participant.handlers > 1 and not found.parallel:
        key = "workers" if participant.workers > 1 else "batch"
        raise UserCodeError(
            f"{where_text(manifest, ('participants', participant.name, key))}: participant "
            f"'{participant.name}' asks for {participant.handlers} workers, but role '{participant.role}' "
            "handles one task at a time",
            hint="Drop 'workers', or set 'parallel = True' on a role whose handlers may run at once.",
        )
    return found


@contextlib.contextmanager
def on_sys_path(directory: Path) -> Iterator[None]:
    """Put ``directory`` first on sys.path while user code is imported."""
    entry = str(directory)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def _forget_foreign(top: str, workspace: Path) -> None:
    """Drop a cached module ``top`` loaded from elsewhere when this workspace has its own."""
    if not ((workspace / f"{top}.py").is_file() or (workspace / top).is_dir()):
        return
    file = getattr(sys.modules.get(top), "__file__", None)
    if file and not Path(file).resolve().is_relative_to(workspace):
        for name in [n for n in sys.modules if n == top or n.startswith(f"{top}.")]:
            del sys.modules[name]


def _module_hint(module: str, workspace: Path) -> str:
    return (
        f"Looked for '{module}' in the workspace {workspace} and in the installed packages. "
        f"A workspace file roles.py is named as roles:MyRole."
    )


def _describe(found: object) -> str:
    if isinstance(found, type):
        return f"the class {found.__module__}.{found.__qualname__}"
    if callable(found):
        return f"the {type(found).__name__} {getattr(found, '__qualname__', found)!s}"
    return f"a {type(found).__name__} value ({found!r:.40})"


def where_text(manifest: Manifest, key: KeyPath) -> str:
    line = manifest.line_of(key)
    path = f"{manifest.path}:{line}" if line else str(manifest.path or "<manifest>")
    return f"{path}, key '{dotted(key)}'"
