"""Numerical accuracy of ``kl_div`` (``--loss kl``) against mpmath.

The reference is the literal definition evaluated with mpmath at 400
significant digits, written here without any of the library's rewrites::

    p_j   = exp(z_j) / sum_k exp(z_k)
    t_ij  = y_ij * (log y_ij - log p_ij)          (0 when y_ij = 0)
    loss  = sum t  (sum),  sum t / (N C)  (mean),  sum t / N  (batchmean)
    grad  = scale * (p_ij * sum_k y_ik - y_ij)

(``torch.nn.functional.kl_div(log_softmax(z), y)`` and its gradient.) Logits
reach 1e4 in magnitude, so ``exp`` overflows float64 many times over; mpmath
has no exponent range to overflow. The literal ``log sum exp`` loses the
digits of ``log p`` of a confident class (``log(e^154 + 4) - 154 = 5e-67``
cancels 67 digits); 400 digits leave more than 16 for every term down to the
float64 underflow threshold (1e-308), below which float64 can only give 0 or
a subnormal (absolute allowance 1e-300).

The KL divergence is a sum of terms of both signs, and a target equal to the
model's own softmax makes every ``log y - log p`` cancel: the inputs, not the
algorithm, fix how many digits survive. The bounds are therefore
componentwise, a few roundings of each quantity that is subtracted (EPS64 =
2**-52)::

    term:  |err| <= 1e-13 |ref| + 8 EPS64 y (|log y| + |log p|) + 1e-300
    sum:   |err| <= 1e-13 |ref| + sum of the term allowances + (C + 2) EPS64 sum |t|
    grad:  |err| <= 1e-13 |ref| + EPS64 scale ((C + 4 + kappa_j) |p_j s| + 4 |y_j|)

with ``kappa_j = |d_j| + max_k |d_k|`` (``d = z - max z``, capped at 745, where
``exp`` underflows) the rounding of ``z - max z`` that ``exp`` amplifies.
Where the target is a one-hot row nothing cancels in the term, and the plain
1e-13 relative bound is asserted as well.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from mpmath import mp, mpf

from xentcli.numeric import kl_div

pytestmark = pytest.mark.filterwarnings("ignore::xentcli.errors.XentWarning")

EPS64 = 2.0**-52
REL = 1e-13
DPS = 400

SETTINGS = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def reference(z: np.ndarray, y: np.ndarray, reduction: str) -> dict:
    """Literal KL(y || softmax(z)) at DPS digits; floats are converted exactly."""
    n, c = z.shape
    with mp.workdps(DPS):
        terms = np.empty((n, c), dtype=object)
        grad = np.empty((n, c), dtype=object)
        logp = np.empty((n, c), dtype=object)
        probs = np.empty((n, c), dtype=object)
        for i in range(n):
            zi = [mpf(float(v)) for v in z[i]]
            yi = [mpf(float(v)) for v in y[i]]
            lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in zi if not mpmath.isinf(v)))
            s = mpmath.fsum(yi)
            for j in range(c):
                lp = zi[j] - lse if not mpmath.isinf(zi[j]) else -mpmath.inf
                p = mpmath.exp(lp) if not mpmath.isinf(lp) else mpf(0)
                logp[i, j], probs[i, j] = lp, p
                terms[i, j] = mpf(0) if yi[j] == 0 else yi[j] * (mpmath.log(yi[j]) - lp)
                grad[i, j] = p * s - yi[j]
        total = mpmath.fsum(terms.reshape(-1))
        scale = {"sum": mpf(1), "none": mpf(1), "mean": mpf(1) / (n * c), "batchmean": mpf(1) / n}[reduction]
        return {
            "terms": terms,
            "loss": total * scale,
            "grad": grad * scale,
            "logp": logp,
            "probs": probs,
            "scale": scale,
        }


def term_allowance(y: float, logp) -> float:
    if y == 0:
        return 0.0
    return 8 * EPS64 * y * (abs(math.log(y)) + abs(float(logp)))


@st.composite
def kl_case(draw):
    n = draw(st.integers(1, 4))
    c = draw(st.integers(2, 12))
    scale = draw(st.sampled_from([1.0, 30.0, 800.0, 1e4]))
    z = np.array(
        draw(st.lists(st.floats(-scale, scale, allow_nan=False, width=64), min_size=n * c, max_size=n * c))
    ).reshape(n, c)
    kind = draw(st.sampled_from(["random", "own_softmax", "one_hot", "confident", "sparse", "unnormalised"]))
    if kind == "confident":  # one-hot on a class far ahead: -log p is tiny and must stay accurate
        cls = draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n))
        gap = draw(st.floats(1.0, 700.0))
        z[np.arange(n), cls] = z.max(axis=1) + gap
        y = np.zeros((n, c))
        y[np.arange(n), cls] = 1.0
    elif kind == "own_softmax":  # the target is the model's own prediction: KL ~ 0
        e = np.exp(z - z.max(axis=1, keepdims=True))
        y = e / e.sum(axis=1, keepdims=True)
    elif kind == "one_hot":
        y = np.zeros((n, c))
        y[np.arange(n), draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n))] = 1.0
    else:
        raw = np.array(
            draw(st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=n * c, max_size=n * c))
        ).reshape(n, c)
        if kind == "sparse":
            raw[raw < 0.5] = 0.0
        if kind == "unnormalised":
            y = raw
        else:
            sums = raw.sum(axis=1, keepdims=True)
            y = np.where(sums > 0, raw / np.where(sums > 0, sums, 1.0), 1.0 / c)
    reduction = draw(st.sampled_from(["sum", "mean", "batchmean", "none"]))
    return z, y, reduction, kind


@settings(max_examples=150, **SETTINGS)
@given(kl_case())
def test_kl_float64_matches_mpmath(case):
    z, y, reduction, kind = case
    note(f"kind={kind} reduction={reduction}\nz={z.tolist()}\ny={y.tolist()}")
    got = kl_div(z, y, reduction=reduction)
    ref = reference(z, y, reduction)
    n, c = z.shape
    scale = float(ref["scale"])

    allow = np.array([[term_allowance(y[i, j], ref["logp"][i, j]) for j in range(c)] for i in range(n)])
    terms_ref = np.array([[float(v) for v in row] for row in ref["terms"]])
    assert got.losses is not None
    err = np.abs(got.losses - terms_ref)
    assert np.all(err <= REL * np.abs(terms_ref) + allow + 1e-300), (err, allow)
    if kind in ("one_hot", "confident"):
        assert np.all(err <= REL * np.abs(terms_ref) + 1e-300)

    if reduction != "none":
        assert got.loss is not None
        with mp.workdps(DPS):
            loss_err = float(abs(mpf(got.loss) - ref["loss"]))
        bound = REL * abs(float(ref["loss"])) + scale * (allow.sum() + (c + 2) * EPS64 * np.abs(terms_ref).sum())
        assert loss_err <= bound, (loss_err, bound)

    d = np.minimum(np.abs(z - z.max(axis=1, keepdims=True)), 745.0)
    kappa = d + d.max(axis=1, keepdims=True)
    p_ref = np.array([[float(v) for v in row] for row in ref["probs"]])
    s = y.sum(axis=1, keepdims=True)
    grad_ref = np.array([[float(v) for v in row] for row in ref["grad"]])
    grad_allow = REL * np.abs(grad_ref) + EPS64 * scale * ((c + 4 + kappa) * np.abs(p_ref * s) + 4 * np.abs(y))
    assert np.all(np.abs(got.grad - grad_ref) <= grad_allow + 1e-300)
    assert got.probs is not None
    assert np.all(np.abs(got.probs - p_ref) <= (1e-13 + EPS64 * (c + 4 + kappa)) * p_ref + 1e-300)


@pytest.mark.parametrize("reduction", ["sum", "mean", "batchmean"])
def test_kl_masked_class_with_zero_target_is_a_zero_term(reduction):
    """-inf masks a class; a zero target there is a zero term, as 0 log 0 = 0."""
    z = np.array([[2.0, -math.inf, 0.5], [1e4, -1e4, -math.inf]])
    y = np.array([[0.25, 0.0, 0.75], [0.5, 0.5, 0.0]])
    got = kl_div(z, y, reduction=reduction)
    ref = reference(z, y, reduction)
    assert got.loss == pytest.approx(float(ref["loss"]), rel=REL)
    assert got.grad[0, 1] == 0.0 and got.grad[1, 2] == 0.0
    assert got.losses is not None and got.losses[0, 1] == 0.0


def test_kl_positive_target_on_masked_class_is_infinite():
    z = np.array([[0.0, -math.inf]])
    got = kl_div(z, np.array([[0.5, 0.5]]), reduction="sum")
    assert got.loss == math.inf
