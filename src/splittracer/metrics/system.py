"""System metrics sampled in the background: CPU, memory, frequency, temperature.

A :class:`SystemSampler` wakes every ``interval_s`` (default 100 ms) on its own
thread and turns what the OS reports into :class:`~splittracer.metrics.spans.Metric`
samples stamped with ``time.perf_counter_ns`` (the clock spans use):

=========================  =====================================================
``cpu_process_percent``    CPU use of the watched process since the last sample;
                           100 is one core busy, so it reaches 100 x cores
``cpu_system_percent``     CPU use of the whole machine, 0-100
``rss_bytes``              resident memory of the watched process
``cpu_freq_mhz``           current CPU frequency (mean over cores)
``temperature_c``          one sample per sensor, ``attrs['sensor']`` names it
``energy_j``/``power_w``   from the energy readers given (see :mod:`.energy`)
=========================  =====================================================

A value the OS does not expose is not emitted: no sample is better than a
made-up one. Samples go to ``on_samples`` as they are taken, or wait in a
bounded buffer for :meth:`SystemSampler.drain` (the oldest are dropped, and
counted, when nobody drains it).
"""

from __future__ import annotations

import math
import os
import platform
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from .names import SYSTEM_METRICS
from .spans import Attrs, Metric

if TYPE_CHECKING:  # energy (numpy) is read only where sensors exist; the controller reads cpu_model
    from .energy import EnergyReader

__all__ = [
    "SYSTEM_METRICS",
    "SystemSampler",
    "cpu_freq_mhz",
    "cpu_model",
    "read_temperatures",
    "recent_cpu_freq_mhz",
]


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") or line.startswith("Model"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def read_temperatures(root: str | Path = "/") -> dict[str, float]:
    """Temperatures in °C by sensor name; empty when the OS exposes none.

    On the real root psutil's view (hwmon and thermal zones) is used when it
    has one; otherwise ``<root>/sys/class/thermal/thermal_zone*/temp``
    (millidegrees), which is also what a test's fake tree provides.
    """
    if Path(root).resolve() == Path("/"):
        found = _psutil_temperatures()
        if found:
            return found
    return _thermal_zones(Path(root))


def _psutil_temperatures() -> dict[str, float]:
    sensors = getattr(psutil, "sensors_temperatures", None)  # absent on macOS and Windows
    if sensors is None:
        return {}
    try:
        groups = sensors()
    except (OSError, RuntimeError):
        return {}
    found: dict[str, float] = {}
    for chip, entries in groups.items():
        for i, entry in enumerate(entries):
            if entry.current is not None and math.isfinite(entry.current):
                found[f"{chip}/{entry.label or i}"] = float(entry.current)
    return found


