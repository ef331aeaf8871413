"""Sparse multivariate polynomials over the rationals, computed by FLINT (``python-flint``).

The concrete backend decides every identity by comparing polynomials in the
exponentials u_k = e^{z_k}, the targets and the parameters: several hundred
variables at C = 200. SymPy's own sparse polynomials (:mod:`sympy.polys.rings`)
store each monomial as a Python tuple of all the exponents, so one product
costs time in proportion to the number of variables, in Python; FLINT's
``fmpq_mpoly`` packs the exponents and multiplies in C, which is what makes
C = 200 a matter of seconds.

:class:`Poly` offers the small part of SymPy's ``PolyElement`` interface the
package uses (arithmetic, ``diff``, ``LC``, ``is_ground``, ``iterterms``,
``itermonoms``, ``as_expr``) so that the algebra reads the same either way.
Polynomials are hashable by value (FLINT's are not), as the algebra keys
logarithms by their argument. Exponent tuples are dense, in the order of the
ring's symbols; coefficients are FLINT rationals (``fmpq``, with
``numerator``/``denominator``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from fractions import Fraction
from typing import Any

import flint
import sympy as sp

__all__ = ["Poly", "PolyRing", "to_fmpq"]

Scalar = Any  # int, Fraction, sympy Rational or flint fmpq


def to_fmpq(value: Scalar) -> Any:
    """An exact rational as FLINT's ``fmpq`` (ints, Fractions, SymPy Rationals, fmpq)."""
    if isinstance(value, flint.fmpq):
        return value
    if isinstance(value, int):
        return flint.fmpq(value)
    if isinstance(value, Fraction):
        return flint.fmpq(value.numerator, value.denominator)
    if isinstance(value, sp.Rational):
        return flint.fmpq(int(value.p), int(value.q))
    if hasattr(value, "numerator") and hasattr(value, "denominator"):  # SymPy's PythonMPQ, gmpy2.mpq
        return flint.fmpq(int(value.numerator), int(value.denominator))
    raise TypeError(f"not an exact rational: {value!r}")


