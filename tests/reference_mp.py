"""Independent high-precision reference for softmax cross-entropy and sigmoid BCE.

Written from the mathematical definitions with :mod:`mpmath`; it deliberately
does not import ``xentcli`` so that it can be used to test it. Reused by the
accuracy tests, the verify battery and the hardening tests.

Semantics (those of ``torch.nn.functional.cross_entropy`` and
``binary_cross_entropy_with_logits``):

Cross-entropy, one sample (row) ``i`` with ``C`` classes::

    p_c   = exp(z_c) / sum_c' exp(z_c')                (softmax)
    a_c   = w_c * ((1 - eps) * y_c + eps / C)           (effective target)
    l_i   = -sum_c a_c * log p_c                        (0 * log 0 = 0)
    dl_i/dz_c = p_c * s - a_c,        s = sum_c a_c

``y`` is the one-hot row of a class-index target (all zero when the target
equals ``ignore_index``) or the given probability row, used as given (not
renormalised). ``-inf`` logits mask a class: ``p_c = 0``; a positive ``a_c`` on
a masked class makes ``l_i = +inf``.

Reductions: ``"sum"`` adds the ``l_i``; ``"mean"`` divides the sum by the sum of
``w[y_i]`` over the non-ignored samples (index targets; the count of those
samples without weights) or by ``N`` (probability targets). A zero denominator
gives ``loss = nan`` and a zero gradient (as PyTorch). The gradient is the one
of the reduced loss; for ``"none"`` it is the gradient of the *sum*.

Binary cross-entropy with logits, elementwise::

    l    = w * [q * y * softplus(-x) + (1 - y) * softplus(x)]
    dl/dx = w * [(1 - y) * sigmoid(x) - q * y * sigmoid(-x)]

with ``w`` (weight) and ``q`` (pos_weight) broadcast per column; ``"mean"`` is
over all ``N * C`` elements.

Precision. Inputs (float64 arrays, or object arrays of ``mpf``) are converted
exactly (``mpf(float)`` is exact) and everything is evaluated in ``mp.workdps(dps)``
(50 significant digits by default) without touching the global context. The
evaluation uses algebraically identical forms that do not cancel, so the 50
digits are *relative* to each result, including a loss of 1e-300 next to
logits of 1e4 or a gradient ``p_k - 1`` of -1e-300:

* ``log p_c = (z_c - m) - log1p(R)`` with ``m = z_k`` the (first) maximum and
  ``R = sum_{c != k} exp(z_c - m)``, so ``-log p_c`` is a sum of two
  non-negative terms;
* at the arg-max, ``p_k s - a_k = (s - a_k - a_k R) / (1 + R)``;
* ``1 - sigmoid(x)`` is evaluated as ``sigmoid(-x)``.

The one cancellation left is inherent in the data: with dense targets (probability
targets, label smoothing) ``p_c s - a_c`` may be much smaller than its terms; it
is then accurate to ``dps`` digits *of the terms* ``|p_c s| + |a_c|`` (likewise
``(1-y) sigmoid(x) - q y sigmoid(-x)`` for BCE), far below a float64 ulp of them.

:func:`ce_reference_naive` evaluates the definitions literally (``log(sum(exp))``,
``p * s - a``) at a much higher precision; the tests use it to check the
rewritten forms above.

All results are ``mpf`` values in NumPy object arrays; :func:`to_float` rounds
them to float64.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
from mpmath import mp, mpf

DEFAULT_DPS = 50

__all__ = [
    "DEFAULT_DPS",
    "BCEReference",
    "CEReference",
    "bce_reference",
    "ce_reference",
    "ce_reference_naive",
    "ce_row",
    "effective_targets",
    "mp_array",
    "rel_err",
    "to_float",
]

_INF = mpmath.inf
_NAN = mpmath.nan


# --------------------------------------------------------------------------
# Conversion helpers
# --------------------------------------------------------------------------


def _to_mpf(v: Any) -> mpf:
    if isinstance(v, mpf):
        return v
    if isinstance(v, (int, np.integer)):
        return mpf(int(v))
    f = float(v)  # exact for float64 / float32 / Python floats
    return mpf(f)


def mp_array(x: Any) -> np.ndarray:
    """Exact conversion of a float array (or nested list / object array) to an mpf object array."""
    arr = np.asarray(x, dtype=object) if not isinstance(x, np.ndarray) else x
    out = np.empty(arr.shape, dtype=object)
    for idx in np.ndindex(arr.shape):
        out[idx] = _to_mpf(arr[idx])
    return out


def to_float(x: Any) -> Any:
    """Round an mpf (or an object array / list of them) to float64 (nearest)."""
    if x is None:
        return None
    if isinstance(x, np.ndarray):
        out = np.empty(x.shape, dtype=np.float64)
        for idx in np.ndindex(x.shape):
            out[idx] = float(x[idx])
        return out
    if isinstance(x, (list, tuple)):
        return np.array([to_float(v) for v in x], dtype=np.float64)
    return float(x)


def rel_err(got: Any, ref: mpf, dps: int = 30) -> mpf:
    """|got - ref| / |ref| in high precision (0 if both equal, inf if ref == 0 != got)."""
    with mp.workdps(dps):
        g = _to_mpf(got)
        r = _to_mpf(ref)
        if mpmath.isnan(r) or mpmath.isnan(g):
            return mpf(0) if (mpmath.isnan(r) and mpmath.isnan(g)) else _INF
        if mpmath.isinf(r) or mpmath.isinf(g):
            return mpf(0) if g == r else _INF
        if r == 0:
            return mpf(0) if g == 0 else _INF
        return abs(g - r) / abs(r)


def _fsum(values) -> mpf:
    vals = list(values)
    if not vals:
        return mpf(0)
    return mpmath.fsum(vals)


# --------------------------------------------------------------------------
# Cross-entropy
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class CEReference:
    """Reference cross-entropy results (mpf values, object arrays).

    Unpacks as ``loss, losses, grad, probs = ce_reference(...)``.

    Attributes:
        loss: reduced loss (``None`` for ``"none"``; ``nan`` for a 0/0 mean).
        losses: per-sample losses, shape ``(N,)``.
        grad: gradient of the reduced loss (of the sum for ``"none"``), ``(N, C)``.
        probs: softmax, ``(N, C)``.
        denominator: what the mean divides by (``None`` unless ``"mean"``).
        scale: factor applied to the per-sample gradients (``1/denominator``,
            1, or 0 for a 0/0 mean).
        a: effective target rows ``a_ic``, ``(N, C)``.
        s: row sums ``s_i = sum_c a_ic``, ``(N,)``.
        target_type: ``"index"`` or ``"prob"``.
        sample_grad: per-sample gradients ``p s - a`` (unscaled), ``(N, C)``.
    """

    loss: mpf | None
    losses: np.ndarray
    grad: np.ndarray
    probs: np.ndarray
    denominator: mpf | None
    scale: mpf
    a: np.ndarray
    s: np.ndarray
    target_type: str
    sample_grad: np.ndarray

    def __iter__(self) -> Iterator[Any]:
        return iter((self.loss, self.losses, self.grad, self.probs))


def ce_row(z: list, a: list) -> tuple[mpf, list, list]:
    """One sample: ``(loss, grad, probs)`` for logits ``z`` and effective target ``a``.

    ``z`` and ``a`` are sequences of mpf (``z`` may hold ``-inf``, not every entry).
    Evaluated in the current mpmath precision. ``grad`` is ``p * sum(a) - a``.
    """
    c = len(z)
    finite = [not mpmath.isinf(v) for v in z]
    if any(mpmath.isnan(v) or (mpmath.isinf(v) and v > 0) for v in z):
        raise ValueError("logits must be finite or -inf")
    if not any(finite):
        raise ValueError("every logit of the row is -inf: softmax undefined")
    k = max(range(c), key=lambda j: (z[j] if finite[j] else -_INF, -j))  # first arg-max
    m = z[k]
    e = [mpmath.exp(z[j] - m) if finite[j] else mpf(0) for j in range(c)]
    e[k] = mpf(1)
    rest = _fsum(e[j] for j in range(c) if j != k)  # R
    S = 1 + rest
    log_s = mpmath.log1p(rest)
    probs = [e[j] / S for j in range(c)]
    s = _fsum(a)
    terms = []
    for j in range(c):
        if a[j] == 0:
            continue  # 0 * log 0 = 0
        if not finite[j]:
            terms.append(_INF)
        else:
            terms.append(a[j] * ((m - z[j]) + log_s))  # -log p_j = (m - z_j) + log S >= 0
    loss = _INF if any(mpmath.isinf(t) for t in terms) else _fsum(terms)
    grad = [probs[j] * s - a[j] for j in range(c)]
    grad[k] = ((s - a[k]) - a[k] * rest) / S  # = p_k s - a_k without cancellation
    return loss, grad, probs


def _infer_target_type(z_shape: tuple, t_shape: tuple, target_type: str | None) -> str:
    if target_type is None:
        return "prob" if t_shape == z_shape else "index"
    if target_type not in ("index", "prob"):
        raise ValueError(f"target_type must be 'index' or 'prob', not {target_type!r}")
    return target_type


def effective_targets(
    logits: Any,
    target: Any,
    *,
    weight: Any = None,
    ignore_index: int = -100,
    label_smoothing: Any = 0.0,
    target_type: str | None = None,
) -> tuple[np.ndarray, str, np.ndarray, np.ndarray]:
    """Return ``(a, target_type, valid, wy)`` with ``a`` the (N, C) effective target rows.

    ``valid`` marks non-ignored samples (all True for probability targets) and
    ``wy`` holds ``w[y_i]`` for index targets (0 for ignored samples; None-like
    zeros for probability targets). Evaluated in the current mpmath precision.
    """
    z = np.asarray(logits)
    if z.ndim == 1:
        z = z.reshape(1, -1)
        one_d = True
    else:
        one_d = False
    n, c = z.shape
    t = np.asarray(target) if not isinstance(target, np.ndarray) else target
    ttype = _infer_target_type((c,) if one_d else (n, c), t.shape, target_type)
    eps = _to_mpf(label_smoothing)
    w = [mpf(1)] * c if weight is None else list(mp_array(np.asarray(weight).reshape(-1)))
    if len(w) != c:
        raise ValueError("weight must have one value per class")
    a = np.empty((n, c), dtype=object)
    valid = np.ones(n, dtype=bool)
    wy = np.empty(n, dtype=object)
    if ttype == "index":
        tt = t.reshape(-1)
        if tt.shape[0] != n:
            raise ValueError("index targets need one value per sample")
        for i in range(n):
            ti = int(tt[i])
            ignored = ti == int(ignore_index)
            if not ignored and not (0 <= ti < c):
                raise ValueError(f"class index {ti} out of range")
            valid[i] = not ignored
            wy[i] = mpf(0) if ignored else w[ti]
            for j in range(c):
                if ignored:
                    a[i, j] = mpf(0)
                else:
                    y = mpf(1) if j == ti else mpf(0)
                    a[i, j] = w[j] * ((1 - eps) * y + eps / c)
    else:
        y = mp_array(np.asarray(t, dtype=object).reshape(n, c))
        for i in range(n):
            wy[i] = mpf(0)
            for j in range(c):
                a[i, j] = w[j] * ((1 - eps) * y[i, j] + eps / c)
    return a, ttype, valid, wy


def ce_reference(
    logits: Any,
    target: Any,
    *,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: Any = 0.0,
    target_type: str | None = None,
    dps: int = DEFAULT_DPS,
) -> CEReference:
    """Reference softmax cross-entropy (PyTorch semantics), see the module docstring.

    ``logits``: (N, C) or (C,) float64 (or object array of mpf); ``-inf`` masks.
    ``target``: (N,) class indices or (N, C) probabilities (same shape as the
    logits, unless ``target_type`` says otherwise). For 1-D logits the results
    are returned for one row (``losses`` shape (1,), ``grad``/``probs`` shape (C,)).
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"bad reduction {reduction!r}")
    with mp.workdps(dps):
        zin = np.asarray(logits) if not isinstance(logits, np.ndarray) else logits
        one_d = zin.ndim == 1
        z = mp_array(zin.reshape(1, -1) if one_d else zin)
        n, c = z.shape
        a, ttype, valid, wy = effective_targets(
            zin,
            target,
            weight=weight,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
            target_type=target_type,
        )
        losses = np.empty(n, dtype=object)
        probs = np.empty((n, c), dtype=object)
        sgrad = np.empty((n, c), dtype=object)
        s = np.empty(n, dtype=object)
        for i in range(n):
            li, gi, pi = ce_row(list(z[i]), list(a[i]))
            losses[i] = li
            s[i] = _fsum(a[i])
            for j in range(c):
                probs[i, j] = pi[j]
                sgrad[i, j] = gi[j]
        denom = None
        if reduction == "mean":
            denom = _fsum(wy[valid]) if ttype == "index" else mpf(n)
        total = _INF if any(mpmath.isinf(v) for v in losses) else _fsum(losses)
        if reduction == "none":
            loss, scale = None, mpf(1)
        elif reduction == "sum":
            loss, scale = total, mpf(1)
        elif denom == 0:
            loss, scale = _NAN, mpf(0)
        else:
            loss, scale = total / denom, 1 / denom
        grad = np.empty((n, c), dtype=object)
        for i in range(n):
            for j in range(c):
                grad[i, j] = sgrad[i, j] * scale
        if one_d:
            grad, probs, sgrad, a = grad[0], probs[0], sgrad[0], a[0]
        return CEReference(
            loss=loss,
            losses=losses,
            grad=grad,
            probs=probs,
            denominator=denom,
            scale=scale,
            a=a,
            s=s,
            target_type=ttype,
            sample_grad=sgrad,
        )


