"""Placements: which layers run on the first device, as a user names them.

A placement for two devices is the set of layers the first device runs. It
must be closed under data dependencies: every layer it holds reads only
values made by its own layers, the model's input or parameters. The second
device runs the rest; what crosses is every value made on the first device
(or the input) that the second reads (see :func:`.layers.crossing`). The cut
after layer ``k`` is the placement of layers ``1..k``.

A user writes the first device's layers as indices, ranges and names, e.g.
``0-5,layer3.0`` (0 is the input, always on the first device; a name that
is no layer's own but the start of some, like ``layer3``, means all of
them), as a list of those (JSON or YAML), or as a mapping whose ``first``
holds them (``second``, when given, must be the rest), inline or in a file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any, NoReturn, TypeAlias

import yaml

from ..config import did_you_mean
from ..errors import ConfigError, SplitError
from .layers import LayerGraph
from .parts import compact

__all__ = ["PlacementSpec", "check_closed", "closure", "layer_set", "named_ranges", "read_placement", "reads"]

PlacementSpec: TypeAlias = str | Sequence[int | str] | Mapping[str, Any]
_INSPECT = "Run 'splittracer model inspect' to see the layers' indices and names."


def read_placement(text: str) -> PlacementSpec:
    """A placement from the command line: a YAML or JSON file, inline JSON, or ``0-5,layer3.0``."""
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            return _spec(json.loads(stripped), None)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"the placement is not valid JSON: {exc.msg} (column {exc.colno})") from None
    path = Path(stripped)
    if stripped.endswith((".yaml", ".yml", ".json")) or _is_file(path):
        return _spec(_load_file(path), str(path))
    return stripped


def layer_set(spec: PlacementSpec, names: Sequence[str]) -> frozenset[int]:
    """The first device's layers (1-based) that ``spec`` names, for a model with these layer names."""
    if isinstance(spec, Mapping):
        return _from_mapping(spec, names)
    items: Sequence[int | str] = spec.split(",") if isinstance(spec, str) else spec
    chosen: set[int] = set()
    for item in items:
        chosen |= _resolve(item, names)
    return frozenset(chosen - {0})


def check_closed(graph: LayerGraph, first: AbstractSet[int]) -> None:
    """Raise a SplitError naming the first layer of ``first`` that reads a value made outside it."""
    for node in graph.nodes:
        own = graph.layer_of[node]
        if own not in first:
            continue
        for arg in node.all_input_nodes:
            made = graph.layer_of.get(arg)  # None: a parameter or constant
            if made is not None and made != 0 and made != own and made not in first:
                raise SplitError(
                    f"layer {own} ({graph.names[own - 1]}) is placed on the first device but reads "
                    f"'{arg.name}' from layer {made} ({graph.names[made - 1]}), which is not: the first "
                    "device's layers must hold every layer they read from",
                    hint=f"Add layer {made} to the placement, or leave out layer {own}; the least "
                    f"placement holding these layers is {compact(closure(graph, first))}.",
                )


def reads(graph: LayerGraph) -> dict[int, frozenset[int]]:
    """For every layer, the other layers whose values it reads (the input, layer 0, left out)."""
    found: dict[int, set[int]] = {i: set() for i in range(1, graph.count + 1)}
    for node in graph.nodes:
        own = graph.layer_of[node]
        for arg in node.all_input_nodes:
            made = graph.layer_of.get(arg)
            if made is not None and made not in (0, own):
                found[own].add(made)
    return {i: frozenset(made) for i, made in found.items()}


def closure(graph: LayerGraph, layers: Iterable[int]) -> frozenset[int]:
    """``layers`` and every layer they read from, directly or not: the least placement holding them."""
    needs = reads(graph)
    todo = [i for i in layers if i != 0]
    held: set[int] = set()
    while todo:
        i = todo.pop()
        if i not in held:
            held.add(i)
            todo.extend(needs[i])
    return frozenset(held)