def _thermal_zones(root: Path) -> dict[str, float]:
    found: dict[str, float] = {}
    for zone in sorted((root / "sys/class/thermal").glob("thermal_zone*")):
        millideg = _read_int(zone / "temp")
        if millideg is None:
            continue  # zones can refuse a read (sensor off, no permission)
        kind = _read_text(zone / "type") or zone.name
        found[f"{kind}/{zone.name}"] = millideg / 1000.0
    return found


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _read_int(path: Path) -> int | None:
    text = _read_text(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


class SystemSampler:
    """Samples system metrics every ``interval_s`` on a background thread.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. The
    first CPU percentages come one interval after the start: psutil measures
    CPU use between two readings, and the first reading only sets the mark.
    """

    def __init__(
        self,
        run_id: str,
        participant: str,
        *,
        pid: int | None = None,
        interval_s: float = 0.1,
        on_samples: Callable[[list[Metric]], None] | None = None,
        max_buffered: int = 100_000,
        energy_readers: Sequence[EnergyReader] = (),
        root: str | Path = "/",
        clock: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, not {interval_s}")
        if max_buffered < 1:
            raise ValueError(f"max_buffered must be at least 1, not {max_buffered}")
        self.run_id, self.participant = run_id, participant
        self.interval_s = interval_s
        self.dropped = 0
        self._process = psutil.Process(os.getpid() if pid is None else pid)
        self._on_samples = on_samples
        self._buffer: deque[Metric] = deque(maxlen=max_buffered)
        self._energy = tuple(energy_readers)
        self._root = Path(root)
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> SystemSampler:
        """Start sampling (once); returns self."""
        if self._thread is not None:
            raise RuntimeError("this sampler was already started")
        self._prime()
        self._thread = threading.Thread(target=self._loop, name="splittracer-system-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop sampling and wait for the thread to end (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        """Whether the sampling thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> SystemSampler:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def drain(self) -> list[Metric]:
        """Take every buffered sample, oldest first (empty when ``on_samples`` is set)."""
        with self._lock:
            samples = list(self._buffer)
            self._buffer.clear()
        return samples

    # -- sampling ---------------------------------------------------------------

    def _prime(self) -> None:
        # cpu_percent(None) compares with the previous call; the first one
        # returns a meaningless 0.0, so it is made here and thrown away.
        self._process.cpu_percent(None)
        psutil.cpu_percent(None)

    def _loop(self) -> None:
        # Deadlines on a fixed grid, so slow samples do not make the interval drift.
        next_at = time.monotonic() + self.interval_s
        try:
            while not self._stop.wait(max(0.0, next_at - time.monotonic())):
                self._publish(self.sample())
                next_at += self.interval_s
                if next_at < time.monotonic():  # fell behind (suspended machine): skip ahead
                    next_at = time.monotonic() + self.interval_s
        except psutil.NoSuchProcess as exc:
            self.error = exc  # the watched process ended: nothing left to watch
        except Exception as exc:  # a sampler must never take its participant down
            self.error = exc

    def sample(self) -> list[Metric]:
        """Take one round of samples now (the thread calls this every interval)."""
        now = self._clock()
        samples = [self._metric("cpu_process_percent", self._process.cpu_percent(None), now)]
        samples.append(self._metric("cpu_system_percent", psutil.cpu_percent(None), now))
        samples.append(self._metric("rss_bytes", float(self._process.memory_info().rss), now))
        freq = cpu_freq_mhz()
        if freq is not None:
            samples.append(self._metric("cpu_freq_mhz", freq, now))
        for sensor, celsius in read_temperatures(self._root).items():
            samples.append(self._metric("temperature_c", celsius, now, {"sensor": sensor}))
        from .energy import readings_to_metrics

        for reader in self._energy:
            samples.extend(readings_to_metrics(self.run_id, self.participant, reader.read()))
        return samples

    def _metric(self, name: str, value: float, time_ns: int, attrs: Attrs | None = None) -> Metric:
        return Metric(
            run_id=self.run_id,
            participant=self.participant,
            name=name,
            value=float(value),
            time_ns=time_ns,
            attrs=attrs or {},
        )

    def _publish(self, samples: list[Metric]) -> None:
        if self._on_samples is not None:
            self._on_samples(samples)
            return
        with self._lock:
            room = (self._buffer.maxlen or 0) - len(self._buffer)
            self.dropped += max(0, len(samples) - room)
            self._buffer.extend(samples)


# The last reading and when it was taken (monotonic seconds): the sampler's thread keeps it fresh.
_latest_freq: tuple[float, float | None] = (-math.inf, None)


def cpu_freq_mhz() -> float | None:
    """The CPU's current frequency in MHz where the system tells it; None where it does not."""
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError):
        return None
    # Virtual machines often report 0: that is "unknown", not a frequency.
    mhz = float(freq.current) if freq is not None and freq.current and math.isfinite(freq.current) else None
    global _latest_freq
    _latest_freq = (time.monotonic(), mhz)  # one assignment: readers on other threads see both or neither
    return mhz


def recent_cpu_freq_mhz(max_age_s: float = 0.25) -> float | None:
    """The last frequency read (by the sampler or anyone) if younger than ``max_age_s``, else a new
    reading.

    Where there is no cpufreq driver (most virtual machines) psutil parses
    ``/proc/cpuinfo``: 60-250 µs, which a compute span's attributes should
    not add to every frame's latency. A participant's :class:`SystemSampler`
    reads it every 100 ms anyway.
    """
    taken, mhz = _latest_freq
    if time.monotonic() - taken <= max_age_s:
        return mhz
    return cpu_freq_mhz()
