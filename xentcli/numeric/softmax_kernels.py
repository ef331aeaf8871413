r"""Softmax kernels: cross-entropy, LogSoftmax + NLL and the KL divergence, one block of rows at a time.

Notation, for one sample (a row of the logits) with C classes:

.. math::

    m = \max_j z_j, \qquad
    S = \sum_j e^{z_j - m}, \qquad
    \operatorname{lse}(z) = m + \log S, \qquad
    p_j = e^{z_j - m} / S .

The cross-entropy against a non-negative target vector :math:`a` (class
weights, label smoothing, ignored samples and probability targets all fold
into :math:`a`, see :mod:`xentcli.spec`) is

.. math::

    \ell = -\sum_j a_j \log p_j = \sum_j a_j (m - z_j) + s \log S,
    \qquad s = \sum_j a_j,

and its gradient is :math:`\partial\ell/\partial z_j = p_j s - a_j`, which is
:math:`p - y` when :math:`s = 1`. The KL divergence adds
:math:`\sum_j y_j \log y_j`, which does not depend on z.

Numerical care taken (so that results are accurate for any finite logits,
not only "stable"):

* ``log S`` is computed as ``log1p(S - 1)`` where ``S - 1`` is summed over the
  non-maximal classes only, so a confident prediction keeps its tiny loss.
* The gradient at the arg-max class, :math:`p_k s - a_k`, would cancel when
  :math:`p_k \approx 1`; it is computed as
  :math:`(\sum_{j\ne k} a_j - a_k \sum_{j\ne k} e^{z_j-m}) / S` instead.
* Every cross-entropy is a sum of non-negative terms (no ``s * lse - a . z``).
* Row-level scalars (sums, logs, losses) are accumulated in float64 even when
  the elementwise work is done in float32.
"""

from __future__ import annotations

import numpy as np

from .blocks import row_dot, row_sums, scratch


class ShiftedExp:
    """Shifted exponentials of a block: e = exp(z - m), with e = 1 at the arg-max k.

    ``base`` + column gives flat indices into the block (faster than 2-D
    fancy indexing); ``rest`` is the sum over the non-maximal classes, so
    S = 1 + rest and log S = log1p(rest) stay accurate for confident rows.
    """

    __slots__ = ("base", "k", "kf", "m", "e", "rest", "S", "logS")

    def __init__(self, z: np.ndarray, work: np.ndarray) -> None:
        b, c = z.shape
        self.base = np.arange(0, b * c, c)
        self.k, m = row_max(z)
        self.kf = self.base + self.k
        e = np.subtract(z, m[:, None], out=work)
        np.exp(e, out=e)
        ef = e.reshape(-1)
        ef[self.kf] = 0
        self.rest = row_sums(e)
        ef[self.kf] = 1
        self.m = m.astype(np.float64, copy=False)
        self.e = e
        self.S = 1.0 + self.rest
        self.logS = np.log1p(self.rest)

    def probs(self, out: np.ndarray) -> None:
        np.divide(self.e, self.S.astype(out.dtype, copy=False)[:, None], out=out)


NARROW = 8  # rows up to this long find their maximum column by column (argmax pays a call per row)
SHORT = 16  # rows up to this long find the arg-max from a column code (below)
_CODES: dict[int, tuple[np.ndarray, np.dtype]] = {}


def _code_powers(c: int) -> tuple[np.ndarray, np.dtype]:
    """``2^(c-1-j)`` for the columns j of a row, in the smallest unsigned type that holds their sum."""
    found = _CODES.get(c)
    if found is None:
        dt = np.dtype(np.uint8 if c <= 8 else np.uint16)
        found = _CODES.setdefault(c, (np.left_shift(1, np.arange(c - 1, -1, -1)).astype(dt), dt))
    return found


