r"""The accuracy ``xent verify`` demands of an implementation, element by element.

The bounds are the README's accuracy bounds ("Accuracy bounds (tested)",
reasoned in ``tests/test_numeric_accuracy.py``) written for an implementation
we did not write, in the precision of the inputs it was handed (or the one
stated with ``--accept-dtype``):

* ``u`` is that dtype's unit roundoff (2^-53, 2^-24, 2^-11) and ``K = 8`` the
  README's factor.
* ``kappa`` is the README's condition number with the logits' own magnitudes
  in place of ``d = z - max z``: ``kappa_j = 1 + |z_j| + max_k |z_k|`` (finite
  logits). xent's kernel forms ``d`` without error; an implementation may round
  the logits, the max and the log-sum-exp at their own magnitude, so a
  relative error ``u`` in any of them is allowed for. For BCE,
  ``kappa = 1 + |x|``.
* ``L = ceil(sqrt C) + ceil(sqrt N) + 2`` counts the roundings of the sums
  over the classes and (for a reduced loss) over the samples, plus the
  division and the rounding of the result. An implementation may sum in any
  order: pairwise (``log2 C`` roundings, xent's own kernel), or with a few
  vector accumulators each running through ``C/16`` terms (PyTorch's CPU
  log-softmax: 800 u at C = 32768). The worst case of a running sum, ``C``
  roundings, is far from what rounding does in practice; the probabilistic
  bound of Higham and Mary ("A new approach to probabilistic rounding error
  analysis", SIAM J. Sci. Comput., 2019), ``lambda sqrt(C) u`` with ``lambda``
  a small constant (here ``K``), holds for every order with overwhelming
  probability, and is what is used.

An element passes when ``|got - ref| <= K u (kappa + L) |ref|``: relative, so a
loss of 4e-26 must come back as 4e-26, not 0. Where the reference is a
difference of terms that cancel for reasons inherent in the inputs (the
gradient ``p s - a`` with probability targets or label smoothing, BCE with
soft labels, the KL divergence ``sum y log y - sum y log p``), the README's
componentwise allowance ``K u (kappa + L) * (size of the terms)`` is added.
Values below the dtype's normal range get ``K`` subnormal ulps (and, as a
divergence, may come back as 0: XLA flushes subnormal results to zero).

The *cancellation allowance* is what the frameworks' own formulas lose: the
loss as ``lse(z) - z_t`` (absolute error ``~ u (kappa + L) s`` per sample) and the
gradient as ``p - y`` (``~ u (kappa + L) (|p s| + |a|)``). An element outside the
pass bound but inside this allowance is the documented divergence "tiny
values of confident predictions", not a failure (unless ``--strict``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import numeric
from ..spec import LossSpec
from .lm import lm_view

__all__ = ["Bar", "Bounds", "K", "SMALLEST", "UNIT_ROUNDOFF", "bounds", "dtype_rank"]

UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}
SMALLEST = {"float64": 2.0**-1074, "float32": 2.0**-149, "float16": 2.0**-24, "bfloat16": 2.0**-133}
TINY = {"float64": 2.0**-1022, "float32": 2.0**-126, "float16": 2.0**-14, "bfloat16": 2.0**-126}  # smallest normal
K = 8.0


def dtype_rank(name: str) -> int:
    """bfloat16 < float16 < float32 < float64 (by precision: 8, 11, 24 and 53 significant bits)."""
    return {"bfloat16": 0, "float16": 1, "float32": 2, "float64": 3}[name]


@dataclass(frozen=True)
class Bar:
    """The accuracy demanded: of a dtype (``None``: the inputs'), or explicit ``rtol``/``atol``.

    ``rtol``/``atol`` replace the derived bound by ``atol * max(1, max|ref|) + rtol * |ref|``.
    """

    dtype: str | None = None
    rtol: float | None = None
    atol: float | None = None

    def dtype_for(self, options: LossSpec) -> str:
        return self.dtype or options.dtype

    @property
    def explicit(self) -> bool:
        return self.rtol is not None or self.atol is not None


@dataclass
class Bounds:
    """Per-element bounds of one case: what passes, and the extra a framework's cancellation may lose."""

    dtype: str
    loss: np.ndarray
    grad: np.ndarray
    loss_cancel: np.ndarray
    grad_cancel: np.ndarray
    loss_factor: np.ndarray | float = 0.0  # K u (kappa + L) per loss element (0: explicit tolerances)
    grad_factor: np.ndarray | float = 0.0

    @property
    def u(self) -> float:
        return UNIT_ROUNDOFF[self.dtype]


def _roundings(k: int) -> int:
    """The roundings allowed for a sum of ``k`` terms in any order (see the module's docstring)."""
    return math.ceil(math.sqrt(k)) if k > 1 else 0


def _flushed(ref: np.ndarray, dtype: str) -> np.ndarray:
    """An allowance of the smallest normal number where the reference is below it: a subnormal result
    flushed to zero (XLA's CPU and GPU backends run with flush-to-zero)."""
    tiny = TINY[dtype]
    return np.where(np.abs(ref) < tiny, tiny, 0.0)


def bounds(options: LossSpec, logits: np.ndarray, targets: np.ndarray, ref: numeric.LossResult,
           dtype: str) -> Bounds:
    """The bounds for the reference ``ref`` of ``logits``/``targets`` (the values handed over, in float64)."""
    b = _bounds(options, logits, targets, ref, dtype)
    loss_ref = np.asarray(ref.losses if options.reduction == "none" else ref.loss, dtype=np.float64)
    if loss_ref.shape == np.shape(b.loss_cancel):
        b.loss_cancel = b.loss_cancel + _flushed(loss_ref, dtype)
    b.grad_cancel = b.grad_cancel + _flushed(np.asarray(ref.grad, dtype=np.float64), dtype)
    return b


def _bounds(options: LossSpec, logits: np.ndarray, targets: np.ndarray, ref: numeric.LossResult,
            dtype: str) -> Bounds:
    z = np.asarray(logits, dtype=np.float64)
    n, c = z.shape
    reduced = options.reduction != "none"
    u = UNIT_ROUNDOFF[dtype]
    floor = K * SMALLEST[dtype]
    depth = _roundings(c) + (_roundings(n) if reduced else 0) + 2
    denom = ref.denominator
    scale = 1.0 / denom if (denom and options.reduction in ("mean", "batchmean")) else 1.0
    finite = np.isfinite(z)
    az = np.where(finite, np.abs(z), 0.0)
    zmax = az.max(axis=1, keepdims=True)
    grad_ref = np.abs(np.asarray(ref.grad, dtype=np.float64))
    if options.family == "sigmoid":
        return _sigmoid_bounds(options, z, targets, ref, dtype, u, floor, depth, scale, grad_ref)

    if options.language_model:
        return _lm_bounds(options, z, targets, ref, dtype, u, floor, depth, scale, grad_ref)
    f_elem = K * u * (1.0 + az + zmax + depth)  # (N, C)
    f_row = K * u * (1.0 + 2.0 * zmax[:, 0] + depth)  # (N,)
    p = np.asarray(ref.probs, dtype=np.float64)
    a = numeric.effective_targets(options, z, targets)
    s = a.sum(axis=1)
    terms = (np.abs(p * s[:, None]) + np.abs(a)) * scale
    dense = options.targets == "prob" or options.smoothing or options.kind == "kl"
    grad_pass = f_elem * grad_ref + (f_elem * terms if dense else 0.0) + floor
    grad_cancel = f_elem * terms

    per_sample = np.asarray(ref.losses, dtype=np.float64) if ref.losses is not None else None
    if options.kind == "kl":
        with np.errstate(divide="ignore", invalid="ignore"):
            logp = np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), 0.0)
            ylogy = np.where(a > 0, a * np.log(np.where(a > 0, a, 1.0)), 0.0)
        elem_terms = np.abs(ylogy) + np.abs(np.where(a > 0, a * logp, 0.0))
        elem_pass = f_elem * (np.abs(per_sample) if per_sample is not None else 0.0) + f_elem * elem_terms
        elem_cancel = f_elem * np.abs(a)
        if options.reduction == "none":
            return Bounds(dtype, elem_pass + floor, grad_pass, elem_cancel, grad_cancel, f_elem, f_elem)
        return Bounds(dtype, np.asarray(elem_pass.sum() * scale + floor), grad_pass,
                      np.asarray(elem_cancel.sum() * scale), grad_cancel, float(f_elem.max()), f_elem)

    losses = np.abs(per_sample) if per_sample is not None else np.zeros(n)
    losses = np.where(np.isfinite(losses), losses, 0.0)
    row_pass = f_row * losses
    row_cancel = f_row * s
    if options.reduction == "none":
        return Bounds(dtype, row_pass + floor, grad_pass, row_cancel, grad_cancel, f_row, f_elem)
    return Bounds(dtype, np.asarray(row_pass.sum() * scale + floor), grad_pass,
                  np.asarray(row_cancel.sum() * scale), grad_cancel, float(f_row.max()), f_elem)


