"""The manifest schema: participants, their limits and models, the playbook and run options."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    JsonValue,
    NonNegativeInt,
    PositiveInt,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..config import KeyPath, LocatedYaml, Strict, did_you_mean
from ..errors import ConfigError
from ..units import parse_duration, parse_rate, parse_size
from ..wire.codecs import CODECS, codec_problem
from .located import Where, dotted, unknown_hint

_EXPERIMENT_NAME = re.compile(r"^[a-z0-9_-]+$")
_PARTICIPANT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_ROLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_TORCH_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")
_PROFILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MODEL_SOURCE = re.compile(r"^[A-Za-z_][\w.]*:\S+$")
_GRANULARITY = re.compile(r"^(leaf|block|depth=[1-9][0-9]*)$")


class ModelSection(Strict):
    """The model to split; relative paths are resolved against the manifest's directory."""

    source: str
    input_shape: tuple[PositiveInt, ...] | None = None
    granularity: str = "leaf"
    override: Path | None = None
    weights: Path | None = None
    dataset: Path | None = None
    # Class folder names to model output indices: a mapping, or a file of one name per line.
    labels: dict[str, NonNegativeInt] | Path | None = None

    @field_validator("source")
    @classmethod
    def _source_form(cls, value: str) -> str:
        if not _MODEL_SOURCE.match(value):
            raise ValueError("expected SOURCE:NAME, e.g. torchvision:alexnet or mymodels:build")
        return value

    @field_validator("granularity")
    @classmethod
    def _granularity_form(cls, value: str) -> str:
        if not _GRANULARITY.match(value):
            raise ValueError("expected leaf, block or depth=N")
        return value

    @field_validator("override", "weights", "dataset")
    @classmethod
    def _relative_to_manifest(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        base = (info.context or {}).get("base_dir")
        if value is None or base is None or value.is_absolute():
            return value
        return Path(base) / value

    @field_validator("labels")
    @classmethod
    def _labels_file(
        cls, value: dict[str, int] | Path | None, info: ValidationInfo
    ) -> dict[str, int] | Path | None:
        if not isinstance(value, Path):
            return value
        base = (info.context or {}).get("base_dir")
        path = value if base is None or value.is_absolute() else Path(base) / value
        if not path.is_file():
            raise ValueError(f"labels file '{path}' does not exist (one class name per line, or a mapping)")
        return path

    def label_indices(self) -> dict[str, int] | None:
        """The class-name mapping: as given, or one name per line of the labels file (line 1 is 0)."""
        if isinstance(self.labels, Path):
            names = [line.strip() for line in self.labels.read_text().splitlines() if line.strip()]
            return {name: i for i, name in enumerate(names)}
        return self.labels


class Limits(Strict):
    """Emulated limits of one participant; the text is kept as written.

    ``cpu`` (a fraction of one CPU, e.g. 0.1) and ``memory`` (e.g. ``2GiB``)
    are enforced by the kernel with cgroups (:mod:`splittracer.devices.limits`).
    ``by`` picks how ``cpu`` is enforced: ``cgroup``, ``signals`` (a parent
    process stops and resumes the participant: no root needed,
    :mod:`splittracer.devices.throttle`), or ``auto``: a cgroup where one can
    be written, signals otherwise. Memory limits always need cgroups.
    """

    threads: PositiveInt | None = None
    uplink: str = "unlimited"
    latency: str = "0s"
    cpu: float | None = Field(default=None, ge=0.001, le=1024)
    memory: str | None = None
    by: Literal["auto", "cgroup", "signals"] = "auto"

    @field_validator("uplink", "latency", "memory", mode="before")
    @classmethod
    def _valid_text(cls, value: object, info: ValidationInfo) -> object:
        # A bare YAML number reaches the unit parser, which says a unit is needed.
        text = str(value) if isinstance(value, int | float) else value
        if isinstance(text, str):
            _UNIT_PARSERS[info.field_name or ""](text)
        return text

    @model_validator(mode="after")
    def _by_needs_cpu(self) -> Limits:
        if self.by != "auto" and self.cpu is None:
            raise ValueError(
                f"'by: {self.by}' says how limits.cpu is enforced, but no cpu is set: set cpu or remove by"
            )
        return self

    @property
    def uplink_bps(self) -> float:
        """Uplink in bit/s; ``math.inf`` when unlimited."""
        return parse_rate(self.uplink)

    @property
    def latency_s(self) -> float:
        """One-way latency added to what this participant sends, in seconds."""
        return parse_duration(self.latency)

    @property
    def memory_bytes(self) -> int | None:
        """The memory limit in bytes; None when there is none."""
        return None if self.memory is None else parse_size(self.memory)


_UNIT_PARSERS = {"uplink": parse_rate, "latency": parse_duration, "memory": parse_size}


class Batch(Strict):
    """Dynamic batching on a participant whose role supports it (the built-in tail): requests
    for the same layers arriving within ``wait`` are stacked, up to ``max``, and computed once."""

    max: PositiveInt = 8
    wait: str = "5ms"

    @field_validator("wait", mode="before")
    @classmethod
    def _valid_wait(cls, value: object) -> object:
        if parse_duration(str(value)) < 0:
            raise ValueError("expected a duration such as 5ms")
        return str(value)

    @property
    def wait_s(self) -> float:
        """The batching window in seconds."""
        return parse_duration(self.wait)


class Participant(Strict):
    """One participant: where it runs, which role it plays, its limits and role parameters.

    ``profile`` names the stored device profile (``splittracer profile``) that
    describes it, for ``split: auto`` and ``split: adaptive``.
    """

    device: str = "local"
    role: str
    torch_device: str = "cpu"
    limits: Limits = Field(default_factory=Limits)
    params: dict[str, JsonValue] = Field(default_factory=dict)
    profile: str | None = None
    keep_warm: bool = False  # its CPU kept busy while it waits, unlike an idle device (participant/warm.py)
    workers: PositiveInt = 1  # handlers at once, for a role with ``parallel = True``
    batch: Batch | None = None  # dynamic batching (the built-in tail); needs max workers, given by default
    replicas: PositiveInt = 1  # a fleet: NAME-0 .. NAME-(N-1), each its own copy of the playbook
    devices: list[str] | None = Field(default=None, min_length=1)  # a fleet: one replica per device
    stage_: NonNegativeInt | None = Field(default=None, alias="stage")  # default: manifest order
    model: ModelSection | None = None  # its own model (every replica's); default: the manifest's
    _name: str = PrivateAttr(default="")
    _stage: int = PrivateAttr(default=-1)

    @field_validator("torch_device")
    @classmethod
    def _torch_device_form(cls, value: str) -> str:
        if not _TORCH_DEVICE.match(value):
            raise ValueError("expected 'cpu', 'cuda', 'cuda:N' or 'mps' (where this participant computes)")
        return value

    @field_validator("profile")
    @classmethod
    def _profile_form(cls, value: str | None) -> str | None:
        if value is not None and not _PROFILE.match(value):
            raise ValueError("expected a profile name: letters, digits, '-', '_' and '.', e.g. local-1t")
        return value

    @field_validator("role")
    @classmethod
    def _role_form(cls, value: str) -> str:
        if not _ROLE.match(value):
            raise ValueError("expected module:Class, e.g. roles:MyHead or splittracer.builtin:SplitHead")
        return value

    @property
    def name(self) -> str:
        """The participant's name in the manifest."""
        return self._name

    @property
    def stage(self) -> int:
        """Its stage in the pipeline: ``stage:`` as written, else its position in the manifest."""
        return self._stage

    @model_validator(mode="after")
    def _one_fleet_form(self) -> Participant:
        if self.devices is None:
            return self
        if self.device != "local":
            raise ValueError("give 'device' (one device) or 'devices' (one replica on each), not both")
        if "replicas" in self.model_fields_set and self.replicas != len(self.devices):
            raise ValueError(f"replicas: {self.replicas} but {len(self.devices)} devices; give one of them")
        return self

    @property
    def size(self) -> int:
        """How many run: one per entry of ``devices``, else ``replicas``."""
        return len(self.devices) if self.devices else self.replicas

    def device_of(self, replica: int) -> str:
        """Where replica ``replica`` runs: its entry of ``devices``, else ``device``."""
        return self.devices[replica] if self.devices else self.device

    @property
    def handlers(self) -> int:
        """Handlers it runs at once: ``workers``, at least a batch's ``max``."""
        return max(self.workers, self.batch.max if self.batch else 1)

    @property
    def replica_names(self) -> tuple[str, ...]:
        """The names its replicas run under: itself alone, or ``NAME-0`` .. ``NAME-(N-1)``."""
        if self.size == 1:
            return (self._name,)
        return tuple(f"{self._name}-{i}" for i in range(self.size))


class PlaybookEntry(Strict):
    """One initial task: a registered task name and its field values."""

    task: str
    params: dict[str, JsonValue] = Field(default_factory=dict)
    _where: Where | None = PrivateAttr(default=None)


class Options(Strict):
    """Run-wide options."""

    repeats: PositiveInt = 10
    warmup: NonNegativeInt = 2
    compression: str = "none"
    seed: int = 0
    timeout: str | None = None
    sample_interval: str = "100ms"  # system and energy sampling on every participant

    @field_validator("sample_interval", mode="before")
    @classmethod
    def _valid_interval(cls, value: object) -> object:
        if parse_duration(str(value)) <= 0:
            raise ValueError("expected a positive duration such as 100ms")
        return str(value)

    @property
    def sample_interval_s(self) -> float:
        """System-metric sampling interval in seconds."""
        return parse_duration(self.sample_interval)

    @field_validator("compression")
    @classmethod
    def _known_codec(cls, value: str) -> str:
        if codec_problem(value) is not None:
            close = did_you_mean(value, CODECS)
            raise ValueError(
                f"expected one of {', '.join(CODECS)} (jpeg:Q, webp:Q).{' ' + close if close else ''}"
            )
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _valid_timeout(cls, value: object) -> object:
        if value is not None:
            parse_duration(str(value))
        return value if value is None else str(value)

    @property
    def timeout_s(self) -> float:
        """The whole-run deadline in seconds; ``math.inf`` when none is set."""
        return math.inf if self.timeout is None else parse_duration(self.timeout)


class Manifest(Strict):
    """A validated experiment manifest. ``participants`` keeps the file's order."""

    name: str
    description: str = ""
    model: ModelSection | None = None
    participants: dict[str, Participant] = Field(min_length=1)
    playbook: dict[str, tuple[PlaybookEntry, ...]]
    options: Options = Field(default_factory=Options)
    _source: LocatedYaml | None = PrivateAttr(default=None)
    _text: str = PrivateAttr(default="")

    @field_validator("name")
    @classmethod
    def _name_form(cls, value: str) -> str:
        if not _EXPERIMENT_NAME.match(value):
            raise ValueError("expected lower-case letters, digits, '_' and '-' only, e.g. neurosurgeon")
        return value

    @model_validator(mode="after")
    def _number_participants(self) -> Manifest:
        for stage, (name, participant) in enumerate(self.participants.items()):
            explicit = participant.stage_
            participant._name, participant._stage = name, stage if explicit is None else explicit
        taken: dict[str, str] = {}
        for name, participant in self.participants.items():
            for replica in participant.replica_names:
                if replica in taken and taken[replica] != name:
                    raise ValueError(
                        f"'{taken[replica]}' and '{name}' would both run a participant named '{replica}'"
                        " (replicas are named NAME-0, NAME-1, ...); rename one of them"
                    )
                taken[replica] = name
        return self

    @property
    def path(self) -> Path | None:
        """The file this manifest was read from, if any."""
        return Path(self._source.path) if self._source else None

    @property
    def manifest_text(self) -> str:
        """The YAML exactly as read, for the run's snapshot."""
        return self._text

    def model_of(self, name: str) -> ModelSection | None:
        """The model participant (or replica) ``name`` runs: its own ``model:``, else the manifest's."""
        participant = self.participant_named(name)
        own = participant.model if participant is not None else None
        return own if own is not None else self.model

    def model_key(self, name: str) -> KeyPath:
        """Where the model ``name`` runs is written: its own ``model`` key, else the top-level one."""
        participant = self.participant_named(name)
        if participant is not None and participant.model is not None:
            return ("participants", participant.name, "model")
        return ("model",)

    def as_seen_by(self, name: str) -> Manifest:
        """This manifest with its top-level model replaced by the one participant ``name`` runs,
        for the checks and planning of the tasks ``name`` starts."""
        model = self.model_of(name)
        return self if model == self.model else self.model_copy(update={"model": model})

    @property
    def has_models_per_participant(self) -> bool:
        """Whether any participant names its own model."""
        return any(p.model is not None for p in self.participants.values())

    def participant_named(self, name: str) -> Participant | None:
        """The participant ``name`` is, or the replicated participant it is a replica of."""
        if name in self.participants:
            return self.participants[name]
        return next((p for p in self.participants.values() if name in p.replica_names), None)

    def stage_of(self, name: str) -> int:
        """The stage (index in ``participants``) of participant ``name``."""
        participant = self.participants.get(name)
        if participant is None:
            raise ConfigError(
                f"no participant named '{name}'",
                path=self._source.path if self._source else None,
                hint=unknown_hint(name, self.participants, "Participants"),
            )
        return participant.stage

    def line_of(self, key: KeyPath) -> int | None:
        """Line of ``key`` (or its nearest ancestor) in the manifest file."""
        return self._source.line_of(key) if self._source else None

    def error_at(self, key: KeyPath, message: str, hint: str | None = None) -> ConfigError:
        """A mistake at ``key``, located by file and line for the user."""
        path = str(self.path) if self.path else None
        return ConfigError(message, path=path, line=self.line_of(key), key=dotted(key), hint=hint)
