"""What a participant loads when it is configured: its role class, its model, its device."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import torch

from ..errors import DeviceError, UserCodeError
from ..models import import_object
from ..roles import Role
from ..wire.messages import RunConfig
from .inputs import InputSource


def import_role(spec: str, workspace: str | None) -> type[Role]:
    """The role class ``module:Class``, imported with the run's workspace on the path."""
    if workspace and workspace not in sys.path:
        sys.path.insert(0, workspace)
    if workspace and (Path(workspace) / "tasks.py").exists():
        import_object("tasks", "__name__")
    module, _, attr = spec.partition(":")
    role = import_object(module, attr)
    if not (isinstance(role, type) and issubclass(role, Role)):
        raise UserCodeError(f"'{spec}' is not a Role subclass")
    return role


def allowed_workers(role: type[Role], workers: int) -> int:
    """How many handlers of ``role`` may run at once: ``workers``, if the role allows more than one."""
    if workers > 1 and not role.parallel:
        raise UserCodeError(
            f"role {role.__qualname__} handles one task at a time, so it cannot have {workers} workers",
            hint="Drop 'workers', or set 'parallel = True' on a role whose handlers may run at once.",
        )
    return max(workers, 1)


def load_model(config: RunConfig) -> tuple[Any, InputSource | None]:
    """The run's split model and its inputs, or (None, None) when the manifest names no model."""
    if config.model is None:
        return None, None
    from ..split.load import load_split_model

    m = config.model
    loaded = load_split_model(
        m.source,
        input_shape=tuple(m.input_shape) if m.input_shape else None,
        granularity=m.granularity,
        override=m.override,
        weights=m.weights,
        seed=config.options.seed,
        device=torch_device(config.torch_device, config.name),
    )
    inputs = InputSource(
        loaded.spec.input_shape,
        seed=config.options.seed,
        dataset=m.dataset,
        vocab=loaded.spec.vocab,
        labels=m.labels,
    )
    return loaded.split, inputs


def torch_device(name: str, participant: str) -> torch.device:
    """The torch device a participant computes on, refused clearly when this host lacks it."""
    device = torch.device(name)
    host = socket.gethostname()
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(
                f"participant '{participant}' asks for torch_device '{name}', "
                f"but torch {torch.__version__} on {host} sees no CUDA device",
                hint="Give it a device with a GPU (`splittracer device ls` shows which have CUDA), "
                "or drop torch_device from the manifest to compute on the CPU.",
            )
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"participant '{participant}' asks for torch_device '{name}', but {host} has "
                f"{count} CUDA device(s): cuda:0..cuda:{count - 1}",
                hint="Use one of those indices.",
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(
            f"participant '{participant}' asks for torch_device 'mps', but torch on {host} has no MPS",
            hint="MPS needs a Mac with Apple silicon; drop torch_device to compute on the CPU.",
        )
    return device


def accelerator_name(device: torch.device) -> str:
    """A readable name of the accelerator behind ``device`` ('' for the CPU)."""
    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    return "Apple MPS" if device.type == "mps" else ""
