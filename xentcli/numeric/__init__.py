r"""Numeric reference kernels with PyTorch's semantics: NumPy only (no SymPy, click or rich).

:func:`evaluate` computes any :class:`~xentcli.spec.LossSpec`; the named
functions (:func:`cross_entropy`, :func:`nll_loss`, :func:`kl_div`,
:func:`binary_cross_entropy`) build the spec from PyTorch-like keywords.
Every one returns a :class:`LossResult`: the loss, per-sample losses,
probabilities and the gradient with respect to the logits, accurate for any
finite logits (see :mod:`xentcli.numeric.softmax_kernels` and
:mod:`xentcli.numeric.sigmoid`). Reductions over samples are exact sums, so
the result does not depend on the order or blocking of the rows.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np

from ..errors import XentInputError
from ..spec import IGNORE_INDEX, LossSpec
from .checks import KERNEL_DTYPES, emit, numeric_array, resolve_dtype
from .kdim import evaluate_k
from .plan import ReductionPlan
from .result import LossResult
from .sigmoid import sigmoid_loss
from .softmax import effective_targets, softmax_loss
from .stable import log_softmax, logsumexp, softmax
from .sums import ExactSum, GroupedSum, exact_sum

__all__ = [
    "DTYPES",
    "ExactSum",
    "GroupedSum",
    "LossResult",
    "ReductionPlan",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "effective_targets",
    "evaluate",
    "exact_sum",
    "kl_div",
    "log_softmax",
    "logsumexp",
    "nll_loss",
    "softmax",
]

DTYPES = KERNEL_DTYPES
Reduction = Literal["mean", "sum", "none"]


def evaluate(
    spec: LossSpec,
    logits: Any,
    target: Any,
    *,
    with_probs: bool = True,
    with_losses: bool = True,
    out: np.ndarray | None = None,
    plan: ReductionPlan | None = None,
    warn: bool = True,
) -> LossResult:
    """Compute the loss described by ``spec`` on ``logits`` (N, C) or (C,) and ``target``.

    Args:
        spec: the loss and its options (:class:`~xentcli.spec.LossSpec`); its
            ``dtype`` (float64 or float32) is the dtype computed in.
        logits: any finite values; ``-inf`` masks a class; NaN and ``+inf``
            are errors. The softmax kinds also take (N, C, d1, ..., dk), as
            PyTorch does (see :mod:`xentcli.numeric.kdim`).
        target: (N,) class indices, (N, C) probability rows, or for ``bce``
            values in [0, 1] of the logits' shape; with K-dimensional logits
            (N, d1, ..., dk) class indices or probabilities of the logits' shape.
        with_probs: also return softmax/sigmoid outputs (``probs`` is
            ``None`` otherwise, which saves a pass and an N x C array).
        with_losses: keep the elementwise losses of ``kl`` and ``bce`` (for a
            reduced loss they can be skipped: ``losses`` is then ``None``).
        out: a C-contiguous (N, C) array of the compute dtype for the gradient.
        plan: the reduction plan of a whole stream of which these rows are a
            block (:meth:`ReductionPlan.for_batch`); by default the plan of
            these rows.
        warn: issue the result's :class:`~xentcli.errors.XentWarning` s
            (they are in ``result.warnings`` either way).

    Raises:
        XentInputError: for any invalid input.
    """
    if spec.symbolic:
        raise XentInputError("sym is for xent derive; a computation needs numbers",
                             option="weight" if spec.weight is not None else "label_smoothing")
    if spec.dtype == "bfloat16":
        return _bfloat16(spec, logits, target, with_probs=with_probs, with_losses=with_losses, out=out, plan=plan,
                         warn=warn)
    if spec.dtype not in KERNEL_DTYPES:
        raise XentInputError(f"xent computes in float64 or float32, not {spec.dtype}", option="dtype")
    run = sigmoid_loss if spec.family == "sigmoid" else softmax_loss
    if spec.family == "softmax" and np.ndim(logits) > 2:  # (N, C, d1, ..., dk), as PyTorch
        if out is not None or plan is not None:
            raise XentInputError("K-dimensional logits are computed in memory (no out= or plan=)", operand="logits")
        z = numeric_array(logits, "logits")
        # batchmean divides by the batch size N, not by the N * d1 * ... * dk rows: a sum, divided below.
        batchmean = spec.reduction == "batchmean"
        rows_spec = spec.with_(reduction="sum") if batchmean else spec
        result = evaluate_k(lambda rows, y: run(rows_spec, rows, y, with_probs=with_probs, with_losses=with_losses),
                            z, numeric_array(target, "target"), str(spec.targets))
        if batchmean:
            n = z.shape[0]
            result = dataclasses.replace(result, spec=spec, loss=None if result.loss is None else result.loss / n,
                                         grad=result.grad / result.grad.dtype.type(n), denominator=float(n))
    else:
        result = run(spec, logits, target, with_probs=with_probs, with_losses=with_losses, out=out, plan=plan)
    if warn:
        emit(result.warnings)
    return result


def bfloat16_round(values: Any, operand: str) -> np.ndarray:
    """Values rounded to bfloat16 (to nearest, ties to even) and widened to float32 exactly."""
    import ml_dtypes

    a = numeric_array(values, operand)
    with np.errstate(over="ignore"):
        return a.astype(np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)


def _bfloat16(spec: LossSpec, logits: Any, target: Any, **kwargs: Any) -> LossResult:
    """bfloat16: the logits, probability targets and class weights rounded to bfloat16, the loss computed in
    float32 from them (PyTorch's CPU kernels accumulate a bfloat16 tensor's loss in float32)."""
    given: Any = spec.weight
    weight = None if given is None else tuple(bfloat16_round([float(w) for w in given], "weight").tolist())
    inner = spec.with_(dtype="float32", weight=weight)
    z = bfloat16_round(logits, "logits")
    y = bfloat16_round(target, "target") if spec.targets == "prob" else target
    result = evaluate(inner, z, y, **kwargs)
    return dataclasses.replace(result, spec=spec)


def _dtype_name(dtype: Any, logits: Any) -> str:
    return str(resolve_dtype(dtype, logits))


def cross_entropy(
    logits: Any,
    target: Any,
    *,
    weight: Any = None,
    ignore_index: int = IGNORE_INDEX,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    target_type: Literal["index", "prob"] | None = None,
    dtype: Any = None,
    with_probs: bool = True,
    out: np.ndarray | None = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
    temperature: float = 1.0,
) -> LossResult:
    r"""Softmax cross-entropy with the semantics of ``torch.nn.functional.cross_entropy``.

    Args:
        logits: ``(N, C)`` unnormalised scores (or ``(C,)`` for one sample).
        target: ``(N,)`` class indices in ``[0, C)`` (or ``ignore_index``), or
            ``(N, C)`` non-negative probability rows. Rows that do not sum to 1
            are used as given (a :class:`~xentcli.errors.XentWarning` says so).
        weight: ``(C,)`` non-negative class weights :math:`w`.
        ignore_index: class-index targets equal to it contribute nothing and
            are left out of the mean's denominator.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        label_smoothing: :math:`\varepsilon \in [0, 1]`.
        target_type: ``"index"`` or ``"prob"``; by default, as PyTorch: a target
            with the logits' shape holds probabilities, otherwise indices.
        dtype: ``"float64"`` or ``"float32"``; default: float32 if the logits
            are float32, else float64.
        with_probs: also return the softmax probabilities.
        out: a C-contiguous (N, C) array of the compute dtype for the gradient.
        z_loss: :math:`\lambda \ge 0`: each counted sample adds
            :math:`\lambda \operatorname{lse}(u_i)^2` (Liger-Kernel's ``lse_square_scale``);
            ``result.z_loss`` is that term of the loss.
        softcap: :math:`c > 0`: the logits become :math:`c \tanh(z / c)` (Gemma 2).
        temperature: :math:`T > 0`: then they are divided by :math:`T`.

    With :math:`\log p_{ic} = z_{ic} - \operatorname{lse}(z_i)` and the
    effective target row :math:`a_{ic} = w_c ((1-\varepsilon) y_{ic} + \varepsilon / C)`
    (:math:`y_i` the one-hot row of an index target, all zero for an ignored
    sample, or the given probability row):

    .. math::

        \ell_i = -\sum_c a_{ic} \log p_{ic}, \qquad
        \frac{\partial \ell_i}{\partial z_{ic}} = p_{ic} \sum_{c'} a_{ic'} - a_{ic}.

    ``mean`` divides the sum by :math:`\sum_{i\,\text{not ignored}} w_{y_i}`
    for index targets (the count of such samples without weights) and by
    :math:`N` for probability targets, exactly as PyTorch does.

    Example:
        >>> r = cross_entropy([[2, 1, 0.1], [0.1, 2, 1.9]], [1, 0])
        >>> round(r.loss, 3), [round(v, 3) for v in r.losses]
        (2.019, [1.417, 2.62])
    """
    if target_type is None:
        z_shape = np.shape(logits)
        target_type = "prob" if np.shape(numeric_array(target, "target")) == tuple(z_shape) else "index"
    if target_type not in ("index", "prob"):
        raise XentInputError(f"must be 'index' or 'prob', not {target_type!r}", option="target_type")
    spec = LossSpec(
        "ce", reduction, weight=_vec(weight), label_smoothing=label_smoothing, targets=target_type,
        ignore_index=_given_ignore(ignore_index, target_type), dtype=_dtype_name(dtype, logits),
        z_loss=z_loss, softcap=softcap, temperature=temperature,
    )
    return evaluate(spec, logits, target, with_probs=with_probs, out=out)


def nll_loss(
    logits: Any,
    target: Any,
    *,
    weight: Any = None,
    ignore_index: int = IGNORE_INDEX,
    reduction: Reduction = "mean",
    dtype: Any = None,
    with_probs: bool = True,
    out: np.ndarray | None = None,
) -> LossResult:
    """LogSoftmax followed by ``torch.nn.functional.nll_loss``, as a function of the logits (class indices)."""
    spec = LossSpec("nll", reduction, weight=_vec(weight), ignore_index=_given_ignore(ignore_index, "index"),
                    dtype=_dtype_name(dtype, logits))
    return evaluate(spec, logits, target, with_probs=with_probs, out=out)


def kl_div(
    logits: Any,
    target: Any,
    *,
    reduction: Literal["mean", "sum", "none", "batchmean"] = "mean",
    dtype: Any = None,
    with_probs: bool = True,
    out: np.ndarray | None = None,
) -> LossResult:
    r"""``torch.nn.functional.kl_div(log_softmax(logits), target)``: :math:`\sum_c y_c \log(y_c / p_c)`.

    ``mean`` divides by the N*C elements and ``batchmean`` by N, as PyTorch
    does; ``none`` gives the elementwise terms (a zero target is a zero term).
    """
    spec = LossSpec("kl", reduction, dtype=_dtype_name(dtype, logits))
    return evaluate(spec, logits, target, with_probs=with_probs, out=out)


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
) -> LossResult:
    r"""Sigmoid binary cross-entropy with logits (``binary_cross_entropy_with_logits``).

    Every element is its own binary problem (multi-label classification):
    :math:`\ell = -w [q y \log\sigma(x) + (1-y)\log(1-\sigma(x))]`, gradient
    :math:`w[(1-y)\sigma(x) - q y (1-\sigma(x))]`, which is :math:`w(\sigma(x) - y)`
    when :math:`q = 1`. ``weight`` and ``pos_weight`` are one value or one per
    column; ``mean`` divides by the N*C elements.

    Example:
        >>> r = binary_cross_entropy([1.0, -1.0, 0.0], [0.0, 0.0, 1.0], reduction="none")
        >>> [round(v, 7) for v in r.losses]
        [1.3132617, 0.3132617, 0.6931472]
    """
    spec = LossSpec("bce", reduction, weight=_vec(weight), pos_weight=_vec(pos_weight, "pos_weight"),
                    dtype=_dtype_name(dtype, logits))
    return evaluate(spec, logits, target, with_probs=with_probs, with_losses=with_losses, out=out)


binary_cross_entropy_with_logits = binary_cross_entropy


def _vec(v: Any, operand: str = "weight") -> Any:
    """An array-like of option values as a tuple of Python numbers (the spec validates them)."""
    if v is None:
        return None
    arr = np.asarray(v)
    if arr.dtype == object or arr.dtype.kind not in "biuf" or arr.ndim > 1:
        raise XentInputError("must be a number or a vector of numbers", operand=operand)
    return tuple(arr.reshape(-1).tolist())


def _given_ignore(ignore_index: Any, target_type: str) -> int | None:
    """PyTorch's default (-100), or a negative value with probability rows, is not an ignore index in use."""
    if ignore_index is None:
        return None
    if target_type == "prob" and isinstance(ignore_index, (int, np.integer)) and ignore_index < 0:
        return None  # PyTorch accepts a negative ignore_index with probability targets and ignores it
    if isinstance(ignore_index, (int, np.integer)) and ignore_index == IGNORE_INDEX:
        return None
    return ignore_index  # type: ignore[no-any-return]
