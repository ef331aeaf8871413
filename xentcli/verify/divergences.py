"""Where the frameworks' answer is not the mathematical one: verify's third verdict.

A case whose outputs differ from the reference exactly as a documented
framework behaviour does is reported as "differs where the frameworks differ"
with that behaviour, and does not fail verification unless ``--strict`` is
given. Each entry says what the frameworks return, why xent's reference is
what it is, and recognises the behaviour from the outputs of one case. The
README's "Where xent and PyTorch differ" lists the same entries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import numeric
from ..spec import LossSpec

__all__ = ["DIVERGENCES", "Divergence", "Observed", "explain"]


@dataclass
class Observed:
    """One case's outputs next to the reference: what a divergence is recognised from."""

    options: LossSpec
    logits: np.ndarray  # the values handed over, float64
    targets: np.ndarray
    ref: numeric.LossResult
    got: dict[str, np.ndarray]  # "loss" and "grad" (when returned), float64, the reference's shapes
    want: dict[str, np.ndarray]
    bad: dict[str, np.ndarray]  # elements outside the pass bound
    within_cancel: dict[str, bool]  # every element within the pass bound plus the cancellation allowance
    _a: np.ndarray | None = field(default=None, repr=False)

    @property
    def effective_targets(self) -> np.ndarray:
        if self._a is None:
            self._a = numeric.effective_targets(self.options, self.logits, self.targets)
        return self._a


@dataclass(frozen=True)
class Divergence:
    key: str
    title: str
    frameworks: str  # what the frameworks return
    reason: str  # why the reference is what it is
    recognise: Callable[[Observed], str | None]  # the case-specific detail, or None

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "frameworks": self.frameworks, "reason": self.reason}


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _zero_weight_mean(obs: Observed) -> str | None:
    """A mean over zero total weight: 0/0, whatever the convention."""
    if obs.options.reduction != "mean" or obs.ref.denominator != 0:
        return None
    loss = obs.got["loss"]
    if loss.size != 1 or not (np.isnan(loss).all() or (loss == 0).all()):
        return None
    grad = obs.got.get("grad")
    if grad is not None and not np.all(np.isnan(grad) | (grad == 0)):
        return None
    got = f"loss {_fmt(float(loss.reshape(-1)[0]))}"
    if grad is not None:
        got += ", a NaN gradient" if np.isnan(grad).any() else ", a zero gradient"
    return f"every sample has zero weight (ignored): the mean is 0/0; this implementation returns {got}"


def _masked_zero_target(obs: Observed) -> str | None:
    """A zero target on a -inf logit with probability targets: 0 * (-inf) = NaN in the frameworks."""
    if obs.options.family != "softmax" or obs.options.targets != "prob":
        return None
    if obs.bad.get("grad") is not None and obs.bad["grad"].any():
        return None
    z, a = obs.logits, obs.effective_targets
    hit = np.isneginf(z) & (a == 0)
    if not hit.any():
        return None
    bad = obs.bad["loss"]
    loss = obs.got["loss"]
    if not bad.any() or not np.isnan(loss[bad]).all():
        return None
    if obs.options.reduction == "none":
        allowed = hit if obs.options.kind == "kl" else hit.any(axis=1)
        if not allowed[bad].all():
            return None
        rows = sorted({int(i) for i in np.argwhere(bad)[:, 0]})
        where = f"sample{'s' if len(rows) > 1 else ''} {', '.join(map(str, rows[:8]))}"
    else:
        where = "the reduced loss"
    return f"NaN loss ({where}) where a −inf logit has target 0"


def _tiny(obs: Observed) -> str | None:
    """Values far below the terms they are computed from, lost to the frameworks' cancellation."""
    if not all(obs.within_cancel.values()):
        return None
    for key in ("loss", "grad"):
        bad = obs.bad.get(key)
        if bad is not None and bad.any() and not np.isfinite(obs.got[key][bad]).all():
            return None
    parts = []
    for key in ("loss", "grad"):
        bad = obs.bad.get(key)
        if bad is None or not bad.any():
            continue
        got, want = obs.got[key], obs.want[key]
        err = np.where(bad, np.abs(got - want), 0.0)
        i = np.unravel_index(int(np.argmax(err)), err.shape) if err.ndim else ()
        at = f"[{', '.join(str(int(k)) for k in i)}]" if len(i) else ""
        parts.append(f"{key}{at} = {_fmt(float(got[i]))} where the reference is {_fmt(float(want[i]))}")
    return "; ".join(parts) or None


