r"""Numeric reference kernels: softmax cross-entropy and sigmoid BCE, PyTorch semantics.

Everything here is NumPy only (no SymPy, click or rich). The public entry
points are :func:`cross_entropy` and :func:`binary_cross_entropy`; both
return a :class:`LossResult`.

Notation, for one sample (a row of the logits) with C classes:

.. math::

    m = \max_j z_j, \qquad
    S = \sum_j e^{z_j - m}, \qquad
    \operatorname{lse}(z) = m + \log S, \qquad
    p_j = e^{z_j - m} / S .

The cross-entropy against a non-negative target vector :math:`a` (class
weights, label smoothing and probability targets all fold into :math:`a`) is

.. math::

    \ell = -\sum_j a_j \log p_j = \sum_j a_j (m - z_j) + s \log S,
    \qquad s = \sum_j a_j,

and its gradient is :math:`\partial\ell/\partial z_j = p_j s - a_j`, which is
:math:`p - y` when :math:`s = 1`.

Numerical care taken (so that results are accurate for any finite logits,
not only "stable"):

* ``log S`` is computed as ``log1p(S - 1)`` where ``S - 1`` is summed over the
  non-maximal classes only, so a confident prediction keeps its tiny loss.
* The gradient at the arg-max class, :math:`p_k s - a_k`, would cancel when
  :math:`p_k \approx 1`; it is computed as
  :math:`(\sum_{j\ne k} a_j - a_k \sum_{j\ne k} e^{z_j-m}) / S` instead.
* Every loss is a sum of non-negative terms (no ``s * lse - a . z``).
* Row-level scalars (sums, logs, losses) are accumulated in float64 even when
  the elementwise work is done in float32.
* Reductions over samples are exact sums (``math.fsum``) so the result does
  not depend on the order or blocking of the rows.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .errors import XentInputError, XentWarning

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS = ("mean", "sum", "none")
DTYPES = {"float64": np.float64, "float32": np.float32}
PROB_SUM_TOL = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-5}

# Rows per block: a block's working set stays in the processor's cache, and blocks
# are shared among threads (NumPy releases the GIL inside its loops).
_BLOCK_ELEMENTS = 1 << 19
_BCE_BLOCK_ELEMENTS = 1 << 18  # BCE keeps ~8 block-sized arrays live: smaller blocks stay in cache
_PARALLEL_MIN = 1 << 20  # below this many elements one thread is faster
_POOL: Any = None
_LOCAL = threading.local()


@dataclass(frozen=True)
class LossResult:
    """Loss, per-sample losses, probabilities and gradient of one computation.

    Attributes:
        loss: the reduced loss (``None`` for ``reduction="none"``); ``nan``
            when a mean is taken over zero total weight (as PyTorch does).
        losses: per-sample losses, shape ``(N,)`` for cross-entropy and the
            elementwise losses, shape ``(N, C)``, for binary cross-entropy.
        grad: d loss / d logits, shape ``(N, C)``. For ``reduction="none"``
            it is the gradient of the *sum*, so row i is sample i's gradient.
        probs: softmax outputs (cross-entropy) or sigmoid outputs (BCE).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        kind: ``"cross_entropy"`` or ``"binary_cross_entropy_with_logits"``.
        target_type: ``"index"``, ``"prob"`` or ``"binary"``.
        denominator: what the mean divides by (``None`` unless ``mean``).
        warnings: :class:`~xentcli.errors.XentWarning` objects about the result.
    """

    loss: float | None
    losses: np.ndarray | None
    grad: np.ndarray
    probs: np.ndarray | None
    reduction: str
    kind: str
    target_type: str
    denominator: float | None = None
    warnings: tuple[XentWarning, ...] = field(default=())
    # The float64 per-sample losses (BCE: row sums) before rounding to the dtype, in the
    # rescaled weights' units: what streaming accumulates across chunks.
    exact_total: Any = field(default=None, repr=False, compare=False)

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


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------


def _resolve_dtype(dtype: Any, *arrays: Any) -> np.dtype:
    if dtype is None:
        for a in arrays:
            if isinstance(a, np.ndarray) and a.dtype in (np.float32, np.float64):
                return a.dtype
        return np.dtype(np.float64)
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise XentInputError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        return np.dtype(DTYPES[dtype])
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise XentInputError(f"dtype must be float32 or float64, not {dt}")
    return dt


def _numeric_array(x: Any, operand: str) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        raise XentInputError(f"cannot be read as an array: {exc}", operand=operand) from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise XentInputError(f"must hold real numbers, not {arr.dtype}", operand=operand)
    return arr


def _num(v: Any) -> str:
    """A value as users wrote it: 0.5, 3, nan (never np.float64(0.5))."""
    f = float(v)
    return str(int(f)) if f.is_integer() and abs(f) < 2**63 else repr(f)


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _as_logits(logits: Any, dt: np.dtype, *, binary: bool) -> tuple[np.ndarray, bool]:
    """Return 2-D logits in dtype ``dt`` and whether the input was 1-D."""
    z = _numeric_array(logits, "logits")
    if z.ndim not in (1, 2):
        raise XentInputError(
            f"must be 1-D (one sample) or 2-D (N samples x C classes), got shape {z.shape}",
            operand="logits",
        )
    if z.size == 0:
        raise XentInputError(f"is empty (shape {z.shape})", operand="logits")
    was_1d = z.ndim == 1
    if z.dtype.kind == "f" and z.dtype.itemsize > dt.itemsize:
        with np.errstate(over="ignore"):
            zc = z.astype(dt)
        overflow = np.isinf(zc) & np.isfinite(z)
        if overflow.any():
            idx = _first(overflow)
            raise XentInputError(
                f"{_num(z[idx])} does not fit in {dt} (largest {np.finfo(dt).max:.4g})",
                operand="logits",
                index=idx[1:] if was_1d and len(idx) > 1 else idx,
            )
        z = zc
    z = np.ascontiguousarray(z, dtype=dt)
    if was_1d:
        z = z.reshape(1, -1)
    finite = np.isfinite(z)
    if not finite.all():
        nan = np.isnan(z)
        if nan.any():
            raise XentInputError("NaN is not a valid logit", operand="logits", index=_index(nan, was_1d))
        posinf = np.isposinf(z)
        if posinf.any():
            raise XentInputError(
                "+inf is not a valid logit (-inf is allowed and masks a class)",
                operand="logits",
                index=_index(posinf, was_1d),
            )
        if not binary:
            dead = (~finite).all(axis=1)
            if dead.any():
                row = int(np.argmax(dead))
                raise XentInputError(
                    "every logit of this sample is -inf: softmax is undefined",
                    operand="logits",
                    index=(row,) if not was_1d else None,
                )
    return z, was_1d


def _index(mask: np.ndarray, was_1d: bool) -> tuple[int, ...]:
    idx = _first(mask)
    return idx[1:] if was_1d else idx


def _class_vector(x: Any, c: int, operand: str, dt: np.dtype, *, allow_scalar: bool) -> np.ndarray:
    v = _numeric_array(x, operand)
    if v.ndim == 0 and allow_scalar:
        v = np.full(c, v, dtype=np.float64)
    if v.ndim != 1 or (v.shape[0] != c and not (allow_scalar and v.shape[0] == 1)):
        expect = f"{c} values (one per class)" + (" or a single value" if allow_scalar else "")
        raise XentInputError(f"must have {expect}, got shape {v.shape}", operand=operand)
    v = v.astype(np.float64)
    if v.shape[0] == 1 and c != 1:
        v = np.repeat(v, c)
    bad = ~np.isfinite(v)
    if bad.any():
        raise XentInputError("must be finite", operand=operand, index=_first(bad))
    neg = v < 0
    if neg.any():
        i = _first(neg)
        raise XentInputError(f"must not be negative, got {v[i]:g}", operand=operand, index=i)
    return v.astype(dt)


def _output(out: np.ndarray | None, shape: tuple[int, int], dt: np.dtype) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=dt)
    if not isinstance(out, np.ndarray) or out.dtype != dt or not out.flags.c_contiguous or (
        out.reshape(shape).shape != shape if out.size == shape[0] * shape[1] else True
    ):
        raise XentInputError(f"out must be a C-contiguous {dt} array of shape {shape}")
    return out.reshape(shape)


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise XentInputError(f"reduction must be one of {', '.join(REDUCTIONS)}, not {reduction!r}")


def _check_smoothing(label_smoothing: Any) -> float:
    try:
        eps = float(label_smoothing)
    except (TypeError, ValueError):
        raise XentInputError(f"label_smoothing must be a number, not {label_smoothing!r}") from None
    if not (0.0 <= eps <= 1.0):
        raise XentInputError(f"label_smoothing must be between 0 and 1, got {label_smoothing!r}")
    return eps


def _index_targets(
    target: np.ndarray, n: int, c: int, ignore_index: int, was_1d: bool
) -> np.ndarray:
    t = target
    if was_1d and t.ndim == 0:
        t = t.reshape(1)
    if t.ndim != 1 or t.shape[0] != n:
        raise XentInputError(
            f"class-index targets must have one value per sample ({n}), got shape {target.shape}",
            operand="target",
        )
    if t.dtype.kind == "b":
        raise XentInputError("class-index targets must be integers, not booleans", operand="target")
    if t.dtype.kind == "f":
        bad = ~np.isfinite(t)
        if bad.any():
            i = _first(bad)
            raise XentInputError(f"{_num(t[i])} is not a class index", operand="target", index=i)
        frac = t != np.floor(t)
        if frac.any():
            i = _first(frac)
            raise XentInputError(
                f"{_num(t[i])} is not a whole number: class indices are integers 0..{c - 1}",
                operand="target",
                index=i,
            )
    ignored = t == ignore_index
    out = ((t < 0) | (t >= c)) & ~ignored
    if out.any():
        i = _first(out)
        v = t[i]
        v = int(v) if abs(float(v)) < 2**63 else float(v)
        what = "is negative" if v < 0 else f"is out of range for {c} classes"
        raise XentInputError(
            f"class index {v} {what} (valid: 0 to {c - 1}; ignore index {ignore_index})",
            operand="target",
            index=i,
        )
    return np.where(ignored, -1, t).astype(np.int64)


def _prob_targets(target: np.ndarray, shape: tuple[int, int], dt: np.dtype, was_1d: bool) -> np.ndarray:
    y = target.reshape(shape) if was_1d else target
    if y.dtype.kind == "b":
        y = y.astype(np.float64)
    bad = ~np.isfinite(y)
    if bad.any():
        raise XentInputError(
            "probability targets must be finite", operand="target", index=_index(bad, was_1d)
        )
    neg = y < 0
    if neg.any():
        idx = _first(neg)
        raise XentInputError(
            f"probability {y[idx]:g} is negative",
            operand="target",
            index=idx[1:] if was_1d else idx,
        )
    return np.ascontiguousarray(y, dtype=dt)


# --------------------------------------------------------------------------
# Kernels (one block of rows at a time)
# --------------------------------------------------------------------------


def _row_blocks(n: int, c: int, elements: int = _BLOCK_ELEMENTS) -> list[slice]:
    step = max(1, elements // max(c, 1))
    return [slice(start, min(n, start + step)) for start in range(0, n, step)]


def _workers() -> int:
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except (AttributeError, OSError):
        return max(1, min(8, os.cpu_count() or 1))


def _for_blocks(work, n: int, c: int, elements: int = _BLOCK_ELEMENTS) -> list[Any]:
    """Run ``work(slice)`` over cache-sized row blocks, on all cores for large inputs.

    Each worker thread takes one contiguous share of the rows and walks its
    blocks in order (few hand-offs of the GIL between threads). Each row's
    result depends only on that row, so threading never changes a single bit
    of the output. Returns the results of all blocks in row order.
    """
    global _POOL
    blocks = _row_blocks(n, c, elements)
    workers = _workers()
    if len(blocks) < 2 or n * c < _PARALLEL_MIN or workers < 2:
        return [work(sl) for sl in blocks]
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xent")
    shares = [blocks[i::workers] for i in range(workers)]  # interleaved: equal work per thread
    per_share = list(_POOL.map(lambda share: [work(sl) for sl in share], shares))
    out: list[Any] = [None] * len(blocks)
    for i, results in enumerate(per_share):
        out[i::workers] = results
    return out


def _total(partials: list[Any]) -> ExactSum:
    out = ExactSum()
    for p in partials:
        if p is not None:
            out.merge(p)
    return out


_SHORT_ROWS = 64  # rows up to this length are summed with einsum (no per-row call overhead)


def _row_sums(e: np.ndarray) -> np.ndarray:
    """Row sums accumulated in float64.

    Short rows, and float32 rows of any length, go through einsum with a
    float64 accumulator (no per-row call overhead; a float64 running sum of
    float32 values loses nothing that float32 can show); long float64 rows use
    NumPy's pairwise summation.
    """
    if e.shape[1] <= _SHORT_ROWS or e.dtype != np.float64:
        return np.einsum("ij->i", e, dtype=np.float64)
    return e.sum(axis=1)


class _Softmax:
    """Shifted exponentials of a block: e = exp(z - m), with e = 1 at the arg-max k.

    ``base`` + column gives flat indices into the block (faster than 2-D
    fancy indexing); ``rest`` is the sum over the non-maximal classes, so
    S = 1 + rest and log S = log1p(rest) stay accurate for confident rows.
    """

    __slots__ = ("base", "k", "kf", "m", "e", "rest", "S", "logS")

    def __init__(self, z: np.ndarray, work: np.ndarray) -> None:
        b, c = z.shape
        self.base = np.arange(0, b * c, c)
        self.k = z.argmax(axis=1)
        self.kf = self.base + self.k
        m = z.reshape(-1)[self.kf]
        e = np.subtract(z, m[:, None], out=work)
        np.exp(e, out=e)
        ef = e.reshape(-1)
        ef[self.kf] = 0
        self.rest = _row_sums(e)
        ef[self.kf] = 1
        self.m = m.astype(np.float64)
        self.e = e
        self.S = 1.0 + self.rest
        self.logS = np.log1p(self.rest)

    def probs(self, out: np.ndarray) -> None:
        np.divide(self.e, self.S.astype(out.dtype)[:, None], out=out)


def _ce_index_block(z, t, wy, denom, grad, probs):
    """Class-index targets, no smoothing. Returns per-sample losses (float64).

    ``denom`` divides the gradient (the mean's denominator) or is ``None``;
    ``probs`` is an output buffer or ``None`` when probabilities are not wanted.
    """
    sm = _Softmax(z, grad)
    valid = t >= 0
    tt = np.where(valid, t, sm.k)
    tf = sm.base + tt
    zt = z.reshape(-1)[tf].astype(np.float64)
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
    np.multiply(e, per_row.astype(e.dtype)[:, None], out=e)
    ef[tf] -= coef.astype(e.dtype)  # p_t - 1 with p_t <= 1/2 when t is not the arg-max: no cancellation
    # At the arg-max: p_k = 1/S, and when it is the target, p_k - 1 = -rest/S without cancellation.
    ef[sm.kf] = np.where(tt == sm.k, 0.0 - coef * sm.rest / sm.S, per_row).astype(e.dtype)
    return losses


def _ce_dense_block(z, a, denom, grad, probs):
    """Dense non-negative target rows ``a`` (weights/smoothing folded in).

    ``a`` is a scratch buffer owned by the caller: it is modified.
    """
    b, c = z.shape
    base = np.arange(0, b * c, c)
    k = z.argmax(axis=1)
    kf = base + k
    m = z.reshape(-1)[kf]
    zm = np.subtract(z, m[:, None], out=grad)  # z - m <= 0
    # sum_j a_j (m - z_j) = -sum_j a_j (z_j - m): every term has the same sign (no cancellation).
    with np.errstate(invalid="ignore"):
        cross = -_row_dot(a, zm)
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
    rest = _row_sums(e)  # sum over the non-maximal classes
    ef[kf] = 1
    S = 1.0 + rest
    logS = np.log1p(rest)
    af = a.reshape(-1)
    ak = af[kf].astype(np.float64)
    af[kf] = 0
    s_rest = _row_sums(a)
    af[kf] = ak
    s = s_rest + ak
    with np.errstate(over="ignore", invalid="ignore"):
        losses = cross + s * logS
    if probs is not None:
        np.divide(e, S.astype(probs.dtype)[:, None], out=probs)
    if denom is not None:
        s, s_rest, ak = s / denom, s_rest / denom, ak / denom
        np.divide(a, denom, out=a)
    np.multiply(e, (s / S).astype(e.dtype)[:, None], out=e)
    e -= a
    ef[kf] = ((s_rest - ak * rest) / S).astype(e.dtype)
    return losses


def _row_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products accumulated in float64."""
    if a.shape[1] <= _SHORT_ROWS or a.dtype != np.float64:
        return np.einsum("ij,ij->i", a, b, dtype=np.float64)
    prod = np.multiply(a, b, out=_scratch("rowdot", a.shape, a.dtype))
    return prod.sum(axis=1)


# --------------------------------------------------------------------------
# Reductions
# --------------------------------------------------------------------------


class ExactSum:
    """An exact, order-independent running sum of float64 values.

    Every finite double is m * 2**(e - 53) with an integer |m| < 2**53. Values
    are bucketed by exponent; each bucket's mantissas are summed exactly (as
    26-bit halves, whose float64 sums stay integers below 2**53), and the
    buckets are combined in a Python integer. :meth:`value` rounds the exact
    total once, correctly. Adding arrays in any order or chunking gives the
    same bits, which is what lets a streamed file reproduce the in-memory
    result exactly.
    """

    _OFFSET = 1127  # 2**-1127 divides m * 2**(e - 53) for every double (e >= -1073): shifts stay >= 0
    _CHUNK = 1 << 25  # elements per bincount call, so each half-sum stays below 2**53

    def __init__(self) -> None:
        self._total = 0
        self._nan = False
        self._pos_inf = False
        self._neg_inf = False

    def add(self, values: Any) -> ExactSum:
        x = np.asarray(values, dtype=np.float64).ravel()
        for start in range(0, x.size, self._CHUNK):
            self._add(x[start : start + self._CHUNK])
        return self

    def _add(self, x: np.ndarray) -> None:
        finite = np.isfinite(x)
        if not finite.all():
            bad = x[~finite]
            self._nan |= bool(np.isnan(bad).any())
            self._pos_inf |= bool(np.isposinf(bad).any())
            self._neg_inf |= bool(np.isneginf(bad).any())
            x = x[finite]
        if not x.size:
            return
        mant, expo = np.frexp(x)  # zeros give mantissa 0 and add nothing  # x = mant * 2**expo, 0.5 <= |mant| < 1
        m = (mant * 9007199254740992.0).astype(np.int64)  # exact: |m| < 2**53
        hi = m >> 26
        lo = m - (hi << 26)  # 0 <= lo < 2**26
        lowest = int(expo.min())
        bucket = expo - lowest
        hi_sums = np.bincount(bucket, weights=hi.astype(np.float64))
        lo_sums = np.bincount(bucket, weights=lo.astype(np.float64))
        total = 0
        for b in np.nonzero((hi_sums != 0) | (lo_sums != 0))[0]:
            mant_sum = (int(hi_sums[b]) << 26) + int(lo_sums[b])
            total += mant_sum << (int(b) + lowest - 53 + self._OFFSET)
        self._total += total

    def add_repeated(self, value: float, count: int) -> ExactSum:
        """Add ``value`` ``count`` times, exactly (no array of copies)."""
        if count:
            if not math.isfinite(value):
                self._add(np.array([value]))
            elif value:
                mant, expo = math.frexp(value)
                m = int(mant * 9007199254740992.0)
                self._total += (count * m) << (expo - 53 + self._OFFSET)
        return self

    def merge(self, other: ExactSum) -> ExactSum:
        """Add another exact sum (exactly)."""
        self._total += other._total
        self._nan |= other._nan
        self._pos_inf |= other._pos_inf
        self._neg_inf |= other._neg_inf
        return self

    @property
    def all_finite(self) -> bool:
        """Whether every value added was finite (an infinite total then means overflow)."""
        return not (self._nan or self._pos_inf or self._neg_inf)

    def value(self, scale_exp: int = 0) -> float:
        """The total times ``2**scale_exp``, correctly rounded (the scale lets an overflowing total be divided)."""
        if self._nan or (self._pos_inf and self._neg_inf):
            return math.nan
        if self._pos_inf:
            return math.inf
        if self._neg_inf:
            return -math.inf
        num = self._total << max(scale_exp, 0)
        den = 1 << (self._OFFSET + max(-scale_exp, 0))
        try:
            return num / den  # one correct rounding (CPython's int / int)
        except OverflowError:
            return math.inf if self._total > 0 else -math.inf


class GroupedSum:
    """Sum of values in row order: pairwise within fixed groups of rows, exact across groups.

    Groups are aligned to absolute row numbers (rows 0..1023, 1024..2047, ...),
    so the result does not depend on how the rows arrive (any blocks or
    chunks): the carry of an incomplete group waits for the next call.
    """

    GROUP = 1024

    def __init__(self) -> None:
        self.exact = ExactSum()
        self.carry = np.empty(0)

    def add(self, values: np.ndarray) -> GroupedSum:
        v = np.asarray(values, dtype=np.float64).ravel()
        if self.carry.size:
            v = np.concatenate([self.carry, v])
        full = (v.size // self.GROUP) * self.GROUP
        if full:
            self._add_groups(v[:full].reshape(-1, self.GROUP))
        self.carry = v[full:].copy()
        return self

    def _add_groups(self, groups: np.ndarray) -> None:
        with np.errstate(over="ignore", invalid="ignore"):
            sums = groups.sum(axis=1)
        over = ~np.isfinite(sums)
        if over.any():
            # A group of finite values whose float sum overflows is added exactly, value by value
            # (the same groups whatever the blocking, so still the same bits).
            finite_groups = over & np.isfinite(groups).all(axis=1)
            self.exact.add(groups[finite_groups])
            sums = sums[~finite_groups]
        self.exact.add(sums)

    def value(self, scale_exp: int = 0) -> float:
        if self.carry.size:
            self._add_groups(self.carry.reshape(1, -1))
            self.carry = np.empty(0)
        return self.exact.value(scale_exp)

    @property
    def all_finite(self) -> bool:
        return self.exact.all_finite and bool(np.isfinite(self.carry).all())


def exact_sum(values: Any) -> float:
    """Correctly rounded sum of float values, independent of their order."""
    return ExactSum().add(values).value()


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def cross_entropy(
    logits: Any,
    target: Any,
    *,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    target_type: Literal["index", "prob"] | None = None,
    dtype: Any = None,
    with_probs: bool = True,
    out: np.ndarray | None = None,
    _denominator: float | None = None,
    _shift: int | None = None,
) -> LossResult:
    r"""Softmax cross-entropy with the semantics of ``torch.nn.functional.cross_entropy``.

    Args:
        logits: ``(N, C)`` unnormalised scores (or ``(C,)`` for one sample).
            Any finite value; ``-inf`` masks a class; NaN and ``+inf`` are errors.
        target: ``(N,)`` class indices in ``[0, C)`` (or ``ignore_index``), or
            ``(N, C)`` non-negative probability rows. Rows that do not sum to 1
            are used as given (a :class:`XentWarning` says so).
        weight: ``(C,)`` non-negative class weights :math:`w`.
        ignore_index: class-index targets equal to it contribute nothing and
            are left out of the mean's denominator (index targets only).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        label_smoothing: :math:`\varepsilon \in [0, 1]`.
        target_type: ``"index"`` or ``"prob"``; by default, as PyTorch: a target
            with the logits' shape holds probabilities, otherwise indices.
        dtype: ``"float64"`` or ``"float32"``; default: float32 if the logits
            are float32, else float64.
        with_probs: also return the softmax probabilities (``probs`` is
            ``None`` otherwise, which saves a pass and an N x C array).
        out: a C-contiguous (N, C) array of the compute dtype to write the
            gradient into (``grad`` is then that array), e.g. reused across calls.

    With :math:`\log p_{ic} = z_{ic} - \operatorname{lse}(z_i)`, the effective
    target row is

    .. math::

        a_{ic} = w_c \bigl((1-\varepsilon)\, y_{ic} + \varepsilon / C\bigr)

    where :math:`y_i` is the one-hot row of an index target (all zero for an
    ignored sample) or the given probability row, and :math:`w_c = 1` without
    weights. Then

    .. math::

        \ell_i = -\sum_c a_{ic} \log p_{ic}, \qquad
        \frac{\partial \ell_i}{\partial z_{ic}} = p_{ic} \sum_{c'} a_{ic'} - a_{ic}.

    ``sum`` adds the :math:`\ell_i`; ``mean`` divides the sum by
    :math:`\sum_{i\,\text{not ignored}} w_{y_i}` for index targets (the count of
    non-ignored samples without weights) and by :math:`N` for probability
    targets, exactly as PyTorch does. Without weights or smoothing and with
    :math:`\sum_c y_{ic} = 1` the gradient is :math:`p - y` (divided by the
    denominator for ``mean``).

    Returns:
        :class:`LossResult`.

    Raises:
        XentInputError: for any invalid input or option.

    Example:
        >>> r = cross_entropy([[2, 1, 0.1], [0.1, 2, 1.9]], [1, 0])
        >>> round(r.loss, 3), [round(v, 3) for v in r.losses]
        (2.019, [1.417, 2.62])
    """
    _check_reduction(reduction)
    eps = _check_smoothing(label_smoothing)
    dt = _resolve_dtype(dtype, logits)
    z, was_1d = _as_logits(logits, dt, binary=False)
    n, c = z.shape
    y_raw = _numeric_array(target, "target")
    if target_type is None:
        target_type = "prob" if y_raw.shape == (z.shape[1:] if was_1d else z.shape) else "index"
    if target_type not in ("index", "prob"):
        raise XentInputError(f"target_type must be 'index' or 'prob', not {target_type!r}")
    w = None if weight is None else _class_vector(weight, c, "weight", dt, allow_scalar=False)
    try:
        ignore_index = int(ignore_index)
    except (TypeError, ValueError):
        raise XentInputError(f"ignore_index must be an integer, not {ignore_index!r}") from None

    notes: list[XentWarning] = []
    grad = _output(out, (n, c), dt)
    probs = np.empty((n, c), dtype=dt) if with_probs else None
    losses = np.empty(n, dtype=np.float64)
    shift = 0  # weights were multiplied by 2**-shift for an exact weighted mean

    if target_type == "index":
        t = _index_targets(y_raw, n, c, ignore_index, was_1d)
        valid = t >= 0
        if w is not None and reduction == "mean":
            if _shift is None:
                # With smoothing every class's weight enters the loss of every counted sample.
                in_use = t[valid] if eps == 0.0 or not valid.any() else np.arange(c)
                w, shift = _rescale_for_mean(w, in_use)
            elif _shift:
                shift = _shift
                with np.errstate(over="ignore"):
                    w = np.ldexp(w, -shift).astype(w.dtype)
        if w is None:
            wy = valid.astype(np.float64)
            denom = float(np.count_nonzero(valid)) if reduction == "mean" else None
        else:
            wy = np.where(valid, w.astype(np.float64)[np.where(valid, t, 0)], 0.0)
            denom = exact_sum(wy) if reduction == "mean" else None
    else:
        if ignore_index >= 0:
            raise XentInputError(
                "ignore_index is not supported for probability targets (PyTorch requires it < 0)"
            )
        y = _prob_targets(y_raw, (n, c), dt, was_1d)
        denom = float(n) if reduction == "mean" else None
        _warn_unnormalised(y, was_1d, notes)

    if _denominator is not None and reduction == "mean":
        denom = _denominator  # the whole stream's denominator (in the rescaled weights' units)
    div = None if denom is None or denom == 0 else denom

    def work(sl: slice) -> None:
        zb = z[sl]
        pb = None if probs is None else probs[sl]
        if target_type == "index" and eps == 0.0:
            losses[sl] = _ce_index_block(zb, t[sl], wy[sl], div, grad[sl], pb)
            return
        a = _scratch("targets", zb.shape, dt)
        if target_type == "index":
            tb = t[sl]
            vb = tb >= 0
            a[...] = (eps / c) if w is None else (eps / c) * w
            rows = np.nonzero(vb)[0]
            a[rows, tb[rows]] += ((1.0 - eps) * wy[sl][rows]).astype(dt)
            a[~vb] = 0
        else:
            if eps:
                np.multiply(y[sl], 1.0 - eps, out=a)
                a += eps / c
            else:
                np.copyto(a, y[sl])
            if w is not None:
                a *= w
        losses[sl] = _ce_dense_block(zb, a, div, grad[sl], pb)

    _for_blocks(work, n, c)
    # Pairwise within fixed groups of samples, exact across groups: the same bits under any blocking.
    total = GroupedSum().add(losses) if reduction != "none" else ExactSum()
    loss = _reduce(total, reduction, denom, notes)
    exact_total = losses.copy() if shift else losses
    if shift:
        # Report per-sample losses and the denominator for the weights as given.
        with np.errstate(over="ignore"):
            losses = np.ldexp(losses, shift)
        denom = _ldexp_or_inf(denom, shift) if denom is not None else None
    _warn_nonfinite(losses, z, was_1d, notes)
    if denom is not None and denom == 0:
        grad[...] = 0
    losses_out = losses.astype(dt)
    return _finish(
        LossResult(
            loss=loss,
            losses=losses_out[0] if was_1d else losses_out,
            grad=grad[0] if was_1d else grad,
            probs=probs[0] if was_1d and probs is not None else probs,
            reduction=reduction,
            kind="cross_entropy",
            target_type=target_type,
            denominator=denom,
            warnings=tuple(notes),
            exact_total=exact_total,
        )
    )


def _ldexp_or_inf(x: float, k: int) -> float:
    try:
        return math.ldexp(x, k)
    except OverflowError:
        return math.copysign(math.inf, x)


def _rescale_for_mean(w: np.ndarray, used: np.ndarray) -> tuple[np.ndarray, int]:
    """Scale class weights by a power of two so the largest weight in use is near 1.

    PyTorch's weighted mean, sum(w_y * nll) / sum(w_y), does not change when
    every weight is multiplied by the same factor; a power of two does it
    exactly, and keeps tiny (subnormal) or huge weights from losing digits or
    overflowing in the products and the denominator.
    """
    if used.size == 0:
        return w, 0
    top = float(np.max(w[used]))
    if top == 0.0 or not np.isfinite(top):
        return w, 0
    exponent = math.frexp(top)[1]
    if -64 <= exponent <= 64:
        return w, 0
    with np.errstate(over="ignore"):  # a weight far above the used ones may overflow: its terms do too
        return np.ldexp(w, -exponent).astype(w.dtype), exponent


def _reduce(exact: Any, reduction: str, denom: float | None, notes: list[XentWarning]) -> float | None:
    if reduction == "none":
        return None
    total = exact.value()
    overflow = math.isinf(total) and exact.all_finite
    if reduction == "sum":
        if overflow:
            notes.append(XentWarning("the sum of the losses is beyond the float64 range: reported as inf"))
        return total
    if denom == 0:
        notes.append(
            XentWarning(
                "the mean is 0/0: every sample is ignored or has zero weight "
                "(PyTorch returns nan and a zero gradient)"
            )
        )
        return math.nan
    if overflow and math.isfinite(denom):
        # The sum overflows but the mean may not: divide both by 2**k first (exact for denom).
        k = math.frexp(denom)[1]
        mean = exact.value(-k) / math.ldexp(denom, -k)
        if math.isinf(mean):
            notes.append(XentWarning("the mean of the losses is beyond the float64 range: reported as inf"))
        return mean
    return total / denom


def _warn_unnormalised(y: np.ndarray, was_1d: bool, notes: list[XentWarning]) -> None:
    sums = y.sum(axis=1, dtype=np.float64)
    off = np.abs(sums - 1.0) > PROB_SUM_TOL[y.dtype] * max(1, y.shape[1]) ** 0.5
    if off.any():
        i = int(np.argmax(off))
        count = int(off.sum())
        notes.append(
            XentWarning(
                f"{count} probability row{'s' if count > 1 else ''} do{'es' if count == 1 else ''} "
                f"not sum to 1 (this one sums to {sums[i]:.6g}); used as given, not renormalised: "
                "the gradient is p*sum(y) - y",
                operand="target",
                index=None if was_1d else (i,),
            )
        )


def _warn_nonfinite(losses: np.ndarray, z: np.ndarray, was_1d: bool, notes: list[XentWarning]) -> None:
    bad = ~np.isfinite(losses)
    if not bad.any():
        return
    i = int(np.argmax(bad))
    count = int(bad.sum())
    masked_row = bool(np.isneginf(z[i]).any())
    if masked_row:
        why = "the target puts weight on a class masked with -inf, so -log p = inf"
    else:
        why = f"it exceeds the {z.dtype} range"
    notes.append(
        XentWarning(
            f"the loss is infinite for {count} sample{'s' if count > 1 else ''}: {why}",
            operand="logits",
            index=None if was_1d else (i,),
        )
    )


def _finish(result: LossResult) -> LossResult:
    for note in result.warnings:
        warnings.warn(note, stacklevel=3)
    return result


# --------------------------------------------------------------------------
# Binary cross-entropy with logits
# --------------------------------------------------------------------------


def _scratch(name: str, shape: tuple[int, int], dtype: Any) -> np.ndarray:
    """A per-thread reusable buffer (fresh block-sized arrays would page-fault on every block)."""
    size = shape[0] * shape[1]
    buf = getattr(_LOCAL, name, None)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = np.empty(size, dtype=dtype)
        setattr(_LOCAL, name, buf)
    return buf[:size].reshape(shape)


def _zeros(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A per-thread block of zeros (max/min against an array is 3x faster than against a scalar)."""
    z = _scratch("zeros", shape, dtype)
    if getattr(_LOCAL, "zeros_ok", None) != (z.size, np.dtype(dtype)):
        z[...] = 0
        _LOCAL.zeros_ok = (z.size, np.dtype(dtype))
    return z


def _bce_block(x, y, w, pw, denom, grad, probs, loss_out, masked):
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
    zeros = _zeros(shape, dt)
    mn = np.minimum(x, zeros, out=_scratch("bce_mn", shape, dt))
    mx = np.maximum(x, zeros, out=_scratch("bce_mx", shape, dt))
    t = np.exp(mn, out=_scratch("bce_t", shape, dt))
    u = np.negative(mx, out=_scratch("bce_u", shape, dt))
    np.exp(u, out=u)
    a = np.multiply(t, u, out=_scratch("bce_a", shape, dt))
    d = np.add(a, 1, out=_scratch("bce_d", shape, dt))  # 1 + a
    if probs is not None:
        np.divide(t, d, out=probs)  # sigmoid(x)
    lp = np.log1p(a, out=a)
    if w is None and pw is None:
        cneg = np.subtract(1, y, out=_scratch("bce_c", shape, dt))
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
    rows = _row_sums(loss)
    np.multiply(cneg, t, out=t)
    np.multiply(cpos, u, out=u)
    np.subtract(t, u, out=t)  # c- t - c+ u
    if denom is not None:
        np.multiply(d, denom, out=d)
    np.divide(t, d, out=grad)
    return rows


def binary_cross_entropy(
    logits: Any,
    target: Any,
    *,
    weight: Any = None,
    pos_weight: Any = None,
    reduction: Reduction = "mean",
    dtype: Any = None,
    with_probs: bool = True,
    with_losses: bool = True,
    out: np.ndarray | None = None,
    _denominator: float | None = None,
) -> LossResult:
    r"""Sigmoid binary cross-entropy with logits (``binary_cross_entropy_with_logits``).

    Every element is its own binary problem (multi-label classification).

    Args:
        logits: ``(N, C)`` (or ``(C,)``) scores :math:`x`; ``-inf`` allowed.
        target: same shape, values :math:`y \in [0, 1]`.
        weight: rescaling weight :math:`w`, one value or one per column.
        pos_weight: weight :math:`q` of the positive term, one value or one per column.
        reduction: ``"mean"`` (over all N*C elements), ``"sum"`` or ``"none"``.
        dtype: ``"float64"`` or ``"float32"``.
        with_probs: also return sigmoid(x) (``probs`` is ``None`` otherwise).
        with_losses: keep the elementwise losses (for ``mean``/``sum`` they can be
            skipped: ``losses`` is then ``None`` and no N x C array is filled).
        out: a C-contiguous (N, C) array of the compute dtype for the gradient.

    .. math::

        \ell = w \bigl[q\, y \operatorname{softplus}(-x) + (1 - y) \operatorname{softplus}(x)\bigr]
             = -w \bigl[q\, y \log\sigma(x) + (1-y)\log(1-\sigma(x))\bigr]

    .. math::

        \frac{\partial \ell}{\partial x} = w \bigl[(1-y)\,\sigma(x) - q\, y\,(1-\sigma(x))\bigr]
        \;=\; w(\sigma(x) - y) \text{ when } q = 1.

    ``softplus(t) = max(t, 0) + log1p(exp(-|t|))`` keeps every term accurate.

    Example:
        >>> r = binary_cross_entropy([1.0, -1.0, 0.0], [0.0, 0.0, 1.0], reduction="none")
        >>> [round(v, 7) for v in r.losses]
        [1.3132617, 0.3132617, 0.6931472]
    """
    _check_reduction(reduction)
    dt = _resolve_dtype(dtype, logits)
    x, was_1d = _as_logits(logits, dt, binary=True)
    n, c = x.shape
    y = _numeric_array(target, "target")
    if y.shape != ((c,) if was_1d else (n, c)):
        raise XentInputError(
            f"binary targets must have the logits' shape {(c,) if was_1d else (n, c)}, got {y.shape}",
            operand="target",
        )
    y = y.reshape(n, c)
    if y.dtype.kind == "b":
        y = y.astype(dt)
    inside = (y >= 0) & (y <= 1)  # False for NaN as well
    if not inside.all():
        idx = _first(~inside)
        raise XentInputError(
            f"binary target {float(y[idx]):g} is outside [0, 1]",
            operand="target",
            index=idx[1:] if was_1d else idx,
        )
    y = np.ascontiguousarray(y, dtype=dt)
    w = None if weight is None else _class_vector(weight, c, "weight", dt, allow_scalar=True)
    pw = None if pos_weight is None else _class_vector(pos_weight, c, "pos_weight", dt, allow_scalar=True)
    denom = float(n * c) if reduction == "mean" else None
    if _denominator is not None and reduction == "mean":
        denom = _denominator
    grad = _output(out, (n, c), dt)
    probs = np.empty((n, c), dtype=dt) if with_probs else None
    losses = np.empty((n, c), dtype=dt) if with_losses or reduction == "none" else None
    masked = bool(np.isneginf(x).any())

    row_sums = np.empty(n, dtype=np.float64)

    def work(sl: slice) -> None:
        row_sums[sl] = _bce_block(
            x[sl], y[sl], w, pw, denom, grad[sl],
            None if probs is None else probs[sl],
            None if losses is None else losses[sl],
            masked,
        )

    _for_blocks(work, n, c, _BCE_BLOCK_ELEMENTS)
    # Row sums (float64, row-local), then fixed groups of rows: the same bits under any blocking.
    total = GroupedSum().add(row_sums) if reduction != "none" else ExactSum()
    notes: list[XentWarning] = []
    loss = _reduce(total, reduction, denom, notes)
    bad = None
    if loss is None or not math.isfinite(loss):
        if losses is not None:
            bad = ~np.isfinite(losses)
        elif total.all_finite:
            pass  # an overflowing sum or mean: _reduce said so
        else:  # only the total is kept (streaming): no row to name
            notes.append(XentWarning("the loss is infinite: a positive target on a logit of -inf"))
    if bad is not None and bad.any():
        idx = _first(bad)
        notes.append(
            XentWarning(
                f"the loss is infinite for {int(bad.sum())} element(s): a positive target "
                "on a logit of -inf, so -log sigmoid = inf",
                operand="logits",
                index=idx[1:] if was_1d else idx,
            )
        )
    losses_out = losses
    return _finish(
        LossResult(
            loss=loss,
            losses=losses_out[0] if was_1d and losses_out is not None else losses_out,
            grad=grad[0] if was_1d else grad,
            probs=probs[0] if was_1d and probs is not None else probs,
            reduction=reduction,
            kind="binary_cross_entropy_with_logits",
            target_type="binary",
            denominator=denom,
            warnings=tuple(notes),
            exact_total=row_sums,
        )
    )


binary_cross_entropy_with_logits = binary_cross_entropy


# --------------------------------------------------------------------------
# Small stable building blocks (used by derive's numeric cross-check and verify)
# --------------------------------------------------------------------------


def logsumexp(z: Any, axis: int = -1) -> np.ndarray:
    """``log(sum(exp(z)))`` along ``axis``, shifted by the max (``-inf`` entries allowed)."""
    z = np.asarray(z, dtype=np.float64)
    m = np.max(z, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True)) + m
    return np.squeeze(out, axis=axis)


def softmax(z: Any, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis``, shifted by the max."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(z: Any, axis: int = -1) -> np.ndarray:
    """``z - logsumexp(z)``, never ``log(softmax(z))``."""
    z = np.asarray(z, dtype=np.float64)
    return z - np.expand_dims(logsumexp(z, axis=axis), axis)
