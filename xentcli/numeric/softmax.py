"""The softmax kinds (ce, nll, kl) over a whole batch: targets, plan, blocks, reduction."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import XentWarning
from ..spec import LossSpec
from . import blocks
from .checks import (
    as_logits,
    index_targets,
    numeric_array,
    output,
    prob_targets,
    warn_nonfinite,
    warn_unnormalised,
)
from .lm import LogitMap
from .plan import ReductionPlan
from .result import LossResult
from .softmax_kernels import ce_dense_block, ce_index_block, kl_block
from .sums import GroupedSum
from .vectors import option_vector


def softmax_loss(
    spec: LossSpec,
    logits: Any,
    target: Any,
    *,
    with_probs: bool = True,
    with_losses: bool = True,
    out: np.ndarray | None = None,
    plan: ReductionPlan | None = None,
) -> LossResult:
    """Compute a softmax kind of ``spec`` (see :func:`xentcli.numeric.evaluate`)."""
    dt = np.dtype(spec.dtype)
    z, was_1d = as_logits(logits, dt, binary=False)
    n, c = z.shape
    spec.check_classes(c)
    y_raw = numeric_array(target, "target")
    w = option_vector(spec.weight, c, "weight", dt)
    notes: list[XentWarning] = []
    if spec.targets == "index":
        t = index_targets(y_raw, n, c, spec.ignore, was_1d)
        valid = t >= 0
        if plan is None:
            counts = np.bincount(t[valid], minlength=c) if spec.denominator in ("samples", "weights") else None
            plan = ReductionPlan.for_batch(spec, c, n, counts, w)
        rows: Any = _IndexRows(spec, t, valid, None if w is None else plan.scale_weights(w), c, dt)
    else:
        y = prob_targets(y_raw, (n, c), dt, was_1d)
        if plan is None:
            plan = ReductionPlan.for_batch(spec, c, n)
        rows = _ProbRows(spec, y, w, c, dt)

    grad = output(out, (n, c), dt)
    probs = np.empty((n, c), dtype=dt) if with_probs else None
    elementwise = spec.kind == "kl"
    losses = np.empty(n, dtype=np.float64)
    kl_terms = np.empty((n, c), dtype=np.float64) if elementwise and (with_losses or spec.reduction == "none") else None
    div = plan.divisor
    lm = None if spec.kind != "ce" or not spec.language_model else LogitMap(spec, dt)
    zl = _ZLoss(spec, plan, rows, n) if spec.kind == "ce" and spec.has_z_loss else None
    # Row sums of probability targets, for the warning about rows that do not sum to 1: taken block
    # by block, while the block is in cache and on every core.
    target_sums = np.empty(n, dtype=np.float64) if isinstance(rows, _ProbRows) else None

    def work(sl: slice) -> None:
        zb = z[sl]
        ub = zb if lm is None else lm.apply(zb)
        gb = grad[sl]
        pb = None if probs is None else probs[sl]
        if zl is not None and pb is None:
            pb = blocks.scratch("lm_p", (ub.shape[0], c), dt)
        lse = None if zl is None else zl.lse[sl]
        if target_sums is not None:
            target_sums[sl] = blocks.row_sums(rows.y[sl])
        if elementwise:
            losses[sl] = kl_block(zb, rows.y[sl], None if kl_terms is None else kl_terms[sl])
            ce_dense_block(zb, rows.dense(sl), div, gb, pb)
        elif isinstance(rows, _IndexRows) and rows.plain:
            losses[sl] = ce_index_block(ub, rows.t[sl], rows.wy[sl], div, gb, pb, lse)
        else:
            losses[sl] = ce_dense_block(ub, rows.dense(sl), div, gb, pb, lse)
        if zl is not None:
            assert pb is not None
            if plan.denominator == 0:
                gb[...] = 0  # the cross-entropy's mean is 0/0 (its gradient is zero); the z-loss's need not be
            zl.block(sl, gb, pb)
        if lm is not None:
            lm.chain(zb, gb)

    blocks.for_blocks(work, n, c)
    if target_sums is not None:
        warn_unnormalised(target_sums, rows.y, was_1d, notes)
    # Pairwise within fixed groups of samples, exact across groups: the same bits under any blocking.
    total = GroupedSum().add(losses) if spec.reduction != "none" else GroupedSum()
    loss, reduce_notes = plan.finish(total)
    notes += reduce_notes
    exact_total = losses
    reported = plan.unscale(losses)
    z_loss = None
    if zl is not None:
        z_loss = plan.finish_z(GroupedSum().add(zl.losses) if spec.reduction != "none" else GroupedSum())
        if loss is not None and z_loss is not None:
            loss += z_loss
        reported = reported + zl.losses
    warn_nonfinite(reported, z, was_1d, notes)
    if plan.denominator == 0 and zl is None:
        grad[...] = 0
    per_sample: np.ndarray | None = reported.astype(dt)
    if kl_terms is not None:
        per_sample = kl_terms.astype(dt)
    elif elementwise:
        per_sample = None
    return LossResult(
        loss=loss,
        losses=None if per_sample is None else (per_sample[0] if was_1d else per_sample),
        grad=grad[0] if was_1d else grad,
        probs=probs[0] if was_1d and probs is not None else probs,
        spec=spec,
        denominator=plan.reported_denominator,
        warnings=tuple(notes),
        exact_total=exact_total,
        z_loss=z_loss,
        z_losses=None if zl is None else (zl.losses.astype(dt)[0] if was_1d else zl.losses.astype(dt)),
        exact_z=None if zl is None else zl.losses,
    )


def effective_targets(spec: LossSpec, logits: Any, target: Any) -> np.ndarray:
    """The effective target rows ``a`` (N, C) of a softmax kind, in float64, exactly as the kernel forms them.

    ``a = w ((1 - eps) y + eps / C)`` with ``y`` the one-hot row of a class index (all zero for an ignored
    sample) or the given probability row (see :mod:`xentcli.spec`); for ``kl``, ``a = y``.
    """
    dt = np.dtype(np.float64)
    z, was_1d = as_logits(logits, dt, binary=False)
    n, c = z.shape
    y_raw = numeric_array(target, "target")
    w = option_vector(spec.weight, c, "weight", dt)
    rows: Any
    if spec.targets == "index":
        t = index_targets(y_raw, n, c, spec.ignore, was_1d)
        rows = _IndexRows(spec, t, t >= 0, w, c, dt)
    else:
        rows = _ProbRows(spec, prob_targets(y_raw, (n, c), dt, was_1d), w, c, dt)
    a: np.ndarray = np.array(rows.dense(slice(None)), dtype=np.float64)
    return a


class _ZLoss:
    """The z-loss of a batch: lambda lse(u)^2 per counted sample, and its gradient 2 lambda lse p."""

    def __init__(self, spec: LossSpec, plan: ReductionPlan, rows: Any, n: int) -> None:
        self.lam = float(spec.z_loss)  # type: ignore[arg-type]
        self.counted = rows.valid if isinstance(rows, _IndexRows) else None
        self.scale = 1.0 if not plan.z_denominator else 1.0 / plan.z_denominator
        self.lse = np.empty(n, dtype=np.float64)
        self.losses = np.empty(n, dtype=np.float64)

    def block(self, sl: slice, grad: np.ndarray, p: np.ndarray) -> None:
        lse = self.lse[sl]
        with np.errstate(over="ignore"):
            zl = self.lam * np.square(lse)
        coef = (2.0 * self.lam * self.scale) * lse
        if self.counted is not None:
            keep = self.counted[sl]
            zl = np.where(keep, zl, 0.0)
            coef = np.where(keep, coef, 0.0)
        self.losses[sl] = zl
        grad += p * coef.astype(grad.dtype, copy=False)[:, None]


class _IndexRows:
    """Class-index targets of a batch: the effective target rows, block by block."""

    def __init__(self, spec: LossSpec, t: np.ndarray, valid: np.ndarray, w: np.ndarray | None, c: int,
                 dt: np.dtype) -> None:
        self.t = t
        self.valid = valid
        self.w = w
        self.c = c
        self.dt = dt
        self.eps = float(spec.label_smoothing)  # type: ignore[arg-type]
        self.plain = self.eps == 0.0
        if w is None:
            self.wy = valid.astype(np.float64)
        else:
            self.wy = np.where(valid, w.astype(np.float64)[np.where(valid, t, 0)], 0.0)

    def dense(self, sl: slice) -> np.ndarray:
        """a = w ((1 - eps) onehot(t) + eps / C), zero for ignored samples (a scratch buffer)."""
        tb = self.t[sl]
        a = blocks.scratch("targets", (tb.shape[0], self.c), self.dt)
        eps, c = self.eps, self.c
        a[...] = (eps / c) if self.w is None else (eps / c) * self.w
        rows = np.nonzero(tb >= 0)[0]
        a[rows, tb[rows]] += ((1.0 - eps) * self.wy[sl][rows]).astype(self.dt)
        a[tb < 0] = 0
        return a


class _ProbRows:
    """Probability target rows of a batch: the effective target rows, block by block."""

    def __init__(self, spec: LossSpec, y: np.ndarray, w: np.ndarray | None, c: int, dt: np.dtype) -> None:
        self.y = y
        self.w = w
        self.c = c
        self.dt = dt
        self.eps = float(spec.label_smoothing)  # type: ignore[arg-type]

    def dense(self, sl: slice) -> np.ndarray:
        """a = w ((1 - eps) y + eps / C) (a scratch buffer)."""
        yb = self.y[sl]
        a = blocks.scratch("targets", yb.shape, self.dt)
        if self.eps:
            np.multiply(yb, 1.0 - self.eps, out=a)
            a += self.eps / self.c
        else:
            np.copyto(a, yb)
        if self.w is not None:
            a *= self.w
        return a
