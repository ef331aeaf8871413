"""Run an implementation on the battery and judge each case: pass, differs where the frameworks differ, or fail."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import numeric
from ..spec import LossSpec
from .accuracy import UNIT_ROUNDOFF, Bar, Bounds, bounds, dtype_rank
from .battery import Case, handed
from .divergences import Divergence, Observed, explain
from .isolation import InProcess, TargetFailed


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
    bound: float | None = None  # the pass bound at the worst element
    within_cancel: bool = False  # every element within the pass bound plus the cancellation allowance
    bad: np.ndarray | None = field(default=None, repr=False)  # elements outside the pass bound

    @property
    def nonfinite(self) -> str | None:
        """``"nan"``, ``"inf"`` or ``"-inf"`` when the worst value returned is not finite."""
        if self.got is None or math.isfinite(self.got):
            return None
        return "nan" if math.isnan(self.got) else ("inf" if self.got > 0 else "-inf")

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "max_abs_error": _json_float(self.max_abs),
            "max_rel_error": _json_float(self.max_rel),
            "worst_index": None if self.worst is None else list(self.worst),
            "worst_got": _json_float(self.got),
            "worst_expected": _json_float(self.want),
            "bound": _json_float(self.bound),
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
    """One case's verdict: ``pass``, ``differs`` (a documented framework divergence) or ``fail``.

    ``passed`` is True for ``pass`` and ``differs``; a :class:`Report` with ``strict`` counts a divergence
    as a failure.
    """

    case: Case
    passed: bool
    loss: Comparison | None = None
    grad: Comparison | None = None
    error: str | None = None
    dtype: str = "float64"  # the least precise dtype returned
    rtol: float | None = None  # explicit tolerances (--rtol/--atol), else None
    atol: float | None = None
    got_loss: Any = None
    got_grad: Any = None
    diagnosis: str | None = None
    bar: str = "float64"  # the dtype whose accuracy was demanded
    divergence: Divergence | None = None
    divergence_detail: str | None = None
    honesty: str | None = None  # why the returned dtype cannot carry the accuracy demanded
    fault: str | None = None  # "crash", "timeout" or "memory": the process running the target failed
    output: str | None = None  # what the target printed during this case (kept for a failing case)

    @property
    def verdict(self) -> str:
        if not self.passed:
            return "fail"
        return "differs" if self.divergence is not None else "pass"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.case.name,
            "description": self.case.description,
            "shape": list(self.case.shape),
            "passed": self.passed,
            "verdict": self.verdict,
            "error": self.error,
            "fault": self.fault,
            "returned_dtype": self.dtype,
            "accuracy_dtype": self.bar,
            "rtol": self.rtol,
            "atol": self.atol,
            "loss": None if self.loss is None else self.loss.as_dict(),
            "grad": None if self.grad is None else self.grad.as_dict(),
            "divergence": None if self.divergence is None else {
                **self.divergence.as_dict(), "detail": self.divergence_detail},
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
    strict: bool = False
    isolation: dict[str, Any] | None = None  # how the target ran (Executor.describe())

    def fails(self, r: CaseResult) -> bool:
        """Whether case ``r`` counts as failed in this report (a divergence does under ``strict``)."""
        return r.verdict == "fail" or (self.strict and r.verdict == "differs")

    @property
    def passed(self) -> bool:
        return not any(self.fails(r) for r in self.results)

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if self.fails(r)]

    @property
    def differing(self) -> list[CaseResult]:
        return [r for r in self.results if r.verdict == "differs"]

    def summary(self) -> str:
        n = len(self.results)
        bad = len(self.failures)
        what = "loss and gradient" if self.checked_grad else "loss only (no gradient returned)"
        differ = len(self.differing)
        if not bad:
            if differ:
                return (f"PASS: {self.target} matches the reference on {n - differ} of {n} cases and differs where "
                        f"the frameworks differ on {differ} ({what})")
            return f"PASS: {self.target} matches the reference on all {n} cases ({what})"
        more = ""
        if differ and not self.strict:
            more = f"; {differ} more differ{'s' if differ == 1 else ''} where the frameworks differ"
        elif differ:
            more = f", {differ} of them where the frameworks differ (--strict)"
        return f"FAIL: {self.target} differs from the reference on {bad} of {n} cases{more} ({what})"

    def divergences(self) -> list[str]:
        """One line per documented divergence seen: what the frameworks do, on which cases."""
        seen: dict[str, list[str]] = {}
        titles: dict[str, Divergence] = {}
        for r in self.differing:
            assert r.divergence is not None
            seen.setdefault(r.divergence.key, []).append(r.case.name)
            titles[r.divergence.key] = r.divergence
        return [f"{titles[k].title} ({', '.join(cases)}): {titles[k].frameworks}" for k, cases in seen.items()]

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "passed": self.passed,
            "strict": self.strict,
            "summary": self.summary(),
            "options": self.options.as_dict(),
            "seed": self.seed,
            "checked": "loss and gradient" if self.checked_grad else "loss",
            "tolerances": {k: {"unit_roundoff": v} for k, v in UNIT_ROUNDOFF.items()},
            "tolerance_rule": TOLERANCE_RULE,
            "tolerance_note": self.tolerance_note or None,
            "diagnoses": self.diagnoses,
            "divergences": self.divergences(),
            "isolation": self.isolation,
            "cases": [r.as_dict() for r in self.results],
        }

    def text(self) -> str:
        lines = [self.summary()]
        for r in self.results:
            status = {"pass": "pass", "differs": "DIFFERS" if self.strict else "differs", "fail": "FAIL"}[r.verdict]
            lines.append(f"  {status:4} {r.case.name}: {describe(r)}")
            if r.output and not r.passed:
                lines += [f"       | {line}" for line in r.output.splitlines()]
        lines += [f"  diagnosis: {d}" for d in self.diagnoses]
        lines += [f"  differs where the frameworks differ: {d}" for d in self.divergences()]
        if self.isolation and self.isolation.get("note"):
            lines.append(f"  note: the target {self.isolation['note']}")
        return "\n".join(lines)


TOLERANCE_RULE = ("|got - ref| <= 8 u (kappa + L) |ref| elementwise, u the unit roundoff of the accuracy dtype, "
                  "kappa = 1 + |z_j| + max_k |z_k|, L = ceil(log2 C) + ceil(log2 N) + 2; plus the README's "
                  "allowance where the reference cancels (probability targets, smoothing, soft BCE labels, KL); "
                  "with --rtol/--atol: atol * max(1, max|ref|) + rtol * |ref|")


def describe(r: CaseResult) -> str:
    if r.error:
        return r.error
    parts = []
    if r.honesty:
        parts.append(r.honesty)
    for comp in (r.loss, r.grad):
        if comp is None:
            continue
        if comp.note:
            parts.append(f"{comp.what}: {comp.note}")
        elif not comp.passed and r.divergence is None:
            idx = "" if comp.worst is None else f"[{', '.join(map(str, comp.worst))}]"
            parts.append(
                f"{comp.what}{idx} = {comp.got:.10g}, expected {comp.want:.10g} "
                f"(abs error {comp.max_abs:.3g}, rel {comp.max_rel:.3g}, bound {comp.bound or 0:.3g})"
            )
    if r.divergence is not None:
        parts = [f"differs where the frameworks differ: {r.divergence.title}: {r.divergence_detail}"]
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
    if arr.dtype.name == "bfloat16":  # ml_dtypes' (NumPy has none): exactly as float32
        arr = arr.astype(np.float32)
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"complex numbers ({arr.dtype}) are not a real loss or gradient")
    if kind not in "fiu":
        raise TypeError(f"cannot read {type(value).__name__} of dtype {arr.dtype} as numbers")
    if isinstance(arr, np.ma.MaskedArray):
        arr = np.ma.getdata(arr)
    return np.array(arr, dtype=arr.dtype, copy=True) if type(arr) is not np.ndarray else arr


def dtype_name(arr: np.ndarray) -> str | None:
    """The float dtype of a returned array (None for integers: a Python number carries no precision)."""
    if arr.dtype.kind != "f":
        return None
    if arr.dtype.itemsize <= 2:
        return "float16"
    if arr.dtype.itemsize == 4:
        return "float32"
    return "float64"


def compare(what: str, got: np.ndarray, want: np.ndarray, bound: np.ndarray,
            cancel: np.ndarray | None = None) -> Comparison:
    """Elementwise: ``|got - want| <= bound``; equal non-finite values match (inf = inf, nan = nan).

    A reference beyond the largest finite number of the returned dtype (float16's 65504) is matched by
    an infinity of its sign: that is its correctly rounded value there.
    """
    with np.errstate(all="ignore"):
        return _compare(what, got, want, bound, cancel)


def _compare(what: str, got: np.ndarray, want: np.ndarray, bound: np.ndarray, cancel: np.ndarray | None
             ) -> Comparison:
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        if got.size == want.size and got.size == 1:
            got = got.reshape(want.shape)
        else:
            return Comparison(what, False, math.inf, math.inf,
                              note=f"shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    g = got.astype(np.float64)
    bound = np.broadcast_to(np.asarray(bound, dtype=np.float64), want.shape)
    cancel = np.zeros(want.shape) if cancel is None else np.broadcast_to(np.asarray(cancel, dtype=np.float64),
                                                                          want.shape)
    finite_want = np.isfinite(want)
    # inf matches the same inf and nan matches nan (PyTorch's 0/0 mean over zero weight is nan)
    same_nonfinite = (~finite_want) & ((g == want) | (np.isnan(g) & np.isnan(want)))
    if got.dtype.kind == "f" and got.dtype.itemsize < 8:
        top = float(np.finfo(got.dtype).max)
        same_nonfinite |= finite_want & np.isinf(g) & (np.abs(want) > top) & (np.sign(g) == np.sign(want))
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.where(same_nonfinite, 0.0, np.abs(g - want))
    err = np.where(np.isnan(err), np.inf, err)
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
    elif (finite_want != np.isfinite(g)).any():
        note_idx = tuple(int(i) for i in np.argwhere(finite_want != np.isfinite(g))[0])
        at = f" at [{', '.join(map(str, note_idx))}]" if note_idx else ""
        note = f"{g[note_idx]:.10g}{at} where the reference is {want[note_idx]}"
        worst = note_idx
    has = worst is not None and len(worst) > 0
    pos: tuple[int, ...] = worst if worst is not None and has else ()
    return Comparison(
        what,
        not bad.any(),
        float(np.max(err)) if err.size else 0.0,
        float(np.max(rel)) if rel.size else 0.0,
        worst if has else None,
        float(g[pos]) if g.size else None,
        float(want[pos]) if want.size else None,
        note,
        float(bound[pos]) if want.size else None,
        bool(np.all(err <= bound + cancel)),
        bad,
    )


def run_case(
    fn: Callable[[np.ndarray, np.ndarray], Any] | str,
    case: Case,
    options: LossSpec,
    rtol: float | None = None,
    atol: float | None = None,
    *,
    bar: Bar | None = None,
    executor: Callable[..., tuple[Any, Any, str | None]] | None = None,
    **call: Any,
) -> CaseResult:
    """Run ``fn`` on one case and judge it; ``executor`` (an :class:`~.isolation.Executor`) calls the target,
    in a worker process, when given, else ``fn`` is called in this process; ``call`` (``device``,
    ``framework``) is handed to :func:`.native.call_target` then."""
    logits_in, targets_in = handed(case, options)
    targets_in = targets_in.copy()
    # The implementation gets copies (call_target): code that works in place must not change what it is
    # judged on.
    caller = InProcess(fn) if executor is None else executor
    try:
        loss_out, grad_out, output = caller(logits_in, targets_in, options, **(call if executor is None else {}))
    except KeyboardInterrupt:
        raise
    except TargetFailed as failed:  # raised, crashed, timed out or out of memory in the worker
        return CaseResult(case, False, error=failed.error, fault=failed.fault, output=failed.output)
    except BaseException as exc:  # noqa: BLE001 - the implementation's failure (even sys.exit) is a result
        text = _one_line(exc)
        return CaseResult(case, False, error=f"raised {type(exc).__name__}" + (f": {text}" if text else ""))
    result = judge(case, options, loss_out, grad_out, rtol=rtol, atol=atol, logits_in=logits_in,
                   targets_in=targets_in, bar=bar)
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
    bar: Bar | None = None,
) -> CaseResult:
    """The verdict on one case's outputs (see :mod:`xentcli.verify.accuracy` for the bounds)."""
    try:
        got_loss = to_array(loss_out)
        got_grad = None if grad_out is None else to_array(grad_out)
    except (TypeError, ValueError) as exc:
        return CaseResult(case, False, error=f"returned something that is not numbers: {_one_line(exc)}")
    if bar is None or (rtol is not None or atol is not None):
        bar = Bar(None if bar is None else bar.dtype, rtol if rtol is not None else (bar.rtol if bar else None),
                  atol if atol is not None else (bar.atol if bar else None))
    demanded = bar.dtype_for(options)
    z = case.logits if logits_in is None else np.asarray(logits_in, dtype=np.float64)
    t = case.targets if targets_in is None else targets_in
    ref = reference(case, options, logits_in, targets_in)
    want_loss = np.asarray(ref.loss if ref.loss is not None else ref.losses, dtype=np.float64)
    b = _bounds(bar, options, z, t, ref, want_loss, demanded)
    loss_cmp = compare("loss", got_loss, want_loss, b.loss, b.loss_cancel)
    grad_cmp = None if got_grad is None else compare("grad", got_grad, ref.grad, b.grad, b.grad_cancel)

    returned = [d for d in (dtype_name(got_loss), None if got_grad is None else dtype_name(got_grad)) if d]
    least = min(returned, key=dtype_rank) if returned else "float64"
    honesty = None
    if returned and dtype_rank(least) < dtype_rank(demanded):
        hint = f"--accept-dtype {least} states that lower bar" if not bar.dtype else "see --accept-dtype"
        honesty = f"returned {least}, which cannot carry the {demanded} accuracy demanded ({hint})"
    result = CaseResult(case, True, loss_cmp, grad_cmp, None, least, bar.rtol, bar.atol, got_loss, got_grad,
                        bar=demanded, honesty=honesty)
    comps = [c for c in (loss_cmp, grad_cmp) if c is not None]
    if all(c.passed for c in comps) and honesty is None:
        return result
    result.passed = False
    if honesty is not None or any(c.bad is None for c in comps):  # a wrong shape is never a divergence
        return result
    want = {"loss": want_loss, "grad": np.asarray(ref.grad, dtype=np.float64)}
    got = {"loss": got_loss.reshape(want_loss.shape).astype(np.float64)}
    if got_grad is not None:
        got["grad"] = got_grad.astype(np.float64)
    obs = Observed(options, z, t, ref, got, want, {c.what: c.bad for c in comps if c.bad is not None},
                   {c.what: c.within_cancel for c in comps})
    with np.errstate(all="ignore"):
        found = explain(obs)
    if found is not None:
        result.passed = True
        result.divergence, result.divergence_detail = found
    return result


def _bounds(bar: Bar, options: LossSpec, z: np.ndarray, t: np.ndarray, ref: numeric.LossResult,
            want_loss: np.ndarray, demanded: str) -> Bounds:
    """The derived bounds, or with --rtol/--atol their fixed rule (the cancellation allowance stays derived)."""
    with np.errstate(all="ignore"):
        derived = bounds(options, z, t, ref, demanded)
        if not bar.explicit:
            return derived
        rtol = bar.rtol if bar.rtol is not None else 0.0
        atol = bar.atol if bar.atol is not None else 0.0

        def rule(want: np.ndarray) -> np.ndarray:
            finite = np.isfinite(want)
            scale = float(np.max(np.abs(want[finite]))) if finite.any() else 1.0
            out: np.ndarray = atol * max(1.0, scale) + rtol * np.abs(np.where(finite, want, 0.0))
            return out

        grad = np.asarray(ref.grad, dtype=np.float64)
        # the explicit rule replaces the derived bounds altogether: no cancellation allowance either
        return Bounds(demanded, rule(want_loss), rule(grad), np.zeros_like(derived.loss_cancel),
                      np.zeros_like(derived.grad_cancel), derived.loss_factor, derived.grad_factor)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")
