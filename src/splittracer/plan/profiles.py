"""Device profiles: per-layer latencies of models measured on one device, stored as JSON.

A profile is named (``local-1t``, ``pi4``, ``cloud``) and records, for each
model it measured, every layer's median time together with the layer's
units and their features (:mod:`splittracer.plan.features`). The features
are computed where the model is captured (the controller); only the
timings come from the device, so a remote device fills the same format.

Profiles live in the workspace (``results/profiles/NAME.json``) or, outside
one, in ``$SPLITTRACER_CONFIG_DIR/profiles`` (default
``$XDG_CONFIG_HOME/splittracer`` or ``~/.config/splittracer``). Finding the
workspace is :func:`splittracer.workspace.profile_store`'s job: this package
knows no workspace.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from ..config import did_you_mean
from ..errors import SplitTracerError
from .features import UnitFeatures

if TYPE_CHECKING:
    from ..split.load import LoadedSplit
    from .measure import MeasuredModel

__all__ = [
    "FORMAT",
    "JUDGED_MS",
    "JUDGED_SHARE",
    "UNSTEADY_SPREAD",
    "DeviceProfile",
    "HostFacts",
    "LayerRecord",
    "ModelRecord",
    "ProfileStore",
    "default_profile_dir",
    "host_facts",
    "model_record",
    "profile_local",
]

FORMAT = 1
"""Version of the stored JSON format."""

UNSTEADY_SPREAD = 0.3
"""A layer whose samples' interquartile range exceeds this share of their median looks disturbed:
on an idle machine repeated runs of one layer differ by a few percent."""

JUDGED_MS = 0.05
"""Layers faster than this are not judged: timer and interpreter overhead dominate their spread."""

JUDGED_SHARE = 0.02
"""Nor layers under this share of the model's time: their spread cannot move a plan."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class LayerRecord:
    """One measured layer: its timing quartiles, the units it is made of and,
    where the device has an energy sensor, the millijoules one call of it used."""

    index: int
    name: str
    type: str
    median_ms: float
    p25_ms: float
    p75_ms: float
    units: tuple[UnitFeatures, ...]
    energy_mj: float | None = None

    @property
    def spread(self) -> float:
        """Interquartile range over median of its samples: 0.1 means the middle half within 10 %."""
        return (self.p75_ms - self.p25_ms) / self.median_ms if self.median_ms > 0 else 0.0


@dataclass(frozen=True)
class ModelRecord:
    """Every layer of one model measured on a device; ``key`` identifies the model.

    ``energy_domains`` are the sensor domains whose sum gives the layers'
    ``energy_mj`` (:mod:`splittracer.plan.energy`); ``energy_note`` says why
    there is no energy when there is none.
    """

    source: str
    input_shape: tuple[int, ...]
    granularity: str
    repeats: int
    warmup: int
    forward_ms: float
    measured_at: str
    layers: tuple[LayerRecord, ...]
    energy_domains: tuple[str, ...] = ()
    energy_note: str = ""

    @property
    def has_energy(self) -> bool:
        """Whether every layer's energy was measured."""
        return bool(self.layers) and all(layer.energy_mj is not None for layer in self.layers)

    @property
    def spread(self) -> float:
        """The layers' interquartile ranges over their medians, summed: the model's relative spread."""
        total = sum(layer.median_ms for layer in self.layers)
        return sum(layer.p75_ms - layer.p25_ms for layer in self.layers) / total if total > 0 else 0.0

    def unsteady_layers(self, limit: float = UNSTEADY_SPREAD) -> tuple[LayerRecord, ...]:
        """Layers whose samples spread more than ``limit`` (IQR over median), slowest first.

        Only layers that take at least :data:`JUDGED_MS` and :data:`JUDGED_SHARE`
        of the model's time are judged. A wide spread there means something
        else was using the machine while it was measured.
        """
        total = sum(layer.median_ms for layer in self.layers)
        judged = [x for x in self.layers if x.median_ms >= max(JUDGED_MS, JUDGED_SHARE * total)]
        return tuple(sorted((x for x in judged if x.spread > limit), key=lambda x: -x.median_ms))

    @property
    def key(self) -> tuple[str, tuple[int, ...], str]:
        """(source, input shape, granularity): one record per key in a profile."""
        return self.source, self.input_shape, self.granularity


@dataclass(frozen=True)
class HostFacts:
    """What the profiled device was: enough to tell two profiles' machines apart."""

    hostname: str = ""
    cpu_model: str = ""
    cpu_count: int = 0
    platform: str = ""
    torch: str = ""


@dataclass(frozen=True)
class DeviceProfile:
    """A named profile: the device it was measured on, its settings and its models."""

    name: str
    device: str = "local"
    threads: int | None = None
    host: HostFacts = HostFacts()
    models: tuple[ModelRecord, ...] = ()
    format: int = FORMAT

    def find(self, source: str, input_shape: Sequence[int], granularity: str) -> ModelRecord | None:
        """The record of this model, input shape and granularity, if it was measured."""
        key = (source, tuple(input_shape), granularity)
        return next((m for m in self.models if m.key == key), None)

    def replaced_by(self, records: Sequence[ModelRecord]) -> tuple[ModelRecord, ...]:
        """The stored records that :meth:`with_models` would replace with ``records``."""
        keys = {r.key for r in records}
        return tuple(m for m in self.models if m.key in keys)

    def with_models(self, records: Sequence[ModelRecord]) -> DeviceProfile:
        """A copy with ``records`` added, replacing older records of the same models."""
        keys = {r.key for r in records}
        kept = tuple(m for m in self.models if m.key not in keys)
        return dataclasses.replace(self, models=(*kept, *records))