def ce_reference_naive(
    logits: Any,
    target: Any,
    *,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: Any = 0.0,
    target_type: str | None = None,
    dps: int = 400,
) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """The definitions evaluated literally, at a high precision (default 400 digits).

    ``log p = z - log(sum(exp(z)))``, ``l = -sum(a log p)``, ``grad = p*s - a``,
    with no rewriting. With 400 digits this is accurate (relative to every
    result that is representable in float64) for logits of magnitude up to
    1e4, because the cancellations it suffers lose at most ~330 digits.
    Returns ``(loss, losses, grad, probs)``; 2-D logits only.
    """
    with mp.workdps(dps):
        z = mp_array(np.asarray(logits))
        n, c = z.shape
        a, ttype, valid, wy = effective_targets(
            logits,
            target,
            weight=weight,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
            target_type=target_type,
        )
        losses = np.empty(n, dtype=object)
        probs = np.empty((n, c), dtype=object)
        grad = np.empty((n, c), dtype=object)
        for i in range(n):
            ex = [mpmath.exp(v) for v in z[i]]  # exp(-inf) = 0
            total = mpmath.fsum(ex)
            lse = mpmath.log(total)
            s = mpmath.fsum(a[i])
            li = mpf(0)
            for j in range(c):
                p = ex[j] / total
                probs[i, j] = p
                grad[i, j] = p * s - a[i, j]
                if a[i, j] != 0:
                    li += -a[i, j] * (z[i, j] - lse)
            losses[i] = li
        if reduction == "mean":
            denom = mpmath.fsum(wy[valid]) if ttype == "index" else mpf(n)
        else:
            denom = None
        tot = mpmath.fsum(losses)
        if reduction == "none":
            loss, scale = None, mpf(1)
        elif reduction == "sum":
            loss, scale = tot, mpf(1)
        elif denom == 0:
            loss, scale = _NAN, mpf(0)
        else:
            loss, scale = tot / denom, 1 / denom
        for idx in np.ndindex(grad.shape):
            grad[idx] = grad[idx] * scale
        return loss, losses, grad, probs