def _float16_overflow(obs: Observed) -> str | None:
    """+inf losses in float16 where a sum the framework forms in float16 exceeds float16's largest number:
    label smoothing's Σ_c w_c·(−log p_c), or the summed (weighted) losses that a mean then divides."""
    o = obs.options
    if o.dtype != "float16" or o.family != "softmax":
        return None
    if obs.bad.get("grad") is not None and obs.bad["grad"].any():
        return None
    bad, loss = obs.bad["loss"], obs.got["loss"]
    if not bad.any() or not np.isposinf(loss[bad]).all():
        return None
    with np.errstate(all="ignore"):
        z = obs.logits
        top_z = np.max(np.where(np.isneginf(z), -np.inf, z), axis=1, keepdims=True)
        logp = z - top_z - np.log(np.sum(np.exp(z - top_z), axis=1, keepdims=True))
        w = np.ones(logp.shape[1]) if o.weight is None else np.asarray([float(v) for v in o.weight])  # type: ignore[union-attr]
        total = -np.sum(np.where(np.isfinite(logp), w * logp, 0.0), axis=1)
    top = float(np.finfo(np.float16).max)
    over = total > top
    if not o.smoothing:
        over = np.zeros_like(over)  # without smoothing no such per-sample sum is formed
    if o.reduction == "none":
        if not over[bad].all():
            return None
        rows = sorted(int(i) for i in np.argwhere(bad).reshape(-1))
        where = f"sample{'s' if len(rows) > 1 else ''} {', '.join(map(str, rows[:8]))}"
        return (f"+inf loss ({where}): Σ_c w_c·(−log p_c) reaches {float(total.max()):.4g}, beyond float16's "
                f"largest number {top:g}")
    ref_loss = float(np.asarray(obs.want["loss"]).reshape(-1)[0])
    summed = ref_loss * (obs.ref.denominator or 1.0) if o.reduction == "mean" else ref_loss
    if over.any():
        return (f"+inf loss: Σ_c w_c·(−log p_c) reaches {float(total.max()):.4g}, beyond float16's largest "
                f"number {top:g}")
    if o.smoothing and float(total.sum()) > top:
        return (f"+inf loss: Σ_n Σ_c w_c·(−log p_c) over the batch reaches {float(total.sum()):.4g}, beyond "
                f"float16's largest number {top:g}")
    if abs(summed) > top:
        return f"+inf loss: the sum over the samples, {summed:.4g}, is beyond float16's largest number {top:g}"
    return None


DIVERGENCES: tuple[Divergence, ...] = (
    Divergence(
        "zero-weight-mean",
        "a mean over zero total weight",
        "PyTorch returns a nan loss and a zero gradient (0/0); other code returns 0, or a NaN gradient",
        "the mean of no samples is undefined; any of loss nan or 0 with a gradient of zeros or NaN is that "
        "undefined value (xent follows PyTorch: nan and zeros)",
        _zero_weight_mean,
    ),
    Divergence(
        "masked-zero-target",
        "probability targets with a zero target on a −inf logit",
        "torch.nn.functional.cross_entropy, kl_div and optax.softmax_cross_entropy return NaN: they compute "
        "0·(−inf)",
        "the loss's limit is finite: a zero target contributes 0·log 0 = 0 (the gradients agree)",
        _masked_zero_target,
    ),
    Divergence(
        "float16-overflow",
        "float16: a sum overflows though the loss is finite",
        "torch.nn.functional.cross_entropy accumulates in float16 label smoothing's Σ_c w_c·(−log p_c) and the "
        "sum of the (weighted) losses that a mean then divides, and returns +inf once one passes 65504 (large "
        "logits, many classes, or class weights), though the mean is a finite float16 number",
        "the loss is a finite float16 number; xent accumulates in float32 or more and rounds the result",
        _float16_overflow,
    ),
    Divergence(
        "confident-cancellation",
        "confident predictions: digits lost to cancellation in lse(z) − z_t and p − 1 (or flushed to zero)",
        "PyTorch and JAX compute the loss as lse(z) − z_t and the gradient as p − y, which keep only absolute "
        "accuracy where p_t is close to 1: a loss of 1e-26 comes back as 0, p − 1 = −1e-5 with 11 digits; "
        "XLA also flushes results below the normal range (float32: 1.2e-38) to zero",
        "the reference is accurate relative to each value; an error within the rounding of the terms the "
        "frameworks subtract (K·u·(κ + L)·(|p·s| + |a|), K·u·(κ + L)·s for the loss) is that cancellation",
        _tiny,
    ),
)


def explain(obs: Observed) -> tuple[Divergence, str] | None:
    """The documented divergence that accounts for every failing element of this case, with its detail."""
    for div in DIVERGENCES:
        detail = div.recognise(obs)
        if detail:
            return div, detail
    return None
