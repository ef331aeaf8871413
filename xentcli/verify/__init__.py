"""Check anyone's cross-entropy implementation against the reference, and say what is wrong.

>>> from xentcli.verify import check, assert_conforms
>>> def my_loss(logits, targets):
...     from xentcli import cross_entropy
...     r = cross_entropy(logits, targets)
...     return r.loss, r.grad
>>> check(my_loss).passed
True

In a test suite, ``assert_conforms(my_loss, reduction="mean")`` raises
:class:`VerificationError` (an ``AssertionError``) carrying the report.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import XentInputError, XentMathError
from .battery import Case, Options, battery
from .runner import TOLERANCES, CaseResult, Report

__all__ = [
    "Case",
    "CaseResult",
    "Options",
    "Report",
    "TOLERANCES",
    "VerificationError",
    "assert_conforms",
    "battery",
    "check",
    "make_options",
]


class VerificationError(XentMathError, AssertionError):
    """The implementation disagrees with the reference; ``.report`` holds the details."""

    def __init__(self, report: Report):
        self.report = report
        super().__init__(report.text())


def make_options(
    *,
    reduction: str = "mean",
    weight: Sequence[float] | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    binary: bool = False,
    pos_weight: Sequence[float] | float | None = None,
    targets: str = "index",
    dtype: str = "float64",
) -> Options:
    """Validated :class:`Options` (raises :class:`XentInputError`)."""
    from .runner import INPUT_DTYPES

    if reduction not in ("mean", "sum", "none"):
        raise XentInputError(f"reduction must be mean, sum or none, not {reduction!r}")
    if targets not in ("index", "prob"):
        raise XentInputError(f"targets must be index or prob, not {targets!r}")
    if dtype not in INPUT_DTYPES:
        raise XentInputError(f"dtype must be one of {', '.join(INPUT_DTYPES)}, not {dtype!r}")
    if not isinstance(label_smoothing, (int, float, np.integer, np.floating)) or isinstance(label_smoothing, bool):
        raise XentInputError(f"label_smoothing must be a number, not {label_smoothing!r}")
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise XentInputError(f"label_smoothing must be between 0 and 1, got {label_smoothing!r}")
    if binary and (label_smoothing or ignore_index is not None):
        raise XentInputError("label smoothing and ignore_index do not apply to binary cross-entropy")
    if not binary and pos_weight is not None:
        raise XentInputError("pos_weight applies only to binary cross-entropy")
    if targets == "prob" and ignore_index is not None:
        raise XentInputError("ignore_index applies to class-index targets only")
    if ignore_index is not None:
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
            raise XentInputError(f"ignore_index must be a whole number, not {ignore_index!r}")
        if not -(2**63) <= int(ignore_index) < 2**63:
            raise XentInputError(f"ignore_index {ignore_index} does not fit in int64 (the targets' dtype)")
        ignore_index = int(ignore_index)

    def vec(v: Any, name: str) -> tuple[float, ...] | None:
        if v is None:
            return None
        if isinstance(v, (int, float)):
            v = [v]
        try:
            out = tuple(float(x) for x in v)
        except (TypeError, ValueError):
            raise XentInputError(f"{name} must be numbers") from None
        if not out or any(not (x >= 0) or x == float("inf") for x in out):
            raise XentInputError(f"{name} must be finite and non-negative")
        return out

    w = vec(weight, "weight")
    if w is not None and len(w) < 2 and not binary:
        raise XentInputError("weight needs one value per class (at least 2)")
    return Options(reduction, w, ignore_index, float(label_smoothing), binary, vec(pos_weight, "pos_weight"),
                   "index" if binary else targets, dtype)


def check(
    fn: Callable[..., Any],
    *,
    seed: int = 0,
    rtol: float | None = None,
    atol: float | None = None,
    name: str | None = None,
    options: Options | None = None,
    **option_values: Any,
) -> Report:
    """Run the battery on ``fn(logits, targets) -> loss or (loss, grad)`` and return the :class:`Report`.

    Keyword options are those of :func:`make_options` (the names of ``xent compute``).
    """
    from .diagnose import diagnose
    from .runner import run_case

    opts = options or make_options(**option_values)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise XentInputError(f"seed must be a whole number >= 0, not {seed!r}")
    cases = battery(opts, seed)
    results = [run_case(fn, case, opts, rtol, atol) for case in cases]
    label = name or getattr(fn, "__qualname__", None) or f"{type(fn).__qualname__} instance"
    return finish(label, opts, seed, results, diagnose)


def finish(target: str, opts: Options, seed: int, results: list[CaseResult], diagnose: Callable) -> Report:
    diagnoses: list[str] = []
    for r in results:
        if not r.passed and not r.error:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r.diagnosis = diagnose(r, opts)
            if r.diagnosis and r.diagnosis not in diagnoses:
                diagnoses.append(r.diagnosis)
    checked_grad = any(r.grad is not None for r in results)
    dts = sorted({r.dtype for r in results if not r.error})
    note = "; ".join(f"{d}: rtol {results_tol(results, d)[0]:g}, atol {results_tol(results, d)[1]:g}" for d in dts)
    return Report(target, opts, seed, results, diagnoses, checked_grad, note)


def results_tol(results: list[CaseResult], dtype: str) -> tuple[float, float]:
    for r in results:
        if r.dtype == dtype and not r.error:
            return r.rtol, r.atol
    return TOLERANCES[dtype]


def assert_conforms(fn: Callable[..., Any], **kwargs: Any) -> Report:
    """Like :func:`check`, but raise :class:`VerificationError` with the report when any case fails."""
    report = check(fn, **kwargs)
    if not report.passed:
        raise VerificationError(report)
    return report
