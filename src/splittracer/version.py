"""The package's version, in a module of its own so every layer can read it without the public API;
and the installed torch's, read without importing torch."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path

__version__ = "0.1.0"

_VERSION_LINE = re.compile(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", re.M)


def torch_version() -> str:
    """The installed torch's ``torch.__version__`` (``2.14.1+cu130``), without importing torch.

    The controller records it with every run; importing torch for it would
    cost seconds before each run's first inference. torch writes its version,
    build tag included, to ``torch/version.py``; where that cannot be read,
    the package metadata's version (without the tag), and ``none`` where
    torch is not installed.
    """
    spec = importlib.util.find_spec("torch")
    if spec is None:
        return "none"
    for folder in spec.submodule_search_locations or []:
        try:
            found = _VERSION_LINE.search((Path(folder) / "version.py").read_text())
        except OSError:
            continue
        if found:
            return found.group(1)
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "none"
