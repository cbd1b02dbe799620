"""Package exports imported on first use, so importing a package costs only what is used.

``splittracer.split``, ``splittracer.plan`` and ``splittracer.builtin`` export
names whose modules import torch. The controller imports those packages for
a few torch-free names (a task type, a split-point check, a planner
constant); importing every export up front made each ``splittracer run``
pay torch's import (1.5 s and more) before its first inference. A package's
``__getattr__`` (PEP 562) built here imports an export's module the first
time the name is read; type checkers see the same names through the
package's ``if TYPE_CHECKING:`` imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` for ``package``: ``exports`` maps a name to its
    module (``.capture``). ``dir()`` lists the exports not yet imported too, so a did-you-mean
    hint built from it (a misspelt role) still offers them."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # later reads find it without coming here
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
