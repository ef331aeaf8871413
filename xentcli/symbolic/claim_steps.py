"""The ``--claim`` step: prove a user's closed form or refute it with an exact counterexample.

For a concrete C:

1. The claim is evaluated from its syntax tree at a random exact point (rational
   u = exp(z), so z = log u; rational targets, weights, ...): rational values
   stay exact fractions, and exp/log give exact SymPy numbers
   (:class:`~xentcli.symbolic.claim_values.PointAlgebra`). The derivative's
   closed form is evaluated there exactly too. A claim that differs is refuted
   at once, with that point, and no symbolic work is done.
2. If a division by zero or the log of a number <= 0 occurred at that point,
   the claim is built as a function (step 3) first: a part that is 0 (or a
   negative constant) for every input makes the claim malformed (exit 2).
3. Otherwise the claim is built in the derivation's ring of rational functions
   of u_k = exp(z_k), with logarithms and exponentials rewritten exactly
   (:class:`~xentcli.symbolic.claim_values.RingValues`: log p = z - log S,
   exp(log x) = x, log(exp x) = x, ...). It is proved when the claim minus the
   derivative is 0 on the domain: as rational functions; for probability rows
   summing to 1 with y_C = 1 - y_1 - ... - y_(C-1) substituted; for class
   indices at every one-hot y = e_t (and mask m = 0 or 1). When the options
   treat every class alike (no per-class weight values), the claim and the
   derivative are the same expression of (z_j, y_j, w_j, ...) and of sums over
   all classes, so relabelling the classes carries the decision at j = 1 to
   every j: only j = 1 (and, for class indices, t = j and one t != j) is
   decided. Every polynomial product is sized before it is formed: a claim
   that would need more than ``MAX_TERMS`` terms in one step, or ``MAX_WORK``
   weighted term operations in all, is refused (exit 2) and the message names
   a smaller C or ``--classes n``.
4. A claim that is not the derivative is refuted at a point where the two
   differ, found by evaluating both exactly at random points; a claim the
   exact form cannot hold is refuted that way too, or left "not proved".

A refutation carries the point and the claim's, the derivative's and their
difference's exact values as SymPy-parsable strings. An exception while
deciding is a failed check, never a pass.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

import mpmath
import sympy as sp

from ..errors import XentInputError
from ..spec import SYM
from . import claims
from . import quantities as Q
from .algebra import Frac
from .backend import raised
from .claim_values import (
    MAX_TERMS,
    MAX_WORK,
    Big,
    ClaimTooLarge,
    Domain,
    PointAlgebra,
    PointQ,
    RingValues,
    Undef,
    _add_cost,
    _Budget,
    difference,
    positive_on,
    sign,
    structurally_positive,
    to_sympy,
    vanishes,
)
from .claim_values import text as value_text
from .model import Check, Step, Tex
from .problem import Problem

if TYPE_CHECKING:
    from .concrete import ConcreteBackend, RingAlgebra
    from .general import GeneralBackend

__all__ = ["MAX_TERMS", "MAX_WORK", "Verdict", "check_names", "claim_step", "decide_concrete", "decide_general"]

COUNTEREXAMPLE_TRIES = 8  # random points per failing case
COUNTEREXAMPLE_CASES = 8  # failing (class, target) cases tried
CLAIM_CHECK_CLASSES = tuple(range(2, 13))  # sizes where a claim a symbolic C leaves open is decided exactly
RING_CLAIM_METHOD = "exact comparison as functions of u = exp(z) (logarithms and exponentials rewritten exactly)"
POINT_METHOD = "exact evaluation of the claim and the derivative at a rational point"
SEED = 20251121


def check_names(used: set[str], problem: Problem) -> None:
    """Refuse names whose option is not on (they would be free symbols, not the user's intent)."""
    den = problem.spec.denominator
    needs = {
        "eps": (problem.smoothing, "which needs --label-smoothing"),
        "w": (problem.weighted, "which needs --weight"),
        "q": (problem.pos_weighted, "which needs --pos-weight"),
        "m": (problem.masked, "which needs --ignore-index"),
        "N": (den in ("samples", "rows", "elements") or Q.split_mean(problem),
              "but this mean divides by W (the summed weights of the counted samples' classes)"
              if den == "weights" else "which needs --reduction mean or batchmean"),
        "W": (den == "weights", "but this mean divides by N" if den is not None else
              "which needs --reduction mean with --weight and --targets index"),
        "lam": (problem.spec.has_z_loss, "which needs --z-loss"),
        "cap": (problem.spec.softcap is not None, "which needs --softcap"),
        "T": (problem.spec.has_temperature, "which needs --temperature"),
        "lse": (problem.spec.language_model, "which needs --z-loss, --softcap or --temperature"),
    }
    for name, (ok, why) in needs.items():
        if name in used and not ok:
            raise XentInputError(f"uses {name!r}, {why}", source="--claim")


@dataclass(frozen=True)
class Verdict:
    """What deciding a claim found (never read back from its words)."""

    status: Literal["proved", "refuted", "undecided"]
    detail: str
    method: str
    count: int = 1
    counterexample: dict[str, Any] | None = None
    classes_tried: tuple[int, ...] | None = None


# --------------------------------------------------------------------------
# The setting of a concrete decision
# --------------------------------------------------------------------------


Case = tuple[int, int | None, int | None]  # (class j, target class t of a one-hot y, mask value)


def _symmetric(problem: Problem) -> bool:
    """Whether every class is treated alike: no per-class weight or pos_weight values that differ."""
    for option in ("weight", "pos_weight"):
        v = getattr(problem.spec, option)
        if isinstance(v, tuple) and len(set(v)) > 1:
            return False
    return True


@dataclass
class _Point:
    """One exact point: what the claim's names are there, and the derivation's symbols' values."""

    u: list[Fraction]
    values: dict[str, list[Any]]  # p, y, z, w, q
    scalars: dict[str, Any]  # C, eps, m, N, W
    t: int | None = None


class _Setting:
    def __init__(self, backend: ConcreteBackend):
        self.backend = backend
        self.problem = backend.problem
        self.C = backend.C
        self.names = backend.names
        self.onehot = self.problem.onehot and not self.problem.bce
        self.symmetric = _symmetric(self.problem)
        self.classes = [0] if self.symmetric else list(range(self.C))
        self._A: RingAlgebra | None = None

    @property
    def A(self) -> RingAlgebra:
        if self._A is None:
            self._A = self.backend.algebra("z")
        return self._A

    def cases(self, j: int) -> list[Case]:
        """The (j, t, m) cases that decide class j: every one-hot target (t = j and one other t when the
        classes are alike) and both mask values."""
        masks: list[int | None] = [0, 1] if self.problem.masked else [None]
        if not self.onehot:
            return [(j, None, mv) for mv in masks]
        ts = [j, (j + 1) % self.C] if self.symmetric else list(range(self.C))
        return [(j, t, mv) for t in ts for mv in masks]

    def domain(self) -> Domain:
        A = self.A
        index = {s: i for i, s in enumerate(A.ring_space.symbols)}
        y_index = [index[s] for s in self.names.y]
        mask_index = index[self.names.mask] if self.names.mask is not None else None
        subs = self.backend.normalized_substitution(A) if self.problem.normalized and not self.onehot else {}
        return Domain(self.onehot, y_index, mask_index, subs)

    # -- points
    def draw(self, rng: random.Random, t: int | None, mv: int | None, attempt: int) -> _Point:
        C, problem, spec = self.C, self.problem, self.problem.spec
        u = [Fraction(rng.randint(1, 19), rng.randint(1, 7)) for _ in range(C)]
        if self.onehot:
            if t is None:
                t = rng.randrange(C)
            y = [Fraction(1 if k == t else 0) for k in range(C)]
        elif problem.bce:
            y = [Fraction(rng.randint(0, 6), 6) for _ in range(C)]
        else:
            y = [Fraction(rng.randint(0, 6)) for _ in range(C)]
            if problem.normalized:
                total = sum(y)
                y = [v / total for v in y] if total else [Fraction(1, C)] * C

        def per_class(value: Any, draw: Callable[[], Fraction]) -> list[Fraction]:
            if value is SYM:
                return [draw() for _ in range(C)]
            if value is None:
                return [Fraction(1)] * C
            return [Fraction(value[k] if len(value) > 1 else value[0]) for k in range(C)]

        w = per_class(spec.weight, lambda: Fraction(rng.randint(1, 6), 2))
        q = per_class(spec.pos_weight, lambda: Fraction(rng.randint(1, 6), 2))
        if spec.label_smoothing is SYM:
            eps = Fraction(rng.randint(1, 9), 10)
        else:
            eps = Fraction(spec.label_smoothing) if problem.smoothing else Fraction(0)  # type: ignore[arg-type]
        if problem.masked:
            m = Fraction(mv if mv is not None else (1 if attempt == 0 else rng.randint(0, 1)))
        else:
            m = Fraction(1)
        den = Fraction(rng.randint(2, 5)) if spec.denominator is not None else Fraction(1)
        # with class weights and a z-loss, the z-loss's count N differs from the summed weights W (drawn only
        # then, so that every other problem's points stay as they were)
        count = Fraction(rng.choice([v for v in range(2, 6) if v != den])) if Q.split_mean(problem) else den
        lm = self._language_model(rng, u)
        if problem.bce:
            p = [v / (1 + v) for v in u]
        else:
            S = sum(u)
            p = [v / S for v in u]
        z = [Fraction(0) if v == 1 else sp.log(to_sympy(v)) for v in u]
        values = {"p": p, "y": y, "z": lm.pop("z", z), "w": w, "q": q, "t": lm.pop("t", [])}
        scalars = {"C": Fraction(C), "eps": eps, "m": m, "N": count, "W": den, **lm}
        return _Point(u, values, scalars, t)

    def _language_model(self, rng: random.Random, u: list[Fraction]) -> dict[str, Any]:
        """lam, cap, T (drawn where they are symbols), lse, and with soft-capping or a temperature the logits
        z_k whose softmax inputs are x_k = log u_k: z_k = cap atanh(T x_k / cap) (which needs |T x_k| < cap:
        u_k is redrawn closer to 1 when it is not), and t_k = tanh(z_k / cap) = T x_k / cap. Changes ``u``."""
        spec = self.problem.spec
        if not spec.language_model:
            return {}
        lam = Fraction(rng.randint(1, 9), 10) if spec.z_loss is SYM else Fraction(spec.z_loss)  # type: ignore[arg-type]
        cap = Fraction(rng.randint(2, 9)) if spec.softcap is SYM else Fraction(spec.softcap or 1)  # type: ignore[arg-type]
        temp = Fraction(rng.randint(1, 6), 2) if spec.temperature is SYM else Fraction(spec.temperature)  # type: ignore[arg-type]
        if spec.softcap is not None:
            bound = float(cap / temp) * 0.9
            for k, v in enumerate(u):
                while abs(math.log(v)) >= bound:
                    v = 1 + (v - 1) / 4
                u[k] = v
        out: dict[str, Any] = {"lam": lam, "cap": cap, "T": temp, "lse": sp.log(to_sympy(sum(u)))}
        if spec.softcap is not None or spec.has_temperature:
            xs = [sp.Integer(0) if v == 1 else sp.log(to_sympy(v)) for v in u]
            if spec.softcap is not None:
                c, T = to_sympy(cap), to_sympy(temp)
                out["t"] = [_value(T * x / c) for x in xs]
                out["z"] = [_value(c * sp.atanh(T * x / c)) for x in xs]
            else:
                out["z"] = [_value(to_sympy(temp) * x) for x in xs]
        return out

    def derivative(self, pt: _Point, j: int) -> Any:
        """The derivative's exact value at the point: a Fraction, or an exact SymPy number (lse, tanh)."""
        PQ = PointQ(self.problem, pt.values, pt.scalars)
        value = Q.scaled_grad(PQ, j)
        return value if isinstance(value, Fraction) else _value(sp.sympify(value))


def _value(e: sp.Expr) -> Any:
    """An exact number: a Fraction when rational, else the SymPy number."""
    e = sp.sympify(e)
    return Fraction(int(e.p), int(e.q)) if e.is_Rational else e


@dataclass
class _Found:
    """A point where the claim is not the derivative."""

    case: Case
    point: _Point
    got: Any  # the claim's value (Fraction, SymPy number) or Undef
    want: Fraction
    classes: int = 0
    notes: list[str] = field(default_factory=list)


def _evaluate(st: _Setting, tree: Any, pt: _Point, j: int) -> tuple[Any, Fraction, PointAlgebra]:
    alg = PointAlgebra(pt.values, pt.scalars)
    got = claims.fold(tree, alg, j)
    return got, st.derivative(pt, j), alg


def _differs(got: Any, want: Fraction) -> bool | None:
    """True/False when the claim's defined value certainly differs / equals; None when unsure."""
    if isinstance(got, Fraction):
        return got != want
    if isinstance(got, Big):  # beyond e**300 (about 1e130), while the derivative at the point is a modest number
        return abs(want) < 10**100
    s = sign(to_sympy(got) - to_sympy(want))
    return None if s is None else s != 0


# --------------------------------------------------------------------------
# Deciding a claim at a concrete C
# --------------------------------------------------------------------------


def _quick(st: _Setting, tree: Any) -> tuple[_Found | None, bool, _Found | None]:
    """One random point, a few cases: a counterexample found there, whether anything was undefined, and a
    case where the claim itself is undefined (a pole, the log of a number <= 0)."""
    rng = random.Random(SEED)
    js = st.classes if st.symmetric else sorted({0, 1, st.C - 1})
    masks: list[int | None] = [1, 0] if st.problem.masked else [None]
    undefined = False
    found = None
    genuine = None
    points: dict[tuple[int | None, int | None], _Point] = {}
    for j in js:
        targets = [j, (j + 1) % st.C] if st.onehot else [None]
        for case in [(j, t, mv) for t in targets for mv in masks]:
            _j, t, mv = case
            key = (t, mv)
            if key not in points:
                points[key] = st.draw(rng, t, mv, 0)
            pt = points[key]
            got, want, alg = _evaluate(st, tree, pt, j)
            undefined = undefined or bool(alg.undefined)
            if isinstance(got, Undef):
                if got.genuine and genuine is None:
                    genuine = _Found(case, pt, got, want)
            elif found is None and _differs(got, want):
                found = _Found(case, pt, got, want)
    return found, undefined, genuine


def decide_concrete(backend: ConcreteBackend, tree: Any) -> Verdict:
    """Prove the claim for every class at this concrete C, or refute it with a counterexample.

    Raises :class:`~xentcli.symbolic.claims.Undefined` for a malformed claim and
    :class:`~xentcli.symbolic.claim_values.ClaimTooLarge` when the exact decision is beyond the budget.
    """
    st = _Setting(backend)
    C = st.C
    found, undefined, genuine = _quick(st, tree)
    if found is not None and not undefined:
        return _refuted(st, found, POINT_METHOD)
    if found is None and not st.symmetric:
        generic = _generic(st, tree)
        if generic is not None:
            return generic
    try:
        failing, unsure, opaque_why, R = _exact_decision(st, tree)
    except ClaimTooLarge:
        if found is not None:  # too large to decide, but the quick point already refutes it
            return _refuted(st, found, POINT_METHOD)
        raise
    except (claims.Undefined, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - an error while deciding is a failed check, never a pass
        if found is not None:
            return _refuted(st, found, POINT_METHOD)
        return Verdict("undecided", raised(exc), RING_CLAIM_METHOD, C)
    if found is not None:  # the quick point already shows it (something else was undefined there)
        return _refuted(st, found, POINT_METHOD)
    alike = "; j = 1 decides every j (the classes are alike)" if st.symmetric else ""
    method = RING_CLAIM_METHOD + _domain_words(st) + alike
    if not failing and not unsure:
        # Equal as functions (parts that cancel exactly are gone). It is the derivative only if it is also
        # defined at every input: no pole or log of a number <= 0 at the points tried, and every logarithm
        # of a positive argument.
        cases = [(t, mv) for j in st.classes for _j, t, mv in st.cases(j)]
        doubtful = R.unchecked_logs or any(not positive_on(R, F, st.domain(), cases) for F in R.log_args)
        if genuine is None and doubtful:
            genuine = _search(st, tree, [c for j in st.classes for c in st.cases(j)], undefined_only=True)
        if genuine is not None:
            return Verdict("undecided", "the claim equals the derivative where both are defined, but " +
                           _undefined_text(st, genuine), method, C)
        if doubtful:
            return Verdict("undecided", "the claim equals the derivative wherever the arguments of its logarithms "
                                        "are positive, but that they are positive for every input was not proved",
                           method, C)
        return Verdict("proved", "", method, C)
    found = _search(st, tree, failing + unsure)
    if found is not None:
        return _refuted(st, found, POINT_METHOD)
    tries = f"{COUNTEREXAMPLE_TRIES} random points"
    if failing:
        detail = (f"it is not the derivative as a function (exactly), but no counterexample was found at {tries}")
    elif opaque_why:
        detail = (f"neither proved (after the exact rewriting of exp and log the claim still has {opaque_why}, which "
                  f"the exact comparison cannot hold) nor refuted at {tries}")
    else:
        detail = f"neither proved (the exact comparison could not decide some cases) nor refuted at {tries}"
    return Verdict("undecided", detail, method, C)


def _generic(st: _Setting, tree: Any) -> Verdict | None:
    """With per-class weight values, first try the claim with the weights as symbols: proved for every
    weight, it holds for the given ones (and the classes are then alike, so j = 1 decides every j)."""
    from dataclasses import replace

    from .concrete import ConcreteBackend

    spec = st.problem.spec
    generic = spec
    for option in ("weight", "pos_weight"):
        if isinstance(getattr(spec, option), tuple):
            generic = replace(generic, **{option: SYM})  # type: ignore[arg-type]
    try:
        problem = Problem(st.C, generic, st.problem.assume_normalized, st.problem.claim)
        gst = _Setting(ConcreteBackend(problem))
        failing, unsure, _why, R = _exact_decision(gst, tree)
    except (ClaimTooLarge, claims.Undefined, XentInputError):
        return None
    if failing or unsure or any(not structurally_positive(F) for F in R.log_args):
        return None
    method = (RING_CLAIM_METHOD + _domain_words(gst) + "; proved with the weights as symbols (so for every value "
              "of them, and j = 1 decides every j)")
    return Verdict("proved", "", method, st.C)


def _exact_decision(st: _Setting, tree: Any) -> tuple[list[Case], list[Case], str, RingValues]:
    """The cases where the claim is not shown to be the derivative: (failing, unsure, why opaque, values)."""
    A = st.A
    budget = _Budget(len(A.ring_space.symbols))
    R = RingValues(A, budget)
    dom = st.domain()
    simple = not A.problem.weighted and not A.problem.bce and A.problem.normalized
    failing: list[Case] = []
    unsure: list[Case] = []
    opaque_why = ""
    sums: dict[int, Any] = {}  # a sum(...) does not depend on j: built once
    for j in st.classes:
        value = claims.fold(tree, R, j, sums)  # raises Undefined (malformed) or ClaimTooLarge
        target = Q.scaled_grad(A, j)
        cases = st.cases(j)
        if isinstance(value, Frac):
            budget.spend(_add_cost(value, target))
            if value.equals(target):
                continue
            if simple:
                closed = Q.scaled(A, Q.grad_normalized(A, j))
                budget.spend(_add_cost(value, closed))
                if value.equals(closed):
                    continue
        D = difference(R, value, target)
        bad, unknown = vanishes(D, dom, R, [(t, mv) for _j, t, mv in cases])
        failing += [(j, t, mv) for t, mv in bad]
        unsure += [(j, t, mv) for t, mv in unknown]
        if D.opaque:
            opaque_why = opaque_why or R.why
    return failing, unsure, opaque_why, R


def _domain_words(st: _Setting) -> str:
    if st.onehot:
        masks = " and m = 0, 1" if st.problem.masked else ""
        return f"; class indices: at every one-hot y = e_t{masks}"
    if st.problem.normalized:
        return "; y_C = 1 − (y_1 + … + y_(C−1)) substituted where needed"
    return ""


def _search(st: _Setting, tree: Any, cases: list[Case], undefined_only: bool = False) -> _Found | None:
    """A point where the claim and the derivative differ, for one of ``cases``: first a defined value that
    differs; else a point where the claim itself is undefined (a pole, or the log of a number <= 0), never a
    0/0 it might cancel. With ``undefined_only``, only the latter."""
    rng = random.Random(SEED + 1)
    fallback = None
    todo = list(dict.fromkeys(cases))[:COUNTEREXAMPLE_CASES]
    for attempt in range(COUNTEREXAMPLE_TRIES):
        points: dict[tuple[int | None, int | None], _Point] = {}
        for case in todo:
            j, t, mv = case
            key = (t, mv)
            if key not in points:
                points[key] = st.draw(rng, t, mv, attempt)
            pt = points[key]
            try:
                got, want, _alg = _evaluate(st, tree, pt, j)
            except (ArithmeticError, ValueError, TypeError, RecursionError):  # pragma: no cover - defensive
                continue
            if isinstance(got, Undef):
                if got.genuine:
                    if undefined_only:
                        return _Found(case, pt, got, want)
                    fallback = fallback or _Found(case, pt, got, want)
                continue
            if not undefined_only and _differs(got, want):
                return _Found(case, pt, got, want)
    return fallback


# --------------------------------------------------------------------------
# A refutation: the counterexample as text and as exact strings
# --------------------------------------------------------------------------


def _exact(v: Any) -> str:
    return value_text(v)


def _decimal(v: Any, digits: int) -> str:
    """v rounded to ``digits`` significant digits (trailing zeros dropped)."""
    with mpmath.workdps(digits + 10):
        x = sp.N(to_sympy(v), digits + 10)._to_mpmath(mpmath.mp.prec)
        return str(mpmath.nstr(x, digits))


def _digits_to_differ(a: Any, b: Any, cap: int = 40) -> int | None:
    for d in range(6, cap + 1):
        if _decimal(a, d) != _decimal(b, d):
            return d
    return None


def _point(st: _Setting, pt: _Point) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """A point as the claim's names (``sample``), as the JSON strings' symbols (``subs``), and as text."""
    names = st.names
    problem, spec = st.problem, st.problem.spec
    C = st.C
    sample: dict[str, Any] = {"z": [_exact(v) for v in pt.values["z"]], "p": [_exact(v) for v in pt.values["p"]],
                              "y": [_exact(v) for v in pt.values["y"]]}
    subs: dict[str, str] = {}
    for k in range(C):
        subs[str(names.z[k])] = sample["z"][k]
    for k in range(C):
        subs[str(names.y[k])] = sample["y"][k]
    shown = [f"z = ({', '.join(sample['z'])})", f"y = ({', '.join(sample['y'])})"]
    if problem.weighted:
        sample["w"] = [_exact(v) for v in pt.values["w"]]
        shown.append(f"w = ({', '.join(sample['w'])})")
        for k, s in enumerate(names.w):
            subs[str(s)] = sample["w"][k]
    if problem.pos_weighted:
        sample["q"] = [_exact(v) for v in pt.values["q"]]
        shown.append(f"q = ({', '.join(sample['q'])})")
        for k, s in enumerate(names.q):
            subs[str(s)] = sample["q"][k]
    if problem.smoothing:
        sample["eps"] = _exact(pt.scalars["eps"])
        shown.append(f"eps = {sample['eps']}")
        if names.eps is not None:
            subs[str(names.eps)] = sample["eps"]
    if problem.masked:
        sample["m"] = _exact(pt.scalars["m"])
        shown.append(f"m = {sample['m']}")
        if names.mask is not None:
            subs[str(names.mask)] = sample["m"]
    if spec.denominator is not None:
        d = "W" if spec.denominator == "weights" else "N"
        sample[d] = _exact(pt.scalars[d])
        shown.append(f"{d} = {sample[d]}")
        if names.den is not None:
            subs[str(names.den)] = sample[d]
    if names.zden is not None:  # the z-loss's count N beside W
        sample["N"] = _exact(pt.scalars["N"])
        shown.append(f"N = {sample['N']}")
        subs[str(names.zden)] = sample["N"]
    if names.rest is not None:
        subs[str(names.rest)] = "0"
    for key, symbol, on in (("lam", names.lam, spec.has_z_loss), ("cap", names.cap, spec.softcap is not None),
                            ("T", names.temp, spec.has_temperature)):
        if on:
            sample[key] = _exact(pt.scalars[key])
            shown.append(f"{key} = {sample[key]}")
            if symbol is not None:
                subs[str(symbol)] = sample[key]
    if spec.language_model:
        sample["lse"] = _exact(pt.scalars["lse"])
    sample["C"] = str(C)
    return sample, subs, shown


def _refuted(st: _Setting, found: _Found, method: str) -> Verdict:
    j, t, _mv = found.case
    C = st.C
    sample, subs, shown = _point(st, found.point)
    entry = f"∂L/∂z_{j + 1}"
    want = found.want
    out: dict[str, Any] = {"classes": C, "class": j + 1}
    if st.onehot and t is not None:
        out["target_class"] = t + 1
    out["sample"] = sample
    out["subs"] = subs
    got = found.got
    if isinstance(got, Undef):
        out.update({"claim": None, "derivative": _exact(want), "difference": None, "undefined": got.text()})
        text = (f"at {', '.join(shown)}: for {entry} the claim is undefined ({got.text()}), the derivative "
                f"is {_short(want)}")
    elif isinstance(got, Big):
        diff_text = value_text(Big(got.sign, sp.Add(got.expr, -to_sympy(want), evaluate=False), got.bound))
        out.update({"claim": _exact(got), "derivative": _exact(want), "difference": diff_text})
        size = f"e**{int(min(got.bound, 1e9))}"
        text = (f"at {', '.join(shown)}: the claim gives {entry} = {_clip(_exact(got))}, beyond {size} in size, "
                f"the derivative is {_short(want)}")
        return Verdict("refuted", text, method, C, out)
    else:
        diff = to_sympy(got) - to_sympy(want)
        out.update({"claim": _exact(got), "derivative": _exact(want), "difference": value_text(diff)})
        needed = _digits_to_differ(got, want)
        digits = needed if needed is not None else 40
        shown_got, shown_want = _decimal(got, digits), _decimal(want, digits)
        same = "" if needed is not None else " (equal in the first 40 digits)"
        exact_diff = value_text(diff)
        approx = _decimal(diff, 6)
        if isinstance(diff, sp.Integer) or exact_diff == approx:
            dtext = exact_diff
        else:
            dtext = approx if len(exact_diff) > 40 else f"{exact_diff} ≈ {approx}"
        text = (f"at {', '.join(shown)}: the claim gives {entry} = {shown_got}, the derivative is {shown_want}{same}; "
                f"claim − derivative = {dtext}")
    return Verdict("refuted", text, method, C, out)


def _undefined_text(st: _Setting, found: _Found) -> str:
    _sample, _subs, shown = _point(st, found.point)
    assert isinstance(found.got, Undef)
    size = f" at C = {st.C}"
    return (f"it is undefined{size} for ∂L/∂z_{found.case[0] + 1} at {', '.join(shown)} ({found.got.text()}), "
            "where the derivative is defined")


def _clip(s: str, limit: int = 80) -> str:
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _short(v: Any) -> str:
    exact = _exact(v)
    return exact if len(exact) <= 24 else _decimal(v, 12)


# --------------------------------------------------------------------------
# A symbolic number of classes
# --------------------------------------------------------------------------


def _malformed_at(backend: ConcreteBackend, tree: Any) -> str:
    """Raise Undefined when the claim is malformed at this concrete C (cheap unless the quick point hits an
    undefined value); otherwise say where, if anywhere, the claim was undefined at the quick point."""
    st = _Setting(backend)
    _found, undefined, genuine = _quick(st, tree)
    if undefined:
        R = RingValues(st.A, _Budget(len(st.A.ring_space.symbols)))
        for j in st.classes:
            claims.fold(tree, R, j)
    return "" if genuine is None else _undefined_text(st, genuine)


def decide_general(backend: GeneralBackend, tree: Any) -> Verdict:
    """Prove the claim for every number of classes, or refute it at a small concrete C."""
    from sympy import Sum

    from .backend import short
    from .concrete import ConcreteBackend
    from .general import DIFF_METHOD

    problem = backend.problem

    def concrete(K: int) -> ConcreteBackend:
        return ConcreteBackend(Problem(K, problem.spec, problem.assume_normalized, problem.claim))

    undefined = ""  # where the claim was undefined at a valid input, if it was
    for K in CLAIM_CHECK_CLASSES:  # a part undefined for every input at some C: malformed
        try:
            undefined = undefined or _malformed_at(concrete(K), tree)
        except claims.Undefined as exc:
            try:  # undefined at the next size as well: say so without naming a size
                _malformed_at(concrete(K + 1), tree)
            except claims.Undefined:
                raise exc from None
            except ClaimTooLarge:
                pass
            exc.classes = K
            raise
        except ClaimTooLarge:
            break

    A = backend.algebra("z")
    bce = problem.bce

    def vector(name: str, m: Any) -> Any:
        if name == "p":
            return A.sigma(m) if bce else A.p(m)
        if name == "z":
            return backend.z[m]
        return {"y": A.y, "w": A.w, "q": A.q}[name](m)

    def scalar(name: str) -> Any:
        if name == "lse":
            return A.lse()
        return {"C": backend.C, "eps": A.eps, "m": A.mask, "lam": A.lam, "cap": A.cap, "T": A.temp,
                "N": A.zden}.get(name, A.den)

    def summation(f: Callable[[Any], Any]) -> Any:
        m = sp.Dummy("m", integer=True, positive=True)
        return Sum(f(m), (m, 1, backend.C))

    env = claims.Env(vector, scalar, lambda: (1, backend.C), summation)
    j = backend.index["j"]
    given = "normalized" if problem.normalized else None
    try:
        value = claims.evaluate(tree, env, j)
        if value.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
            ok, rest = False, value
        else:
            ok, rest = backend.zero(value - Q.scaled_grad(A, j), given)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - SymPy failing on the claim is "not proved", never a pass
        ok, rest = False, f"{type(exc).__name__} raised during the check"
    method = DIFF_METHOD.split("; then ")[-1] + (f"; Sum(y[k], (k, 1, {backend.n})) -> 1" if given else "")
    if ok and undefined:
        return Verdict("undecided", f"the difference reduces to 0 for symbolic {backend.n}, but {undefined}", method)
    if ok:
        return Verdict("proved", "", method)
    tried: list[int] = []
    stopped = ""
    for K in CLAIM_CHECK_CLASSES:
        try:
            verdict = decide_concrete(concrete(K), tree)
        except ClaimTooLarge:  # too large to decide at this size: the next size will not be smaller
            stopped = f" (C = {K} is too large to decide exactly)"
            break
        tried.append(K)
        if verdict.status == "refuted":
            return Verdict("refuted", f"refuted at C = {K} (tried C = {_sizes(tried)}): {verdict.detail}",
                           f"symbolic difference not 0; exact decision at C = {_sizes(tried)} with a counterexample "
                           "at a rational point", 1, verdict.counterexample, tuple(tried))
    sizes = _sizes(tried)
    held = f"it holds exactly at C = {sizes}" if tried else "no concrete C could be decided"
    try:
        left = short(rest)
    except Exception:  # noqa: BLE001 - printing may evaluate numbers beyond reach (exp(exp(1e300)))
        left = "an expression too large to print"
    return Verdict("undecided", f"the difference did not reduce to 0 for symbolic {backend.n} (left: {left}); "
                                f"{held}, and no counterexample was found there{stopped}",
                   method + f"; exact decision at C = {sizes or 'none'} looking for a counterexample",
                   1, None, tuple(tried))


def _sizes(tried: list[int]) -> str:
    if len(tried) > 3 and tried == list(range(tried[0], tried[-1] + 1)):
        return f"{tried[0]}, {tried[1]}, …, {tried[-1]}"
    return ", ".join(str(K) for K in tried)


# --------------------------------------------------------------------------
# The step
# --------------------------------------------------------------------------


def claim_step(backend: Any, text: str) -> Step:
    """The claim step of a derivation: the claim, the verdict, and the check.

    Raises :class:`XentInputError` (exit 2) for a malformed claim (a division by 0, the log of 0 or of a
    negative number, for every input) and for one too large to decide exactly at this C.
    """
    problem: Problem = backend.problem
    tree = claims.parse(text)
    check_names(claims.names(tree), problem)
    bce = problem.bce
    st = Step("Claim")
    pname = "σ" if bce else "p"
    st.say(f"Claim, elementwise for every class j ({pname} is the {'sigmoid' if bce else 'softmax'} output):")
    st.eq(Tex(r"\frac{\partial L}{\partial z_j}", "∂L/∂z_j"), Tex(r"\texttt{" + _tex_escape(text) + "}", text))
    condition = " given Σy = 1" if problem.normalized else ""
    try:
        if problem.concrete:
            statement = f"the claim {text!r} equals ∂L/∂z_j for all {problem.classes} j{condition}"
            verdict = decide_concrete(backend, tree)
        else:
            n = problem.classes
            statement = f"the claim {text!r} equals ∂L/∂z_j for every 1 ≤ j ≤ {n}, for every {n}{condition}"
            verdict = decide_general(backend, tree)
    except claims.Undefined as exc:
        raise XentInputError(f"is malformed: {exc.message()}", source="--claim") from None
    except ClaimTooLarge as exc:
        raise XentInputError(
            f"is too large to decide exactly at C = {problem.classes} ({exc}); the claim is elementwise, so try a "
            "smaller --classes, or --classes n for every C at once",
            source="--claim",
        ) from None
    data: dict[str, Any] = {}
    if verdict.counterexample is not None:
        data["counterexample"] = verdict.counterexample
    if verdict.classes_tried is not None:
        data["classes_tried"] = list(verdict.classes_tried)
    st.checks.append(Check("claim", statement, verdict.method, verdict.status == "proved", verdict.count,
                           verdict.detail, data))
    if verdict.status == "proved":
        st.say("Proved: the claim is the derivative" + ("." if problem.concrete else ", for every number of classes."))
    else:
        st.say(("Refuted: " if verdict.status == "refuted" else "Not proved: ") + verdict.detail)
    return st


def _tex_escape(text: str) -> str:
    out = text.replace("\\", r"\textbackslash{}")
    for a, b in (("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("^", r"\^{}"), ("%", r"\%"), ("#", r"\#"),
                 ("&", r"\&"), ("$", r"\$"), ("~", r"\~{}")):
        out = out.replace(a, b)
    return out
