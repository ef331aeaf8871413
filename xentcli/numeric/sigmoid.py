r"""Binary cross-entropy with logits (``bce``): every element is its own binary problem.

.. math::

    \ell = w \bigl[q\, y \operatorname{softplus}(-x) + (1 - y) \operatorname{softplus}(x)\bigr]
         = -w \bigl[q\, y \log\sigma(x) + (1-y)\log(1-\sigma(x))\bigr]

.. math::

    \frac{\partial \ell}{\partial x} = w \bigl[(1-y)\,\sigma(x) - q\, y\,(1-\sigma(x))\bigr]
    \;=\; w(\sigma(x) - y) \text{ when } q = 1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import XentInputError, XentWarning
from ..spec import LossSpec
from .blocks import BCE_BLOCK_ELEMENTS, for_blocks, row_sums, scratch, zeros
from .checks import CountedWarning, as_logits, first, numeric_array, output
from .plan import ReductionPlan
from .result import LossResult
from .sums import GroupedSum
from .vectors import option_vector


def bce_block(
    x: np.ndarray, y: np.ndarray, w: np.ndarray | None, pw: np.ndarray | None, denom: float | None,
    grad: np.ndarray, probs: np.ndarray | None, loss_out: np.ndarray | None, masked: bool,
) -> np.ndarray:
    """Elementwise BCE with logits in the logits' dtype.

    With t = exp(min(x, 0)), u = exp(-max(x, 0)) and a = t u = exp(-|x|) in (0, 1]:
    sigmoid(x) = t / (1 + a) and 1 - sigmoid(x) = u / (1 + a), both without
    cancellation and without branches. With the coefficients c- = (1 - y) w and
    c+ = q y w, the loss c- softplus(x) + c+ softplus(-x) is
    (c- + c+) log1p(a) + c- max(x, 0) - c+ min(x, 0), a sum of non-negative terms,
    and the gradient is (c- t - c+ u) / (1 + a). Writes the elementwise losses into
    ``loss_out`` when given; returns float64 row sums of the losses. ``masked``:
    the block may hold -inf logits.
    """
    dt = x.dtype
    f64 = np.float64
    shape = x.shape
    zero = zeros(shape, dt)
    mn = np.minimum(x, zero, out=scratch("bce_mn", shape, dt))
    mx = np.maximum(x, zero, out=scratch("bce_mx", shape, dt))
    t = np.exp(mn, out=scratch("bce_t", shape, dt))
    u = np.negative(mx, out=scratch("bce_u", shape, dt))
    np.exp(u, out=u)
    a = np.multiply(t, u, out=scratch("bce_a", shape, dt))
    d = np.add(a, 1, out=scratch("bce_d", shape, dt))  # 1 + a
    if probs is not None:
        np.divide(t, d, out=probs)  # sigmoid(x)
    lp = np.log1p(a, out=a)
    if w is None and pw is None:
        cneg = np.subtract(1, y, out=scratch("bce_c", shape, dt))
        cpos = y
        loss = np.multiply(cneg, mx, out=mx)  # (1 - y) max(x, 0)
        loss += lp  # (c- + c+) = 1
        with np.errstate(invalid="ignore"):
            np.multiply(cpos, mn, out=mn)  # y min(x, 0) <= 0; nan at a -inf logit with y = 0
        if masked:
            mn[cpos == 0] = 0  # a zero coefficient is a zero term
        loss -= mn
    else:
        # With weights the coefficients are formed in float64 and rounded once (tiny products
        # would otherwise round several times), and so is the loss.
        cneg = np.subtract(1.0, y, dtype=f64)
        cpos = y.astype(f64) if pw is None else np.multiply(y, pw, dtype=f64)
        if w is not None:
            np.multiply(cneg, w, out=cneg)
            np.multiply(cpos, w, out=cpos)
        loss = np.multiply(lp, cneg + cpos, dtype=f64)
        loss += np.multiply(cneg, mx, dtype=f64)
        with np.errstate(invalid="ignore"):
            pos = np.multiply(cpos, mn, dtype=f64)
        if masked:
            pos[cpos == 0] = 0
        loss -= pos
        cneg = cneg.astype(dt)
        cpos = cpos.astype(dt)
    if loss_out is not None:
        loss_out[...] = loss
    rows = row_sums(loss)
    np.multiply(cneg, t, out=t)
    np.multiply(cpos, u, out=u)
    np.subtract(t, u, out=t)  # c- t - c+ u
    if denom is not None:
        np.multiply(d, denom, out=d)
    np.divide(t, d, out=grad)
    return rows


def sigmoid_loss(
    spec: LossSpec,
    logits: Any,
    target: Any,
    *,
    with_probs: bool = True,
    with_losses: bool = True,
    out: np.ndarray | None = None,
    plan: ReductionPlan | None = None,
) -> LossResult:
    """Compute ``bce`` for ``spec`` (see :func:`xentcli.numeric.evaluate`)."""
    dt = np.dtype(spec.dtype)
    x, was_1d = as_logits(logits, dt, binary=True)
    n, c = x.shape
    spec.check_classes(c)
    y = _binary_targets(numeric_array(target, "target"), n, c, dt, was_1d)
    w = option_vector(spec.weight, c, "weight", dt)
    pw = option_vector(spec.pos_weight, c, "pos_weight", dt)
    if plan is None:
        plan = ReductionPlan.for_batch(spec, c, n)
    denom = plan.divisor
    grad = output(out, (n, c), dt)
    probs = np.empty((n, c), dtype=dt) if with_probs else None
    losses = np.empty((n, c), dtype=dt) if with_losses or spec.reduction == "none" else None
    masked = bool(np.min(x) == -np.inf)  # as_logits refused NaN and +inf
    sums = np.empty(n, dtype=np.float64)

    def work(sl: slice) -> None:
        sums[sl] = bce_block(
            x[sl], y[sl], w, pw, denom, grad[sl],
            None if probs is None else probs[sl],
            None if losses is None else losses[sl],
            masked,
        )

    for_blocks(work, n, c, BCE_BLOCK_ELEMENTS)
    # Row sums (float64, row-local), then fixed groups of rows: the same bits under any blocking.
    total = GroupedSum().add(sums) if spec.reduction != "none" else GroupedSum()
    loss, notes = plan.finish(total)
    _warn_infinite(loss, losses, total, was_1d, notes)
    return LossResult(
        loss=loss,
        losses=losses[0] if was_1d and losses is not None else losses,
        grad=grad[0] if was_1d else grad,
        probs=probs[0] if was_1d and probs is not None else probs,
        spec=spec,
        denominator=plan.reported_denominator,
        warnings=tuple(notes),
        exact_total=sums,
    )


def _binary_targets(y: np.ndarray, n: int, c: int, dt: np.dtype, was_1d: bool) -> np.ndarray:
    if y.shape != ((c,) if was_1d else (n, c)):
        raise XentInputError(
            f"binary targets must have the logits' shape {(c,) if was_1d else (n, c)}, got {y.shape}",
            operand="target",
        )
    y = y.reshape(n, c)
    if y.dtype.kind == "b":
        y = y.astype(dt)
    # Two reductions (no N x C temporary); NaN fails both comparisons.
    if y.size and not (np.min(y) >= 0 and np.max(y) <= 1):
        inside = (y >= 0) & (y <= 1)  # False for NaN as well
        idx = first(~inside)
        raise XentInputError(
            f"binary target {float(y[idx]):g} is outside [0, 1]",
            operand="target",
            index=idx[1:] if was_1d else idx,
        )
    return np.ascontiguousarray(y, dtype=dt)


def _warn_infinite(loss: float | None, losses: np.ndarray | None, total: GroupedSum, was_1d: bool,
                   notes: list[XentWarning]) -> None:
    if loss is not None and math.isfinite(loss):
        return
    if losses is None:
        if not total.all_finite:  # only the total is kept (streaming): no row to name
            notes.append(XentWarning("the loss is infinite: a positive target on a logit of -inf"))
        return  # an overflowing sum or mean: the plan said so
    bad = ~np.isfinite(losses)
    if bad.any():
        idx = first(bad)
        notes.append(
            CountedWarning(
                "infinite",
                lambda count: f"the loss is infinite for {count} element(s): a positive target "
                "on a logit of -inf, so -log sigmoid = inf",
                int(bad.sum()),
                operand="logits",
                index=idx[1:] if was_1d else idx,
            )
        )
