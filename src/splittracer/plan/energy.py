"""The first device's energy for a split: its layers' compute energy plus its radio's transmit energy.

Neurosurgeon (Kang et al. 2017) chooses a split for the phone's energy as
well as for latency. The model here is the same::

    energy(k) = sum of the first device's layers 1..k (measured per layer)
              + P_tx * 8 * bytes(k) / bandwidth

* **Compute energy** is the profile's own per-layer measurement
  (``LayerRecord.energy_mj``, from the device's sensor while it ran the
  layer) when the profile holds the model. For a model the profile did not
  measure, each layer gets the device's mean compute power over every
  layer it did measure (joules / seconds) times the layer's predicted time.
  Without any measured energy there is no estimate: a guess of a CPU's
  power would decide the split by itself.
* **Transmit energy** is the radio's power while sending times the time the
  cut's tensors take at the link's rate (the link's latency is left out:
  the radio is not sending then). The power is given in watts, or taken
  from the uplink power model ``P = alpha * rate + beta`` (rate in Mbit/s)
  that Neurosurgeon used, measured on phones by Huang et al. (MobiSys 2012)
  for 3G, LTE and Wi-Fi (:data:`RADIOS`).

Only the first device is counted: it is the battery the objective spares.
Its idle power while it waits for the result is the same at every split
whose latency is the same, and is left out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import SplitTracerError
from .profiles import DeviceProfile, ModelRecord

__all__ = [
    "OBJECTIVES",
    "RADIOS",
    "Objective",
    "RadioPower",
    "compute_energy",
    "parse_tx_power",
    "whole_device_domains",
]

Objective = Literal["latency", "energy", "throughput"]
OBJECTIVES: tuple[str, ...] = ("latency", "energy", "throughput")

RADIOS: dict[str, tuple[float, float]] = {
    "3g": (868.98, 817.88),
    "lte": (438.39, 1288.04),
    "wifi": (283.17, 132.86),
}
"""Uplink power model per technology: (alpha in mW per Mbit/s, beta in mW), Huang et al. 2012."""

_WATTS = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(w|mw|kw)\s*$", re.IGNORECASE)
_SCALE = {"w": 1.0, "mw": 1e-3, "kw": 1e3}


@dataclass(frozen=True)
class RadioPower:
    """The first device's radio power while it sends, and where the figure came from."""

    watts: float
    source: str

    def transmit_mj(self, nbytes: int, bandwidth_bps: float) -> float:
        """Millijoules to send ``nbytes`` at ``bandwidth_bps`` (0 on an unlimited link)."""
        return self.watts * 8 * nbytes / bandwidth_bps * 1000


def parse_tx_power(text: str, bandwidth_bps: float) -> RadioPower:
    """``1.2W`` / ``800mW``, or ``3g`` / ``lte`` / ``wifi`` (Huang et al.'s model at this rate)."""
    name = text.strip().lower()
    if name in RADIOS:
        alpha, beta = RADIOS[name]
        mbps = bandwidth_bps / 1e6
        if mbps == float("inf"):
            raise SplitTracerError(
                f"the {name} radio model needs the link's rate, but the first hop is unlimited",
                hint="Give --bandwidth (e.g. --bandwidth lte), or the power itself: --tx-power 1.2W.",
            )
        watts = (alpha * mbps + beta) / 1000
        label = {"3g": "3G", "lte": "LTE", "wifi": "Wi-Fi"}[name]
        return RadioPower(watts, f"{label} uplink model (Huang et al. 2012) at {mbps:g} Mbit/s")
    match = _WATTS.match(text)
    if match is None:
        raise SplitTracerError(
            f"'{text}' is not a radio power",
            hint="Give watts (--tx-power 1.2W, 800mW) or a radio whose measured model to use: "
            "3g, lte or wifi.",
        )
    return RadioPower(float(match.group(1)) * _SCALE[match.group(2).lower()], "given")


def compute_energy(
    profile: DeviceProfile, record: ModelRecord | None, layer_ms: Sequence[float]
) -> tuple[tuple[float, ...], str]:
    """Millijoules of every layer on ``profile``'s device, and how they were obtained.

    ``record`` is the profile's measurement of this very model (None when
    the layer times are predicted). SplitTracerError when the profile
    measured no energy at all.
    """
    if record is not None and record.has_energy:
        return tuple(float(layer.energy_mj or 0.0) for layer in record.layers), "measured"
    joules = sum(layer.energy_mj or 0.0 for m in profile.models if m.has_energy for layer in m.layers)
    ms = sum(layer.median_ms for m in profile.models if m.has_energy for layer in m.layers)
    if ms <= 0:
        raise _no_energy(profile)
    watts = joules / ms  # mJ / ms
    return tuple(watts * t for t in layer_ms), f"mean power {watts:.2f} W x time"


def whole_device_domains(domains: Sequence[str]) -> tuple[str, ...]:
    """The sensor domains that together measure the whole device, without counting anything twice.

    A Jetson's board input rail (``VDD_IN``, ``POM_5V_IN``) when there is
    one, else all its rails; RAPL's ``psys`` when there is one, else its
    top-level zones (packages, DRAM) but not their sub-zones; every GPU
    NVML sees.
    """
    jetson = [d for d in domains if d.startswith("jetson/")]
    board = [d for d in jetson if d.upper().endswith("_IN")]
    rapl = [d for d in domains if d.startswith("rapl/")]
    psys = [d for d in rapl if d == "rapl/psys"]
    top = [d for d in rapl if d.count("/") == 1]
    nvml = [d for d in domains if d.startswith("nvml/")]
    return tuple((board[:1] or jetson) + (psys or top) + nvml)


def _no_energy(profile: DeviceProfile) -> SplitTracerError:
    notes = sorted({m.energy_note for m in profile.models if m.energy_note})
    why = f" ({'; '.join(notes)})" if notes else ""
    return SplitTracerError(
        f"profile '{profile.name}' holds no energy measurement{why}, so the energy objective "
        "has nothing to weigh",
        hint="Profile the first device where it has an energy sensor (RAPL, a Jetson's INA3221 rails, "
        f"an NVIDIA GPU): splittracer profile {profile.name} MODEL... --device DEVICE; "
        "or plan with --objective latency.",
    )
