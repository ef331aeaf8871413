r"""Exact values of a claim: as functions (in the derivation's ring) and at one point.

**As functions.** A claim built from ``exp`` and ``log`` of the allowed
quantities is brought to the form

.. math::  r + \sum_i c_i \log A_i + \sum_e d_e\, e^{R_e}

with r, c_i, d_e, R_e rational functions of u_k = e^{z_k} and the parameters
(:class:`~xentcli.symbolic.algebra.Frac`), and atoms A_i that are a
generator (u_k, so that z_k = log u_k, or y_k, w_k, ...), a polynomial
without monomial or constant factor, or a positive rational constant. The
rewriting is exact: log(F) splits F into its factors (log p = z − log S),
exp of a whole-number combination of logarithms is a product of powers
(exp(log x) = x, exp(z)/Σexp(z) = p), log(c·e^R) = log c + R (log(exp x) = x),
and e^R e^Q = e^{R+Q}. Two values are equal when r and every coefficient are
the same rational function: the atoms are linearly independent over the
rational functions, so a difference whose parts all vanish is 0, exactly.
What the form cannot hold (a product of two logarithms, exp of a logarithm
with a fractional coefficient, log of a sum of exponentials, ...) is
kept whole as an atom of its own (the same part at the same class index is the same
atom, so it cancels exactly; nothing else is assumed about it): a claim whose
difference from the derivative keeps such a part is not proved here.

A division by a value that is 0 for every input, or the log of one (or of a
negative constant), raises :class:`~xentcli.symbolic.claims.Undefined`: the
claim is malformed.

**At a point.** :class:`PointAlgebra` evaluates a claim literally at an exact
point (rational u, y, w, ...; z = log u): a rational value is a
:class:`~fractions.Fraction`, anything else an exact SymPy number (``log(5/2)``,
``exp(1/3)``); a division by zero or the log of a number ≤ 0 is
:class:`Undef`. :func:`sign` decides the sign of a value exactly when it is a
rational plus rational multiples of logarithms of rationals (logarithms of
pairwise coprime integers are linearly independent over the rationals, and a
nonzero combination is irrational), and otherwise from a 60-digit evaluation
only when that leaves no doubt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from math import comb
from typing import TYPE_CHECKING, Any

import mpmath
import sympy as sp

from . import claims
from . import quantities as Q
from .algebra import Frac
from .claims import Undefined
from .poly import Poly as PolyElement

if TYPE_CHECKING:
    from .concrete import RingAlgebra

MAX_TERMS = 200_000  # terms of one polynomial product (or substitution)
MAX_WORK = 1_000_000  # term operations for the whole claim, each weighted by 1 + (ring generators)/16:
#                       about 1 s of polynomial arithmetic at any C (a term costs time in proportion to its length)
MAX_EXP_POWER = 64  # exp(n log x) = x**n is formed for |n| up to this
POINT_DPS = 60  # digits of a numeric evaluation at a point
EXACT_EXP_LIMIT = 5000  # exp(x) at a point is expanded exactly for |x| up to this (about 2,200 digits)


class ClaimTooLarge(Exception):
    pass


class _Budget:
    """Counts term operations before they are done; a term costs more in a ring with more generators."""

    def __init__(self, ngens: int):
        self.scale = 1 + ngens / 16
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


def compose_cost(f: Frac, subs: dict[int, Any]) -> int:
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


# --------------------------------------------------------------------------
# Values as functions
# --------------------------------------------------------------------------

Atom = tuple[Any, ...]  # ("gen", i) | ("poly", P) | ("const", Fraction)
OpaqueKey = tuple[str, Any]  # (the part of the claim, as Python's ast dumps it; the class index it was taken at)


class _Opaque:
    """A value the exact form cannot hold (until :meth:`RingValues.seen` names it by the part of the claim it
    is); ``why`` says what it was."""

    __slots__ = ("why",)

    def __init__(self, why: str):
        self.why = why


_RAW_LOGIT = "raw logit"


class _RawLogit:
    """The logit z_k itself under soft-capping (the ring holds tanh(z_k / cap), not z_k)."""

    __slots__ = ("k",)

    def __init__(self, k: int):
        self.k = k


@dataclass
class XV:
    """``rat + Σ coeff·log(atom) + Σ coeff·exp(R) + Σ coeff·[part]`` with Frac parts (see the module
    docstring); a ``[part]`` is a part of the claim the form cannot hold, kept whole: equal parts (the same
    text at the same class index) cancel, nothing else is assumed about them."""

    rat: Frac
    logs: list[tuple[Atom, Frac]]
    exps: list[tuple[Frac, Frac]]  # (R, coeff), R not 0
    opaque: list[tuple[OpaqueKey, Frac]] = field(default_factory=list)

    @property
    def rational(self) -> bool:
        return not self.logs and not self.exps and not self.opaque


def _atom_eq(a: Atom, b: Atom) -> bool:
    if a[0] != b[0]:
        return False
    return bool(a[1] is b[1] or a[1] == b[1])


def _int_of(f: Frac) -> int | None:
    if not f.den and (not f.num or f.num.is_ground):
        c = f.num.LC if f.num else 0
        if c == int(c):
            return int(c)
    return None


def _const_of(f: Frac) -> Fraction | None:
    if not f.den and (not f.num or f.num.is_ground):
        c = f.num.LC if f.num else 0
        return Fraction(int(c.numerator), int(c.denominator))
    return None


class RingValues(claims.Algebra):
    """A claim as an exact function in the derivation's ring, every polynomial product sized first.

    ``log_args`` collects the argument of every logarithm taken (each must be positive on the domain for
    the rewriting log(ab) = log a + log b to be the claim's value); ``why`` the first thing the exact form
    could not hold.
    """

    def __init__(self, A: RingAlgebra, budget: _Budget):
        self.A = A
        self.budget = budget
        self.bce = A.problem.bce
        self.space = A.ring_space
        self.ring = self.space.ring
        self.index = {s: i for i, s in enumerate(self.space.symbols)}
        self.u_index = [self.index[s] for s in A.names.u]
        # Denominator polynomials of the derivation, so that a claim's own sum(exp(z)) becomes the same
        # factor object as S (Frac tells factors apart by identity; equal copies would square the work).
        self.shared = {A.S_poly: A.S_poly, **{f: f for f in A.one_plus_u}}
        self.log_args: list[Frac] = []
        self.unchecked_logs = False  # a logarithm the exact form cannot hold (its argument is not checked)
        self.why = ""
        self._splits: dict[int, tuple[PolyElement, tuple[Fraction, tuple[int, ...], PolyElement]]] = {}

    def split(self, poly: PolyElement) -> tuple[Fraction, tuple[int, ...], PolyElement]:
        """:func:`_split`, once per polynomial object (S is split once, not once per class)."""
        known = self._splits.get(id(poly))
        if known is not None and known[0] is poly:
            return known[1]
        self.budget.spend(len(poly))
        out = _split(poly)
        self._splits[id(poly)] = (poly, out)
        return out

    def seen(self, node: Any, value: Any, index: Any) -> Any:
        """A value the exact form cannot hold becomes the part of the claim it is (at this class index)."""
        if isinstance(value, _RawLogit):  # a soft-capped logit: an atom of its own, known to tanh
            return XV(self.zero(), [], [], [((_RAW_LOGIT, value.k), self.space.const(1))])
        if isinstance(value, _Opaque):
            self.why = self.why or value.why
            return XV(self.zero(), [], [], [((claims.dump(node), index), self.space.const(1))])
        return value

    # -- Frac arithmetic, sized first
    def zero(self) -> Frac:
        return self.space.const(0)

    def fadd(self, a: Frac, b: Frac) -> Frac:
        self.budget.spend(_add_cost(a, b))
        return a + b

    def fmul(self, a: Frac, b: Frac) -> Frac:
        if not a.num or not b.num:
            return self.zero()
        # the product, then cancelling monomial factors of the denominator (a pass over the terms each)
        monomials = sum(1 for p, _e in [*a.den.values(), *b.den.values()] if len(p) == 1)
        self.budget.spend(len(a.num) * len(b.num) * (1 + monomials))
        return a * b

    def fdiv(self, a: Frac, b: Frac) -> Frac:
        if not b.num:
            raise Undefined("divides by 0 (the denominator is 0 for every input)")
        shared = self.shared.get(b.num)
        if shared is not None and shared is not b.num:  # the same polynomial as S (or 1 + u_k): one factor
            b = Frac(shared, dict(b.den))
        self.budget.spend(_raise_cost(a, {k: (p, e + a.den.get(k, (p, 0))[1]) for k, (p, e) in b.den.items()}))
        monomials = sum(1 for p, _e in a.den.values() if len(p) == 1) + (len(b.num) == 1)
        self.budget.spend(len(a.num) * (1 + monomials))  # cancelling monomial factors: a pass over the terms
        return a / b

    def fpow(self, a: Frac, n: int) -> Frac:
        if n == 0:
            return self.space.const(1)
        base = a if n > 0 else self.fdiv(self.space.const(1), a)
        out = base
        for _ in range(abs(n) - 1):
            out = self.fmul(out, base)
        return out

    # -- lifting
    def x(self, v: Any) -> XV:
        return v if isinstance(v, XV) else XV(v, [], [])

    @staticmethod
    def out(v: XV) -> Any:
        return v.rat if v.rational else v

    def _scale(self, v: XV, c: Frac) -> XV:
        return XV(self.fmul(v.rat, c), [(a, self.fmul(k, c)) for a, k in v.logs],
                  [(R, self.fmul(k, c)) for R, k in v.exps], [(o, self.fmul(k, c)) for o, k in v.opaque])

    def _merge(self, a: XV, b: XV) -> XV:
        logs = list(a.logs)
        for atom, k in b.logs:
            for i, (other, k2) in enumerate(logs):
                if _atom_eq(atom, other):
                    logs[i] = (other, self.fadd(k2, k))
                    break
            else:
                logs.append((atom, k))
        exps = list(a.exps)
        for R, k in b.exps:
            for i, (R2, k2) in enumerate(exps):
                self.budget.spend(_add_cost(R, R2))
                if R is R2 or R.equals(R2):
                    exps[i] = (R2, self.fadd(k2, k))
                    break
            else:
                exps.append((R, k))
        opaque = dict(a.opaque)
        for key, k in b.opaque:
            opaque[key] = self.fadd(opaque[key], k) if key in opaque else k
        return XV(self.fadd(a.rat, b.rat), [(t, k) for t, k in logs if k.num], [(R, k) for R, k in exps if k.num],
                  [(o, k) for o, k in opaque.items() if k.num])

    # -- leaves
    def const(self, value: int | float) -> Frac:
        return self.space.const(sp.Rational(repr(value)) if isinstance(value, float) else sp.Integer(value))

    def vector(self, name: str, k: int) -> Any:
        A = self.A
        if name == "p":
            return A.sigma(k) if self.bce else A.p(k)
        if name == "z":
            spec = A.problem.spec
            if spec.softcap is not None:  # z_k = cap atanh(T log u_k / cap): only tanh(z_k / cap) is held (as t_k)
                return _RawLogit(k)
            # z_k = T log u_k (u_k = exp(x_k), x_k = z_k / T); z_k = log u_k without a temperature
            return XV(self.zero(), [(("gen", self.u_index[k]), A.temp if spec.has_temperature
                                     else self.space.const(1))], [])
        return {"y": A.y, "w": A.w, "q": A.q}[name](k)

    def scalar(self, name: str) -> Frac:
        A = self.A
        if name == "C":
            return self.space.const(A.problem.classes)
        if name == "eps":
            return A.eps
        if name in ("lam", "cap", "T"):
            return {"lam": A.lam, "cap": A.cap, "T": A.temp}[name]
        if name == "lse":
            return A.lse()
        if name == "m":
            return A.mask
        return A.zden if name == "N" else A.den  # N or W: the denominators (check_names; zden is den but
        # with class weights and a z-loss, where N divides the z-loss and W the cross-entropy)

    def tanh(self, a: Any) -> Any:
        """tanh(z_k / cap) is the ring's t_k; nothing else under tanh is held."""
        spec = self.A.problem.spec
        v = self.x(a)
        if spec.softcap is not None and not v.rat.num and not v.logs and not v.exps and len(v.opaque) == 1:
            (key, k), = v.opaque
            if key[0] == _RAW_LOGIT and k.equals(self.fdiv(self.space.const(1), self.A.cap)):
                return self.A.tanh(key[1])
        return _Opaque("tanh of something other than z/cap")

    # -- arithmetic (an _Opaque operand is only ever the value of a part just computed, before seen() names it)
    def add(self, a: Any, b: Any) -> Any:
        if isinstance(a, Frac) and isinstance(b, Frac):
            return self.fadd(a, b)
        return self.out(self._merge(self.x(a), self.x(b)))

    def neg(self, a: Any) -> Any:
        if isinstance(a, Frac):
            return -a
        return XV(-a.rat, [(t, -k) for t, k in a.logs], [(R, -k) for R, k in a.exps], [(o, -k) for o, k in a.opaque])

    def sub(self, a: Any, b: Any) -> Any:
        return self.add(a, self.neg(b))

    def mul(self, a: Any, b: Any) -> Any:
        if isinstance(a, Frac) and isinstance(b, Frac):
            return self.fmul(a, b)
        xa, xb = self.x(a), self.x(b)
        if xb.rational or xa.rational:
            v, c = (xa, xb.rat) if xb.rational else (xb, xa.rat)
            return self.out(self._scale(v, c))
        if xa.opaque or xb.opaque:
            return _Opaque("a product with a part it cannot hold")
        if xa.logs or xb.logs:
            return _Opaque("a product of a logarithm and a non-rational value")
        # (r + Σ d e^R)(r' + Σ d' e^R'): products of exponentials add their exponents
        total = XV(self.fmul(xa.rat, xb.rat), [], [])
        zero = self.zero()
        parts_a: list[tuple[Frac, Frac]] = [(zero, xa.rat), *xa.exps]  # e^0 = 1: the rational part
        parts_b: list[tuple[Frac, Frac]] = [(zero, xb.rat), *xb.exps]
        for ia, (Ra, ka) in enumerate(parts_a):
            for ib, (Rb, kb) in enumerate(parts_b):
                if ia == 0 and ib == 0:
                    continue
                k = self.fmul(ka, kb)
                if not k.num:
                    continue
                R = self.fadd(Ra, Rb)
                term = XV(k, [], []) if not R.num else XV(zero, [], [(R, k)])
                total = self._merge(total, term)
        return self.out(total)

    def div(self, a: Any, b: Any) -> Any:
        if isinstance(b, XV) and b.rational:
            b = b.rat
        if isinstance(b, Frac):
            if isinstance(a, Frac):
                return self.fdiv(a, b)
            return self.out(self._scale(self.x(a), self.fdiv(self.space.const(1), b)))
        if not b.rat.num and not b.logs and not b.opaque and len(b.exps) == 1:  # 1/(c e^R) = (1/c) e^(-R)
            R, k = b.exps[0]
            inv = XV(self.zero(), [], [(-R, self.fdiv(self.space.const(1), k))])
            return self.mul(a, self.out(inv))
        return _Opaque("a division by a sum with a logarithm or an exponential")

    def power(self, a: Any, n: int) -> Any:
        if isinstance(a, Frac):
            return self.fpow(a, n)
        if n == 0:
            return self.space.const(1)
        base = a if n > 0 else self.div(self.space.const(1), a)
        out = base
        for _ in range(abs(n) - 1):
            if isinstance(out, _Opaque):
                return out
            out = self.mul(out, base)
        return out

    def exp(self, a: Any) -> Any:
        v = self.x(a)
        if v.exps or v.opaque:
            return _Opaque("exp of an exponential" if v.exps else "exp of a part it cannot hold")
        out = self.space.const(1)
        for atom, k in v.logs:
            n = _int_of(k)
            if n is None:
                return _Opaque("exp of a logarithm times something other than a whole number")
            if abs(n) > MAX_EXP_POWER:
                return _Opaque("exp of a large multiple of a logarithm")
            base = self._atom_frac(atom)
            # An atom is log|A|: exp(n log|A|) = |A|**n, which is A**n when n is even or A is never negative.
            if n % 2 and not structurally_positive(base):
                return _Opaque("exp of a logarithm of a factor whose sign is not known")
            out = self.fmul(out, self.fpow(base, n))
        if not v.rat.num:
            return out
        return self.out(XV(self.zero(), [], [(v.rat, out)]))

    def _atom_frac(self, atom: Atom) -> Frac:
        if atom[0] == "gen":
            return Frac(self.ring.gens[atom[1]])
        if atom[0] == "poly":
            return Frac(atom[1])
        c = atom[1]
        return self.space.const(sp.Rational(c.numerator, c.denominator))

    def log(self, a: Any) -> Any:
        if isinstance(a, Frac):
            return self.out(self._log_frac(a, self.zero()))
        if not a.logs and not a.opaque and not a.rat.num and len(a.exps) == 1:  # log(c e^R) = log c + R
            R, k = a.exps[0]
            return self.out(self._log_frac(k, R))
        self.unchecked_logs = True
        return _Opaque("log of a logarithm, or of a sum with an exponential")

    def _log_frac(self, F: Frac, rest: Frac) -> XV:
        """log F + rest, with F split into its factors (each logarithm of a factor is an atom)."""
        if not F.num:
            raise Undefined("is the log of 0 (its argument is 0 for every input)")
        c = _const_of(F)
        if c is not None and c <= 0:
            raise Undefined(f"is the log of a negative number ({c})")
        if _sign_structure(F) < 0:
            raise Undefined("is the log of a negative number for every input")
        self.log_args.append(F)
        return self._merge(XV(rest, [], []), self.log_abs(F))

    def log_abs(self, F: Frac) -> XV:
        """log |F| as atoms: the logarithms of its constant, of its generators and of its other factors (a
        factor with a positive leading coefficient, so that F and -F give the same atoms)."""
        logs: list[tuple[Atom, Frac]] = []
        const = Fraction(1)
        pieces = [(F.num, 1), *((p, -e) for p, e in F.den.values())]
        for poly, e in pieces:
            content, monomial, rest_poly = self.split(poly)
            const *= abs(content) ** e
            for i, n in enumerate(monomial):
                if n:
                    logs.append((("gen", i), self.space.const(n * e)))
            if not rest_poly.is_ground:
                logs.append((("poly", self.shared.get(rest_poly, rest_poly)), self.space.const(e)))
        if const != 1:
            logs.append((("const", const), self.space.const(1)))
        out = XV(self.zero(), [], [])
        for atom, k in logs:
            out = self._merge(out, XV(self.zero(), [(atom, k)], []))
        return out

    def summation(self, f: Callable[[int], Any]) -> Any:
        items = [f(m) for m in range(self.A.problem.classes)]  # type: ignore[arg-type]
        if all(isinstance(v, Frac) for v in items):
            keys = {tuple(sorted((k, e) for k, (_p, e) in v.den.items())) for v in items}
            if len(keys) == 1:  # one shared denominator (e.g. S for every p_m): add the numerators in one pass
                self.budget.spend(sum(len(v.num) for v in items))
                return Frac.sum(items, self.ring)
        total = items[0]
        for v in items[1:]:
            total = self.add(total, v)
        return total




def _split(poly: PolyElement) -> tuple[Fraction, tuple[int, ...], PolyElement]:
    """poly = content * monomial * rest, rest with integer coefficients of gcd 1, no monomial factor, and a
    positive leading coefficient (so that equal factors give equal atoms)."""
    terms = list(poly.iterterms())
    low = list(terms[0][0])
    for m, _c in terms[1:]:
        if not any(low):
            break
        low = [min(a, b) for a, b in zip(low, m)]
    monomial = tuple(low)
    coeffs = [Fraction(int(c.numerator), int(c.denominator)) for _m, c in terms]
    den = 1
    for c in coeffs:
        den = den * c.denominator // math.gcd(den, c.denominator)
    g = 0
    for c in coeffs:
        g = math.gcd(g, int(c * den))
    content = Fraction(g, den)
    lead = poly.LC
    if lead < 0:
        content = -content
    R = poly.ring
    if content == 1 and not any(monomial):
        return content, monomial, poly
    scale = R.domain(content.denominator, content.numerator)
    if not any(monomial):
        return content, monomial, R.from_dict({m: c * scale for m, c in terms})
    rest = R.from_dict({tuple(a - b for a, b in zip(m, monomial)): c * scale for m, c in terms})
    return content, monomial, rest


def _sign_structure(F: Frac) -> int:
    """+1 when F > 0 wherever defined on the domain (every polynomial with coefficients of one sign in
    variables that are never negative: u, y, w, q, eps, m, N, W), -1 when F < 0 likewise, 0 otherwise."""
    sign = 1
    for poly, e in [(F.num, 1), *F.den.values()]:
        signs = {c > 0 for c in poly.itercoeffs()}
        if len(signs) != 1:
            return 0
        if signs == {False} and e % 2:
            sign = -sign
    return sign


def structurally_positive(F: Frac) -> bool:
    return _sign_structure(F) > 0


# --------------------------------------------------------------------------
# The domain: which points are valid inputs
# --------------------------------------------------------------------------


@dataclass
class Domain:
    """Where the claim must equal the derivative: ``onehot`` (class indices: y is e_t, and the mask m is 0
    or 1), ``subs`` (probability rows summing to 1: y_C = 1 − y_1 − … − y_(C−1)), or everywhere."""

    onehot: bool
    y_index: list[int]
    mask_index: int | None
    subs: dict[int, Any]

    @property
    def discrete(self) -> set[int]:
        out = set(self.y_index) if self.onehot else set()
        if self.mask_index is not None:
            out.add(self.mask_index)
        return out


class _Groups:
    """A polynomial's terms grouped by the one y_t they contain (or none; terms with two are 0 at every
    one-hot y) and by whether the mask m appears, with y and m set to 1: its value at y = e_t, m = mv is
    the sum of at most four groups."""

    def __init__(self, poly: PolyElement, y_index: list[int], mask_index: int | None):
        self.groups: dict[tuple[int | None, bool], dict[tuple[int, ...], Any]] = {}
        for mon, c in poly.iterterms():
            t = None
            two = False
            for k, i in enumerate(y_index):
                if mon[i]:
                    if t is not None:
                        two = True
                        break
                    t = k
            if two:
                continue
            has_m = mask_index is not None and mon[mask_index] > 0
            m = list(mon)
            if t is not None:
                m[y_index[t]] = 0
            if has_m:
                m[mask_index] = 0  # type: ignore[index]
            g = self.groups.setdefault((t, has_m), {})
            key = tuple(m)
            g[key] = g.get(key, 0) + c
        self.base = {mv: self._merge([(None, False), (None, True)] if mv else [(None, False)]) for mv in (0, 1)}

    def _merge(self, keys: list[tuple[int | None, bool]]) -> dict[tuple[int, ...], Any]:
        acc: dict[tuple[int, ...], Any] = {}
        for key in keys:
            for mon, c in self.groups.get(key, {}).items():
                acc[mon] = acc.get(mon, 0) + c
        return {k: v for k, v in acc.items() if v}

    def zero_at(self, t: int | None, mv: int | None) -> bool:
        """Whether the polynomial is 0 at y = e_t (every y when t is None) and m = mv."""
        on = mv != 0
        base = self.base[1 if on else 0]
        own = [(t, False), (t, True)] if on else [(t, False)]
        size = sum(len(self.groups.get(k, {})) for k in own) if t is not None else 0
        if size == 0:
            return not base
        if size < len(base):  # too few terms to cancel every term of the rest
            return False
        acc = dict(base)
        for key in own:
            for mon, c in self.groups.get(key, {}).items():
                acc[mon] = acc.get(mon, 0) + c
        return not any(acc.values())


def _depends(poly: PolyElement, gens: set[int]) -> bool:
    return any(any(m[i] for i in gens) for m in poly.itermonoms())


def _frac_depends(f: Frac, gens: set[int]) -> bool:
    return any(_depends(p, gens) for p in [f.num, *(q for q, _e in f.den.values())])


def _atom_depends(atom: Atom, gens: set[int]) -> bool:
    if atom[0] == "gen":
        return atom[1] in gens
    if atom[0] == "poly":
        return _depends(atom[1], gens)
    return False


def const_log_parts(logs: Iterable[tuple[Fraction, Any]]) -> dict[int, Any]:
    """Σ coeff·log(c) over positive rationals c, as coefficients of logarithms of pairwise coprime integers
    (a coprime base): the logarithms of a coprime base are linearly independent over the rationals, so the
    sum is 0 exactly when every coefficient is."""
    items = [(c, k) for c, k in logs]
    base = coprime_base([n for c, _k in items for n in (c.numerator, c.denominator) if n > 1])
    out: dict[int, Any] = {}
    for c, k in items:
        for n, sgn in ((c.numerator, 1), (c.denominator, -1)):
            for b, e in factor_over(n, base):
                out[b] = out[b] + k * (sgn * e) if b in out else k * (sgn * e)
    return out


def coprime_base(numbers: list[int]) -> list[int]:
    """Pairwise coprime integers > 1 such that every number is a product of their powers."""
    base: list[int] = []
    for n in numbers:
        todo = [n]
        while todo:
            x = todo.pop()
            if x == 1:
                continue
            for i, b in enumerate(base):
                g = math.gcd(x, b)
                if g > 1:
                    base.pop(i)
                    todo += [g, b // g, x // g]
                    break
            else:
                base.append(x)
    return [b for b in base if b > 1]


def factor_over(n: int, base: list[int]) -> list[tuple[int, int]]:
    out = []
    for b in base:
        e = 0
        while n % b == 0:
            n //= b
            e += 1
        if e:
            out.append((b, e))
    assert n == 1, "a number that does not factor over its coprime base"
    return out


def vanishes(v: XV, dom: Domain, R: RingValues, targets: list[tuple[int | None, int | None]]
             ) -> tuple[list[tuple[int | None, int | None]], list[tuple[int | None, int | None]]]:
    """Where on the domain the exact value v (a claim minus the derivative) is not shown to be 0.

    Returns (failing, unsure) among ``targets`` — the (t, m) cases of class-index targets (y = e_t, mask
    m), or [(None, None)] — where ``failing`` means v is not 0 there as far as its exact form tells, and
    ``unsure`` means the test could not tell (a part the form cannot hold, a denominator or a logarithm's
    argument that is 0 there).
    """
    budget = R.budget
    if v.opaque:  # parts the exact form cannot hold, that do not cancel: nothing is known about them
        return [], list(targets)
    if _is_zero(v):
        return [], []
    restricted = _restricted_atoms(v, dom)
    if restricted:  # logarithms or exponentials of y or m: the value itself is taken at each case
        failing, unsure = [], []
        for t, mv in targets:
            w = _restrict_value(R, v, dom, t, mv)
            if w is None or w.opaque:
                unsure.append((t, mv))
            elif not _is_zero(w):
                failing.append((t, mv))
        return failing, unsure
    const_logs = [(a[1], k) for a, k in v.logs if a[0] == "const"]
    other_logs = [(a, k) for a, k in v.logs if a[0] != "const"]
    coeffs: list[Frac] = [v.rat, *(k for _a, k in other_logs), *(k for _R, k in v.exps)]
    # Constant logarithms: Σ k_c log c = Σ_b (Σ_c k_c e_cb) log b over a coprime base b.
    if const_logs:
        grouped = const_log_parts(const_logs)
        coeffs += [k for k in grouped.values() if isinstance(k, Frac)]
    if all(not c.num for c in coeffs):
        return [], []
    discrete = dom.discrete
    # From here on no atom depends on a variable the domain fixes: each coefficient must vanish on the domain.
    if dom.subs:
        for c in coeffs:
            if not c.num:
                continue
            budget.spend(compose_cost(c, dom.subs))
            try:
                if c.compose(dom.subs).num:
                    return list(targets), []
            except ZeroDivisionError:  # a denominator that is 0 wherever the targets sum to 1
                return [], list(targets)
        return [], []
    if not discrete:
        return list(targets), []
    failing, unsure = [], []
    views = []
    for c in coeffs:
        if not c.num:
            continue
        budget.spend((len(c.num) + sum(len(p) for p, _e in c.den.values())) * max(1, len(dom.y_index) // 8))
        dens = [_Groups(p, dom.y_index, dom.mask_index) for p, _e in c.den.values() if _depends(p, discrete)]
        views.append((_Groups(c.num, dom.y_index, dom.mask_index), dens))
    for t, mv in targets:
        verdict = None
        for num, dens in views:
            if any(d.zero_at(t, mv) for d in dens):  # a denominator 0 there (0/0 or a pole): cannot tell
                verdict = "unsure"
                continue
            if num.zero_at(t, mv):
                continue
            verdict = "failing"
            break
        if verdict == "failing":
            failing.append((t, mv))
        elif verdict == "unsure":
            unsure.append((t, mv))
    return failing, unsure


def _is_zero(v: XV) -> bool:
    """Every part 0: the rational part, each coefficient, and the constant logarithms over a coprime base."""
    if v.opaque or v.rat.num or v.exps:
        return False
    const_logs = [(a[1], k) for a, k in v.logs if a[0] == "const"]
    if len(const_logs) != len(v.logs):
        return False
    return all(not k.num for k in const_log_parts(const_logs).values())


def _restricted_atoms(v: XV, dom: Domain) -> bool:
    """Whether v has a logarithm or exponential of a variable the domain fixes (y for class indices or for
    rows summing to 1, the mask m)."""
    gens = dom.discrete | set(dom.subs)
    return any(_atom_depends(a, gens) for a, _k in v.logs) or any(_frac_depends(R, gens) for R, _k in v.exps)


def _restrict_frac(R: RingValues, f: Frac, dom: Domain, t: int | None, mv: int | None) -> Frac | None:
    """f at y = e_t and m = mv (class indices), or with y_C = 1 − Σ y (rows summing to 1); None when a
    denominator vanishes there."""
    try:
        if dom.subs:
            R.budget.spend(compose_cost(f, dom.subs))
            return f.compose(dom.subs)
        R.budget.spend((len(f.num) + sum(len(p) for p, _e in f.den.values())) * 2)
        num = _restrict_poly(f.num, dom.y_index, t, dom.mask_index, mv)
        out = Frac(num)
        for poly, e in f.den.values():
            d = _restrict_poly(poly, dom.y_index, t, dom.mask_index, mv)
            if not d:
                return None
            out = out / Frac(d**e)
        return out
    except ZeroDivisionError:
        return None


def positive_on(R: RingValues, F: Frac, dom: Domain, cases: list[tuple[int | None, int | None]]) -> bool:
    """Whether F > 0 wherever defined on the domain, by its signs alone: as it is, or at every case of the
    domain (y = e_t and m = 0 or 1 for class indices, y_C = 1 − Σ y for rows summing to 1)."""
    if structurally_positive(F):
        return True
    if not dom.subs and not (dom.discrete and _frac_depends(F, dom.discrete)):
        return False
    for t, mv in (cases if not dom.subs else [(None, None)]):
        G = _restrict_frac(R, F, dom, t, mv)
        if G is None or not G.num or not structurally_positive(G):
            return False
    return True


def _restrict_value(R: RingValues, v: XV, dom: Domain, t: int | None, mv: int | None) -> XV | None:
    """The exact value v at a case of the domain, its logarithms and exponentials rewritten again (log of a
    restricted argument split into atoms, log 1 = 0); None where something is undefined or 0/0 there."""
    rat = _restrict_frac(R, v.rat, dom, t, mv)
    if rat is None:
        return None
    out = XV(rat, [], [])
    try:
        for atom, k in v.logs:
            kk = _restrict_frac(R, k, dom, t, mv)
            arg = _restrict_frac(R, R._atom_frac(atom), dom, t, mv)
            if kk is None or arg is None:
                return None
            if not kk.num:
                continue
            if not arg.num:  # the log of 0 there
                return None
            out = R._merge(out, R._scale(R.log_abs(arg), kk))  # an atom is the log of an absolute value
        for Rexp, k in v.exps:
            kk = _restrict_frac(R, k, dom, t, mv)
            Rr = _restrict_frac(R, Rexp, dom, t, mv)
            if kk is None or Rr is None:
                return None
            if not kk.num:
                continue
            term = XV(kk, [], []) if not Rr.num else XV(R.zero(), [], [(Rr, kk)])
            out = R._merge(out, term)
    except Undefined:  # log of 0 or of a negative number at this case
        return None
    return out


def _restrict_poly(poly: PolyElement, y_index: list[int], t: int | None, mask_index: int | None,
                   mv: int | None) -> PolyElement:
    """poly at y = e_t (when t is given) and m = mv (when given)."""
    R = poly.ring
    keep = y_index[t] if t is not None else None
    ys = set(y_index) if t is not None else set()
    acc: dict[tuple[int, ...], Any] = {}
    for mon, c in poly.iterterms():
        m = list(mon)
        if any(m[i] and i != keep for i in ys):
            continue
        if keep is not None:
            m[keep] = 0
        if mask_index is not None and mv is not None and m[mask_index]:
            if mv == 0:
                continue
            m[mask_index] = 0
        key = tuple(m)
        acc[key] = acc.get(key, 0) + c
    return R.from_dict({k: c for k, c in acc.items() if c})


def difference(R: RingValues, claim: Any, target: Frac) -> XV:
    """claim − target as an exact value."""
    return R.x(R.sub(claim, target) if not isinstance(claim, Frac) else R.fadd(claim, -target))


# --------------------------------------------------------------------------
# Values at a point
# --------------------------------------------------------------------------


class Undef:
    """An undefined value at a point: ``why`` (e.g. "log of 0"), ``where`` (the part of the claim) and
    whether it is a genuine pole or domain error (``genuine``) or possibly removable (0/0)."""

    __slots__ = ("why", "where", "genuine")

    def __init__(self, why: str, genuine: bool, where: str = ""):
        self.why, self.genuine, self.where = why, genuine, where

    def text(self) -> str:
        return f"{self.why} in {self.where!r}" if self.where else self.why


def to_sympy(v: Any) -> sp.Expr:
    return sp.Rational(v.numerator, v.denominator) if isinstance(v, Fraction) else v


def _from_sympy(e: sp.Expr) -> Any:
    if e.is_Rational:
        return Fraction(int(e.p), int(e.q))
    return e


def _log_linear(e: sp.Expr) -> tuple[Fraction, list[tuple[Fraction, Fraction]]] | None:
    """e = r + Σ k·log(c) with rational r, k and positive rational c, or None."""
    r = Fraction(0)
    logs: list[tuple[Fraction, Fraction]] = []
    for term in sp.Add.make_args(e):
        if term.is_Rational:
            r += Fraction(int(term.p), int(term.q))
            continue
        coeff, rest = term.as_coeff_Mul()
        if isinstance(rest, sp.log) and rest.args[0].is_Rational and rest.args[0] > 0 and coeff.is_Rational:
            c = rest.args[0]
            logs.append((Fraction(int(c.p), int(c.q)), Fraction(int(coeff.p), int(coeff.q))))
            continue
        return None
    return r, logs


def sign(v: Any) -> int | None:
    """-1, 0 or 1 for a defined value at a point; None when it cannot be decided without doubt.

    The terms that are rationals or rational multiples of logarithms of rationals are summed exactly (over a
    coprime base: a nonzero combination of such logarithms is irrational, so never cancels a rational); the
    sign of what remains comes from SymPy's ``evalf`` with ``strict=True``, which gives up (None here) rather
    than return digits it cannot vouch for, as it must for a value that is exactly 0."""
    if isinstance(v, Fraction):
        return (v > 0) - (v < 0)
    if isinstance(v, Big):
        return v.sign
    linear: list[sp.Expr] = []
    rest: list[sp.Expr] = []
    for term in sp.Add.make_args(v):
        (linear if _log_linear(term) is not None else rest).append(term)
    lin = _log_linear(sp.Add(*linear))
    assert lin is not None
    r, logs = lin
    logs_vanish = all(k == 0 for k in const_log_parts(logs).values())
    if not rest and logs_vanish:
        return (r > 0) - (r < 0)
    value = sp.Add(to_sympy(r), *rest) if logs_vanish else v
    try:
        x = sp.N(value, 30, strict=True, maxn=POINT_DPS * 8)
    except (ValueError, TypeError, ArithmeticError, RecursionError):  # PrecisionExhausted is an ArithmeticError
        return None
    if not x.is_Number or not x.is_real or x.is_infinite or x == 0:
        return None
    return 1 if x > 0 else -1


def numeric(v: Any, digits: int = 30) -> sp.Float:
    return sp.N(to_sympy(v), digits)


class Big:
    """A value too large to expand exactly: a real number of known ``sign`` with ln|value| >= ``bound``,
    kept as an unevaluated SymPy expression (``expr``). Arithmetic keeps a lower bound on its size (a sum
    with a much smaller number, a product with a number of known size and sign, a whole power); a value
    that may no longer be huge, or whose sign is unknown, becomes :class:`Undef`."""

    __slots__ = ("sign", "expr", "bound")

    def __init__(self, sign: int, expr: sp.Expr, bound: float):
        self.sign, self.expr, self.bound = sign, expr, bound


BIG_KEPT = 300.0  # a Big must stay beyond e**300 (about 1e130); the derivative at a point is far smaller


def _ln_size(v: Any) -> tuple[float, float] | None:
    """(lower, upper) bounds on ln|v| for a defined nonzero value that is not Big; None if unknown."""
    try:
        if isinstance(v, Fraction):
            x = math.log(abs(v.numerator)) - math.log(v.denominator)
        else:
            x = float(mpmath.log(abs(sp.N(v, 15)._to_mpmath(60))))
    except (ValueError, TypeError, ArithmeticError, AttributeError, OverflowError):
        return None
    if x != x or abs(x) == float("inf"):
        return None
    return x - 1, x + 1


def text(v: Any) -> str:
    """A value as SymPy-parsable text (exact; an unevaluated expression for a :class:`Big`)."""
    expr = v.expr if isinstance(v, Big) else to_sympy(v)
    with _long_ints():
        return str(sp.sstr(expr, order="none"))


class _long_ints:
    """Lift Python's limit on the digits of int -> str conversion while printing exact numbers."""

    def __enter__(self) -> None:
        import sys

        get = getattr(sys, "get_int_max_str_digits", None)
        self.before = get() if get is not None else None
        if self.before is not None:
            sys.set_int_max_str_digits(0)

    def __exit__(self, *exc: object) -> None:
        import sys

        if self.before is not None:
            sys.set_int_max_str_digits(self.before)


def _estimate(v: Any) -> Any:
    """A 15-digit estimate of a defined, not Big value (Fractions exactly)."""
    return v if isinstance(v, Fraction) else sp.N(v, 15)


class PointAlgebra(claims.Algebra):
    """Claim values at one exact point: Fractions while rational, exact SymPy numbers otherwise, :class:`Big`
    past e**EXACT_EXP_LIMIT, :class:`Undef` where a division by zero or the log of a number <= 0 occurs (or a
    size or sign cannot be decided). ``undefined`` lists those events."""

    def __init__(self, values: dict[str, list[Any]], scalars: dict[str, Any]):
        self.values = values
        self.scalars = scalars
        self.C = len(values["p"])
        self.undefined: list[Undef] = []

    def const(self, value: int | float) -> Fraction:
        return Fraction(repr(value)) if isinstance(value, float) else Fraction(value)

    def seen(self, node: Any, value: Any, index: Any) -> Any:
        if isinstance(value, Undef) and not value.where:
            value.where = claims.unparse(node)
        return value

    def vector(self, name: str, k: int) -> Any:
        return self.values[name][k]

    def scalar(self, name: str) -> Any:
        return self.scalars[name]

    def summation(self, f: Callable[[int], Any]) -> Any:
        """Rational terms are added exactly, the others collected into one SymPy sum (not C nested ones)."""
        rational = Fraction(0)
        others: list[Any] = []
        for m in range(self.C):
            v = f(m)
            if isinstance(v, Undef):
                return v
            if isinstance(v, Fraction):
                rational += v
            else:
                others.append(v)
        if not others:
            return rational
        if any(isinstance(v, Big) for v in others):
            total: Any = rational
            for v in others:
                total = self.add(total, v)
            return total
        return _from_sympy(sp.Add(to_sympy(rational), *others))

    def _undef(self, why: str, genuine: bool) -> Undef:
        u = Undef(why, genuine)
        self.undefined.append(u)
        return u

    @staticmethod
    def _op(a: Any, b: Any, f: Callable[[Any, Any], Any]) -> Any:
        if isinstance(a, Fraction) and isinstance(b, Fraction):
            return f(a, b)
        return _from_sympy(f(to_sympy(a), to_sympy(b)))

    def _big(self, sign: int, expr: sp.Expr, bound: float) -> Any:
        if bound < BIG_KEPT:
            return self._undef("a number too large to expand exactly, whose size is no longer known", genuine=False)
        return Big(sign, expr, bound)

    def add(self, a: Any, b: Any) -> Any:
        if isinstance(a, Undef) or isinstance(b, Undef):
            return a if isinstance(a, Undef) else b
        if isinstance(a, Big) and isinstance(b, Big):
            if a.sign != b.sign:
                return self._undef("a difference of two numbers too large to compare", genuine=False)
            return Big(a.sign, sp.Add(a.expr, b.expr, evaluate=False), max(a.bound, b.bound))
        if isinstance(a, Big) or isinstance(b, Big):
            big, other = (a, b) if isinstance(a, Big) else (b, a)
            size = _ln_size(other) if sign(other) != 0 else (-math.inf, -math.inf)
            if size is None or size[1] > big.bound - 2:  # the other term might matter
                return self._undef("a sum of a very large number and one of comparable size", genuine=False)
            return Big(big.sign, sp.Add(big.expr, _expr(other), evaluate=False), big.bound - 1)
        return self._op(a, b, lambda x, y: x + y)

    def neg(self, a: Any) -> Any:
        if isinstance(a, Undef):
            return a
        if isinstance(a, Big):
            return Big(-a.sign, sp.Mul(-1, a.expr, evaluate=False), a.bound)
        return -a

    def sub(self, a: Any, b: Any) -> Any:
        return self.add(a, self.neg(b))

    def mul(self, a: Any, b: Any) -> Any:
        if isinstance(a, Undef) or isinstance(b, Undef):
            return a if isinstance(a, Undef) else b
        if isinstance(a, Big) and isinstance(b, Big):
            return Big(a.sign * b.sign, sp.Mul(a.expr, b.expr, evaluate=False), a.bound + b.bound)
        if isinstance(a, Big) or isinstance(b, Big):
            big, other = (a, b) if isinstance(a, Big) else (b, a)
            s = sign(other)
            if s == 0:
                return Fraction(0)  # 0 times a (finite) number
            size = _ln_size(other) if s is not None else None
            if s is None or size is None:
                return self._undef("a product of a very large number and one of unknown size", genuine=False)
            return self._big(big.sign * s, sp.Mul(big.expr, _expr(other), evaluate=False), big.bound + size[0])
        return self._op(a, b, lambda x, y: x * y)

    def div(self, a: Any, b: Any) -> Any:
        if isinstance(a, Undef) or isinstance(b, Undef):
            return a if isinstance(a, Undef) else b
        sb = sign(b)
        if sb == 0:
            sa = sign(a)
            return self._undef("division by zero" if sa != 0 else "0/0", genuine=sa not in (0, None))
        if sb is None:
            return self._undef("a denominator too close to 0 to decide", genuine=False)
        if isinstance(b, Big):
            if sign(a) == 0:
                return Fraction(0)
            return self._undef("a quotient too small to evaluate exactly", genuine=False)
        if isinstance(a, Big):
            size = _ln_size(b)
            if size is None:
                return self._undef("a quotient of a very large number by one of unknown size", genuine=False)
            return self._big(a.sign * sb, sp.Mul(a.expr, sp.Pow(to_sympy(b), -1, evaluate=False),
                                                 evaluate=False), a.bound - size[1])
        return self._op(a, b, lambda x, y: x / y)

    def power(self, a: Any, n: int) -> Any:
        if isinstance(a, Undef):
            return a
        if n < 0:
            return self.div(Fraction(1), self.power(a, -n))
        if n == 0:
            return Fraction(1)
        if isinstance(a, Big):
            return Big(a.sign**n, sp.Pow(a.expr, n, evaluate=False), a.bound * n)
        if isinstance(a, Fraction):
            return a**n
        return _from_sympy(to_sympy(a) ** n)

    def exp(self, a: Any) -> Any:
        if isinstance(a, Undef):
            return a
        if isinstance(a, Big):
            if a.sign > 0:
                return Big(1, sp.exp(a.expr, evaluate=False), math.exp(min(a.bound, 700.0)))
            return self._undef("exp of a very large negative number (too small to evaluate exactly)", genuine=False)
        if isinstance(a, Fraction) and a == 0:
            return Fraction(1)
        e = to_sympy(a)
        x = _estimate(a)
        if x > EXACT_EXP_LIMIT:
            return Big(1, sp.exp(e, evaluate=False), float(x) - 1)
        if x < -EXACT_EXP_LIMIT and (e.has(sp.log) or x < -(10**30)):
            # exp(n log r) would expand to r**n (too many digits), or too small even for a 60-digit estimate
            return self._undef("exp of a very large negative number (too small to evaluate exactly)", genuine=False)
        return _from_sympy(sp.exp(e))

    def log(self, a: Any) -> Any:
        if isinstance(a, Undef):
            return a
        s = sign(a)
        if s == 0:
            return self._undef("log of 0", genuine=True)
        if s is None:
            return self._undef("log of a number too close to 0 to decide its sign", genuine=False)
        if s < 0:
            return self._undef("log of a negative number", genuine=True)
        if isinstance(a, Big):
            return self._undef("log of a very large number", genuine=False)
        if isinstance(a, Fraction) and a == 1:
            return Fraction(0)
        return _from_sympy(sp.log(to_sympy(a)))

    def tanh(self, a: Any) -> Any:
        if isinstance(a, Undef):
            return a
        if isinstance(a, Big):
            return Fraction(a.sign)  # beyond e**300: tanh is ±1 to far more digits than any value compared
        if isinstance(a, Fraction) and a == 0:
            return Fraction(0)
        return _from_sympy(sp.tanh(to_sympy(a)))


def _expr(v: Any) -> sp.Expr:
    return v.expr if isinstance(v, Big) else to_sympy(v)


class PointQ(Q.Algebra):
    """The loss quantities at one exact point (Fractions): the derivative's closed form evaluated there."""

    def __init__(self, problem: Any, values: dict[str, list[Any]], scalars: dict[str, Any]):
        self.problem = problem
        self.space = "z"
        self.C = Fraction(len(values["p"]))
        self.vals = values
        self.eps = scalars.get("eps", Fraction(0))
        self.mask = scalars.get("m", Fraction(1))
        self.den = scalars.get("W", scalars.get("N", Fraction(1)))
        self.zden = scalars.get("N", self.den)  # N; with class weights and a z-loss, the z-loss's own
        self.rest = Fraction(0)
        self.lam = scalars.get("lam", Fraction(0))
        self.cap = scalars.get("cap", Fraction(1))
        self.temp = scalars.get("T", Fraction(1))
        self._lse = scalars.get("lse", Fraction(0))

    def lse(self) -> Any:
        return self._lse

    def tanh(self, m: Any) -> Any:
        return self.vals["t"][m]

    def y(self, m: Any) -> Any:
        return self.vals["y"][m]

    def w(self, m: Any) -> Any:
        return self.vals["w"][m]

    def q(self, m: Any) -> Any:
        return self.vals["q"][m]

    def p(self, m: Any) -> Any:
        return self.vals["p"][m]

    def sigma(self, m: Any) -> Any:
        return self.vals["p"][m]

    def sum(self, f: Callable[[Any], Any]) -> Any:
        total: Any = Fraction(0)
        for m in range(len(self.vals["p"])):
            total = total + f(m)
        return total

    def delta(self, a: Any, b: Any) -> int:
        return 1 if a == b else 0
