"""The reduction plan: what the summed loss is divided by, decided before any block is computed.

PyTorch's denominators (see :attr:`xentcli.spec.LossSpec.denominator`) need
the whole batch: the number of rows, or the number and summed weight of the
counted class indices. An in-memory run builds the plan from its arrays; a
streamed run builds the same plan from a pre-pass over the labels. Both
hand it to the kernels, so every block is scaled by the whole batch's
denominator and the streamed result is bit for bit the in-memory one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import XentWarning
from ..spec import LossSpec
from .sums import ExactSum, GroupedSum

__all__ = ["ReductionPlan", "ldexp_or_inf"]


def ldexp_or_inf(x: float, k: int) -> float:
    """``x * 2**k``, saturating to ±inf instead of raising."""
    try:
        return math.ldexp(x, k)
    except OverflowError:
        return math.copysign(math.inf, x)


def _rescale_exponent(w: np.ndarray, used: np.ndarray) -> int:
    """The power of two that brings the largest class weight in use near 1 (0 when it already is).

    PyTorch's weighted mean, sum(w_t * nll) / sum(w_t), does not change when
    every weight is multiplied by the same factor; a power of two does it
    exactly, and keeps tiny (subnormal) or huge weights from losing digits or
    overflowing in the products and the denominator.
    """
    if used.size == 0:
        return 0
    top = float(np.max(w[used]))
    if top == 0.0 or not math.isfinite(top):
        return 0
    exponent = math.frexp(top)[1]
    return 0 if -64 <= exponent <= 64 else exponent


@dataclass(frozen=True)
class ReductionPlan:
    """How the per-sample losses of a whole batch are reduced.

    Attributes:
        reduction: ``"none"``, ``"sum"``, ``"mean"`` or ``"batchmean"``.
        denominator: what a mean divides by, in the units of the class
            weights scaled by ``2**-shift``; ``None`` for ``none`` and ``sum``.
        shift: the class weights are multiplied by ``2**-shift`` (exactly)
            for the weighted mean.
        z_denominator: what the mean of a z-loss divides by: the number of
            counted samples (class weights do not enter it, as in Liger-Kernel);
            ``None`` without a z-loss or a mean.
    """

    reduction: str
    denominator: float | None = None
    shift: int = 0
    z_denominator: float | None = None

    @classmethod
    def for_batch(
        cls,
        spec: LossSpec,
        classes: int,
        rows: int,
        counts: np.ndarray | None = None,
        weight: np.ndarray | None = None,
    ) -> ReductionPlan:
        """The plan for ``rows`` samples of ``classes`` columns.

        ``counts[k]`` is the number of counted (not ignored) samples of class
        ``k`` (class-index targets); ``weight`` the class weights in the
        kernel's dtype.
        """
        kind = spec.denominator
        if kind is None:
            return cls(spec.reduction)
        if kind == "rows":
            return cls(spec.reduction, float(rows), z_denominator=float(rows) if spec.has_z_loss else None)
        if kind == "elements":
            return cls(spec.reduction, float(rows) * classes)
        if counts is None:
            raise ValueError("a mean over class-index targets needs the counts of the classes")
        counted = float(counts.sum()) if spec.has_z_loss else None
        if kind == "samples" or weight is None:
            return cls(spec.reduction, float(counts.sum()), z_denominator=counted)
        used = np.nonzero(counts)[0]
        if spec.smoothing and used.size:  # every class's weight enters every counted sample's loss
            used = np.arange(classes)
        shift = _rescale_exponent(weight, used)
        scaled = np.ldexp(weight, -shift) if shift else weight
        total = ExactSum()
        for k in np.nonzero(counts)[0]:
            total.add_repeated(float(scaled[k]), int(counts[k]))  # counts * weight, summed exactly
        return cls(spec.reduction, total.value(), shift, counted)

    @property
    def divisor(self) -> float | None:
        """What the gradient is divided by (``None``: nothing, also for a mean over zero weight)."""
        return None if not self.denominator else self.denominator

    @property
    def reported_denominator(self) -> float | None:
        """The denominator in the units of the weights as given."""
        if self.denominator is None or not self.shift:
            return self.denominator
        return ldexp_or_inf(self.denominator, self.shift)

    def scale_weights(self, w: np.ndarray) -> np.ndarray:
        """The class weights as the kernel uses them (times ``2**-shift``)."""
        if not self.shift:
            return w
        with np.errstate(over="ignore"):  # a weight far above the used ones may overflow: its terms do too
            scaled: np.ndarray = np.ldexp(w, -self.shift).astype(w.dtype)
        return scaled

    def unscale(self, losses: np.ndarray) -> np.ndarray:
        """Per-sample losses in the units of the weights as given."""
        if not self.shift:
            return losses
        with np.errstate(over="ignore"):
            out: np.ndarray = np.ldexp(losses, self.shift)
        return out

    def finish_z(self, total: ExactSum | GroupedSum) -> float | None:
        """The reduced z-loss from the exact total of the per-sample z-losses (``None`` for ``none``)."""
        if self.reduction == "none":
            return None
        value = total.value()
        if self.reduction == "sum" or self.z_denominator is None:
            return value
        return value / self.z_denominator if self.z_denominator else math.nan

    def finish(self, total: ExactSum | GroupedSum) -> tuple[float | None, list[XentWarning]]:
        """The reduced loss from the exact total of the per-sample losses, and notes about it."""
        notes: list[XentWarning] = []
        if self.reduction == "none":
            return None, notes
        value = total.value()
        overflow = math.isinf(value) and total.all_finite
        if self.reduction == "sum":
            if overflow:
                notes.append(XentWarning("the sum of the losses is beyond the float64 range: reported as inf"))
            return value, notes
        denom = self.denominator
        assert denom is not None
        if denom == 0:
            notes.append(XentWarning("the mean is 0/0: every sample is ignored or has zero weight "
                                     "(PyTorch returns nan and a zero gradient)"))
            return math.nan, notes
        if overflow and math.isfinite(denom):
            # The sum overflows but the mean may not: divide both by 2**k first (exact for denom).
            k = math.frexp(denom)[1]
            mean = total.value(-k) / math.ldexp(denom, -k)
            if math.isinf(mean):
                notes.append(XentWarning("the mean of the losses is beyond the float64 range: reported as inf"))
            return mean, notes
        return value / denom, notes
