"""What a run was: the typed, versioned record the results store keeps with it.

The controller writes a :class:`RunRecord` when a run starts (the
controller's host and where the code came from) and again once its
participants have answered (their hosts and limits, the model's layers,
how each was launched, the clock offsets). Everything that reads a run —
``results``, the reports, a rerun — reads these attributes.

The record is stored as JSON with the keys of its fields, which are the keys
run metadata had before it was typed (schema 1 of the store), so scripts that
read ``results show --json`` see the same layout. Older records are migrated
with :func:`record_from_metadata`.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec

__all__ = [
    "RECORD_VERSION",
    "ClockRecord",
    "ControllerHost",
    "EnergySensors",
    "ParticipantRecord",
    "RunProvenance",
    "RunRecord",
    "decode_record",
    "encode_record",
    "record_from_metadata",
    "record_to_dict",
]

# 1: the untyped metadata dict of schema-1 stores; 2: this record.
RECORD_VERSION = 2


class ControllerHost(msgspec.Struct, frozen=True):
    """The machine and software the controller ran on."""

    hostname: str = ""
    user: str = ""
    python: str = ""
    torch: str = ""
    splittracer: str = ""
    cpu_model: str = ""


class EnergySensors(msgspec.Struct, frozen=True):
    """Which energy domains a participant could read, and why the others were missing."""

    available: bool = False
    domains: tuple[str, ...] = ()
    missing: dict[str, str] = {}


class ClockRecord(msgspec.Struct, frozen=True):
    """A participant's clock minus the controller's, as estimated at run start."""

    offset_ns: int = 0
    uncertainty_ns: int = 0
    samples: int = 0


class ParticipantRecord(msgspec.Struct, frozen=True):
    """One participant: its host, its process, its emulated limits and its energy sensors."""

    hostname: str = ""
    platform: str = ""
    python: str = ""
    torch: str = ""
    cpu_model: str = ""
    cpu_count: int = 0
    pid: int = 0
    torch_device: str = "cpu"
    accelerator: str = ""  # the GPU it computed on; '' for the CPU
    torch_threads: int | None = None  # limits: None leaves torch's default
    uplink_bps: float = math.inf  # limits: inf is an unshaped link
    latency_s: float = 0.0  # limits: added one-way latency
    cpu_limit: float | None = None  # limits: a fraction of one CPU (cgroup quota); None: unlimited
    cpu_period_us: int = 0  # the cgroup's CPU period the quota is spread over (0: no CPU limit)
    memory_limit_bytes: int | None = None  # limits: the cgroup's memory limit; None: unlimited
    keep_warm: bool = False  # its CPU kept busy while it waited: not an idle device
    # What the kernel enforced on its process, as it read its own cgroups (metrics/cgroups.py):
    # its ``limits:`` where it had some, else its host's (a lab host's --cpu, a container's).
    enforced_cpu: float | None = None
    enforced_memory_bytes: int | None = None
    enforced_cpu_by: str = ""  # what enforced enforced_cpu: "cgroup" or "signals" (a throttle process)
    energy: EnergySensors = EnergySensors()
    model: str = ""  # the model it ran (its source, e.g. torchvision:resnet18); '' for none


class RunProvenance(msgspec.Struct, frozen=True):
    """Where a run came from: its manifest file, its code's fingerprint, the run it repeats."""

    code: dict[str, str] = {}  # SHA-256 of each file of user code, by a readable name
    manifest_file: str | None = None
    rerun_of: str | None = None
    overrides: dict[str, Any] = {}  # what ``Experiment.run(**overrides)`` changed in the playbook


class RunRecord(msgspec.Struct, frozen=True):
    """Everything known about a run besides its spans and metrics; carries its own version."""

    version: int = RECORD_VERSION
    controller: ControllerHost = ControllerHost()
    code: dict[str, str] = {}
    manifest_file: str | None = None
    rerun_of: str | None = None
    overrides: dict[str, Any] = {}  # playbook fields set for this run only (not in the manifest text)
    layers: tuple[str, ...] = ()  # the first stage's model's layer names, when it has a model
    split_bytes: tuple[int, ...] = ()  # bytes crossing each split point (0: the input)
    split_tensors: tuple[int, ...] = ()  # tensors crossing each split point (0: the input)
    # How each participant was started: spawn, agent, ssh, or spawn+cgroup (spawned into its
    # cgroups for cpu/memory limits: the warm agent is bypassed for such participants).
    launch: dict[str, str] = {}
    clocks: dict[str, ClockRecord] = {}
    participants: dict[str, ParticipantRecord] = {}

    @classmethod
    def starting(cls, controller: ControllerHost, provenance: RunProvenance) -> RunRecord:
        """The record of a run that has just started."""
        return cls(
            controller=controller,
            code=dict(provenance.code),
            manifest_file=provenance.manifest_file,
            rerun_of=provenance.rerun_of,
            overrides=dict(provenance.overrides),
        )


def record_to_dict(record: RunRecord) -> dict[str, Any]:
    """The record as JSON-ready data, as the store holds it (an unshaped link's rate is ``inf``)."""
    data: dict[str, Any] = json.loads(encode_record(record))
    return data


def encode_record(record: RunRecord) -> str:
    """The record as the store keeps it: JSON, keys sorted."""
    # The json module, not msgspec's encoder: an unshaped uplink is inf, which
    # msgspec would write as null; schema-1 stores hold it as Infinity too.
    return json.dumps(msgspec.to_builtins(record), sort_keys=True)


def decode_record(text: str) -> RunRecord:
    """A record as :func:`encode_record` wrote it; ValueError if it is not one."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
        raise ValueError(f"not a version {RECORD_VERSION} run record")
    return _convert(data)


def record_from_metadata(metadata: dict[str, Any]) -> RunRecord:
    """A version-1 metadata dict (schema-1 stores) as a record; ValueError if a known key
    holds a value of the wrong type. Keys the controller never wrote are dropped."""
    return _convert({**metadata, "version": RECORD_VERSION})


def _convert(data: dict[str, Any]) -> RunRecord:
    try:
        return msgspec.convert(data, RunRecord)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from exc
