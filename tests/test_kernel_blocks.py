"""The kernels' row helpers against NumPy's own reductions and exact sums, on the widths where they change method."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xentcli.numeric.blocks import row_dot, row_sums
from xentcli.numeric.softmax_kernels import row_max

WIDTHS = list(range(1, 41)) + [63, 64, 65, 200]


def _rows_with_ties(rng: np.random.Generator, n: int, c: int, dt: type) -> np.ndarray:
    z = rng.integers(-3, 4, size=(n, c)).astype(dt)  # few distinct values: many tied maxima
    z[::5] = -np.inf  # all masked
    z[1::7, c - 1] = np.inf
    z[2::11, 0] = np.inf
    z[3::13] = 7  # all equal
    z[4::17] = rng.normal(size=(len(z[4::17]), c)) * 1e30
    return z


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("c", WIDTHS)
def test_row_max_is_the_first_argmax(c, dt):
    z = _rows_with_ties(np.random.default_rng(c), 3000, c, dt)
    k, m = row_max(z)
    np.testing.assert_array_equal(k, z.argmax(axis=1))
    np.testing.assert_array_equal(m, z.max(axis=1))
    assert m.dtype == z.dtype


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("c", WIDTHS)
def test_row_sums_and_dots_are_float64_sums_of_each_row_alone(c, dt):
    rng = np.random.default_rng(1000 + c)
    a = (rng.random((400, c)) * 10.0 ** rng.integers(-30, 30, size=(400, 1))).astype(dt)
    b = rng.random((400, c)).astype(dt)
    sums, dots = row_sums(a), row_dot(a, b)
    assert sums.dtype == dots.dtype == np.float64
    for i in range(0, 400, 7):
        exact_sum = math.fsum(float(v) for v in a[i])
        exact_dot = math.fsum(float(x) * float(y) for x, y in zip(a[i], b[i]))
        # float64 accumulation of c terms of one sign (the products of long float32 rows are rounded to float32)
        dot_tol = (float(np.finfo(np.float32).eps) if dt is np.float32 and c > 64 else 0) + c * 2.0**-52
        assert sums[i] == pytest.approx(exact_sum, rel=c * 2.0**-52, abs=0)
        assert dots[i] == pytest.approx(exact_dot, rel=dot_tol, abs=0)
        # a row's result does not depend on the block it is in
        assert row_sums(a[i:i + 1])[0] == sums[i]
        assert row_dot(a[i:i + 1], b[i:i + 1])[0] == dots[i]