# --------------------------------------------------------------------------
# Binary cross-entropy with logits
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class BCEReference:
    """Reference BCE-with-logits results; unpacks as ``loss, losses, grad, probs``.

    ``losses``, ``grad``, ``probs`` (sigmoid) have the logits' shape. ``pos_term``
    and ``neg_term`` are ``w q y sigmoid(-x)`` and ``w (1-y) sigmoid(x)`` (the two
    parts of the unscaled gradient ``neg_term - pos_term``).
    """

    loss: mpf | None
    losses: np.ndarray
    grad: np.ndarray
    probs: np.ndarray
    denominator: mpf | None
    scale: mpf
    pos_term: np.ndarray
    neg_term: np.ndarray

    def __iter__(self) -> Iterator[Any]:
        return iter((self.loss, self.losses, self.grad, self.probs))


def _sigmoid(x: mpf) -> mpf:
    if mpmath.isinf(x):
        return mpf(1) if x > 0 else mpf(0)
    return 1 / (1 + mpmath.exp(-x))


def _softplus(t: mpf) -> mpf:
    """log(1 + exp(t)), relative accuracy for every t."""
    if mpmath.isinf(t):
        return _INF if t > 0 else mpf(0)
    return mpmath.log1p(mpmath.exp(t))


def _per_column(v: Any, c: int, name: str) -> list:
    if v is None:
        return [mpf(1)] * c
    arr = np.asarray(v, dtype=object).reshape(-1)
    if arr.shape[0] == 1:
        arr = np.repeat(arr, c)
    if arr.shape[0] != c:
        raise ValueError(f"{name} must have 1 or {c} values")
    return list(mp_array(arr))


