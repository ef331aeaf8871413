"""Exact, order-independent sums of float64 values (what makes streamed results bit-identical)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["ExactSum", "GroupedSum", "exact_sum"]


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