def _complement(p: np.ndarray) -> np.ndarray:
    """1 - p, without cancellation where p is close to 1 (at a row's arg-max: the sum of the others)."""
    q = 1.0 - p
    top = np.argmax(p, axis=1)
    rows = np.arange(p.shape[0])
    others = np.where(np.arange(p.shape[1])[None, :] == top[:, None], 0.0, p).sum(axis=1)
    q[rows, top] = np.minimum(others, 1.0)
    return q


def _lm_bounds(options: LossSpec, z: np.ndarray, targets: np.ndarray, ref: numeric.LossResult, dtype: str,
               u: float, floor: float, depth: int, scale: float, grad_ref: np.ndarray) -> Bounds:
    """The bounds with soft-capping, temperature or a z-loss (README: Accuracy bounds; module docstring).

    The implementation's softmax runs on x = c tanh(z/c)/T, so kappa and M = 1 + 2 max|x| are taken of
    x. The map itself is rounded (|dx_k| <= a few u |x_k|), which moves the gradient with respect to x by
    at most max|dx| times the row sum of the Hessian, 2 p_j (1 - p_j)(s + 2 lambda |lse|) + 2 lambda p_j
    (and the loss by max|dx| times sum_j |dl/dx_j|): K u M times those. 1 - tanh^2(z/c), the derivative
    of the cap as code computes it (autograd of tanh, Liger-Kernel), is off by a few u absolutely, which
    is all of it in the cap's saturation: K u |dl/dx_j| / T. The z-loss adds lambda lse^2, lse rounded at
    its own magnitude: K u (kappa + L) 2 lambda (|lse| + 1) on the loss, and the same times p_j on the
    gradient, where p s - a + 2 lambda lse p may cancel (a componentwise allowance, as for smoothing).
    """
    view = lm_view(options, z, targets)
    x = view.u
    ax = np.where(np.isfinite(x), np.abs(x), 0.0)
    xmax = ax.max(axis=1, keepdims=True)
    f_elem = K * u * (1.0 + ax + xmax + depth)
    f_row = K * u * (1.0 + 2.0 * xmax[:, 0] + depth)
    m = view.counted.astype(np.float64)
    lam, zs = view.lam, view.z_scale
    p = view.probs
    a = numeric.effective_targets(options, z, targets)
    s = a.sum(axis=1)
    alse = np.abs(view.lse)
    z_elem = 2.0 * lam * ((alse + 1.0) * m * zs)[:, None] * p  # the z-loss gradient's rounding scale
    terms = ((np.abs(p * s[:, None]) + np.abs(a)) * scale + z_elem) * view.chain
    dense = options.targets == "prob" or options.smoothing or options.has_z_loss
    grad_pass = f_elem * grad_ref + (f_elem * terms if dense else 0.0) + floor
    grad_cancel = f_elem * terms
    big_m = 1.0 + 2.0 * xmax
    loss_map = np.zeros(x.shape[0])
    if not view.identity:
        hessian = (2.0 * p * _complement(p) * (s * scale + 2.0 * lam * m * alse * zs)[:, None]
                   + 2.0 * lam * (m * zs)[:, None] * p)
        grad_pass = grad_pass + K * u * big_m * hessian * view.chain
        loss_map = K * u * big_m[:, 0] * np.abs(view.grad_u).sum(axis=1)
    if options.softcap is not None:
        grad_pass = grad_pass + K * u * np.abs(view.grad_u) / float(options.temperature)  # type: ignore[arg-type]

    per_sample = np.asarray(ref.losses, dtype=np.float64) if ref.losses is not None else np.zeros(x.shape[0])
    per_sample = np.where(np.isfinite(per_sample), np.abs(per_sample), 0.0)
    zl = view.z_terms()
    ce = np.abs(per_sample - zl)
    row_pass = f_row * (ce * scale + (zl + 2.0 * lam * m * (alse + 1.0)) * zs) + loss_map
    row_cancel = f_row * s * scale
    if options.reduction == "none":
        return Bounds(dtype, row_pass + floor, grad_pass, row_cancel, grad_cancel, f_row, f_elem)
    return Bounds(dtype, np.asarray(row_pass.sum() + floor), grad_pass, np.asarray(row_cancel.sum()), grad_cancel,
                  float(f_row.max()), f_elem)


