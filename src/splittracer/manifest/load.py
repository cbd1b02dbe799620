"""Reading a manifest: YAML, schema, the checks that need no user code, then user code."""

from __future__ import annotations

from pathlib import Path

from ..config import LocatedYaml, load_typed, read_yaml
from ..errors import ConfigError
from .located import Where, error_at_key, unknown_hint
from .playbook import check_playbook_tasks
from .schema import _PARTICIPANT_NAME, Manifest
from .usercode import check_user_code

WORKSPACE_FILE = "splittracer.yaml"
"""The file that marks a workspace's root directory."""


def load_manifest(
    path: str | Path, *, check_code: bool = True, workspace: str | Path | None = None
) -> Manifest:
    """Read, validate and check a manifest; the first mistake raises ConfigError or UserCodeError.

    ``workspace`` is the directory holding the user's ``roles.py``/``tasks.py``;
    by default the nearest ancestor with a ``splittracer.yaml``, else the
    manifest's own directory. ``check_code=False`` skips importing user code
    and with it the checks of task names and parameters.
    """
    path = Path(path)
    text = _read_text(path)
    source = read_yaml(path, text)
    manifest = load_typed(Manifest, source, context={"base_dir": path.parent})
    _attach_source(manifest, source, text)
    _check_names(manifest, source)
    _check_playbook_participants(manifest, source)
    if check_code:
        check_user_code(manifest, Path(workspace) if workspace else _default_code_dir(path))
        check_playbook_tasks(manifest, source)
    return manifest


def find_workspace_root(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` holding a ``splittracer.yaml``."""
    start = start.resolve()
    for directory in (start, *start.parents):
        if (directory / WORKSPACE_FILE).is_file():
            return directory
    return None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(path)) from exc


def _attach_source(manifest: Manifest, source: LocatedYaml, text: str) -> None:
    manifest._source, manifest._text = source, text
    for participant, entries in manifest.playbook.items():
        for index, entry in enumerate(entries):
            entry._where = Where(source, ("playbook", participant, index))


def _default_code_dir(path: Path) -> Path:
    return find_workspace_root(path.parent) or path.parent.resolve()


# --- checks that need no user code -----------------------------------------------------------


def _check_names(manifest: Manifest, source: LocatedYaml) -> None:
    for name in manifest.participants:
        if not _PARTICIPANT_NAME.match(name):
            raise error_at_key(
                source,
                ("participants", name),
                f"participant name '{name}' is not an identifier",
                "Use letters, digits, '_' and '-', starting with a letter or '_' (e.g. CLIENT1).",
            )


def _check_playbook_participants(manifest: Manifest, source: LocatedYaml) -> None:
    for name in manifest.playbook:
        if name not in manifest.participants:
            raise error_at_key(
                source,
                ("playbook", name),
                f"the playbook names participant '{name}', which is not under 'participants'",
                unknown_hint(name, manifest.participants, "Participants"),
            )