def named_ranges(indices: Iterable[int], names: Sequence[str]) -> str:
    """Layers as ranges with the names at their ends: ``1-4 (conv1..maxpool), 22 (layer2.0.downsample.0)``."""
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(_run(run, names) for run in runs) or "none"


def _run(run: list[int], names: Sequence[str]) -> str:
    if len(run) == 1:
        return f"{run[0]} ({names[run[0] - 1]})"
    return f"{run[0]}-{run[-1]} ({names[run[0] - 1]}..{names[run[-1] - 1]})"


def _from_mapping(spec: Mapping[str, Any], names: Sequence[str]) -> frozenset[int]:
    if "first" not in spec:
        raise SplitError(
            "a placement mapping needs 'first' (the first device's layers); "
            f"it has {', '.join(map(str, spec)) or 'nothing'}",
            hint='Write e.g. {"first": "0-5,layer3.0"}.',
        )
    first = layer_set(_items(spec["first"]), names)
    if spec.get("second") is not None:
        _check_second(first, layer_set(_items(spec["second"]), names), names)
    return first


def _check_second(first: frozenset[int], second: frozenset[int], names: Sequence[str]) -> None:
    for i in range(1, len(names) + 1):
        if (i in first) == (i in second):
            where = "both devices" if i in first else "neither device"
            raise SplitError(
                f"layer {i} ({names[i - 1]}) is placed on {where}",
                hint="'second' may be left out: it is every layer not in 'first'.",
            )


def _items(value: Any) -> PlacementSpec:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, list) and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        return value
    raise SplitError(f"a placement's layers are indices, ranges or names, not {value!r}")


def _resolve(item: int | str, names: Sequence[str]) -> set[int]:
    if isinstance(item, bool) or not isinstance(item, (int, str)):
        raise SplitError(f"a placement's layers are indices, ranges or names, not {item!r}")
    if isinstance(item, int):
        return {_index(item, names)}
    token = item.strip()
    if not token:
        return set()
    if token in names:
        return {names.index(token) + 1}
    if token.isdigit():
        return {_index(int(token), names)}
    return _range(token, names) or _prefix(token, names) or _unknown(token, names)


def _range(token: str, names: Sequence[str]) -> set[int]:
    """``a-b`` with indices or names at both ends (names may hold '-' too)."""
    for match in re.finditer("-", token):
        low, high = token[: match.start()].strip(), token[match.end() :].strip()
        ends = [_end(low, names), _end(high, names)]
        if ends[0] is not None and ends[1] is not None:
            if ends[0] > ends[1]:
                raise SplitError(f"the range '{token}' runs backwards", hint="Write the lower layer first.")
            return set(range(ends[0], ends[1] + 1))
    return set()


def _end(text: str, names: Sequence[str]) -> int | None:
    if text.isdigit():
        return _index(int(text), names)
    return names.index(text) + 1 if text in names else None


def _prefix(token: str, names: Sequence[str]) -> set[int]:
    return {i for i, name in enumerate(names, start=1) if name.startswith((token + ".", token + "#"))}


def _unknown(token: str, names: Sequence[str]) -> NoReturn:
    raise SplitError(
        f"the placement names layer '{token}', but the model has no layer of that name",
        hint=did_you_mean(token, names) or _INSPECT,
    )


def _index(i: int, names: Sequence[str]) -> int:
    if not 0 <= i <= len(names):
        raise SplitError(
            f"the placement names layer {i}, but this model has {len(names)} layers "
            f"(1..{len(names)}; 0 is the input)",
            hint=_INSPECT,
        )
    return i


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a long range list is no file name
        return False


def _load_file(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the placement: {exc.strerror}", path=str(path)) from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise ConfigError(
            "the placement is not valid YAML or JSON", path=str(path), line=None if line is None else line + 1
        ) from None


def _spec(raw: Any, path: str | None) -> PlacementSpec:
    if isinstance(raw, (str, list, dict)):
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        return [raw]
    raise ConfigError(
        "a placement is a list of layers, a mapping with 'first', or a string like '0-5,layer3.0'",
        path=path,
    )