class ProfileStore:
    """The folder of ``NAME.json`` profiles."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path(self, name: str) -> Path:
        """Where profile ``name`` is (or would be) stored."""
        _check_name(name)
        return self.directory / f"{name}.json"

    def names(self) -> list[str]:
        """Every stored profile, sorted."""
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.json"))

    def exists(self, name: str) -> bool:
        """Whether profile ``name`` is stored."""
        return self.path(name).is_file()

    def load(self, name: str) -> DeviceProfile:
        """Profile ``name``; SplitTracerError naming the known ones if there is none."""
        path = self.path(name)
        if not path.is_file():
            known = self.names()
            listing = f"Known profiles here: {', '.join(known)}." if known else "There are none here yet."
            close = did_you_mean(name, known)
            raise SplitTracerError(
                f"no device profile named '{name}' in {self.directory}",
                hint=" ".join(
                    filter(
                        None, [close, listing, f"Make one: splittracer profile {name} torchvision:alexnet"]
                    )
                ),
            )
        try:
            return msgspec.json.decode(path.read_bytes(), type=DeviceProfile)
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
            # msgspec reports a string that is not UTF-8 with Python's own UnicodeDecodeError.
            raise SplitTracerError(
                f"{path}: not a valid device profile: {exc}",
                hint=f"Measure it again: splittracer profile {name} MODEL...",
            ) from exc

    def load_or_new(self, name: str, *, device: str, threads: int | None) -> DeviceProfile:
        """The stored profile ``name``, or an empty one for this device."""
        if self.exists(name):
            return self.load(name)
        return DeviceProfile(name=name, device=device, threads=threads, host=host_facts())

    def save(self, profile: DeviceProfile) -> Path:
        """Write ``profile`` atomically; returns its path."""
        path = self.path(profile.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(msgspec.json.format(msgspec.json.encode(profile), indent=1))
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        return path


def default_profile_dir(results_dir: Path | None = None) -> Path:
    """``results_dir/profiles`` in a workspace; the user's config folder outside one."""
    if results_dir is not None:
        return results_dir / "profiles"
    base = os.environ.get("SPLITTRACER_CONFIG_DIR")
    if base:
        return Path(base) / "profiles"
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "splittracer" / "profiles"


def profile_local(
    sources: Sequence[str],
    *,
    threads: int | None = None,
    repeats: int = 10,
    warmup: int = 2,
    input_shape: tuple[int, ...] | None = None,
    granularity: str = "leaf",
    progress: Callable[[str, int, int], None] | None = None,
    energy: bool = True,
) -> list[ModelRecord]:
    """Measure every layer of each model in this process, with ``threads`` torch threads.

    With ``energy``, each layer's energy too where this machine has a sensor
    (:mod:`splittracer.plan.measure`).
    """
    import torch

    from ..metrics.energy import probe_energy
    from ..split.load import load_split_model
    from .measure import measure_loaded

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    sensors = probe_energy() if energy else None
    try:
        records = []
        for source in sources:
            loaded = load_split_model(source, input_shape=input_shape, granularity=granularity)
            measured = measure_loaded(
                source, loaded, repeats=repeats, warmup=warmup, progress=progress, energy=sensors
            )
            records.append(model_record(measured, loaded))
        return records
    finally:
        torch.set_num_threads(before)
        for reader in sensors.readers if sensors else ():
            reader.close()


def model_record(measured: MeasuredModel, loaded: LoadedSplit) -> ModelRecord:
    """A device's measurement of a model joined with the layers' features, computed here.

    SplitTracerError when the device's layers are not this capture's (another
    torch or splittracer version captured the model differently).
    """
    from .graph import model_graph

    graph = model_graph(loaded.split)
    here = [layer.name for layer in graph.layers]
    there = [layer.name for layer in measured.layers]
    if here != there:
        raise SplitTracerError(
            f"the device split {measured.source} into {len(there)} layers but this machine into "
            f"{len(here)}" + ("" if len(here) != len(there) else " with other names"),
            hint="Use the same torch and splittracer versions on both: 'splittracer device setup NAME'.",
        )
    layers = tuple(
        LayerRecord(m.index, m.name, m.type, m.median_ms, m.p25_ms, m.p75_ms, info.units, m.energy_mj)
        for m, info in zip(measured.layers, graph.layers)
    )
    return ModelRecord(
        source=measured.source,
        input_shape=measured.input_shape,
        granularity=measured.granularity,
        repeats=measured.repeats,
        warmup=measured.warmup,
        forward_ms=measured.forward_ms,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        layers=layers,
        energy_domains=measured.energy_domains,
        energy_note=measured.energy_note,
    )


def host_facts() -> HostFacts:
    """This machine, as a profile records it."""
    import torch

    from ..metrics.system import cpu_model

    return HostFacts(
        hostname=platform.node(),
        cpu_model=cpu_model(),
        cpu_count=os.cpu_count() or 0,
        platform=platform.platform(),
        torch=str(torch.__version__),
    )


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise SplitTracerError(
            f"'{name}' is not a usable profile name",
            hint="Use letters, digits, '-', '_' and '.', e.g. local-1t or pi4.",
        )
