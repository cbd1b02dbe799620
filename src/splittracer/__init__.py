"""SplitTracer: cooperative-inference and split-computing experiments on real edge devices.

The names here are the public API; everything else may change between
releases. Heavy modules (torch) load on first use of a name, not at import.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import SplitTracerError

__version__ = "0.1.0"

_LAZY = {
    "SplitModel": "splittracer.split",
    "Granularity": "splittracer.split",
    "load_split_model": "splittracer.split.load",
    "load_model": "splittracer.models",
    "profile_layers": "splittracer.split.profile",
    "verify_splits": "splittracer.split.profile",
}

__all__ = ["SplitTracerError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'splittracer' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)
