"""The public API, pinned: every name ``splittracer`` exports, with its signature.

A change to the API shows as a diff of ``public_api.txt``. After a deliberate
change, regenerate the file and commit it with the change::

    python -m tests.unit.test_public_api > tests/unit/public_api.txt
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

PINNED = Path(__file__).with_name("public_api.txt")
REGENERATE = "python -m tests.unit.test_public_api > tests/unit/public_api.txt"


def _signature(obj: Any) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):  # some builtins and special classes have none to show
        return "(...)"


def _own(cls: type) -> dict[str, Any]:
    """The members ``cls`` and its SplitTracer bases define (not those of object, Exception...)."""
    members: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        if base.__module__.split(".")[0] == "splittracer":
            members.update(vars(base))
    return members


def _member(owner: str, name: str, value: Any) -> str | None:
    function = getattr(value, "__func__", value)
    if name.startswith("_") or not getattr(function, "__module__", "splittracer").startswith("splittracer"):
        return None  # private, or added by a library (pydantic's model_post_init)
    if isinstance(value, property):
        return f"    {owner}.{name}: property"
    if isinstance(value, (classmethod, staticmethod)):
        return f"    {owner}.{name}{_signature(value.__func__)}  [{type(value).__name__}]"
    if inspect.isfunction(value):
        return f"    {owner}.{name}{_signature(value)}"
    return None  # class attributes and dataclass fields: the constructor's signature shows them


def _describe(name: str, obj: Any) -> list[str]:
    if inspect.isclass(obj):
        lines = [f"class {name}{_signature(obj)}"]
        for member, value in sorted(_own(obj).items()):
            line = _member(name, member, value)
            if line:
                lines.append(line)
        return lines
    if inspect.isfunction(obj):
        return [f"def {name}{_signature(obj)}"]
    if name == "__version__":
        return [f"{name}: str"]
    return [f"{name} = {obj!r}"]


def describe_api() -> list[str]:
    """One line per public name (and per public member of a class), sorted by name."""
    import splittracer

    lines: list[str] = []
    for name in sorted(splittracer.__all__):
        lines.extend(_describe(name, getattr(splittracer, name)))
    return lines


def test_every_exported_name_resolves():
    import splittracer

    missing = [name for name in splittracer.__all__ if not hasattr(splittracer, name)]
    assert not missing, missing
    assert set(dir(splittracer)) >= set(splittracer.__all__)


def test_public_api_matches_the_pinned_list():
    pinned = PINNED.read_text().splitlines()
    current = describe_api()
    if current != pinned:
        import difflib

        diff = "\n".join(difflib.unified_diff(pinned, current, "public_api.txt", "splittracer", lineterm=""))
        raise AssertionError(
            f"the public API changed:\n{diff}\n\nIf that is intended, regenerate the list with\n"
            f"    {REGENERATE}\nand commit it with the change."
        )


def test_the_pin_sees_names_and_signatures():
    """Guards the pin itself: a describer that drops names or signatures would pass vacuously."""
    text = "\n".join(describe_api())
    assert "class Experiment(workspace: 'Workspace', manifest: 'Manifest', model_files" in text
    assert "    Experiment.run(self, **overrides: 'object') -> 'RunResult'" in text
    assert "class Sweep(" in text and "class SplitHead(" in text and "class RunFailedError(" in text


if __name__ == "__main__":
    print("\n".join(describe_api()))
