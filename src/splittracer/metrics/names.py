"""The names of the metrics SplitTracer records itself: cheap to import (no psutil, no numpy),
for the reports that tell them apart from a handler's own ``ctx.record`` metrics."""

from __future__ import annotations

from typing import Literal

__all__ = ["ENERGY_METRICS", "SYSTEM_METRICS", "EnergyUnit"]

EnergyUnit = Literal["J", "W"]

# The metric each unit of an energy reading is stored as.
ENERGY_METRICS: dict[EnergyUnit, str] = {"J": "energy_j", "W": "power_w"}

# What the system sampler records (metrics/system.py).
SYSTEM_METRICS = (
    "cpu_process_percent",
    "cpu_system_percent",
    "rss_bytes",
    "cpu_freq_mhz",
    "temperature_c",
)
