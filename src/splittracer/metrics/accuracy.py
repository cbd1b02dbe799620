"""Predictions of a split inference, compared with the uncompressed full model and with labels.

Every measured inference of the built-in roles records one ``prediction``
metric (:data:`PREDICTION`): its value is the top-1 class (-1 when the
output is no classification), its attributes the codec, the top-5 classes,
whether the top-1 class agrees with the reference (the whole model run
uncompressed on the same input), the relative error of the output
against that reference (``||y - ref|| / ||ref||`` over every output tensor)
and, when the input has a label, whether top-1 and top-5 were right.

The reference is computed on the first participant, before the inference
is timed: it is the only one that holds the uncompressed input (a later
participant sees what the codec let through), so nothing extra crosses the
measured link and no latency is added.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the report reads PREDICTION without torch: commands like `results ls` stay light
    import torch

PREDICTION = "prediction"
"""The name of the metric every measured inference's prediction is recorded under."""

TOP_K = 5


@dataclass(frozen=True)
class Prediction:
    """One inference's prediction and how it compares."""

    top1: int  # -1: the output is no classification
    top5: tuple[int, ...]
    agrees: bool | None  # top-1 equals the reference's; None without a classification
    rel_error: float
    label: int | None = None

    def attrs(self) -> dict[str, str | int | float | bool]:
        """The prediction metric's attributes (besides the codec)."""
        out: dict[str, str | int | float | bool] = {
            "top5": ",".join(map(str, self.top5)),
            "rel_error": self.rel_error,
        }
        if self.agrees is not None:
            out["agrees"] = self.agrees
        if self.label is not None and self.top1 >= 0:
            out["label"] = self.label
            out["correct"] = self.top1 == self.label
            out["correct5"] = self.label in self.top5
        return out


def classification(outputs: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """The class scores of the first row, when the first output is a float (batch, classes) tensor."""
    if not outputs:
        return None
    first = outputs[0]
    if first.dim() != 2 or first.shape[0] < 1 or first.shape[1] < 2 or not first.is_floating_point():
        return None
    return first[0]


def relative_error(outputs: Sequence[torch.Tensor], reference: Sequence[torch.Tensor]) -> float:
    """``||y - ref|| / ||ref||`` over every output together (0 when both are zero);
    inf when their shapes differ."""
    diff, norm = 0.0, 0.0
    if len(outputs) != len(reference):
        return float("inf")
    for y, ref in zip(outputs, reference):
        if y.shape != ref.shape:
            return float("inf")
        if not ref.is_floating_point():
            diff += float((y != ref).sum())
            continue
        y64, ref64 = y.detach().double().cpu(), ref.detach().double().cpu()
        diff += float(((y64 - ref64) ** 2).sum())
        norm += float((ref64**2).sum())
    if diff == 0:
        return 0.0
    return (diff / norm) ** 0.5 if norm > 0 else float("inf")


def predict(
    outputs: Sequence[torch.Tensor], reference: Sequence[torch.Tensor], label: int | None = None
) -> Prediction:
    """Compare an inference's ``outputs`` with the ``reference`` outputs (and ``label``, if known)."""
    error = relative_error(outputs, reference)
    scores, expected = classification(outputs), classification(reference)
    if scores is None:
        return Prediction(-1, (), None, error, label)
    import torch

    top = torch.topk(scores.detach().float().cpu(), min(TOP_K, scores.shape[0])).indices.tolist()
    agrees = None if expected is None else top[0] == int(expected.argmax())
    return Prediction(int(top[0]), tuple(int(i) for i in top), agrees, error, label)


def reference_outputs(model: torch.nn.Module, x: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
    """The tensor leaves of ``model(x)`` on the CPU: what an uncompressed inference should give."""
    import torch
    from torch.utils import _pytree as pytree

    with torch.no_grad():
        out = model(x.to(device))
    return [t.detach().cpu() for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
