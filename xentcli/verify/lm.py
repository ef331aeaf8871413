r"""The language-model options of one case as verify's bounds and diagnoses need them, computed once.

With soft-capping c and temperature T the softmax sees :math:`u = c\tanh(z/c)/T`
(xent's :class:`~xentcli.numeric.lm.LogitMap`, in float64), and the gradient
with respect to the logits is the one with respect to u times
:math:`\partial u_j/\partial z_j = \operatorname{sech}^2(z_j/c)/T`. The z-loss
:math:`\lambda\,\mathrm{lse}(u)^2` counts the samples that are not ignored, and
its mean divides by their number (Liger-Kernel's reduction, also with class
weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import numeric
from ..numeric.lm import LogitMap
from ..spec import LossSpec

__all__ = ["LmView", "lm_view"]


@dataclass
class LmView:
    """u, du/dz, lse(u), the counted samples and the gradient with respect to u, of one case."""

    u: np.ndarray  # (N, C) the logits the softmax sees
    chain: np.ndarray  # (N, C) du_j/dz_j = sech^2(z_j/c)/T (1 without the map)
    lse: np.ndarray  # (N,) log sum exp u (finite rows)
    counted: np.ndarray  # (N,) bool: the sample is not ignored
    lam: float  # the z-loss's lambda (0: off)
    z_scale: float  # what the reduced z-loss multiplies the summed per-sample terms by (1/counted for mean)
    grad_u: np.ndarray  # (N, C) d(reduced loss)/du, accurate (xent's kernel on u)
    identity: bool  # no soft-capping and no temperature: u = z

    @property
    def probs(self) -> np.ndarray:
        with np.errstate(all="ignore"):
            out: np.ndarray = np.exp(self.u - self.lse[:, None])
        return np.where(np.isfinite(out), out, 0.0)

    def z_terms(self) -> np.ndarray:
        """The per-sample z-loss terms lambda lse^2 (0 for an ignored sample)."""
        return np.where(self.counted, self.lam * self.lse**2, 0.0)


def lm_view(options: LossSpec, z: np.ndarray, targets: np.ndarray) -> LmView:
    """The view of ``z`` (N, C, float64, the values handed over) and ``targets`` under ``options`` (ce)."""
    z = np.asarray(z, dtype=np.float64)
    n, c = z.shape
    logit_map = LogitMap(options, np.dtype(np.float64))
    u = z.copy() if logit_map.identity else np.array(logit_map.apply(z), copy=True)
    chain = np.ones_like(z)
    if not logit_map.identity:
        logit_map.chain(z, chain)
    with np.errstate(all="ignore"):
        lse = numeric.logsumexp(u, axis=1)
    lse = np.where(np.isfinite(lse), lse, 0.0)
    t = np.asarray(targets)
    counted = t != options.ignore if options.targets == "index" else np.ones(n, dtype=bool)
    count = int(counted.sum())
    z_scale = 1.0 / count if options.reduction in ("mean", "batchmean") and count else 1.0
    lam = float(options.z_loss)  # type: ignore[arg-type]  # a numeric spec: no SYM
    plain = options.with_(dtype="float64", softcap=None, temperature=1)
    grad_u = np.asarray(numeric.evaluate(plain, u, targets, warn=False, with_probs=False).grad, dtype=np.float64)
    return LmView(u, chain, lse, counted, lam, z_scale, grad_u, logit_map.identity)
