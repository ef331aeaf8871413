"""The ``--claim`` step: prove a user's closed form or refute it with a counterexample.

For a concrete C:

1. The claim is evaluated from its syntax tree at a random rational point
   (exactly with fractions while it is rational; with 50-digit mpmath once
   ``exp``/``log``/``z`` enter, where ``exp`` of an argument beyond ±1e6
   counts as overflow instead of being computed) and compared with the proved
   closed form of the derivative there. A wrong claim is refuted at once, with
   that counterexample, and no symbolic work is done.
2. Otherwise the claim is built in the derivation's ring of rational functions
   of u_k = exp(z_k) (no SymPy expressions, no ``together``/``expand`` of user
   input): p, σ, y, w, eps, N and W are ring elements, and ``exp`` of an
   integer combination of logits and logarithms (``exp(z)``,
   ``exp(z - log(sum(exp(z))))``) is a product of powers. The claim is proved
   when it is the same rational function as the derivative. Every polynomial
   product is sized before it is formed: a claim that would need more than
   ``MAX_TERMS`` terms in one step, or ``MAX_WORK`` weighted term operations in
   all (about 3 s), is refused (exit 2) and the message names a smaller C or
   ``--classes n``.
3. A claim that is not rational in the u_k (``z`` or ``log`` outside ``exp``)
   cannot be proved here: it is refuted at random points if it differs, and
   is "not proved" otherwise.

An exception while deciding is a failed check, never a pass.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from math import comb
from typing import TYPE_CHECKING, Any, Literal

import mpmath
import sympy as sp

from ..errors import XentInputError
from . import claims
from . import quantities as Q
from .algebra import Frac
from .model import Check, Step, Tex
from .problem import Problem

if TYPE_CHECKING:
    from .concrete import ConcreteBackend, RingAlgebra
    from .general import GeneralBackend

COUNTEREXAMPLE_TRIES = 8
COUNTEREXAMPLE_CLASSES = 8  # failing classes evaluated per random point
MAX_TERMS = 200_000  # terms of one polynomial product (or substitution)
MAX_WORK = 1_000_000  # term operations for the whole claim, each weighted by 1 + (ring generators)/64:
#                       about 3 s of polynomial arithmetic at any C
EXP_LIMIT = 10**6  # |argument| beyond which exp() is taken as overflow (numeric evaluation)
NUMERIC_DPS = 50


def check_names(used: set[str], problem: Problem) -> None:
    """Refuse names whose option is not on (they would be free symbols, not the user's intent)."""
    den = problem.spec.denominator
    needs = {
        "eps": (problem.smoothing, "which needs --label-smoothing"),
        "w": (problem.weighted, "which needs --weight"),
        "q": (problem.pos_weighted, "which needs --pos-weight"),
        "m": (problem.masked, "which needs --ignore-index"),
        "N": (den in ("samples", "rows", "elements"),
              "but this mean divides by W (the summed weights of the counted samples' classes)"
              if den == "weights" else "which needs --reduction mean or batchmean"),
        "W": (den == "weights", "but this mean divides by N" if den is not None else
              "which needs --reduction mean with --weight and --targets index"),
    }
    for name, (ok, why) in needs.items():
        if name in used and not ok:
            raise XentInputError(f"uses {name!r}, {why}", source="--claim")


def _fmt(x: Any) -> str:
    """A number for a message: 6 significant digits; 'undefined' for a division by zero or a NaN."""
    if x is None:
        return "undefined"
    if isinstance(x, Fraction):
        try:
            return f"{float(x):.6g}"
        except OverflowError:
            return str(mpmath.nstr(mpmath.mpf(x.numerator) / x.denominator, 6))
    if isinstance(x, mpmath.mpf):
        if mpmath.isnan(x):
            return "undefined"
        if mpmath.isinf(x):
            return "inf" if x > 0 else "-inf"
        try:
            v = float(x)
        except OverflowError:  # pragma: no cover - float() of an mpf saturates
            v = float("inf")
        if abs(v) == float("inf") or (v == 0 and x != 0):
            return str(mpmath.nstr(x, 6))
        return f"{v:.6g}"
    try:
        v = float(x)
    except (TypeError, ValueError, OverflowError):
        return "undefined"
    return "undefined" if v != v else f"{v:.6g}"


class ClaimTooLarge(Exception):
    pass


class NotRational(Exception):
    """The claim is not a rational function of u = exp(z) (as far as this evaluator can tell)."""


class _Log:
    """``rest + Σ n_i log(F_i)``: a rational function plus an integer combination of logarithms of
    rational functions. Only ``exp`` (of one with ``rest`` = 0), sums and whole multiples can use it;
    once the logarithms cancel it is the rational function ``rest`` again."""

    __slots__ = ("terms", "rest")

    def __init__(self, terms: list[tuple[int, Frac]], rest: Frac | None = None):
        self.terms = terms
        self.rest = rest

    def scaled(self, n: int) -> _Log:
        return _Log([(c * n, f) for c, f in self.terms], None if self.rest is None else self.rest * n)


class _Budget:
    """Counts term operations before they are done; a term costs more in a ring with more generators."""

    def __init__(self, ngens: int):
        self.scale = 1 + ngens / 64
        self.work = 0.0

    def spend(self, terms: int) -> None:
        if terms > MAX_TERMS:
            raise ClaimTooLarge(f"a polynomial with about {terms:,} terms")
        self.work += terms * self.scale
        if self.work > MAX_WORK:
            raise ClaimTooLarge(f"more than {MAX_WORK:,} weighted polynomial term operations")


def _raise_cost(f: Frac, target: dict[int, tuple[Any, int]]) -> int:
    """Term operations to bring f's numerator to the denominator ``target`` (as Frac does: one factor at a
    time); a product of i copies of a t-term polynomial has at most comb(t + i - 1, i) terms."""
    size, work = len(f.num), 0
    for k, (poly, e) in target.items():
        have = f.den.get(k, (poly, 0))[1]
        t, base = len(poly), size
        for i in range(1, e - have + 1):
            work += size * t
            size = base * comb(t + i - 1, i)
    return work


def _lcm(a: Frac, b: Frac) -> dict[int, tuple[Any, int]]:
    out = dict(a.den)
    for k, (poly, e) in b.den.items():
        if k not in out or out[k][1] < e:
            out[k] = (poly, e)
    return out


def _add_cost(a: Frac, b: Frac) -> int:
    if not a.num or not b.num:  # Frac adds a zero without any arithmetic
        return 0
    L = _lcm(a, b)
    return _raise_cost(a, L) + _raise_cost(b, L)


class _RingAlgebra(claims.Algebra):
    """Claim values as exact rational functions in the derivation's ring, every product sized first."""

    def __init__(self, A: RingAlgebra, budget: _Budget):
        self.A = A
        self.budget = budget
        self.bce = A.problem.bce
        self.space = A.ring_space
        # Denominator polynomials of the derivation, so that a claim's own sum(exp(z)) becomes the same
        # factor object as S (Frac tells factors apart by identity; equal copies would square the work).
        self.shared = {A.S_poly: A.S_poly, **{f: f for f in A.one_plus_u}}

    # -- leaves
    def const(self, value: int | float) -> Frac:
        return self.space.const(sp.Rational(repr(value)) if isinstance(value, float) else sp.Integer(value))

    def vector(self, name: str, k: int) -> Frac | _Log:
        A = self.A
        if name == "p":
            return A.sigma(k) if self.bce else A.p(k)
        if name == "z":
            return _Log([(1, Frac(A.U[k]))])  # z_k = log u_k
        return {"y": A.y, "w": A.w, "q": A.q}[name](k)

    def scalar(self, name: str) -> Frac:
        A = self.A
        if name == "C":
            return self.space.const(A.problem.classes)
        if name == "eps":
            return A.eps
        return A.mask if name == "m" else A.den  # N or W: the denominator (check_names)

    # -- helpers
    @staticmethod
    def _int_value(f: Any) -> int | None:
        if isinstance(f, Frac) and not f.den and (not f.num or f.num.is_ground):
            c = f.num.LC if f.num else 0
            if c == int(c):
                return int(c)
        return None

    @staticmethod
    def _is_zero(f: Any) -> bool:
        return isinstance(f, Frac) and not f.num

    def _frac_mul(self, a: Frac, b: Frac) -> Frac:
        if not a.num or not b.num:
            return self.space.const(0)
        self.budget.spend(len(a.num) * len(b.num))
        return a * b

    # -- arithmetic
    def add(self, a: Any, b: Any) -> Any:
        if isinstance(a, _Log) or isinstance(b, _Log):
            la = a if isinstance(a, _Log) else _Log([], a)
            lb = b if isinstance(b, _Log) else _Log([], b)
            rest = la.rest if lb.rest is None else lb.rest if la.rest is None else self.add(la.rest, lb.rest)
            return self._merged(la.terms + lb.terms, rest)
        self.budget.spend(_add_cost(a, b))
        return a + b

    def _merged(self, terms: list[tuple[int, Frac]], rest: Frac | None) -> Any:
        """n log F + m log G with F == G (exactly) is (n + m) log F; with no logarithm left, ``rest``."""
        out: list[tuple[int, Frac]] = []
        for n, f in terms:
            for i, (m, g) in enumerate(out):
                self.budget.spend(_add_cost(f, g))
                if f is g or f.equals(g):
                    out[i] = (m + n, g)
                    break
            else:
                out.append((n, f))
        out = [(n, f) for n, f in out if n]
        if not out:
            return rest if rest is not None else self.space.const(0)
        return _Log(out, rest)

    def neg(self, a: Any) -> Any:
        return a.scaled(-1) if isinstance(a, _Log) else -a

    def sub(self, a: Any, b: Any) -> Any:
        return self.add(a, self.neg(b))

    def mul(self, a: Any, b: Any) -> Any:
        if isinstance(a, _Log) or isinstance(b, _Log):
            log, other = (a, b) if isinstance(a, _Log) else (b, a)
            n = self._int_value(other)
            if n is None or isinstance(other, _Log):
                raise NotRational("a logarithm times something other than a whole number")
            if n == 0:
                return self.space.const(0)
            if abs(n) > claims.MAX_POWER:
                raise NotRational("a logarithm times a large number")
            return self._merged(log.scaled(n).terms, None if log.rest is None else self._frac_mul(log.rest, other))
        return self._frac_mul(a, b)

    def div(self, a: Any, b: Any) -> Any:
        if isinstance(b, _Log):
            raise NotRational("division by a logarithm")
        if isinstance(a, _Log):
            n = self._int_value(b)
            if n not in (1, -1):
                raise NotRational("a logarithm divided by something other than ±1")
            return self.mul(a, b)
        if not b.num:
            raise ZeroDivisionError("division by the zero function")
        shared = self.shared.get(b.num)
        if shared is not None and shared is not b.num:  # the same polynomial as S (or 1 + u_k): one factor
            b = Frac(shared, dict(b.den))
        self.budget.spend(_raise_cost(a, {k: (poly, e + a.den.get(k, (poly, 0))[1]) for k, (poly, e) in b.den.items()}))
        return a / b

    def power(self, a: Any, n: int) -> Any:
        if isinstance(a, _Log):
            if n == 0:
                return self.space.const(1)
            if n == 1:
                return a
            raise NotRational("a power of a logarithm")
        if n == 0:
            return self.space.const(1)
        base = a if n > 0 else self.div(self.space.const(1), a)
        out = base
        for _ in range(abs(n) - 1):
            out = self._frac_mul(out, base)
        return out

    def exp(self, a: Any) -> Frac:
        if isinstance(a, Frac):
            if not a.num:
                return self.space.const(1)
            raise NotRational("exp of something other than logits and logarithms")
        if a.rest is not None and a.rest.num:
            raise NotRational("exp of a logarithm plus a rational function")
        out = self.space.const(1)
        for n, f in a.terms:
            if n == 0:
                continue
            if abs(n) > claims.MAX_POWER:
                raise NotRational("exp of a large multiple of a logit")
            out = self._frac_mul(out, self.power(f, n))
        return out

    def log(self, a: Any) -> _Log:
        if isinstance(a, _Log):
            raise NotRational("log of a logarithm")
        if not a.num:
            raise ZeroDivisionError("log of the zero function")
        return _Log([(1, a)])

    def summation(self, f: Callable[[int], Any]) -> Any:
        items = [f(m) for m in range(self.A.problem.classes)]  # type: ignore[arg-type]
        if any(isinstance(v, _Log) for v in items):
            total = items[0]
            for v in items[1:]:
                total = self.add(total, v)
            return total
        keys = {tuple(sorted((k, e) for k, (_p, e) in v.den.items())) for v in items}
        if len(keys) == 1:  # one shared denominator (e.g. S for every p_m): add the numerators in one pass
            self.budget.spend(sum(len(v.num) for v in items))
            return Frac.sum(items, self.space.ring)
        total = items[0]
        for v in items[1:]:
            total = self.add(total, v)
        return total


def _compose_cost(f: Frac, subs: dict[int, Any]) -> int:
    """Term operations of substituting ``subs`` into f: a monomial with x_i**e takes len(g**e) terms,
    at most comb(len(g) + e - 1, e)."""
    cost = 0
    for poly in [f.num, *(p for p, _e in f.den.values())]:
        cost += len(poly)
        for i, g in subs.items():
            for m in poly.itermonoms():
                if m[i]:
                    cost += comb(len(g) + m[i] - 1, m[i])
    return cost


def _mp(x: Any) -> Any:
    """An mpmath number from a Fraction or an mpf."""
    if isinstance(x, Fraction):
        return mpmath.mpf(x.numerator) / x.denominator
    return x


class _PointAlgebra(claims.Algebra):
    """Claim values at one point: exact Fractions while only rational operations are involved, mpmath
    (``NUMERIC_DPS`` digits) once exp/log or z enter; ``None`` stands for undefined (a division by
    zero, the log of a number <= 0). No symbolic work at all: the cost is the claim's size times C."""

    def __init__(self, p: list[Any], y: list[Any], z: list[Any], w: list[Any], q: list[Any],
                 scalars: dict[str, Any]):
        self.p, self.y, self.z, self.w, self.q = p, y, z, w, q
        self.scalars = scalars

    def const(self, value: int | float) -> Fraction:
        return Fraction(value)

    def vector(self, name: str, k: int) -> Any:
        return {"p": self.p, "y": self.y, "z": self.z, "w": self.w, "q": self.q}[name][k]

    def scalar(self, name: str) -> Any:
        return self.scalars[name]

    def summation(self, f: Callable[[int], Any]) -> Any:
        total: Any = Fraction(0)
        for m in range(len(self.p)):
            total = self.add(total, f(m))
        return total

    @staticmethod
    def _pair(a: Any, b: Any) -> tuple[Any, Any]:
        if isinstance(a, Fraction) and isinstance(b, Fraction):
            return a, b
        return _mp(a), _mp(b)

    def add(self, a: Any, b: Any) -> Any:
        if a is None or b is None:
            return None
        a, b = self._pair(a, b)
        return a + b

    def sub(self, a: Any, b: Any) -> Any:
        if a is None or b is None:
            return None
        a, b = self._pair(a, b)
        return a - b

    def mul(self, a: Any, b: Any) -> Any:
        if a is None or b is None:
            return None
        a, b = self._pair(a, b)
        return a * b

    def div(self, a: Any, b: Any) -> Any:
        if a is None or b is None or b == 0:
            return None
        a, b = self._pair(a, b)
        return a / b

    def neg(self, a: Any) -> Any:
        return None if a is None else -a

    def power(self, a: Any, n: int) -> Any:
        if a is None or (a == 0 and n < 0):
            return None
        return a**n

    def exp(self, a: Any) -> Any:
        if a is None:
            return None
        if a == 0:
            return Fraction(1)
        a = _mp(a)
        if mpmath.isnan(a):
            return None
        if a > EXP_LIMIT:
            return mpmath.inf
        if a < -EXP_LIMIT:
            return mpmath.mpf(0)
        return mpmath.exp(a)

    def log(self, a: Any) -> Any:
        if a is None or a <= 0:
            return None
        if a == 1:
            return Fraction(0)
        a = _mp(a)
        if mpmath.isnan(a):
            return None
        return mpmath.log(a)


def _frac_value(f: Frac, point: list[Fraction]) -> Fraction | None:
    """Exact value of f at a rational point (by generator number); None where a denominator vanishes."""

    def ev(poly: Any) -> Fraction:
        total = Fraction(0)
        powers: dict[tuple[int, int], Fraction] = {}
        for mon, coeff in poly.iterterms():
            term = Fraction(int(coeff.numerator), int(coeff.denominator))
            for i, e in enumerate(mon):
                if e:
                    key = (i, e)
                    if key not in powers:
                        powers[key] = point[i] ** e
                    term *= powers[key]
            total += term
        return total

    value = ev(f.num)
    for poly, e in f.den.values():
        d = ev(poly)
        if d == 0:
            return None
        value /= d**e
    return value




# --------------------------------------------------------------------------
# Deciding a claim
# --------------------------------------------------------------------------

CLAIM_CHECK_CLASSES = (2, 3, 4)  # sizes where a claim that a symbolic C leaves open is looked at exactly
RING_CLAIM_METHOD = "exact comparison as rational functions of u = exp(z)"
POINT_METHOD = "exact comparison; counterexample at a random rational point"


@dataclass(frozen=True)
class Verdict:
    """What deciding a claim found (never read back from its words)."""

    status: Literal["proved", "refuted", "undecided"]
    detail: str
    method: str
    count: int = 1


def decide_concrete(backend: ConcreteBackend, tree: Any) -> Verdict:
    """Prove the claim for every class at this concrete C, or refute it with a counterexample."""
    A = backend.algebra("z")
    problem = backend.problem
    C = backend.C
    targets = [Q.scaled(A, Q.grad(A, j)) for j in range(C)]
    subs = backend.normalized_substitution(A) if problem.normalized else {}
    # A wrong claim is usually refuted at the first random point, exactly and cheaply from its syntax
    # tree: try a few classes there before any polynomial arithmetic.
    sample = sorted(set(range(min(4, C))) | set(range(max(0, C - 4), C)))
    try:
        example = _counterexample(A, tree, targets, sample, problem.normalized, tries=1)
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - decided below instead
        example = None
    if example is not None:
        return Verdict("refuted", example, POINT_METHOD, C)
    budget = _Budget(len(A.ring_space.symbols))
    decidable, undefined = True, False
    try:
        alg = _RingAlgebra(A, budget)
        fracs: list[Frac] = []
        for j in range(C):
            value = claims.fold(tree, alg, j)
            if isinstance(value, _Log):
                raise NotRational("the claim is a logarithm")
            fracs.append(value)
        failing = _exact_failures(A, fracs, targets, subs, budget)
    except NotRational:
        decidable, failing = False, list(range(C))
    except ZeroDivisionError:  # e.g. 1/(p - p): undefined for every z
        decidable, undefined, failing = False, True, list(range(C))
    except ClaimTooLarge as exc:
        raise XentInputError(
            f"is too large to decide exactly at C = {C} ({exc}); the claim is elementwise, so try a smaller "
            "--classes, or --classes n for every C at once",
            source="--claim",
        ) from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - an error while deciding is a failed check, never a pass
        text = " ".join(str(exc).split())[:200]
        return Verdict("undecided", f"{type(exc).__name__} raised during the check" + (f" ({text})" if text else ""),
                       RING_CLAIM_METHOD, C)
    if decidable and not failing:
        return Verdict("proved", "", RING_CLAIM_METHOD, C)
    try:
        example = _counterexample(A, tree, targets, failing, problem.normalized)
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - no counterexample: the claim stays "not proved"
        example = None
    if example is not None:
        return Verdict("refuted", example, POINT_METHOD, C)
    if undefined:
        detail = "the claim divides by zero (or takes log(0)) for every z"
    elif decidable:
        detail = ("it is not the derivative as a rational function of exp(z), but no counterexample was found "
                  "at random points")
    else:
        detail = "neither proved (the claim is not a rational function of exp(z)) nor refuted at random points"
    return Verdict("undecided", detail, POINT_METHOD, C)


def decide_general(backend: GeneralBackend, tree: Any) -> Verdict:
    """Prove the claim for every number of classes, or refute it at a small concrete C."""
    from sympy import Sum

    from .backend import short
    from .concrete import ConcreteBackend
    from .general import DIFF_METHOD

    problem = backend.problem
    A = backend.algebra("z")
    bce = problem.bce

    def vector(name: str, m: Any) -> Any:
        if name == "p":
            return A.sigma(m) if bce else A.p(m)
        if name == "z":
            return backend.z[m]
        return {"y": A.y, "w": A.w, "q": A.q}[name](m)

    def scalar(name: str) -> Any:
        return {"C": backend.C, "eps": A.eps, "m": A.mask}.get(name, A.den)

    def summation(f: Callable[[Any], Any]) -> Any:
        m = sp.Dummy("m", integer=True, positive=True)
        return Sum(f(m), (m, 1, backend.C))

    env = claims.Env(vector, scalar, lambda: (1, backend.C), summation)
    j = backend.index["j"]
    given = "normalized" if problem.normalized else None
    try:
        value = claims.evaluate(tree, env, j)
        ok, rest = backend.zero(value - Q.scaled(A, Q.grad(A, j)), given)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - SymPy failing on the claim is "not proved", never a pass
        ok, rest = False, f"{type(exc).__name__} raised during the check"
    method = DIFF_METHOD.split("; then ")[-1] + (f"; Sum(y[k], (k, 1, {backend.n})) -> 1" if given else "")
    if ok:
        return Verdict("proved", "", method)
    for K in CLAIM_CHECK_CLASSES:
        sub = Problem(K, problem.spec, problem.assume_normalized, problem.claim)
        try:
            verdict = decide_concrete(ConcreteBackend(sub), tree)
        except XentInputError:  # too large to decide at this size: the next size will not be smaller
            break
        if verdict.status == "refuted":
            return Verdict("refuted", f"refuted at C = {K}: {verdict.detail}",
                           f"symbolic difference not 0; exact comparison at C = {K} with a counterexample at a "
                           "rational point")
    tried = ", ".join(str(K) for K in CLAIM_CHECK_CLASSES)
    return Verdict("undecided", f"the difference did not reduce to 0 for symbolic {backend.n} (left: "
                                f"{short(rest)}), and no counterexample was found at C = {tried}",
                   method + f"; concrete C = {tried} tried for a counterexample")


def claim_step(backend: Any, text: str) -> Step:
    """The claim step of a derivation: the claim, the verdict, and the check."""
    problem: Problem = backend.problem
    tree = claims.parse(text)
    check_names(claims.names(tree), problem)
    bce = problem.bce
    st = Step("Claim")
    pname = "σ" if bce else "p"
    st.say(f"Claim, elementwise for every class j ({pname} is the {'sigmoid' if bce else 'softmax'} output):")
    st.eq(Tex(r"\frac{\partial L}{\partial z_j}", "∂L/∂z_j"), Tex(r"\texttt{" + _tex_escape(text) + "}", text))
    condition = " given Σy = 1" if problem.normalized else ""
    if problem.concrete:
        statement = f"the claim {text!r} equals ∂L/∂z_j for all {problem.classes} j{condition}"
        verdict = decide_concrete(backend, tree)
    else:
        n = problem.classes
        statement = f"the claim {text!r} equals ∂L/∂z_j for every 1 ≤ j ≤ {n}, for every {n}{condition}"
        verdict = decide_general(backend, tree)
    st.checks.append(Check("claim", statement, verdict.method, verdict.status == "proved", verdict.count,
                           verdict.detail))
    if verdict.status == "proved":
        st.say("Proved: the claim is the derivative" + ("." if problem.concrete else ", for every number of classes."))
    else:
        st.say(("Refuted: " if verdict.status == "refuted" else "Not proved: ") + verdict.detail)
    return st


def _exact_failures(A: RingAlgebra, fracs: list[Frac], targets: list[Frac], subs: dict[int, Any],
                    budget: _Budget) -> list[int]:
    """The classes j where the claim is not the derivative, decided exactly (every product sized first).

    Without an assumption: fracs[j] == targets[j] as rational functions. Under sum(y) = 1 (``subs`` puts
    y_C = 1 − y_1 − … − y_{C−1}), first the cheap sufficient test against the normalized closed form
    (the derivation's "normalized-targets" check proves it equal to the gradient given sum(y) = 1), then,
    if that fails, both sides with y_C substituted.
    """
    C = len(targets)
    simple = None
    if subs and not A.problem.weighted and not A.problem.bce:
        simple = [Q.scaled(A, Q.grad_normalized(A, j)) for j in range(C)]
    failing = []
    for j in range(C):
        mine, theirs = fracs[j], targets[j]
        if simple is not None:
            budget.spend(_add_cost(mine, simple[j]))
            if mine.equals(simple[j]):
                continue
        budget.spend(_add_cost(mine, theirs))
        if mine.equals(theirs):
            continue
        if subs:
            budget.spend(_compose_cost(mine, subs) + _compose_cost(theirs, subs))
            mine, theirs = mine.compose(subs), theirs.compose(subs)
            budget.spend(_add_cost(mine, theirs))
            if mine.equals(theirs):
                continue
        failing.append(j)
    return failing


def _tex_escape(text: str) -> str:
    out = text.replace("\\", r"\textbackslash{}")
    for a, b in (("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("^", r"\^{}"), ("%", r"\%"), ("#", r"\#"),
                 ("&", r"\&"), ("$", r"\$"), ("~", r"\~{}")):
        out = out.replace(a, b)
    return out


def _counterexample(A: RingAlgebra, tree: Any, targets: list[Frac], failing: list[int], normalized: bool,
                    tries: int = COUNTEREXAMPLE_TRIES) -> str | None:
    """A point (z, y, ...) where the claim and the derivative differ.

    The claim is evaluated from its syntax tree at the point (:class:`_PointAlgebra`: exact where it is
    rational, 50-digit mpmath otherwise); the derivative is the proved closed form, evaluated exactly.
    """
    names = A.names
    C = A.problem.classes
    assert isinstance(C, int)
    rng = random.Random(20251121)
    index = {sym: i for i, sym in enumerate(A.ring_space.symbols)}
    for attempt in range(tries):
        u = [Fraction(rng.randint(1, 19), rng.randint(1, 7)) for _ in range(C)]
        y = [Fraction(rng.randint(0, 6)) for _ in range(C)]
        if normalized:
            total = sum(y)
            y = [v / total for v in y] if total else [Fraction(1, C)] * C
        extra: dict[sp.Symbol, Fraction] = {}
        for sym in [*names.w, *names.q]:
            extra[sym] = Fraction(rng.randint(1, 6), 2)
        if names.eps is not None:
            extra[names.eps] = Fraction(rng.randint(1, 9), 10)
        if names.mask is not None:  # a counted sample first, then an ignored one now and then
            extra[names.mask] = Fraction(1 if attempt == 0 else rng.randint(0, 1))
        if names.den is not None:
            extra[names.den] = Fraction(rng.randint(2, 5))
        if names.rest is not None:
            extra[names.rest] = Fraction(0)
        point = [Fraction(0)] * len(A.ring_space.symbols)
        for sym, val in zip(names.u, u):
            point[index[sym]] = val
        for sym, val in zip(names.y, y):
            point[index[sym]] = val
        for sym, val in extra.items():
            point[index[sym]] = val
        best = None
        with mpmath.workdps(NUMERIC_DPS):
            alg = _point_algebra(A, point, u)
            for j in failing[:COUNTEREXAMPLE_CLASSES]:
                want = _frac_value(targets[j], point)
                if want is None:
                    continue  # the derivative's denominators never vanish at u > 0; defensive
                got = claims.fold(tree, alg, j)
                if isinstance(got, Fraction):
                    differs = got != want
                    gap = abs(_mp(got - want))
                elif got is None or not mpmath.isfinite(got):
                    differs, gap = True, mpmath.inf
                    got = None if got is None or mpmath.isnan(got) else got
                else:
                    w = _mp(want)
                    gap = abs(got - w)
                    differs = gap > mpmath.mpf(10) ** -(NUMERIC_DPS - 20) * (1 + abs(w))
                if differs and (best is None or gap > best[0]):
                    best = (gap, j, got, want)
            if best is not None:
                _gap, j, got, want = best
                zs = ", ".join(_fmt(mpmath.log(_mp(v))) for v in u)
                ys = ", ".join(str(v) for v in y)
                others = "".join(f", {sym} = {val}" for sym, val in extra.items() if sym != names.rest)
                return (
                    f"at z = ({zs}), y = ({ys}){others}: the claim gives ∂L/∂z_{j + 1} = {_fmt(got)}, "
                    f"the derivative is {_fmt(want)}"
                )
    return None


def _point_algebra(A: RingAlgebra, point: list[Fraction], u: list[Fraction]) -> _PointAlgebra:
    """The claim's names at a point: each evaluated exactly from the derivation's own ring elements."""
    C = len(u)

    def at(f: Frac) -> Any:
        return _frac_value(f, point)

    bce = A.problem.bce
    p = [at(A.sigma(k) if bce else A.p(k)) for k in range(C)]
    y = [at(A.y(k)) for k in range(C)]
    z = [mpmath.log(_mp(v)) for v in u]
    w = [at(A.w(k)) for k in range(C)]
    q = [at(A.q(k)) for k in range(C)]
    scalars: dict[str, Any] = {"C": Fraction(C), "eps": at(A.eps), "m": at(A.mask), "N": at(A.den),
                               "W": at(A.den)}
    return _PointAlgebra(p, y, z, w, q, scalars)
