"""Run an implementation on the battery and compare it with the reference, with dtype-aware tolerances."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import numeric
from ..spec import LossSpec
from .battery import Case
from .isolation import InProcess, TargetFailed

# Tolerances by the dtype the implementation returns: |got - ref| <= atol * max(1, max|ref|) + rtol * |ref|.
TOLERANCES = {
    "float64": (1e-9, 1e-12),
    "float32": (2e-4, 1e-6),
    "float16": (2e-2, 1e-3),
}


@dataclass
class Comparison:
    """How one output (loss or gradient) of one case compares with the reference."""

    what: str
    passed: bool
    max_abs: float = 0.0
    max_rel: float = 0.0
    worst: tuple[int, ...] | None = None
    got: float | None = None
    want: float | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "max_abs_error": _json_float(self.max_abs),
            "max_rel_error": _json_float(self.max_rel),
            "worst_index": None if self.worst is None else list(self.worst),
            "worst_got": _json_float(self.got),
            "worst_expected": _json_float(self.want),
            "note": self.note or None,
        }


def _json_float(x: float | None) -> float | str | None:
    if x is None:
        return None
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return float(x)


@dataclass
class CaseResult:
    case: Case
    passed: bool
    loss: Comparison | None = None
    grad: Comparison | None = None
    error: str | None = None
    dtype: str = "float64"
    rtol: float = 0.0
    atol: float = 0.0
    got_loss: Any = None
    got_grad: Any = None
    diagnosis: str | None = None
    fault: str | None = None  # "crash", "timeout" or "memory": the process running the target failed
    output: str | None = None  # what the target printed during this case (kept for a failing case)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.case.name,
            "description": self.case.description,
            "shape": list(self.case.shape),
            "passed": self.passed,
            "error": self.error,
            "fault": self.fault,
            "returned_dtype": self.dtype,
            "rtol": self.rtol,
            "atol": self.atol,
            "loss": None if self.loss is None else self.loss.as_dict(),
            "grad": None if self.grad is None else self.grad.as_dict(),
            "diagnosis": self.diagnosis,
            "output": self.output,
        }


@dataclass
class Report:
    """The verdict on one implementation: a result per case and the diagnoses."""

    target: str
    options: LossSpec
    seed: int
    results: list[CaseResult]
    diagnoses: list[str] = field(default_factory=list)
    checked_grad: bool = True
    tolerance_note: str = ""
    isolation: dict[str, Any] | None = None  # how the target ran (Executor.describe())

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    def summary(self) -> str:
        n = len(self.results)
        bad = len(self.failures)
        what = "loss and gradient" if self.checked_grad else "loss only (no gradient returned)"
        if not bad:
            return f"PASS: {self.target} matches the reference on all {n} cases ({what})"
        return f"FAIL: {self.target} differs from the reference on {bad} of {n} cases ({what})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "passed": self.passed,
            "summary": self.summary(),
            "options": self.options.as_dict(),
            "seed": self.seed,
            "checked": "loss and gradient" if self.checked_grad else "loss",
            "tolerances": {k: {"rtol": v[0], "atol": v[1]} for k, v in TOLERANCES.items()},
            "tolerance_rule": "|got - ref| <= atol * max(1, max|ref|) + rtol * |ref|, elementwise",
            "tolerance_note": self.tolerance_note or None,
            "diagnoses": self.diagnoses,
            "isolation": self.isolation,
            "cases": [r.as_dict() for r in self.results],
        }

    def text(self) -> str:
        lines = [self.summary()]
        for r in self.results:
            status = "pass" if r.passed else "FAIL"
            lines.append(f"  {status:4} {r.case.name}: {describe(r)}")
            if r.output and not r.passed:
                lines += [f"       | {line}" for line in r.output.splitlines()]
        lines += [f"  diagnosis: {d}" for d in self.diagnoses]
        if self.isolation and self.isolation.get("note"):
            lines.append(f"  note: the target {self.isolation['note']}")
        return "\n".join(lines)


def describe(r: CaseResult) -> str:
    if r.error:
        return r.error
    parts = []
    for comp in (r.loss, r.grad):
        if comp is None:
            continue
        if comp.note:
            parts.append(f"{comp.what}: {comp.note}")
        elif not comp.passed:
            idx = "" if comp.worst is None else f"[{', '.join(map(str, comp.worst))}]"
            parts.append(
                f"{comp.what}{idx} = {comp.got:.10g}, expected {comp.want:.10g} "
                f"(abs error {comp.max_abs:.3g}, rel {comp.max_rel:.3g})"
            )
    if not parts:
        return "ok"
    return "; ".join(parts)


# --------------------------------------------------------------------------
# Reference and comparison
# --------------------------------------------------------------------------


def reference(
    case: Case, options: LossSpec, logits: np.ndarray | None = None, targets: np.ndarray | None = None
) -> numeric.LossResult:
    """The reference on the exact values the implementation received (upcast to float64)."""
    z = case.logits if logits is None else np.asarray(logits, dtype=np.float64)
    y = case.targets if targets is None else targets
    if y.dtype.kind == "f":
        y = np.asarray(y, dtype=np.float64)
    return numeric.evaluate(options.with_(dtype="float64"), z, y, warn=False)


def to_array(value: Any) -> np.ndarray:
    """NumPy view of whatever the implementation returned (floats, arrays, tensors).

    Raises ``TypeError`` unless it is an array of real numbers (integers or
    floats): strings, bytes, booleans, complex numbers, dates, records and
    objects are not a loss, and anything that fails to convert is reported
    as such rather than escaping.
    """
    if isinstance(value, (str, bytes, bytearray, bool, np.bool_)):
        raise TypeError(f"{type(value).__name__} is not a number")
    for attr in ("detach", "cpu"):
        try:
            method = getattr(value, attr, None)
            if callable(method):
                value = method()
        except Exception:  # noqa: BLE001 - best effort for foreign tensor types
            pass
    try:
        method = getattr(value, "numpy", None)
        if callable(method) and not isinstance(value, np.ndarray):
            value = method()
    except Exception:  # noqa: BLE001
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - whatever __array__/__len__ raise: not numbers
        raise TypeError(f"cannot read {type(value).__name__} as numbers ({type(exc).__name__}: {exc})") from None
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"complex numbers ({arr.dtype}) are not a real loss or gradient")
    if kind not in "fiu":
        raise TypeError(f"cannot read {type(value).__name__} of dtype {arr.dtype} as numbers")
    if isinstance(arr, np.ma.MaskedArray):
        arr = np.ma.getdata(arr)
    return np.array(arr, dtype=arr.dtype, copy=True) if type(arr) is not np.ndarray else arr


def dtype_name(arr: np.ndarray) -> str:
    if arr.dtype.kind != "f":
        return "float64"
    if arr.dtype.itemsize <= 2:
        return "float16"
    if arr.dtype.itemsize == 4:
        return "float32"
    return "float64"


def compare(what: str, got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> Comparison:
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        if got.size == want.size and got.size == 1:
            got = got.reshape(want.shape)
        else:
            return Comparison(what, False, math.inf, math.inf,
                              note=f"shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    g = got.astype(np.float64)
    finite_want = np.isfinite(want)
    # inf matches the same inf and nan matches nan (PyTorch's 0/0 mean over zero weight is nan)
    same_nonfinite = (~finite_want) & ((g == want) | (np.isnan(g) & np.isnan(want)))
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.where(same_nonfinite, 0.0, np.abs(g - want))
    err = np.where(np.isnan(err), np.inf, err)
    scale = float(np.max(np.abs(want[finite_want]))) if finite_want.any() else 1.0
    bound = atol * max(1.0, scale) + rtol * np.abs(np.where(finite_want, want, 0.0))
    bad = err > bound
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(np.abs(want) > 0, err / np.abs(want), np.where(err > 0, np.inf, 0.0))
    excess = np.where(bound > 0, err / np.where(bound > 0, bound, 1.0), np.where(err > 0, np.inf, 0.0))
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), want.shape)) if want.size else None
    note = ""
    if (~np.isfinite(g) & finite_want).any():
        note_idx = tuple(int(i) for i in np.argwhere(~np.isfinite(g) & finite_want)[0])
        at = f" at [{', '.join(map(str, note_idx))}]" if note_idx else ""
        note = f"non-finite value {g[note_idx]}{at} where the reference is {want[note_idx]:.10g}"
        worst = note_idx
    return Comparison(
        what,
        not bad.any(),
        float(np.max(err)) if err.size else 0.0,
        float(np.max(rel)) if rel.size else 0.0,
        worst if worst is not None and len(worst) else None,
        float(g[worst]) if worst is not None and len(worst) else float(g.reshape(-1)[0]) if g.size else None,
        float(want[worst]) if worst is not None and len(worst) else float(want.reshape(-1)[0]) if want.size else None,
        note,
    )


def run_case(
    fn: Callable[[np.ndarray, np.ndarray], Any] | str,
    case: Case,
    options: LossSpec,
    rtol: float | None = None,
    atol: float | None = None,
    executor: Callable[..., tuple[Any, Any, str | None]] | None = None,
) -> CaseResult:
    """Run ``fn`` on one case and judge it; ``executor`` (an :class:`~.isolation.Executor`) calls the target,
    in a worker process, when given, else ``fn`` is called in this process."""
    logits_in = case.logits.astype(options.dtype)
    targets_in = case.targets.copy()
    if targets_in.dtype.kind == "f":
        targets_in = targets_in.astype(options.dtype)
    # The implementation gets copies (call_target): code that works in place must not change what it is
    # judged on.
    call = InProcess(fn) if executor is None else executor
    try:
        loss_out, grad_out, output = call(logits_in, targets_in, options)
    except KeyboardInterrupt:
        raise
    except TargetFailed as failed:  # raised, crashed, timed out or out of memory in the worker
        return CaseResult(case, False, error=failed.error, fault=failed.fault, output=failed.output)
    except BaseException as exc:  # noqa: BLE001 - the implementation's failure (even sys.exit) is a result
        text = _one_line(exc)
        return CaseResult(case, False, error=f"raised {type(exc).__name__}" + (f": {text}" if text else ""))
    result = judge(case, options, loss_out, grad_out, rtol=rtol, atol=atol, logits_in=logits_in,
                   targets_in=targets_in)
    if not result.passed:
        result.output = output
    return result


def judge(
    case: Case,
    options: LossSpec,
    loss_out: Any,
    grad_out: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    logits_in: np.ndarray | None = None,
    targets_in: np.ndarray | None = None,
) -> CaseResult:
    try:
        got_loss = to_array(loss_out)
        got_grad = None if grad_out is None else to_array(grad_out)
    except (TypeError, ValueError) as exc:
        return CaseResult(case, False, error=f"returned something that is not numbers: {_one_line(exc)}")
    # Each output is judged at the tolerance of its own dtype, and never tighter than the inputs'
    # dtype: a Python float computed from float32 inputs carries float32 accuracy.
    floor = options.dtype if options.dtype in TOLERANCES else "float64"

    def tol(arr: np.ndarray) -> tuple[str, float, float]:
        dt = max(dtype_name(arr), floor, key=lambda d: TOLERANCES[d][0])
        d_rtol, d_atol = TOLERANCES[dt]
        return dt, (d_rtol if rtol is None else rtol), (d_atol if atol is None else atol)

    ref = reference(case, options, logits_in, targets_in)
    want_loss = np.asarray(ref.loss if ref.loss is not None else ref.losses, dtype=np.float64)
    dt, l_rtol, l_atol = tol(got_loss)
    loss_cmp = compare("loss", got_loss, want_loss, l_rtol, l_atol)
    grad_cmp = None
    if got_grad is not None:
        g_dt, g_rtol, g_atol = tol(got_grad)
        grad_cmp = compare("grad", got_grad, ref.grad, g_rtol, g_atol)
        if TOLERANCES[g_dt][0] > TOLERANCES[dt][0]:
            dt, l_rtol, l_atol = g_dt, g_rtol, g_atol
    passed = loss_cmp.passed and (grad_cmp is None or grad_cmp.passed)
    return CaseResult(case, passed, loss_cmp, grad_cmp, None, dt, l_rtol, l_atol, got_loss, got_grad)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")
