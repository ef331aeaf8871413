r"""Exact calculus over exponentials of the logits, with predictable zero tests.

Write :math:`u_k = e^{z_k} > 0`. Softmax, sigmoid and their derivatives are
rational functions of the :math:`u_k` (and of targets, weights, ...), and
:math:`\partial/\partial z_j = u_j\,\partial/\partial u_j`.

A :class:`Frac` is a numerator polynomial over a denominator kept as a product
of polynomial *factors* with exponents, all in one sparse polynomial ring
over the rationals (:mod:`xentcli.symbolic.poly`, FLINT's ``fmpq_mpoly``). Keeping the denominator
factored (the softmax normaliser S appears as the factor S, never expanded
into S**2) keeps every check small; monomial factors such as u_i are
cancelled exactly. Two fractions are equal exactly when their numerators,
brought to the least common multiple of the factored denominators, are the
same polynomial. There is no ``simplify`` anywhere: a check reduces to the
zero polynomial or it fails.

A :class:`LogSum` is ``sum_k c_k * log(f_k) + rest`` with polynomial ``f_k``
and coefficients free of the logits; its derivative is again a :class:`Frac`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sympy as sp

from .poly import Poly as PolyElement
from .poly import PolyRing

__all__ = ["Frac", "LogSum", "Space", "is_zero_expr"]


class Space:
    """The polynomial ring of one derivation: u_1..u_C (= e^{z_k}) plus parameter symbols."""

    def __init__(self, exp_symbols: Sequence[sp.Symbol], params: Sequence[sp.Symbol],
                 normaliser: sp.Symbol | None = None, logit_symbols: Sequence[sp.Symbol] = ()):
        self.u_symbols = list(exp_symbols)
        self.param_symbols = list(params)
        # logit_symbols: further generators that depend on the logits (tanh(z_k / cap), lse), before 1/S
        self.symbols = self.u_symbols + self.param_symbols + list(logit_symbols) + \
            ([normaliser] if normaliser is not None else [])
        self.ring = PolyRing(self.symbols)
        elems = self.ring.gens
        self.u: list[PolyElement] = elems[: len(self.u_symbols)]
        self.gen: dict[sp.Symbol, PolyElement] = dict(zip(self.symbols, elems))
        self._u_index = list(range(len(self.u_symbols)))
        start = len(self.u_symbols) + len(self.param_symbols)
        self.logit_extra = list(range(start, start + len(logit_symbols)))  # tanh(z_k / cap), lse
        self.inverse_S: PolyElement | None = None
        if normaliser is not None:
            # A generator of its own that stands for 1/S = 1/(u_1 + ... + u_C): softmax is the
            # polynomial u_i * (1/S), so no denominator has to be carried or multiplied out; d/dz_j
            # reaches it by the chain rule (PolyRing.dz), and an equality that needs 1/S times S to
            # be 1 is decided after clearing it (PolyRing.clear_inverse).
            self.inverse_S = elems[-1]
            self.ring.inverse = (len(elems) - 1, self.ring.add(self.u))

    def const(self, value: int | sp.Rational) -> Frac:
        return Frac(constant(self.ring, value))

    def sym(self, symbol: sp.Symbol) -> Frac:
        return Frac(self.gen[symbol])

    def poly(self, expr: sp.Expr) -> PolyElement:
        return self.ring.from_expr(sp.expand(expr))

    def from_expr(self, expr: sp.Expr) -> Frac:
        """A rational expression in the ring's generators (exp(z_k) must already be u_k).

        Raises ``ValueError`` when the expression is not rational in them.
        """
        num, den = sp.fraction(sp.together(expr))
        try:
            return Frac(self.poly(num)) / Frac(self.poly(den))
        except (ValueError, TypeError, sp.PolynomialError, sp.CoercionFailed) as exc:
            raise ValueError(f"not a rational function of the derivation's symbols: {exc}") from None

    def depends_on_logits(self, p: PolyElement) -> bool:
        if p.is_ground:
            return False
        degrees = p.degrees()
        inverse = self.ring.inverse
        return any(d > 0 for d in degrees[: len(self.u)]) or (inverse is not None and degrees[inverse[0]] > 0) \
            or any(degrees[i] > 0 for i in self.logit_extra)


def _compose(p: PolyElement, subs: dict[int, PolyElement]) -> PolyElement:
    """``p`` with generator number i replaced by ``subs[i]``; ``p`` itself when untouched."""
    for i, g in subs.items():
        p = p.compose_one(i, g)
    return p


def constant(ring: PolyRing, value: int | sp.Rational) -> PolyElement:
    """A number as a ground element of ``ring`` (without going through SymPy expressions)."""
    return ring.ground_new(value if isinstance(value, int) else sp.Rational(value))


class Frac:
    """``num / prod(factor ** exp)``: a rational function with a factored denominator.

    Factors are identified by object identity (the same polynomial object is
    reused wherever it occurs, e.g. the normaliser S); two different objects
    that happen to be equal polynomials are simply both kept, which costs
    time but never correctness.
    """

    __slots__ = ("num", "den")

    def __init__(self, num: PolyElement, den: dict[int, tuple[PolyElement, int]] | None = None):
        self.num = num
        self.den: dict[int, tuple[PolyElement, int]] = {} if den is None else den
        self._normalise()

    # -- construction helpers -------------------------------------------------

    @staticmethod
    def over(num: PolyElement, *factors: tuple[PolyElement, int] | PolyElement) -> Frac:
        den: dict[int, tuple[PolyElement, int]] = {}
        for f in factors:
            poly, e = f if isinstance(f, tuple) else (f, 1)
            prev = den.get(id(poly))
            den[id(poly)] = (poly, e + (prev[1] if prev else 0))
        return Frac(num, den)

    def _normalise(self) -> None:
        """Fold constant factors into the numerator and cancel monomial factors."""
        if not self.den:
            return
        for key in list(self.den):
            poly, e = self.den[key]
            if poly.is_ground:
                c = poly.LC
                if c == 0:
                    raise ZeroDivisionError("a zero factor in a denominator")
                self.num = self.num * (1 / c**e) if e else self.num
                del self.den[key]
            elif poly.is_monomial and self.num:
                while e:
                    q = self.num.exquo(poly)
                    if q is None:
                        break
                    self.num = q
                    e -= 1
                if e:
                    self.den[key] = (poly, e)
                else:
                    del self.den[key]

    @property
    def ring(self) -> PolyRing:
        return self.num.ring

    @staticmethod
    def polynomial(num: PolyElement) -> Frac:
        """A fraction with denominator 1 (nothing to normalise)."""
        out = Frac.__new__(Frac)
        out.num, out.den = num, {}
        return out

    def _lift(self, other: Frac | int | sp.Rational) -> Frac:
        if isinstance(other, Frac):
            return other
        return Frac.polynomial(constant(self.ring, other))

    @staticmethod
    def _foreign(other: object) -> bool:
        """An operand Frac leaves to the other class (a LogSum)."""
        return isinstance(other, LogSum)

    # -- arithmetic -----------------------------------------------------------

    @staticmethod
    def _lcm(a: Frac, b: Frac) -> dict[int, tuple[PolyElement, int]]:
        out = dict(a.den)
        for k, (poly, e) in b.den.items():
            if k not in out or out[k][1] < e:
                out[k] = (poly, e)
        return out

    def _raised(self, target: dict[int, tuple[PolyElement, int]]) -> PolyElement:
        num = self.num
        for k, (poly, e) in target.items():
            have = self.den.get(k, (poly, 0))[1]
            for _ in range(e - have):
                num = num * poly
        return num

    def __add__(self, other: Frac | int) -> Frac:
        if self._foreign(other):
            return NotImplemented
        o = self._lift(other)
        if not o.num:
            return self
        if not self.num:
            return o
        if not self.den and not o.den:
            return Frac.polynomial(self.num + o.num)
        L = self._lcm(self, o)
        return Frac(self._raised(L) + o._raised(L), dict(L))

    __radd__ = __add__

    def __neg__(self) -> Frac:
        out = Frac.__new__(Frac)  # the same denominator, already normalised
        out.num, out.den = -self.num, dict(self.den)
        return out

    def __sub__(self, other: Frac | int) -> Frac:
        if self._foreign(other):
            return NotImplemented
        return self + (-self._lift(other))

    def __rsub__(self, other: Frac | int) -> Frac:
        return self._lift(other) - self

    def __mul__(self, other: Frac | int) -> Frac:
        if self._foreign(other):
            return NotImplemented
        o = self._lift(other)
        if not self.den and not o.den:
            return Frac.polynomial(self.num * o.num)
        den = dict(self.den)
        for k, (poly, e) in o.den.items():
            den[k] = (poly, e + den.get(k, (poly, 0))[1])
        return Frac(self.num * o.num, den)

    __rmul__ = __mul__

    def __truediv__(self, other: Frac | int) -> Frac:
        o = self._lift(other)
        if not o.num:
            raise ZeroDivisionError("division by the zero rational function")
        num = self.num
        for poly, e in o.den.values():
            for _ in range(e):
                num = num * poly
        den = dict(self.den)
        prev = den.get(id(o.num))
        den[id(o.num)] = (o.num, 1 + (prev[1] if prev else 0))
        return Frac(num, den)

    def __rtruediv__(self, other: Frac | int) -> Frac:
        return self._lift(other) / self

    @staticmethod
    def sum(items: Iterable[Frac], ring: PolyRing) -> Frac:
        """Sum many fractions: numerators over the same factored denominator are added in one pass."""
        groups: dict[tuple[tuple[int, int], ...], tuple[list[PolyElement], dict[int, tuple[PolyElement, int]]]] = {}
        for f in items:
            key = tuple(sorted((k, e) for k, (_p, e) in f.den.items()))
            nums, _den = groups.setdefault(key, ([], f.den))
            nums.append(f.num)
        total = Frac(ring.zero)
        for nums, den in groups.values():
            total = total + Frac(ring.add(nums), dict(den))
        return total

    # -- tests ----------------------------------------------------------------

    def is_zero(self) -> bool:
        return not self.num

    def equals(self, other: Frac | int) -> bool:
        """Exact equality as rational functions (numerators over a common denominator)."""
        o = self._lift(other)
        L = self._lcm(self, o)
        diff = self._raised(L) - o._raised(L)
        if not diff:
            return True
        # Equal as polynomials in free generators is sufficient; otherwise decide after writing out the
        # generator that stands for 1/S (the common denominator is a product of non-zero factors).
        return self.ring.inverse is not None and not self.ring.clear_inverse(diff)

    # -- calculus -------------------------------------------------------------

    def du(self, index: int) -> Frac:
        """Partial derivative by the ring generator number ``index`` (quotient rule, factor by factor)."""
        return self.derive(lambda p: p.diff(index))

    def derive(self, D: Callable[[PolyElement], PolyElement]) -> Frac:
        """The derivation ``D`` (a linear map on polynomials with the product rule) applied to the fraction."""
        d_num = D(self.num)
        moving = []
        for k, (poly, e) in self.den.items():
            d = D(poly)
            if d:
                moving.append((k, poly, e, d))
        if not moving:
            return Frac(d_num, dict(self.den))
        if len(moving) == 1:
            _k, f, e, fd = moving[0]
            num = d_num * f if d_num else d_num
            term = self.num * fd.LC if fd.is_ground else self.num * fd
            if e != 1:
                term = term * e
            num = num - term
        else:
            G = moving[0][1]
            for _k, poly, _e, _d in moving[1:]:
                G = G * poly
            num = d_num * G if d_num else d_num
            for k, _poly, e, d in moving:
                rest = None
                for k2, poly2, _e2, _d2 in moving:
                    if k2 != k:
                        rest = poly2 if rest is None else rest * poly2
                term = self.num * d
                if e != 1:
                    term = term * e
                num = num - (term * rest if rest is not None else term)
        den = dict(self.den)
        for k, poly, e, _d in moving:
            den[k] = (poly, e + 1)
        return Frac(num, den)

    def dz(self, index: int) -> Frac:
        """Derivative by z_j where u_j = e^{z_j} is generator number ``index``: u_j * d/du_j (and through
        the generator that stands for 1/S, if the ring has one)."""
        ring = self.ring
        if ring.rules is not None:
            return _unscaled(self.derive(lambda p: ring.dz(p, index)))
        if ring.inverse is None:
            d = self.du(index)
            return Frac(d.num * ring.gens[index], d.den)
        return self.derive(lambda p: ring.dz(p, index))

    def compose(self, subs: dict[int, PolyElement]) -> Frac:
        """Substitute polynomials for generators by number, e.g. y_C = 1 - y_1 - ... - y_{C-1}.

        Factors that do not contain a substituted generator are kept as they
        are (the same objects), so shared denominators stay shared.
        """
        out = Frac(_compose(self.num, subs))
        den: dict[int, tuple[PolyElement, int]] = {}
        extra = []
        for k, (poly, e) in self.den.items():
            new = _compose(poly, subs)
            if new is poly:
                den[k] = (poly, e)
            else:
                extra.append((new, e))
        out = Frac(out.num, den)
        for poly, e in extra:
            out = out / Frac(poly**e)
        return out

    def as_expr(self, *symbols: sp.Symbol) -> sp.Expr:
        ring = self.ring
        if ring.inverse is not None and len(symbols) == ring.ngens - 1:  # 1/S written out in the others
            t = sp.Dummy("T")
            r, base = ring.inverse
            gens = [*symbols[:r], t, *symbols[r:]]
            return self.as_expr(*gens).xreplace({t: 1 / base.as_expr(*gens)})
        den = sp.Mul(*[poly.as_expr(*symbols) ** e for poly, e in self.den.values()])
        return self.num.as_expr(*symbols) / den

    def evaluate(self, values: dict[PolyElement, object]) -> object:
        """Value at a point (exact for rational inputs): {generator: value}."""
        gens = self.ring.gens
        point: list[Any] = [values.get(g, 0) for g in gens]
        if self.ring.inverse is not None:  # 1/S = 1/(u_1 + ... + u_C) at this point
            r, base = self.ring.inverse
            point[r] = 1 / Frac(base).evaluate(values)  # type: ignore[operator]

        def ev(p: PolyElement) -> Any:
            total = 0
            for mon, coeff in p.iterterms():
                term = sp.Rational(coeff.numerator, coeff.denominator)
                for x, e in zip(point, mon):
                    if e:
                        term = term * x**e
                total = total + term
            return total

        value = ev(self.num)
        for poly, e in self.den.values():
            value = value / ev(poly) ** e
        return value

    def __repr__(self) -> str:
        return f"Frac({self.num!r} / {[(p, e) for p, e in self.den.values()]!r})"


class LogSum:
    """``sum_k coeff_k * log(poly_k) + rest`` with logit-free coefficients and positive ``poly_k``.

    The logarithms of constants are dropped (they do not depend on the logits), so a LogSum is
    exact for what its derivatives say, not for its value. It supports the arithmetic a loss is
    built with: sums, and products with logit-free fractions.
    """

    def __init__(self, space: Space):
        self.space = space
        self._terms: dict[PolyElement, Frac] = {}  # poly -> coefficient of log(poly)
        self.rest: Frac | None = None

    @property
    def terms(self) -> list[tuple[Frac, PolyElement]]:
        return [(c, p) for p, c in self._terms.items()]

    def copy(self) -> LogSum:
        out = LogSum(self.space)
        out._terms = dict(self._terms)
        out.rest = self.rest
        return out

    def add_log(self, coeff: Frac, arg: Frac) -> LogSum:
        """Add ``coeff * log(arg)`` using log(a/b) = log a - log b for positive factors, and
        log(c x^a y^b) = a log x + b log y + log c for a monomial (e.g. log p_i = log u_i + log(1/S))."""
        gens = self.space.ring.gens
        for poly, e in [(arg.num, 1), *[(p, -e) for p, e in arg.den.values()]]:
            if poly.is_ground:
                continue  # log of a constant: no dependence on z
            self._check_free(coeff)
            parts = [(poly, e)]
            if poly.is_monomial:
                (mon,) = poly.itermonoms()
                parts = [(gens[k], e * a) for k, a in enumerate(mon) if a]
            for factor, power in parts:
                prev = self._terms.get(factor)
                self._terms[factor] = coeff * power if prev is None else prev + coeff * power
        return self

    def add(self, rest: Frac) -> LogSum:
        self.rest = rest if self.rest is None else self.rest + rest
        return self

    def _check_free(self, coeff: Frac) -> None:
        parts = [coeff.num, *[p for p, _ in coeff.den.values()]]
        if any(self.space.depends_on_logits(p) for p in parts):
            raise ValueError("a log coefficient depends on the logits")

    def scaled(self, factor: Frac | int | sp.Rational) -> LogSum:
        out = LogSum(self.space)
        out._terms = {p: c * factor for p, c in self._terms.items()}
        out.rest = None if self.rest is None else self.rest * factor
        return out

    # -- arithmetic (a loss is a sum of coefficients times logarithms)
    def __add__(self, other: LogSum | Frac | int) -> LogSum:
        out = self.copy()
        if isinstance(other, LogSum):
            for p, c in other._terms.items():
                prev = out._terms.get(p)
                out._terms[p] = c if prev is None else prev + c
            if other.rest is not None:
                out.add(other.rest)
            return out
        return out.add(other if isinstance(other, Frac) else self.space.const(other))

    __radd__ = __add__

    def __neg__(self) -> LogSum:
        return self.scaled(-1)

    def __sub__(self, other: LogSum | Frac | int) -> LogSum:
        return self + (-other)

    def __rsub__(self, other: Frac | int) -> LogSum:
        return (-self) + other

    def __mul__(self, other: Frac | int | sp.Rational) -> LogSum:
        if isinstance(other, LogSum):
            raise ValueError("a product of logarithms is not a LogSum")
        if isinstance(other, Frac):
            self._check_free(other)
        return self.scaled(other)

    __rmul__ = __mul__

    def __truediv__(self, other: Frac | int | sp.Rational) -> LogSum:
        if isinstance(other, Frac):
            self._check_free(other)
            return self.scaled(1 / other)
        return self.scaled(sp.Rational(1) / sp.Rational(other))

    # -- calculus
    def du(self, index: int) -> Frac:
        """Partial derivative by the ring generator number ``index`` (the logs' arguments only)."""
        total = self.space.const(0) if self.rest is None else self.rest.du(index)
        for poly, coeff in self._terms.items():
            d = poly.diff(index)
            if d:
                total = total + coeff * Frac.over(d, poly)
        return total

    def dz(self, index: int) -> Frac:
        """Derivative by z_j (u_j = e^{z_j} is generator number ``index``)."""
        total = self.space.const(0) if self.rest is None else self.rest.dz(index)
        ring = self.space.ring
        for poly, coeff in self._terms.items():
            d = ring.dz(poly, index)
            if d:
                term = coeff * Frac.over(d, poly)
                total = total + (_unscaled(term) if ring.rules is not None else term)
        return total


_SCALES: dict[int, tuple[PolyElement, Frac]] = {}


def _unscaled(f: Frac) -> Frac:
    """A derivative taken with a ring's ``rules``, divided by the ring's ``scale`` (one shared factor)."""
    scale = f.ring.scale
    if scale is None or scale == 1:
        return f
    known = _SCALES.get(id(scale))
    if known is None or known[0] is not scale:
        known = _SCALES[id(scale)] = (scale, Frac(scale))
    return f / known[1] if not scale.is_ground else f * Frac.polynomial(scale.ring.ground_new(1 / scale.LC))


def is_zero_expr(expr: sp.Expr) -> bool:
    """Decide ``expr == 0`` for a rational expression by ``together`` + ``expand`` of the numerator.

    Only predictable operations are used; anything that does not reduce to the
    literal 0 is reported as not zero.
    """
    num, _den = sp.fraction(sp.together(sp.expand(expr)))
    return bool(sp.expand(num) == 0)
