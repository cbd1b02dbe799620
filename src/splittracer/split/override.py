"""YAML overrides for models where automatic capture fails or needs steering.

Example (every key optional)::

    granularity: block            # leaf | block | depth=N
    capture: [export, fx]         # capture methods to try, in order
    groups:                       # merge modules into one named layer each
      stem: [conv1, bn1, relu, maxpool]
    splits: [0, stem, layer2, 14] # allowed split points: indices or layer names
    sequence: [backbone, neck, head]  # explicit chain of modules, no tracing
    batch: dynamic                # parts run any batch size (default: the example's)

``sequence`` is the explicit placement for models nothing can trace: the
listed modules run one after another, each on the previous one's output,
with functional steps between them where the forward has glue
(``- flatten: 1``, ``- reshape: [-1, 256]``, ``- call: pkg.mod:fn``; see
:mod:`.sequence`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, field_validator

from ..config import LocatedYaml, Strict, load_typed, read_yaml
from ..errors import ConfigError
from .capture import METHODS
from .layers import Granularity
from .sequence import Step, parse_step


def _step_item(item: str | dict[str, Any]) -> str | dict[str, Any]:
    parse_step(item)  # a ValueError names what is wrong with this one item
    return item


SequenceItem = Annotated[str | dict[str, Any], AfterValidator(_step_item)]


class SplitOverride(Strict):
    """A validated override file."""

    granularity: str | None = None
    capture: list[str] | None = None
    groups: dict[str, list[str]] | None = None
    splits: list[int | str] | None = None
    sequence: list[SequenceItem] | None = None
    batch: Literal["fixed", "dynamic"] = "fixed"

    @field_validator("granularity")
    @classmethod
    def _known_granularity(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                Granularity.parse(value)
            except Exception as exc:
                raise ValueError("expected leaf, block or depth=N") from exc
        return value

    @field_validator("capture")
    @classmethod
    def _known_methods(cls, value: list[str] | None) -> list[str] | None:
        for method in value or []:
            if method not in METHODS:
                raise ValueError(f"unknown capture method '{method}', expected one of {METHODS}")
        return value

    def steps(self) -> list[Step] | None:
        """The ``sequence``, parsed (None when the override has none)."""
        return None if self.sequence is None else [parse_step(item) for item in self.sequence]


def load_override(path: str | Path) -> tuple[SplitOverride, LocatedYaml]:
    """Read and validate an override file; errors name file, line and key."""
    source = read_yaml(path)
    if source.data is None:
        raise ConfigError("the override file is empty", path=str(path))
    return load_typed(SplitOverride, source), source