class PolyRing:
    """Q[x_1..x_n] for the given SymPy symbols (their order is the order of exponent tuples)."""

    def __init__(self, symbols: Sequence[sp.Symbol]):
        self.symbols = list(symbols)
        self.ngens = len(self.symbols)
        # Names private to the ring: a SymPy name is not always a valid FLINT name, and two
        # derivations with the same size share FLINT's cached context harmlessly.
        self.ctx = flint.fmpq_mpoly_ctx.get(tuple(f"x{i}" for i in range(self.ngens)), "lex")
        self._small: dict[int, Poly] = {}
        self.zero = Poly(self.ctx.from_dict({}), self)
        self.one = self.ground_new(1)
        self.gens = [Poly(g, self) for g in self.ctx.gens()]
        # A generator that stands for 1/B for a polynomial B in the others (the inverse of the softmax
        # normaliser, 1/(u_1 + ... + u_C)): (its index, B). See dz and clear_inverse.
        self.inverse: tuple[int, Poly] | None = None
        self._dbase: dict[int, Poly] = {}
        # The derivative by logit j as rules instead (the options of a language model): for each j, the
        # generators that depend on z_j with their derivatives times ``scale``, a polynomial free of the logits
        # (T cap, so that 1/T and 1/cap need no generators); see dz and Frac.dz.
        self.rules: dict[int, list[tuple[int, Poly]]] | None = None
        self.scale: Poly | None = None

    def dz(self, p: Poly, index: int) -> Poly:
        """``u * d/du`` for the generator u number ``index`` (the derivative by z where u = e^z), through
        the inverse generator T = 1/B too: ``u (dp/du - dp/dT * T^2 * dB/du)``.

        With ``rules``: the chain rule over the generators that depend on logit ``index``,
        ``sum_g dp/dg * rule_g`` (the derivative times ``scale``)."""
        if self.rules is not None:
            terms = []
            for g, dg in self.rules[index]:
                d = p.diff(g)
                if d:
                    terms.append(d * dg)
            return self.add(terms)
        d = p.diff(index)
        if self.inverse is not None:
            r, base = self.inverse
            if index not in self._dbase:
                self._dbase[index] = base.diff(index)
            db = self._dbase[index]
            dp_dt = p.diff(r)
            if db and dp_dt:
                t = self.gens[r]
                d = d - dp_dt * t * t * db
        return d * self.gens[index]

    def clear_inverse(self, p: Poly) -> Poly:
        """``B^d * p`` with T = 1/B written out (d the degree of p in T): a polynomial in the other
        generators that is zero exactly when p is zero at T = 1/B (B > 0)."""
        if self.inverse is None:
            return p
        r, base = self.inverse
        at0 = {r: 0}
        coeffs = []  # p = sum_k coeffs[k] T^k
        d, fact, k = p.f, 1, 0
        while not d.is_zero():
            coeffs.append(d.subs(at0) / fact)
            d = d.derivative(r)
            k += 1
            fact *= k
        top = len(coeffs) - 1
        out = self.zero.f
        for k, c in enumerate(coeffs):
            if not c.is_zero():
                out = out + c * base.f ** (top - k)
        return Poly(out, self)

    @staticmethod
    def domain(numerator: int, denominator: int = 1) -> Any:
        """An exact rational of the coefficient field (as SymPy's ``ring.domain(p, q)``)."""
        return flint.fmpq(numerator, denominator)

    def ground_new(self, value: Scalar) -> Poly:
        if isinstance(value, int) and -8 <= value <= 8:  # small integers, made once
            cached = self._small.get(value)
            if cached is None:
                cached = self._small[value] = Poly(self.ctx.constant(flint.fmpq(value)), self)
            return cached
        return Poly(self.ctx.constant(to_fmpq(value)), self)

    def from_dict(self, terms: Mapping[tuple[int, ...], Scalar]) -> Poly:
        return Poly(self.ctx.from_dict({m: to_fmpq(c) for m, c in terms.items() if c}), self)

    def add(self, polys: Sequence[Poly]) -> Poly:
        """The sum of many polynomials (pairwise, so that no long sum is copied again and again)."""
        fs = [p.f for p in polys]
        if not fs:
            return self.zero
        while len(fs) > 1:
            fs = [fs[i] + fs[i + 1] if i + 1 < len(fs) else fs[i] for i in range(0, len(fs), 2)]
        return Poly(fs[0], self)

    def from_expr(self, expr: sp.Expr) -> Poly:
        """A polynomial SymPy expression in the ring's symbols (``ValueError`` otherwise)."""
        try:
            poly = sp.Poly(expr, *self.symbols, domain=sp.QQ)
        except (sp.PolynomialError, sp.CoercionFailed, sp.GeneratorsError) as exc:
            raise ValueError(f"not a polynomial in the ring's symbols: {exc}") from None
        return self.from_dict({m: sp.Rational(c) for m, c in poly.as_dict().items()})


