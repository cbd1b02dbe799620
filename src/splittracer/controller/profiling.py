"""Profile a paired device: run :mod:`splittracer.plan.measure` there over SSH, read its results.

The device runs its runtime's Python (``~/.splittracer/venv``, made by
``splittracer device setup``; else its ``python:`` or newest ``python3``)
with the request as one argument, and streams one line per progress step
and per measured model back over the SSH session. The controller captures
each model itself to join the timings with the layers' features
(:func:`splittracer.plan.profiles.model_record`), so the device does the
timing and nothing else.

As with participants, a small shell wrapper ends the measurement when the
SSH session closes: an interrupted ``splittracer profile`` leaves nothing
running on the device.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncssh
import msgspec

from ..devices.errors import DeviceError, DeviceNotReady
from ..devices.probe import not_ready, problems, select_python
from ..devices.registry import Device
from ..devices.ssh import Target, connect, quote, translate, watched_python
from ..errors import SplitTracerError
from ..plan.measure import ERROR, HOST, MEASURED, PROGRESS, MeasuredModel, MeasureRequest
from ..plan.profiles import HostFacts, ModelRecord, model_record

__all__ = ["DeviceMeasurement", "measure_command", "measure_on_device", "profile_device"]

TAIL_LINES = 40
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DeviceMeasurement:
    """What a device reported: itself and every model it measured."""

    host: HostFacts
    models: tuple[MeasuredModel, ...]


def profile_device(
    device: Device,
    sources: Sequence[str],
    *,
    threads: int | None = None,
    repeats: int = 10,
    warmup: int = 2,
    input_shape: tuple[int, ...] | None = None,
    granularity: str = "leaf",
    progress: Progress | None = None,
    timeout: float = 10.0,
) -> tuple[list[ModelRecord], HostFacts]:
    """Measure every layer of each model on paired ``device``; the records and the device's facts.

    The models are captured here first, so a wrong name or input shape is
    reported before anything is sent to the device.
    """
    from ..split.load import load_split_model

    loaded = [load_split_model(s, input_shape=input_shape, granularity=granularity) for s in sources]
    request = MeasureRequest(
        sources=tuple(sources),
        threads=threads,
        repeats=repeats,
        warmup=warmup,
        input_shape=input_shape,
        granularity=granularity,
    )
    result = measure_on_device(device, request, progress=progress, timeout=timeout)
    return [model_record(m, split) for m, split in zip(result.models, loaded)], result.host


def measure_on_device(
    device: Device,
    request: MeasureRequest,
    *,
    progress: Progress | None = None,
    timeout: float = 10.0,
) -> DeviceMeasurement:
    """Measure ``request`` on paired ``device``, reporting each step to ``progress``.

    DeviceNotReady (with the command that fixes it) when the device lacks
    its runtime, torch or this splittracer; DeviceError for SSH failures;
    the device's own SplitTracerError (an unknown model, say) as it reported it.
    """
    if device.facts is not None:
        found = problems(device.facts, device.name)
        if found:
            raise not_ready(device, found)
    session = _Session(device, request, progress or (lambda *_: None))
    return asyncio.run(session.run(timeout))


# Capturing a model imports torch's compiler, which keeps a cache in the device's temp folder
# (``torchinductor_USER``) and leaves it there; the measurement gets a folder of its own, removed
# however it ends, as a run's participants keep theirs in the run's folder (deploy/ssh.py).
_OWN_CACHE = 'cache=$(mktemp -d 2>/dev/null) && export TORCHINDUCTOR_CACHE_DIR="$cache"\n'
_DROP_CACHE = '[ -n "${cache:-}" ] && rm -rf "$cache"\n'


def measure_command(request: MeasureRequest, python: str | None = None) -> str:
    """The shell that measures ``request`` with the device's Python and stops it when stdin closes."""
    argument = msgspec.json.encode(request).decode()
    return watched_python(
        f"-m splittracer.plan.measure {quote(argument)}",
        prologue=f"{select_python(python)}\n{_OWN_CACHE}",
        epilogue=_DROP_CACHE,
    )


class _Session:
    def __init__(self, device: Device, request: MeasureRequest, progress: Progress) -> None:
        self.device, self.request, self.progress = device, request, progress
        self.target = Target.of(device)
        self.host: HostFacts | None = None
        self.models: list[MeasuredModel] = []
        self.error: dict[str, str | None] | None = None
        self.stderr: deque[str] = deque(maxlen=TAIL_LINES)

    async def run(self, timeout: float) -> DeviceMeasurement:
        keys = (self.device.key,) if self.device.key else ()
        conn = await connect(self.target, keys=keys, timeout=timeout, keepalive=5.0)
        try:
            status = await self._measure(conn)
        except (asyncssh.Error, OSError) as exc:
            raise translate(exc, self.target) from exc
        finally:
            conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 5.0)
        return self._result(status)

    async def _measure(self, conn: asyncssh.SSHClientConnection) -> int | None:
        command = measure_command(self.request, self.device.python)
        process = await conn.create_process(command, encoding="utf-8", errors="replace")
        stderr = asyncio.ensure_future(self._drain(process))
        async for line in process.stdout:
            self._line(line.strip())
        await process.wait_closed()
        await stderr
        return process.exit_status

    async def _drain(self, process: asyncssh.SSHClientProcess[str]) -> None:
        async for line in process.stderr:
            self.stderr.append(line.rstrip("\n"))

    def _line(self, text: str) -> None:
        prefix, _, data = text.partition("=")
        prefix += "="
        if prefix == PROGRESS:
            step = msgspec.json.decode(data)
            self.progress(str(step["model"]), int(step["done"]), int(step["total"]))
        elif prefix == MEASURED:
            self.models.append(msgspec.json.decode(data, type=MeasuredModel))
        elif prefix == HOST:
            self.host = msgspec.json.decode(data, type=HostFacts)
        elif prefix == ERROR:
            self.error = msgspec.json.decode(data)

    def _result(self, status: int | None) -> DeviceMeasurement:
        if self.error is not None:
            raise SplitTracerError(
                f"{self.target.label}: {self.error.get('message')}", hint=self.error.get("hint")
            )
        if status == 0 and self.host is not None and len(self.models) == len(self.request.sources):
            return DeviceMeasurement(self.host, tuple(self.models))
        raise self._failure(status)

    def _failure(self, status: int | None) -> DeviceError:
        tail = "\n".join(self.stderr)
        setup = f"Run 'splittracer device setup {self.device.name}'"
        if status == 127:
            return DeviceNotReady(
                "no Python 3 interpreter was found on the device",
                host=self.target.label,
                exit_status=127,
                output=tail,
                hint=f"{setup}, or name an interpreter with 'python:' in the device's registry entry.",
            )
        if "No module named 'torch'" in tail or "No module named 'torchvision'" in tail:
            return DeviceNotReady(
                "torch is not installed in the device's runtime, so nothing can be measured there",
                host=self.target.label,
                output=tail,
                hint=f"{setup} to install it (on a Jetson install NVIDIA's torch wheel system-wide first, "
                "then 'splittracer device setup --no-torch').",
            )
        if "No module named 'splittracer" in tail:
            return DeviceNotReady(
                "the device's runtime has no splittracer (or one too old to profile)",
                host=self.target.label,
                output=tail,
                hint=f"{setup} to install this version there.",
            )
        return DeviceError(
            "profiling on the device failed" + (" (the SSH session ended early)" if status is None else ""),
            host=self.target.label,
            command="python -m splittracer.plan.measure",
            exit_status=status,
            output=tail,
            hint=f"Check the device with 'splittracer device check {self.device.name}'.",
        )