def _sigmoid_bounds(options: LossSpec, x: np.ndarray, targets: np.ndarray, ref: numeric.LossResult, dtype: str,
                    u: float, floor: float, depth: int, scale: float, grad_ref: np.ndarray) -> Bounds:
    n, c = x.shape
    y = np.asarray(targets, dtype=np.float64)
    ax = np.where(np.isfinite(x), np.abs(x), 0.0)
    f = K * u * (1.0 + ax + depth)
    w = _vector(options.weight, c)
    q = _vector(options.pos_weight, c)
    sig = np.asarray(ref.probs, dtype=np.float64)
    soft = (y > 0) & (y < 1)
    # The BCE gradient w((1 - y) sigma(x) - q y sigma(-x)) cancels for soft labels (README); the naive
    # q y (sigma(x) - 1) of the frameworks cancels where sigma(x) ~ 1.
    grad_terms = w * (np.abs((1 - y) * sig) + np.abs(q * y * (1 - sig))) * scale
    grad_pass = f * grad_ref + np.where(soft, f * grad_terms, 0.0) + floor
    grad_cancel = f * w * (np.abs((1 - y) * sig) + q * y * (sig + 1)) * scale
    elem = np.abs(np.asarray(ref.losses, dtype=np.float64)) if ref.losses is not None else np.zeros((n, c))
    elem = np.where(np.isfinite(elem), elem, 0.0)
    # PyTorch's (1 - y) x + log1p(exp(-|x|)) + max(-x, 0) subtracts terms of size |x| for soft labels.
    loss_terms = np.where(soft, w * ax * (q * y + (1 - y)), 0.0)
    elem_pass = f * (elem + loss_terms)
    # A tiny loss lost by log(1 + exp(-|x|)) (where log1p keeps it) is about u per element.
    elem_cancel = f * w * (q * y + (1 - y))
    if options.reduction == "none":
        return Bounds(dtype, elem_pass + floor, grad_pass, elem_cancel, grad_cancel, f, f)
    return Bounds(dtype, np.asarray(elem_pass.sum() * scale + floor), grad_pass,
                  np.asarray(elem_cancel.sum() * scale), grad_cancel, float(f.max()), f)


def _vector(values: object, c: int) -> np.ndarray:
    if values is None:
        return np.ones(c)
    arr = np.array([float(v) for v in values], dtype=np.float64)  # type: ignore[attr-defined]
    return np.repeat(arr, c) if arr.shape[0] == 1 and c != 1 else arr