def row_max(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first arg-max of each row and the maximum (the logits hold no NaN).

    NumPy's arg-max makes a call per row, which costs more than a short row.
    Rows up to ``NARROW`` long keep the arg-max while taking the maximum
    column by column; rows up to ``SHORT`` long take the maximum column by
    column, then the first column holding it from one integer matrix-vector
    product, ``code = sum_j [z_j = m] 2^(c-1-j)``, whose leading bit is that
    column (an integer product runs in NumPy's own loop, never a threaded BLAS).
    """
    b, c = z.shape
    if c > SHORT:
        k = z.argmax(axis=1)
        return k, z.reshape(-1)[np.arange(0, b * c, c) + k]
    best = z[:, 0].copy()
    if c <= NARROW:
        k = np.zeros(b, dtype=np.intp)
        for j in range(1, c):
            column = z[:, j]
            k[column > best] = j  # strictly greater: the first of equal maxima stays, as with argmax
            np.maximum(best, column, out=best)
        return k, best
    for j in range(1, c):
        np.maximum(best, z[:, j], out=best)
    powers, dt = _code_powers(c)
    eq = np.equal(z, best[:, None], out=scratch("row_max_eq", (b, c), dt), casting="unsafe")
    code = np.matmul(eq, powers).astype(np.float32)  # exact and positive: the maximum is in its row
    k = (c + 126) - (code.view(np.int32) >> 23).astype(np.intp)  # the float's exponent is c - 1 - k
    return k, best


def ce_index_block(
    z: np.ndarray, t: np.ndarray, wy: np.ndarray, denom: float | None, grad: np.ndarray, probs: np.ndarray | None,
    lse: np.ndarray | None = None,
) -> np.ndarray:
    """Class-index targets, no smoothing. Returns per-sample losses (float64).

    ``denom`` divides the gradient (the mean's denominator) or is ``None``;
    ``probs`` is an output buffer or ``None`` when probabilities are not wanted;
    ``lse`` (float64) receives each row's log-sum-exp when given.
    """
    sm = ShiftedExp(z, grad)
    if lse is not None:
        np.add(sm.m, sm.logS, out=lse)
    valid = t >= 0
    tt = np.where(valid, t, sm.k)
    tf = sm.base + tt
    zt = z.reshape(-1)[tf].astype(np.float64, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):
        nll = (sm.m - zt) + sm.logS  # -log p_t, a sum of two non-negative terms
        losses = np.where(wy > 0, wy * nll, 0.0)
    if probs is not None:
        sm.probs(probs)
    # grad = wy / denom * (p - onehot(t)); wy / denom is formed first so that a tiny
    # denominator (subnormal total weight) cannot overflow on its own.
    coef = wy if denom is None else wy / denom
    e = sm.e
    ef = e.reshape(-1)
    per_row = coef / sm.S
    np.multiply(e, per_row.astype(e.dtype, copy=False)[:, None], out=e)
    ef[tf] -= coef.astype(e.dtype, copy=False)  # p_t - 1 with p_t <= 1/2 when t is not the arg-max: no cancellation
    # At the arg-max: p_k = 1/S, and when it is the target, p_k - 1 = -rest/S without cancellation.
    ef[sm.kf] = np.where(tt == sm.k, 0.0 - coef * sm.rest / sm.S, per_row).astype(e.dtype, copy=False)
    return losses


def ce_dense_block(
    z: np.ndarray, a: np.ndarray, denom: float | None, grad: np.ndarray, probs: np.ndarray | None,
    lse: np.ndarray | None = None,
) -> np.ndarray:
    """Dense non-negative target rows ``a`` (weights/smoothing folded in).

    ``a`` is a scratch buffer owned by the caller: it is modified. ``lse``
    (float64) receives each row's log-sum-exp when given.
    """
    b, c = z.shape
    base = np.arange(0, b * c, c)
    k, m = row_max(z)
    kf = base + k
    zm = np.subtract(z, m[:, None], out=grad)  # z - m <= 0
    # sum_j a_j (m - z_j) = -sum_j a_j (z_j - m): every term has the same sign (no cancellation).
    with np.errstate(invalid="ignore"):
        cross = -row_dot(a, zm)
    bad = ~np.isfinite(cross)
    if bad.any():  # -inf logits: a zero target there is a zero term, a positive one makes the loss infinite
        for i in np.nonzero(bad)[0]:
            masked = np.isneginf(zm[i])
            if (a[i][masked] > 0).any():
                cross[i] = np.inf
            else:
                keep = ~masked
                cross[i] = -float(np.dot(a[i][keep].astype(np.float64), zm[i][keep].astype(np.float64)))
    e = np.exp(zm, out=zm)
    ef = e.reshape(-1)
    ef[kf] = 0
    rest = row_sums(e)  # sum over the non-maximal classes
    ef[kf] = 1
    S = 1.0 + rest
    logS = np.log1p(rest)
    if lse is not None:
        np.add(m.astype(np.float64, copy=False), logS, out=lse)
    af = a.reshape(-1)
    ak = af[kf].astype(np.float64, copy=False)
    af[kf] = 0
    s_rest = row_sums(a)
    af[kf] = ak
    s = s_rest + ak
    with np.errstate(over="ignore", invalid="ignore"):
        losses: np.ndarray = cross + s * logS
    if probs is not None:
        np.divide(e, S.astype(probs.dtype, copy=False)[:, None], out=probs)
    if denom is not None:
        s, s_rest, ak = s / denom, s_rest / denom, ak / denom
        np.divide(a, denom, out=a)
    np.multiply(e, (s / S).astype(e.dtype, copy=False)[:, None], out=e)
    e -= a
    ef[kf] = ((s_rest - ak * rest) / S).astype(e.dtype, copy=False)
    return losses


def kl_block(z: np.ndarray, y: np.ndarray, elementwise: np.ndarray | None) -> np.ndarray:
    """KL(y || softmax(z)) per row (float64), and elementwise into ``elementwise`` when given.

    Each term is ``y_j (log y_j - log p_j)`` with ``log p_j = (z_j - m) - log S``
    in float64; a zero target is a zero term (``0 log 0 = 0``), also where
    ``z_j = -inf``.
    """
    sm = ShiftedExp(z, scratch("kl_e", (z.shape[0], z.shape[1]), z.dtype))
    logp = np.subtract(z, sm.m.astype(z.dtype, copy=False)[:, None], dtype=np.float64)
    logp -= sm.logS[:, None]
    y64 = y.astype(np.float64, copy=False)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        terms = np.where(y64 > 0, y64 * (np.log(np.where(y64 > 0, y64, 1.0)) - logp), 0.0)
    if elementwise is not None:
        elementwise[...] = terms
    return row_sums(terms)
