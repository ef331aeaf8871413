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

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import XentInputError, XentMathError
from ..spec import LossSpec
from .accuracy import UNIT_ROUNDOFF, Bar
from .battery import Case, battery, fixed_classes
from .divergences import DIVERGENCES, Divergence
from .isolation import DEFAULT_TIMEOUT, Executor
from .runner import CaseResult, Report

__all__ = [
    "Bar",
    "Case",
    "CaseResult",
    "DIVERGENCES",
    "Divergence",
    "LossSpec",
    "Report",
    "UNIT_ROUNDOFF",
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
    loss: str = "ce",
    reduction: str = "mean",
    weight: Any = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    binary: bool = False,
    pos_weight: Any = None,
    targets: str | None = None,
    dtype: str = "float64",
) -> LossSpec:
    """The validated :class:`~xentcli.spec.LossSpec` of these keywords (raises :class:`XentInputError`).

    ``binary=True`` is ``loss="bce"``; ``targets`` defaults to the loss's own
    (class indices for ce and nll).
    """
    if binary and loss not in ("ce", "bce"):
        raise XentInputError(f"binary=True is loss='bce'; it cannot go with loss={loss!r}", option="binary")
    spec = LossSpec(
        "bce" if binary else loss, reduction, weight=weight, ignore_index=ignore_index,
        label_smoothing=label_smoothing, pos_weight=pos_weight, targets=targets, dtype=dtype,
    )
    fixed_classes(spec)  # the battery's classes follow the weights
    return spec


def check(
    fn: Callable[..., Any] | str,
    *,
    seed: int = 0,
    rtol: float | None = None,
    atol: float | None = None,
    name: str | None = None,
    options: LossSpec | None = None,
    device: str | None = None,
    framework: str = "auto",
    accept_dtype: str | None = None,
    strict: bool = False,
    isolate: bool | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    max_memory: int | str | None = None,
    **option_values: Any,
) -> Report:
    """Run the battery on ``fn(logits, targets) -> loss or (loss, grad)`` and return the :class:`Report`.

    ``fn`` is a callable, or a name as ``xent verify`` takes it (``"path/file.py:function"``,
    ``"module:function"``, ``"torch.nn.functional:cross_entropy"``). Keyword options are those of
    :func:`make_options` (the names of ``xent compute``). ``framework`` (``auto``, ``numpy``, ``torch``,
    ``jax``) and ``device`` say how ``fn`` is called (see :mod:`xentcli.verify.native`); a target that
    cannot be called so raises :class:`XentInputError`.

    The accuracy demanded is that of the inputs' dtype, or of ``accept_dtype`` (a lower bar, stated);
    ``rtol``/``atol`` replace it by a fixed rule. ``strict`` counts the documented framework
    divergences as failures.

    The target runs in a worker process (see :mod:`xentcli.verify.isolation`): a case that crashes it,
    takes longer than ``timeout`` seconds (None or 0: no limit; the first case's limit also covers
    loading the target) or needs more than ``max_memory`` (bytes, or ``"512M"``; Linux) fails with the
    reason, and the other cases still run. ``isolate=False`` calls it in this process (no limits);
    ``isolate=None`` (the default) runs a callable that cannot be sent to another process (a lambda, a
    function defined inside a function) in this process with a :class:`~xentcli.errors.XentWarning`,
    ``isolate=True`` raises :class:`XentInputError` instead. A target that cannot be loaded raises
    :class:`XentInputError`.
    """
    from .diagnose import diagnose
    from .runner import run_case

    opts = options or make_options(**option_values)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise XentInputError(f"seed must be a whole number >= 0, not {seed!r}")
    bar = make_bar(accept_dtype, rtol, atol)
    label = name or (fn if isinstance(fn, str) else None) or getattr(fn, "__qualname__", None) \
        or f"{type(fn).__qualname__} instance"
    executor = Executor(fn, isolate=isolate, timeout=timeout, max_memory=max_memory, label=label,
                        options=opts, device=device, framework=framework)
    cases = battery(opts, seed)
    with executor:
        results = [run_case(fn, case, opts, bar=bar, executor=executor) for case in cases]
    report = finish(label, opts, seed, results, diagnose, strict=strict, bar=bar)
    report.isolation = executor.describe()
    return report


def make_bar(accept_dtype: str | None = None, rtol: float | None = None, atol: float | None = None) -> Bar:
    """The accuracy demanded (raises :class:`XentInputError` for an unknown dtype or a bad tolerance)."""
    if accept_dtype is not None and accept_dtype not in UNIT_ROUNDOFF:
        raise XentInputError(f"must be one of {', '.join(UNIT_ROUNDOFF)}, not {accept_dtype!r}",
                             option="accept_dtype")
    for value, opt in ((rtol, "rtol"), (atol, "atol")):
        if value is not None and not (0.0 <= value < float("inf")):
            raise XentInputError(f"{value!r} must be a finite number >= 0", option=opt)
    return Bar(accept_dtype, rtol, atol)


def finish(target: str, opts: LossSpec, seed: int, results: list[CaseResult],
           diagnose: Callable[[list[CaseResult], LossSpec], list[str]], *, strict: bool = False,
           bar: Bar | None = None) -> Report:
    """The report on judged cases: diagnoses of the failures (see :func:`.diagnose.diagnose`)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diagnoses = diagnose(results, opts)
    checked_grad = any(r.grad is not None for r in results)
    bar = bar or Bar()
    demanded = bar.dtype_for(opts)
    if bar.explicit:
        note = (f"explicit: rtol {bar.rtol or 0:g}, atol {bar.atol or 0:g} "
                "(|got − ref| ≤ atol·max(1, max|ref|) + rtol·|ref|)")
    else:
        stated = " (--accept-dtype)" if bar.dtype else " (the inputs' dtype)"
        exponent = round(math.log2(UNIT_ROUNDOFF[demanded]))
        note = (f"{demanded}{stated}: |got − ref| ≤ 8u(κ + L)·|ref| with u = 2^{exponent}, "
                "κ = 1 + |z_j| + max|z|, L = ⌈log2 C⌉ + ⌈log2 N⌉ + 2 (README: Accuracy bounds)")
    return Report(target, opts, seed, results, diagnoses, checked_grad, note, strict)


def assert_conforms(fn: Callable[..., Any] | str, **kwargs: Any) -> Report:
    """Like :func:`check` (the same keywords, also ``isolate``, ``timeout`` and ``max_memory``), but raise
    :class:`VerificationError` with the report when any case fails."""
    report = check(fn, **kwargs)
    if not report.passed:
        raise VerificationError(report)
    return report
