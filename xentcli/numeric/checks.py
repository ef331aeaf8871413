"""Validation of the arrays handed to the kernels, and the warnings about their results.

Every problem is an :class:`~xentcli.errors.XentInputError` that carries the
operand (``logits``, ``target``, ``weight``, ...) and the 0-based index of
the offending value, so that the command line can name the file, row and
column.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import XentInputError, XentWarning

PROB_SUM_TOL = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-5}
KERNEL_DTYPES = {"float64": np.float64, "float32": np.float32}


def resolve_dtype(dtype: Any, *arrays: Any) -> np.dtype:
    if dtype is None:
        for a in arrays:
            if isinstance(a, np.ndarray) and a.dtype in (np.float32, np.float64):
                found: np.dtype = a.dtype
                return found
        return np.dtype(np.float64)
    if isinstance(dtype, str):
        if dtype not in KERNEL_DTYPES:
            raise XentInputError(f"dtype must be one of {', '.join(KERNEL_DTYPES)}, not {dtype!r}")
        return np.dtype(KERNEL_DTYPES[dtype])
    dt: np.dtype = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise XentInputError(f"dtype must be float32 or float64, not {dt}")
    return dt


def numeric_array(x: Any, operand: str) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        raise XentInputError(f"cannot be read as an array: {exc}", operand=operand) from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise XentInputError(f"must hold real numbers, not {arr.dtype}", operand=operand)
    return arr


def num(v: Any) -> str:
    """A value as users wrote it: 0.5, 3, nan (never np.float64(0.5))."""
    f = float(v)
    return str(int(f)) if f.is_integer() and abs(f) < 2**63 else repr(f)


def first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def as_logits(logits: Any, dt: np.dtype, *, binary: bool) -> tuple[np.ndarray, bool]:
    """Return 2-D logits in dtype ``dt`` and whether the input was 1-D."""
    z = numeric_array(logits, "logits")
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
        # An overflow makes an infinity in the cast: look for one by two reductions before building a mask.
        if not (np.isfinite(np.max(zc)) and np.isfinite(np.min(zc))) and (
                overflow := np.isinf(zc) & np.isfinite(z)).any():
            idx = first(overflow)
            raise XentInputError(
                f"{num(z[idx])} does not fit in {dt} (largest {np.finfo(dt).max:.4g})",
                operand="logits",
                index=idx[1:] if was_1d and len(idx) > 1 else idx,
            )
        z = zc
    z = np.ascontiguousarray(z, dtype=dt)
    if was_1d:
        z = z.reshape(1, -1)
    # Two reductions (no N x C temporary): NaN makes both NaN, and an infinity shows up in one of them.
    if not (np.isfinite(np.max(z)) and np.isfinite(np.min(z))):
        finite = np.isfinite(z)
        nan = np.isnan(z)
        if nan.any():
            raise XentInputError("NaN is not a valid logit", operand="logits", index=first_at(nan, was_1d))
        posinf = np.isposinf(z)
        if posinf.any():
            raise XentInputError(
                "+inf is not a valid logit (-inf is allowed and masks a class)",
                operand="logits",
                index=first_at(posinf, was_1d),
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


def first_at(mask: np.ndarray, was_1d: bool) -> tuple[int, ...]:
    idx = first(mask)
    return idx[1:] if was_1d else idx


def class_vector(x: Any, c: int, operand: str, dt: np.dtype, *, allow_scalar: bool) -> np.ndarray:
    v = numeric_array(x, operand)
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
        raise XentInputError("must be finite", operand=operand, index=first(bad))
    neg = v < 0
    if neg.any():
        i = first(neg)
        raise XentInputError(f"must not be negative, got {v[i]:g}", operand=operand, index=i)
    return v.astype(dt)


def output(out: np.ndarray | None, shape: tuple[int, int], dt: np.dtype) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=dt)
    if not isinstance(out, np.ndarray) or out.dtype != dt or not out.flags.c_contiguous or (
        out.reshape(shape).shape != shape if out.size == shape[0] * shape[1] else True
    ):
        raise XentInputError(f"out must be a C-contiguous {dt} array of shape {shape}")
    return out.reshape(shape)


def index_targets(
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
            i = first(bad)
            raise XentInputError(f"{num(t[i])} is not a class index", operand="target", index=i)
        frac = t != np.floor(t)
        if frac.any():
            i = first(frac)
            raise XentInputError(
                f"{num(t[i])} is not a whole number: class indices are integers 0..{c - 1}",
                operand="target",
                index=i,
            )
    ignored = t == ignore_index
    out = ((t < 0) | (t >= c)) & ~ignored
    if out.any():
        i = first(out)
        v = t[i]
        v = int(v) if abs(float(v)) < 2**63 else float(v)
        what = "is negative" if v < 0 else f"is out of range for {c} classes"
        raise XentInputError(
            f"class index {v} {what} (valid: 0 to {c - 1}; ignore index {ignore_index})",
            operand="target",
            index=i,
        )
    return np.where(ignored, -1, t).astype(np.int64)


def prob_targets(target: np.ndarray, shape: tuple[int, int], dt: np.dtype, was_1d: bool) -> np.ndarray:
    y = target.reshape(shape) if was_1d else target
    if y.dtype.kind == "b":
        y = y.astype(np.float64)
    if y.size and y.dtype.kind in "fiu":
        # Two reductions (a NaN makes both comparisons false) instead of N x C masks, whose page faults
        # cost more than the loss itself on wide rows; the masks are built only to say where it is wrong.
        with np.errstate(invalid="ignore"):
            low, high = np.min(y), np.max(y)
        if low >= 0 and np.isfinite(high):
            return np.ascontiguousarray(y, dtype=dt)
    bad = ~np.isfinite(y)
    if bad.any():
        raise XentInputError(
            "probability targets must be finite", operand="target", index=first_at(bad, was_1d)
        )
    neg = y < 0
    if neg.any():
        idx = first(neg)
        raise XentInputError(
            f"probability {y[idx]:g} is negative",
            operand="target",
            index=idx[1:] if was_1d else idx,
        )
    return np.ascontiguousarray(y, dtype=dt)



class CountedWarning(XentWarning):
    """A warning about ``count`` rows or elements, the first of which is at ``index``.

    Its text says how many (``text(count)``), so the warnings of the blocks of
    a streamed batch add up to the warning of the whole batch: :meth:`plus`.
    ``kind`` tells warnings of the same sort apart.
    """

    def __init__(self, kind: str, text: Callable[[int], str], count: int, *, operand: str | None = None,
                 index: tuple[int, ...] | None = None) -> None:
        self.kind = kind
        self.text = text
        self.count = count
        super().__init__(text(count), operand=operand, index=index)

    def plus(self, later: CountedWarning) -> CountedWarning:
        """This warning (about earlier rows) and ``later`` as one: the count adds up, the first stays."""
        return CountedWarning(self.kind, self.text, self.count + later.count, operand=self.operand, index=self.index)


def warn_unnormalised(sums: np.ndarray, y: np.ndarray, was_1d: bool, notes: list[XentWarning]) -> None:
    """Warn about probability rows of ``y`` whose ``sums`` (float64, one per row) are not 1."""
    off = np.abs(sums - 1.0) > PROB_SUM_TOL[y.dtype] * max(1, y.shape[1]) ** 0.5
    if off.any():
        i = int(np.argmax(off))
        first_sum = float(sums[i])

        def text(count: int) -> str:
            return (f"{count} probability row{'s' if count > 1 else ''} do{'es' if count == 1 else ''} "
                    f"not sum to 1 (this one sums to {first_sum:.6g}); used as given, not renormalised: "
                    "the gradient is p*sum(y) - y")

        notes.append(CountedWarning("unnormalised", text, int(off.sum()), operand="target",
                                    index=None if was_1d else (i,)))


def warn_nonfinite(losses: np.ndarray, z: np.ndarray, was_1d: bool, notes: list[XentWarning]) -> None:
    bad = ~np.isfinite(losses)
    if not bad.any():
        return
    i = int(np.argmax(bad))
    masked_row = bool(np.isneginf(z[i]).any())
    if masked_row:
        why = "the target puts weight on a class masked with -inf, so -log p = inf"
    else:
        why = f"it exceeds the {z.dtype} range"

    def text(count: int) -> str:
        return f"the loss is infinite for {count} sample{'s' if count > 1 else ''}: {why}"

    notes.append(CountedWarning("infinite", text, int(bad.sum()), operand="logits", index=None if was_1d else (i,)))


def emit(notes: tuple[XentWarning, ...]) -> None:
    """Issue the warnings about a result (the caller's caller is blamed)."""
    for note in notes:
        warnings.warn(note, stacklevel=4)