def bce_reference(
    logits: Any,
    target: Any,
    *,
    weight: Any = None,
    pos_weight: Any = None,
    reduction: str = "mean",
    dps: int = DEFAULT_DPS,
) -> BCEReference:
    """Reference sigmoid BCE with logits (PyTorch semantics), see the module docstring."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"bad reduction {reduction!r}")
    with mp.workdps(dps):
        xin = np.asarray(logits)
        shape = xin.shape
        x2 = xin.reshape(1, -1) if xin.ndim == 1 else xin
        n, c = x2.shape
        x = mp_array(x2)
        y = mp_array(np.asarray(target, dtype=object).reshape(n, c))
        w = _per_column(weight, c, "weight")
        q = _per_column(pos_weight, c, "pos_weight")
        losses = np.empty((n, c), dtype=object)
        probs = np.empty((n, c), dtype=object)
        pos_t = np.empty((n, c), dtype=object)
        neg_t = np.empty((n, c), dtype=object)
        for i in range(n):
            for j in range(c):
                xv, yv = x[i, j], y[i, j]
                if mpmath.isnan(xv) or (mpmath.isinf(xv) and xv > 0):
                    raise ValueError("logits must be finite or -inf")
                cpos = q[j] * yv
                cneg = 1 - yv
                l = mpf(0)
                if cpos != 0:
                    l += cpos * _softplus(-xv)  # -log sigmoid(x)
                if cneg != 0:
                    l += cneg * _softplus(xv)  # -log(1 - sigmoid(x))
                losses[i, j] = w[j] * l if not (w[j] == 0 and mpmath.isinf(l)) else mpf(0)
                sig, cosig = _sigmoid(xv), _sigmoid(-xv)
                probs[i, j] = sig
                pos_t[i, j] = w[j] * cpos * cosig
                neg_t[i, j] = w[j] * cneg * sig
        denom = mpf(n * c) if reduction == "mean" else None
        flat = list(losses.reshape(-1))
        total = _INF if any(mpmath.isinf(v) for v in flat) else _fsum(flat)
        if reduction == "none":
            loss, scale = None, mpf(1)
        elif reduction == "sum":
            loss, scale = total, mpf(1)
        else:
            loss, scale = total / denom, 1 / denom
        grad = np.empty((n, c), dtype=object)
        for idx in np.ndindex(grad.shape):
            grad[idx] = (neg_t[idx] - pos_t[idx]) * scale
        if len(shape) == 1:
            losses, grad, probs, pos_t, neg_t = losses[0], grad[0], probs[0], pos_t[0], neg_t[0]
        return BCEReference(
            loss=loss,
            losses=losses,
            grad=grad,
            probs=probs,
            denominator=denom,
            scale=scale,
            pos_term=pos_t,
            neg_term=neg_t,
        )