class Poly:
    """One polynomial of a :class:`PolyRing` (immutable)."""

    __slots__ = ("f", "ring", "_hash")

    def __init__(self, f: Any, ring: PolyRing):
        self.f = f
        self.ring = ring
        self._hash: int | None = None

    def _wrap(self, f: Any) -> Poly:
        return Poly(f, self.ring)

    @staticmethod
    def _operand(other: object) -> Any:
        if isinstance(other, Poly):
            return other.f
        return to_fmpq(other)

    # -- arithmetic
    def __add__(self, other: object) -> Poly:
        return self._wrap(self.f + self._operand(other))

    __radd__ = __add__

    def __sub__(self, other: object) -> Poly:
        return self._wrap(self.f - self._operand(other))

    def __rsub__(self, other: object) -> Poly:
        return self._wrap(self._operand(other) - self.f)

    def __mul__(self, other: object) -> Poly:
        return self._wrap(self.f * self._operand(other))

    __rmul__ = __mul__

    def __neg__(self) -> Poly:
        return self._wrap(-self.f)

    def __pow__(self, n: int) -> Poly:
        return self._wrap(self.f**n)

    # -- comparison
    def __eq__(self, other: object) -> bool:
        if isinstance(other, Poly):
            return bool(self.f == other.f)
        if isinstance(other, (int, Fraction, sp.Rational)) or hasattr(other, "numerator"):
            return bool(self.f == self.ring.ground_new(other).f)
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(zip(self.f.monoms(), (hash(c) for c in self.f.coeffs()))))
        return self._hash

    def __bool__(self) -> bool:
        return not self.f.is_zero()

    def __len__(self) -> int:
        return len(self.f)

    def __repr__(self) -> str:
        return f"Poly({self.as_expr()})"

    # -- inspection
    @property
    def is_ground(self) -> bool:
        n = len(self.f)
        # (comparing with the constant term is much faster than FLINT's degree queries for many variables)
        return n == 0 or (n == 1 and bool(self.f == self.ring.ctx.constant(self.f.leading_coefficient())))

    @property
    def is_monomial(self) -> bool:
        """One term (a coefficient times a product of generators)."""
        return len(self.f) == 1

    @property
    def LC(self) -> Any:  # noqa: N802 - SymPy's name
        """The leading coefficient (the constant itself for a ground element; 0 for zero)."""
        return self.f.leading_coefficient() if not self.f.is_zero() else flint.fmpq(0)

    def iterterms(self) -> Iterator[tuple[tuple[int, ...], Any]]:
        """(exponent tuple of Python ints, coefficient) for every term."""
        return zip(self.itermonoms(), self.f.coeffs())

    def itercoeffs(self) -> Iterator[Any]:
        return iter(self.f.coeffs())

    def itermonoms(self) -> Iterator[tuple[int, ...]]:
        """The exponent tuples, as Python ints (FLINT gives its own integers)."""
        return (tuple(map(int, m)) for m in self.f.monoms())

    def degrees(self) -> tuple[int, ...]:
        """The highest power of each generator (all -1 for the zero polynomial)."""
        return tuple(map(int, self.f.degrees()))

    def involves(self, index: int) -> bool:
        return not self.f.derivative(index).is_zero()

    # -- division, calculus and substitution
    def exquo(self, other: Poly) -> Poly | None:
        """``self / other`` when the division is exact, else ``None``."""
        q, r = divmod(self.f, other.f)
        return None if r else self._wrap(q)

    def diff(self, index: int) -> Poly:
        """The partial derivative by generator number ``index``."""
        return self._wrap(self.f.derivative(index))

    def compose_one(self, index: int, g: Poly) -> Poly:
        """``self`` with generator number ``index`` replaced by ``g`` (``self`` itself when it does not occur).

        Taylor's formula in that generator, exact for a polynomial:
        ``sum_e (d^e self / dx^e)(x = 0) * g^e / e!``.
        """
        d = self.f.derivative(index)
        if d.is_zero():
            return self
        at0 = {index: 0}
        out = self.f.subs(at0)
        e, fact, power = 1, 1, g.f
        while True:
            out = out + d.subs(at0) * power / fact
            d = d.derivative(index)
            if d.is_zero():
                return self._wrap(out)
            e += 1
            fact *= e
            power = power * g.f

    def as_expr(self, *symbols: sp.Symbol) -> sp.Expr:
        syms = symbols or tuple(self.ring.symbols)
        terms = []
        for mon, c in self.iterterms():
            factors = [sp.Rational(int(c.numerator), int(c.denominator))]
            factors += [s**e for s, e in zip(syms, mon) if e]
            terms.append(sp.Mul(*factors))
        return sp.Add(*terms)
