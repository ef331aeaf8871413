"""What one computation returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import XentWarning
from ..spec import LossSpec

# The name each kind goes by in results and JSON (PyTorch's function names).
RESULT_KINDS = {
    "ce": "cross_entropy",
    "nll": "nll_loss",
    "kl": "kl_div",
    "bce": "binary_cross_entropy_with_logits",
}


@dataclass(frozen=True)
class LossResult:
    """Loss, per-sample losses, probabilities and gradient of one computation.

    Attributes:
        loss: the reduced loss (``None`` for ``reduction="none"``); ``nan``
            when a mean is taken over zero total weight (as PyTorch does).
        losses: per-sample losses, shape ``(N,)`` for cross-entropy and NLL,
            and the elementwise losses, shape ``(N, C)``, for binary
            cross-entropy and the KL divergence (as PyTorch's ``none``).
        grad: d loss / d logits, shape ``(N, C)``. For ``reduction="none"``
            it is the gradient of the *sum*, so row i is sample i's gradient.
        probs: softmax outputs (ce, nll, kl) or sigmoid outputs (bce).
        spec: the :class:`~xentcli.spec.LossSpec` computed.
        denominator: what the mean divides by (``None`` unless a mean).
        warnings: :class:`~xentcli.errors.XentWarning` objects about the result.
        z_loss: the z-loss term of ``loss`` (reduced as the loss is), when the
            spec has a z-loss and a reduction; ``None`` otherwise.
        z_losses: the per-sample z-loss terms (included in ``losses``), when
            the spec has a z-loss.
    """

    loss: float | None
    losses: np.ndarray | None
    grad: np.ndarray
    probs: np.ndarray | None
    spec: LossSpec
    denominator: float | None = None
    warnings: tuple[XentWarning, ...] = field(default=())
    # The float64 per-sample losses (elementwise kinds: row sums) before rounding to the dtype, in the
    # rescaled weights' units: what streaming accumulates across chunks.
    exact_total: Any = field(default=None, repr=False, compare=False)
    z_loss: float | None = None
    z_losses: np.ndarray | None = None
    # The float64 per-sample z-losses (what streaming accumulates), with a z-loss.
    exact_z: Any = field(default=None, repr=False, compare=False)

    @property
    def kind(self) -> str:
        """PyTorch's name of the function: ``cross_entropy``, ``nll_loss``, ``kl_div`` or
        ``binary_cross_entropy_with_logits``."""
        return RESULT_KINDS[self.spec.kind]

    @property
    def reduction(self) -> str:
        return self.spec.reduction

    @property
    def target_type(self) -> str:
        """``"index"``, ``"prob"`` or ``"binary"``."""
        return str(self.spec.targets)

    @property
    def n(self) -> int:
        """Number of samples (rows)."""
        return int(self.grad.shape[0]) if self.grad.ndim == 2 else 1

    @property
    def classes(self) -> int:
        """Number of classes (columns)."""
        return int(self.grad.shape[-1])

    @property
    def dtype(self) -> np.dtype:
        return self.grad.dtype
