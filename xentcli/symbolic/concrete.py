r"""The concrete backend: a derivation for C = 2..200 classes, decided entry by entry.

Every identity is checked for every index (all C*C Jacobian entries, every
class of the gradient) by exact arithmetic in a SymPy polynomial ring over
the rationals (:mod:`xentcli.symbolic.algebra`): with :math:`u_k = e^{z_k}`,
softmax, sigmoid and their derivatives are rational functions of the u's and
of the parameters (targets, weights, epsilon, ...), and an equality holds
only when the cross-multiplied numerators are the same polynomial. For small
C the derivatives are also taken independently with ``sympy.diff`` on the
expressions in the z's.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import sympy as sp

from ..spec import SYM
from . import quantities as Q
from .algebra import Frac, LogSum, Space, is_zero_expr
from .backend import Backend, Derived, Side, guarded, raised
from .model import Block, Check, Equation, MatrixDisplay, Para, Progress, Tex, no_progress
from .poly import Poly as PolyElement
from .problem import Problem
from .prose import Notation, _sub, dz
from .quantities import Algebra, V

SYMPY_DIFF_MAX = 12  # cross-check with generic sympy.diff up to this C
CHAIN_IN_U_MAX = 30  # above this C the chain rule is closed by composing two proved identities
PROGRESS_MIN = 200  # report progress for checks with at least this many cases
RING_METHOD = ("exact polynomials in u_k = exp(z_k) and 1/S (S = Σ_k u_k) over the rationals: the numerators are "
               "the same polynomial, with 1/S free or once it is cleared")
SYMPY_DIFF_METHOD = "sympy.diff of the expression in z; z_k -> log u_k, expand_log over positive symbols, then exact"


def option_value(symbol: sp.Symbol | None, value: Any, default: int) -> sp.Expr:
    """A language-model option as SymPy: its symbol (sym), its exact value, or ``default`` when it is off."""
    if symbol is not None:
        return symbol
    return sp.Integer(default) if value is None else rational(value)


def softmax_input(spec: Any, z: sp.Expr, cap: sp.Expr, temp: sp.Expr) -> sp.Expr:
    """What the softmax sees of the logit z: cap tanh(z / cap) / T (each part only when its option is on)."""
    x = cap * sp.tanh(z / cap) if spec.softcap is not None else z
    return x / temp if spec.has_temperature else x


def rational(v: Any) -> sp.Rational:
    """An exact option value (int or Fraction) as a SymPy Rational."""
    if isinstance(v, Fraction):
        return sp.Rational(v.numerator, v.denominator)
    return sp.Rational(v)


class Names:
    """The SymPy symbols of one concrete derivation, named as its JSON strings name them."""

    def __init__(self, problem: Problem):
        assert isinstance(problem.classes, int)
        c = problem.classes
        rng = range(1, c + 1)
        spec = problem.spec
        self.z = [sp.Symbol(f"z{k}", real=True) for k in rng]
        self.y = [sp.Symbol(f"y{k}", real=True) for k in rng]
        self.u = [sp.Symbol(f"u{k}", positive=True) for k in rng]
        self.p = [sp.Symbol(f"p{k}", positive=True) for k in rng]
        self.sigma = [sp.Symbol(f"sigma{k}", positive=True) for k in rng]
        self.v = [sp.Symbol(f"v{k}", real=True) for k in rng]  # an arbitrary vector (the Hessian's quadratic form)
        self.total = sp.Symbol("s", real=True)  # the summed effective targets, as a name (space "zs")
        self.inverse_S = sp.Symbol("S_inv", positive=True)  # 1/S as a generator of its own (see prover)
        self.w = [sp.Symbol(f"w{k}", positive=True) for k in rng] if spec.weight is SYM else []
        self.q = [sp.Symbol(f"q{k}", positive=True) for k in rng] if spec.pos_weight is SYM else []
        self.eps = sp.Symbol("epsilon", nonnegative=True) if spec.label_smoothing is SYM else None
        self.mask = sp.Symbol("mask", nonnegative=True) if problem.masked else None
        self.den = sp.Symbol("w_total" if spec.denominator == "weights" else "n_samples", positive=True) \
            if spec.denominator is not None else None
        # the z-loss's own denominator N (the counted samples) when the cross-entropy's is W
        self.zden = sp.Symbol("n_samples", positive=True) if Q.split_mean(problem) else None
        self.rest = sp.Symbol("rest", real=True) if spec.reduction != "none" else None
        # The language-model options: lam, cap and T as symbols when they are sym; tanh(z_k / cap) and lse
        # as generators of the prover's ring (their derivatives by z_j are rules: see RingAlgebra).
        self.lam = sp.Symbol("lam", nonnegative=True) if spec.z_loss is SYM else None
        self.cap = sp.Symbol("cap", positive=True) if spec.softcap is SYM else None
        self.temp = sp.Symbol("T", positive=True) if spec.temperature is SYM else None
        self.t = [sp.Symbol(f"t{k}", real=True) for k in rng] if spec.softcap is not None else []
        self.lse = sp.Symbol("lse", real=True) if spec.language_model else None
        self.options = [s for s in (self.lam, self.cap, self.temp) if s is not None]
        self.scalars = [s for s in (self.eps, self.mask, self.den, self.zden, self.rest, *self.options)
                        if s is not None]
        self.params: list[sp.Symbol] = [*self.y, *self.w, *self.q, *self.scalars]


class RingAlgebra(Algebra):
    """The quantities as exact ring elements (:class:`Frac`) and sums of logarithms (:class:`LogSum`)."""

    eps: Frac
    mask: Frac
    den: Frac
    zden: Frac
    rest: Frac
    lam: Frac
    cap: Frac
    temp: Frac

    def __init__(self, problem: Problem, names: Names, space: str, opaque_normaliser: bool = False):
        self.problem = problem
        self.names = names
        self.space = space
        self.C = problem.classes
        gens = {"z": names.u, "x": names.u, "zv": names.u, "zs": names.u, "p": names.p, "sigma": names.sigma}[space]
        # functions of the logits; "zv": and of an arbitrary vector v; "zs": with s = sum_c a_c as one name;
        # "x": functions of the softmax inputs x (the capped and scaled logits), differentiated by x
        self.in_z = space in ("z", "x", "zv", "zs")
        opaque = opaque_normaliser and self.in_z
        spec = problem.spec
        # With the options of a language model, u_k = exp(x_k) (x_k = cap tanh(z_k / cap) / T), and the ring
        # has tanh(z_k / cap) (the z space, soft-capping) and lse = log S as generators of their own.
        self.lm = spec.language_model and space in ("z", "x")
        logit_symbols: list[sp.Symbol] = []
        if self.lm:
            logit_symbols = [*(names.t if space == "z" else []), names.lse]
        # "zv" holds the logits, v and the scalar options only: it decides properties of the softmax
        # Jacobian, and C generators per target vector would only make its C*C-term polynomials larger.
        if space == "zv":
            params = [*names.v, *names.scalars]
        else:
            params = [*names.params, *([names.total] if space == "zs" else [])]
        self.ring_space = Space(gens, params, names.inverse_S if opaque else None, logit_symbols)
        rs = self.ring_space
        self.U = rs.u
        self.S_poly = rs.ring.add(self.U)
        self.one_plus_u = [rs.ring.one + u for u in self.U]
        self.one_minus = [rs.ring.one - u for u in self.U]  # 1 - sigma_k in the sigma space
        T = rs.inverse_S
        self._p = [Frac(u * T) if T is not None else Frac.over(u, self.S_poly) for u in self.U]
        self._sigma = [Frac.over(u, f) for u, f in zip(self.U, self.one_plus_u)]
        self.eps = self._param(spec.label_smoothing, names.eps, 0)
        self.mask = rs.sym(names.mask) if names.mask is not None else rs.const(1)
        self.den = rs.sym(names.den) if names.den is not None else rs.const(1)
        self.zden = rs.sym(names.zden) if names.zden is not None else self.den
        self.rest = rs.sym(names.rest) if names.rest is not None else rs.const(0)
        self.lam = self._param(spec.z_loss, names.lam, 0)
        self.cap = self._param(spec.softcap, names.cap, 1)
        self.temp = self._param(spec.temperature, names.temp, 1)
        if space == "zs":
            self.memo(("total",), lambda: rs.sym(names.total))
        if self.lm and T is not None:
            self._rules(space)

    def _rules(self, space: str) -> None:
        """The derivative by z_j (by x_j in the x space) as rules for the ring's generators.

        d u_j/dx_j = u_j, d(1/S)/dx_j = -u_j/S^2, d lse/dx_j = u_j/S = p_j; by z_j each is multiplied
        by dx_j/dz_j = (1 - t_j^2)/T (t_j = tanh(z_j / cap)), and d t_j/dz_j = (1 - t_j^2)/cap. The
        rules hold the derivatives times scale = T cap, so that they are polynomials.
        """
        rs, names, spec = self.ring_space, self.names, self.problem.spec
        ring = rs.ring
        T = rs.inverse_S
        assert T is not None
        idx = {s: i for i, s in enumerate(rs.symbols)}
        r_inv, r_lse = idx[names.inverse_S], idx[names.lse]
        chain = space == "z" and (spec.softcap is not None or spec.has_temperature)
        one = ring.one
        cap, temp = self.cap.num, self.temp.num
        rules: dict[int, list[tuple[int, PolyElement]]] = {}
        for j, u in enumerate(self.U):
            f = one
            if chain and spec.softcap is not None:
                t = rs.gen[names.t[j]]
                f = cap * (one - t * t)
            du = u * f  # d u_j/dz_j times the scale
            rule = [(j, du), (r_inv, -(T * T) * du), (r_lse, T * du)]
            if chain and spec.softcap is not None:
                t = rs.gen[names.t[j]]
                rule.append((idx[names.t[j]], temp * (one - t * t)))
            rules[j] = rule
        ring.rules = rules
        if chain:
            ring.scale = (temp * cap) if spec.softcap is not None else temp
    def _param(self, value: Any, symbol: sp.Symbol | None, default: int) -> Frac:
        if symbol is not None:
            return self.ring_space.sym(symbol)
        if value is None or value is SYM:
            return self.ring_space.const(default)
        return self.ring_space.const(rational(value))

    def _vector(self, value: Any, symbols: list[sp.Symbol], m: int) -> Frac:
        if symbols:
            return self.ring_space.sym(symbols[m])
        if value is None:
            return self.ring_space.const(1)
        return self.ring_space.const(rational(value[m] if len(value) > 1 else value[0]))

    def y(self, m: int) -> Frac:
        return self.ring_space.sym(self.names.y[m])

    def w(self, m: int) -> Frac:
        return self._vector(self.problem.spec.weight, self.names.w, m)

    def q(self, m: int) -> Frac:
        return self._vector(self.problem.spec.pos_weight, self.names.q, m)

    def v(self, m: int) -> Frac:
        return self.ring_space.sym(self.names.v[m])

    def p(self, m: int) -> Frac:
        return self._p[m] if self.in_z else Frac(self.U[m])

    def logp(self, m: int) -> LogSum:
        # memoised: a LogSum is never changed in place once built (its arithmetic makes new ones)
        out: LogSum = self.memo(("logp", m), lambda: LogSum(self.ring_space).add_log(self.ring_space.const(1),
                                                                                      self.p(m)))
        return out

    def o(self, m: int) -> LogSum:
        return self.logp(m)  # z_m - log S = log(u_m / S)

    def sigma(self, m: int) -> Frac:
        return self._sigma[m] if self.in_z else Frac(self.U[m])

    def lse(self) -> Frac:
        return self.ring_space.sym(self.names.lse)

    def tanh(self, m: int) -> Frac:
        return self.ring_space.sym(self.names.t[m])

    def x(self, m: int) -> LogSum:
        """The softmax input x_m = log u_m (the capped and scaled logit)."""
        out: LogSum = self.memo(("x", m), lambda: LogSum(self.ring_space).add_log(self.ring_space.const(1),
                                                                                  Frac(self.U[m])))
        return out

    def log_sigma(self, m: int) -> LogSum:
        return LogSum(self.ring_space).add_log(self.ring_space.const(1), self.sigma(m))

    def log_one_minus_sigma(self, m: int) -> LogSum:
        one_minus = Frac.over(self.ring_space.ring.one, self.one_plus_u[m]) if self.in_z \
            else Frac(self.one_minus[m])
        return LogSum(self.ring_space).add_log(self.ring_space.const(1), one_minus)

    def log(self, v: Frac) -> LogSum:
        return LogSum(self.ring_space).add_log(self.ring_space.const(1), v)

    def sum(self, f: Callable[[Any], V]) -> V:
        items = [f(m) for m in range(self.problem.classes)]  # type: ignore[arg-type]
        if any(isinstance(v, LogSum) for v in items):
            total = items[0]
            for v in items[1:]:
                total = total + v
            return total
        return Frac.sum((v if isinstance(v, Frac) else self.ring_space.const(v) for v in items), self.ring_space.ring)

    def delta(self, a: int, b: int) -> int:
        return 1 if a == b else 0

    # -- calculus
    def dz(self, v: V, j: int) -> Frac:
        """The derivative by z_j (u_j = e^{z_j}); in the p or sigma space, by the variable itself."""
        if isinstance(v, (int, sp.Rational)):
            return self.ring_space.const(0)
        if self.lm and self.ring_space.ring.rules is None:  # (lse and tanh have derivative rules in the prover only)
            raise TypeError("the options of a language model are differentiated in the prover's ring (1/S a variable)")
        out: Frac = v.dz(j) if self.in_z else v.du(j)
        return out


class ExpressionAlgebra(Algebra):
    """The quantities as SymPy expressions in z1..zC (explicit sums): documents, JSON, cross-checks."""

    def __init__(self, problem: Problem, names: Names):
        self.problem = problem
        self.names = names
        self.space = "z"
        self.C = problem.classes
        spec = problem.spec
        self.eps = names.eps if names.eps is not None else (
            rational(spec.label_smoothing) if spec.smoothing else sp.Integer(0))
        self.mask = names.mask if names.mask is not None else sp.Integer(1)
        self.den = names.den if names.den is not None else sp.Integer(1)
        self.zden = names.zden if names.zden is not None else self.den
        self.rest = names.rest if names.rest is not None else sp.Integer(0)
        self.lam = option_value(names.lam, spec.z_loss, 0)
        self.cap = option_value(names.cap, spec.softcap, 1)
        self.temp = option_value(names.temp, spec.temperature, 1)
        self.X = [softmax_input(spec, z, self.cap, self.temp) for z in names.z]
        self.S = sp.Add(*[sp.exp(x) for x in self.X])

    def _vector(self, value: Any, symbols: list[sp.Symbol], m: int) -> sp.Expr:
        if symbols:
            return symbols[m]
        if value is None:
            return sp.Integer(1)
        return rational(value[m] if len(value) > 1 else value[0])

    def y(self, m: int) -> sp.Expr:
        return self.names.y[m]

    def w(self, m: int) -> sp.Expr:
        return self._vector(self.problem.spec.weight, self.names.w, m)

    def q(self, m: int) -> sp.Expr:
        return self._vector(self.problem.spec.pos_weight, self.names.q, m)

    def v(self, m: int) -> sp.Expr:
        return self.names.v[m]

    def p(self, m: int) -> sp.Expr:
        return sp.exp(self.X[m]) / self.S

    def logp(self, m: int) -> sp.Expr:
        return sp.log(self.p(m))

    def lse(self) -> sp.Expr:
        return sp.log(self.S)

    def tanh(self, m: int) -> sp.Expr:
        return sp.tanh(self.names.z[m] / self.cap)

    def x(self, m: int) -> sp.Expr:
        return self.X[m]

    def o(self, m: int) -> sp.Expr:
        return self.names.z[m] - sp.log(self.S)

    def sigma(self, m: int) -> sp.Expr:
        return 1 / (1 + sp.exp(-self.names.z[m]))

    def log_sigma(self, m: int) -> sp.Expr:
        return sp.log(self.sigma(m))

    def log_one_minus_sigma(self, m: int) -> sp.Expr:
        return sp.log(1 - self.sigma(m))

    def log(self, v: sp.Expr) -> sp.Expr:
        return sp.log(v)

    def sum(self, f: Callable[[Any], V]) -> sp.Expr:
        return sp.Add(*[f(m) for m in range(self.problem.classes)])  # type: ignore[arg-type]

    def delta(self, a: int, b: int) -> int:
        return 1 if a == b else 0

    def dz(self, v: sp.Expr, j: int) -> sp.Expr:
        return sp.diff(v, self.names.z[j])

    def arbitrary(self, m: int) -> sp.Symbol:
        """An arbitrary positive quantity a_m (identities that hold for any targets)."""
        return sp.Symbol(f"a{m + 1}", positive=True)


class ConcreteBackend(Backend):
    """Decides the pipeline's identities for every class index 1..C."""

    def __init__(self, problem: Problem, progress: Progress = no_progress):
        assert isinstance(problem.classes, int)
        self.problem = problem
        self.C = problem.classes
        self.progress = progress
        self.names = Names(problem)
        self._algebras: dict[str, RingAlgebra] = {}
        self._expressions = ExpressionAlgebra(problem, self.names)

    def forall(self, over: Sequence[str]) -> str:
        count = self.C ** len(over)
        if len(over) == 1:
            return f"for all {self.C} {over[0]}"
        return f"for all {count} ({', '.join(over)})"

    def algebra(self, space: str = "z") -> RingAlgebra:
        """The ring algebra of ``space`` with the normaliser written out (S = u_1 + ... + u_C)."""
        if space not in self._algebras:
            self._algebras[space] = RingAlgebra(self.problem, self.names, space)
        return self._algebras[space]

    def prover(self, space: str = "z") -> RingAlgebra:
        """The ring algebra the pipeline's identities are decided in: 1/S is a generator of its own.

        Softmax is then the polynomial p_i = u_i * (1/S): no denominator is carried or multiplied
        out, which keeps each of the C*C Jacobian entries as cheap at C = 200 as at C = 2. d/dz_j
        reaches 1/S by the chain rule (d(1/S)/dz_j = -u_j/S^2), so every derivative is exact; an
        equality holds when the numerators are equal with 1/S free (sufficient), or else once 1/S
        is cleared and S = u_1 + ... + u_C written out.
        """
        key = f"{space}/S"
        if key not in self._algebras:
            self._algebras[key] = RingAlgebra(self.problem, self.names, space, opaque_normaliser=True)
        return self._algebras[key]

    @property
    def expressions(self) -> ExpressionAlgebra:
        return self._expressions

    def display_algebra(self) -> ExpressionAlgebra:
        """The expression algebra with p_k and sigma_k as plain symbols (how closed forms are shown)."""
        return _Symbols(self)

    def named_algebra(self) -> tuple[ExpressionAlgebra, list[tuple[sp.Symbol, sp.Expr]]]:
        """The outputs' compact names: p_k (or sigma_k), Z and s, with their definitions in evaluation order.

        Each definition uses only the logits, the targets, the parameters and the names defined
        before it (Z = the softmax normaliser, then p_k = exp(z_k)/Z, then s = the summed effective
        targets).
        """
        N = _Named(self)
        E = self.expressions
        names = self.names
        if self.problem.bce:
            return N, [(s, E.sigma(k)) for k, s in enumerate(names.sigma)]
        defs: list[tuple[sp.Symbol, sp.Expr]] = [(N.S, E.S)]
        if names.lse is not None:
            defs.append((names.lse, sp.log(N.S)))
        defs += [(s, sp.exp(E.X[k]) / N.S) for k, s in enumerate(names.p)]
        defs.append((N.total_symbol, sp.sympify(Q.total(E))))
        return N, defs

    def entrywise(self, f: Callable[[Any, int, int], Any], text: Callable[[Any], str]) -> list[list[str]]:
        """``text(f(named, i, j))`` for every (i, j), printed twice instead of C*C times when ``f`` allows.

        ``f`` (a closed form such as the softmax Jacobian) is printed at two placeholder
        indices, I = J and I != J, with p_I, p_J (sigma_I, sigma_J) as names; every entry is
        that text with the indices filled in. A closed form that uses anything else of its
        indices (targets, weights, a sum) is printed entry by entry.
        """
        C = self.C
        try:
            T = _Placeholder(self)
            same, other = text(f(T, 0, 0)), text(f(T, 0, 1))
        except _NotTemplatable:
            N = self.named_algebra()[0]
            return [[text(f(N, i, j)) for j in range(C)] for i in range(C)]

        def fill(template: str, i: int, j: int) -> str:
            return _PLACEHOLDER.sub(lambda m: f"{m[1]}{(i if m[2] == 'I' else j) + 1}", template)

        return [[fill(same if i == j else other, i, j) for j in range(C)] for i in range(C)]

    def affordable(self, check: str) -> bool:
        if check == "chain-rule":
            return self.C <= CHAIN_IN_U_MAX
        if check == "sympy-diff":  # (not with a language model's options: lse and tanh are not rational in u)
            return self.C <= SYMPY_DIFF_MAX and not self.problem.spec.language_model
        return True

    # -- deciding -----------------------------------------------------------
    def prove(
        self,
        name: str,
        statement: str,
        lhs: Side,
        rhs: Side,
        *,
        over: Sequence[str] = ("j",),
        space: str = "z",
        method: str | None = None,
        given: str | None = None,
        cases: tuple[str, str] | None = None,
        sympy_diff: bool = False,
        keep: bool = False,
    ) -> tuple[list[Check], Derived]:
        A = self.prover(space)
        subs = self.normalized_substitution(A) if given == "normalized" else None
        derived: dict[tuple[int, ...], Any] = {}
        points = list(itertools.product(range(self.C), repeat=len(over)))

        def ok(idx: tuple[int, ...]) -> bool:
            left = lhs(A, *idx)
            if keep:
                derived[idx] = left
            return _equal(left, rhs(A, *idx), subs)

        checks = [self._check_all(name, statement, method or RING_METHOD, over, points, ok)]
        if sympy_diff and self.affordable("sympy-diff"):
            E = self.expressions

            def ok_diff(idx: tuple[int, ...]) -> bool:
                return _equal(self.to_ring(lhs(E, *idx), A), rhs(A, *idx), subs)

            checks.append(self._check_all(f"{name}-sympy-diff", statement.replace(" = ", " (by sympy.diff) = ", 1),
                                          SYMPY_DIFF_METHOD, over, points, ok_diff))
        return checks, Derived(lambda *idx: derived[tuple(idx)])

    def _check_all(self, name: str, statement: str, method: str, over: Sequence[str],
                   points: list[tuple[int, ...]], ok: Callable[[tuple[int, ...]], bool]) -> Check:
        total = len(points)
        failures: list[str] = []
        step = max(1, total // 50)
        for k, idx in enumerate(points):
            try:
                held = ok(idx)
            except (KeyboardInterrupt, MemoryError):
                raise
            except Exception as exc:  # noqa: BLE001 - an error inside SymPy is a failed check, never a pass
                return Check(name, statement, method, False, total, f"{_where(over, idx)}: {raised(exc)}")
            if held is not True:
                failures.append(_where(over, idx))
            if total >= PROGRESS_MIN and k % step == 0:
                self.progress(name, k, total)
        if total >= PROGRESS_MIN:
            self.progress(name, total, total)
        detail = ""
        if failures:
            detail = "the two sides are different rational functions" if not over else \
                "fails for " + ", ".join(failures[:5]) + (" ..." if len(failures) > 5 else "")
        return Check(name, statement, method, not failures, total, detail)

    def normalized_substitution(self, A: RingAlgebra) -> dict[int, PolyElement]:
        """y_C = 1 - (y_1 + ... + y_{C-1}) as a substitution of ring generators."""
        rs = A.ring_space
        ys = self.names.y
        others = sum((rs.gen[v] for v in ys[:-1]), rs.ring.zero)
        return {rs.symbols.index(ys[-1]): rs.ring.one - others}

    def prove_zero(self, name: str, statement: str, f: Callable[..., Any], method: str,
                   over: Sequence[str] = ()) -> Check:
        points = list(itertools.product(range(self.C), repeat=len(over)))
        E = _OpaqueNormaliser(self.problem, self.names)
        method += "; the normaliser S = Σ_k exp(z_k) kept as one positive symbol (sufficient: true for every S > 0)"

        def ok(idx: tuple[int, ...]) -> bool:
            expr = self._logs_of_u(sp.sympify(f(E, *idx)))
            return bool(is_zero_expr(sp.expand_log(expr, force=False)))

        if not over:
            return guarded(name, statement, method, 1, lambda: (ok(()), ""))
        return self._check_all(name, statement, method, over, points, ok)

    # -- what the documents show ------------------------------------------------
    def method_parts(self) -> tuple[str | Tex, ...]:
        if self.problem.spec.language_model:
            return self._language_model_method()
        return (
            "Method: with ", Tex(r"u_k = e^{z_k} > 0", "u_k = exp(z_k) > 0"),
            " every quantity below is a rational function of u, y and the parameters, and ",
            Tex(r"\partial/\partial z_j = u_j\, \partial/\partial u_j", "∂/∂z_j = u_j ∂/∂u_j"),
            ". Softmax is p_i = u_i · (1/S) with 1/S a variable of its own (d(1/S)/dz_j = −u_j/S², by the chain "
            "rule). Derivatives and comparisons are exact polynomial arithmetic over the rationals (FLINT): an "
            "equality holds only when the numerators are the same polynomial, with 1/S free or once S · (1/S) = 1 "
            "is used to clear it (no simplify). Every identity is checked for every class index.",
        )

    def _language_model_method(self) -> tuple[str | Tex, ...]:
        spec = self.problem.spec
        x = "x" if spec.softcap is not None or spec.has_temperature else "z"
        t = (", t_k = tanh(z_k / c)" if spec.softcap is not None else "")
        return (
            "Method: with ", Tex(rf"u_k = e^{{{x}_k}} > 0", f"u_k = exp({x}_k) > 0"),
            f", 1/S (S = Σ_k u_k){t} and lse as variables of their own, every quantity below is a polynomial in "
            "them, y and the parameters. Each derivative is exact by the chain rule over these variables: "
            f"d u_k/d{x}_j = δ_jk u_k, d(1/S)/d{x}_j = −u_j/S², d lse/d{x}_j = u_j/S"
            + (" and by z_j each times dx_j/dz_j" if x == "x" else "")
            + (", with dt_j/dz_j = (1 − t_j²)/c" if spec.softcap is not None else "")
            + ". Comparisons are exact polynomial arithmetic over the rationals (FLINT): an equality holds only "
            "when the numerators are the same polynomial, with the variables free (which covers their actual "
            "values) or once S · (1/S) = 1 is used to clear 1/S (no simplify). Every identity is checked for "
            "every class index.",
        )

    def examples(self, name: str, nt: Notation) -> list[Block]:
        C, E, names = self.C, self.expressions, self.names
        z, p, sig = names.z, names.p, names.sigma
        plain = not (self.problem.weighted or self.problem.smoothing or self.problem.masked)
        if name == "softmax-jacobian" and C <= 6:
            return [
                Para(("SymPy differentiates ", Tex(r"p_1 = e^{z_1} / \sum_k e^{z_k}", "p₁ = exp(z₁) / Σ_k exp(z_k)"),
                      ":")),
                Equation((dz("p_1", "z_1", "p₁", "z₁"), sp.diff(E.p(0), z[0]), p[0] * (1 - p[0]))),
                Equation((dz("p_1", "z_2", "p₁", "z₂"), sp.diff(E.p(0), z[1]), -p[0] * p[1])),
                Para(("and likewise for every entry:",)),
            ]
        if name == "softmax-matrix":
            closed = Tex(r"\operatorname{diag}(p) - p\,p^{\top}", "diag(p) − p pᵀ")
            if C <= 4:
                m = sp.Matrix(C, C, lambda i, j: p[i] * (1 - p[i]) if i == j else -p[i] * p[j])
                return [MatrixDisplay(Tex("J", "J"), m, (closed,))]
            return [Equation((Tex("J", "J"), closed))]
        if name == "sigmoid-jacobian" and C <= 6:
            return [
                Para(("SymPy differentiates ", Tex(r"\sigma_1 = 1/(1 + e^{-z_1})", "σ₁ = 1/(1 + exp(−z₁))"), ":")),
                Equation((dz(r"\sigma_1", "z_1", "σ₁", "z₁"), sp.diff(E.sigma(0), z[0]), sig[0] * (1 - sig[0]))),
            ]
        if name == "direct" and C <= 4:
            closed = Q.grad(self.display_algebra(), 0)
            return [Equation((dz(nt.ell.latex, "z_1", nt.ell.plain, "z₁"), sp.diff(Q.loss(E), z[0]), closed))]
        if name == "cancellation" and C <= 4 and plain and self.problem.spec.kind == "ce":
            y = names.y
            terms = [Tex(rf"\left(-\frac{{y_{{{i}}}}}{{p_{{{i}}}}}\right) " +
                         (r"p_{1}(1 - p_{1})" if i == 1 else rf"(-p_{{{i}}} p_{{1}})"),
                         f"(−y{_sub(i)}/p{_sub(i)})·" + ("p₁(1 − p₁)" if i == 1 else f"(−p{_sub(i)} p₁)"))
                     for i in range(1, C + 1)]
            after = Tex("-y_{1}(1 - p_{1})" + "".join(f" + y_{{{i}}} p_{{1}}" for i in range(2, C + 1)),
                        "−y₁(1 − p₁)" + "".join(f" + y{_sub(i)} p₁" for i in range(2, C + 1)))
            return [Para(("For j = 1:",)),
                    Equation((dz(nt.ell.latex, "z_1", nt.ell.plain, "z₁"),
                              Tex(" + ".join(t.latex for t in terms), " + ".join(t.plain for t in terms)),
                              after, p[0] * sp.Add(*y) - y[0]))]
        return []

    # -- conversions ----------------------------------------------------------
    def _logs_of_u(self, expr: sp.Expr) -> sp.Expr:
        """z_k -> log u_k with u_k > 0 (so exp(z_k) is u_k)."""
        return expr.xreplace({z: sp.log(u) for z, u in zip(self.names.z, self.names.u)})

    def to_ring(self, expr: sp.Expr, A: RingAlgebra) -> Frac:
        """An expression in the z's (exp, rational operations) as a ring element: z_k -> log u_k."""
        e = sp.expand_log(sp.powsimp(sp.expand_power_exp(self._logs_of_u(expr))), force=False)
        return A.ring_space.from_expr(e)

    def as_expression(self, f: Frac, A: RingAlgebra) -> sp.Expr:
        """A ring element of the z space as a SymPy expression in exp(z_k)."""
        gens = [*self.names.u, *self.names.params]
        return f.as_expr(*gens).xreplace(dict(zip(self.names.u, [sp.exp(z) for z in self.names.z])))


def _equal(left: Any, right: Any, subs: dict[int, PolyElement] | None) -> bool:
    if isinstance(left, LogSum) or isinstance(right, LogSum):
        raise TypeError("identities of logarithms are decided by prove_zero")
    if not isinstance(left, Frac):
        left, right = right, left
    if not isinstance(left, Frac):
        return bool(left == right)
    if subs is not None:
        left = left.compose(subs)
        right = right.compose(subs) if isinstance(right, Frac) else right
    return bool(left.equals(right))


def _where(over: Sequence[str], idx: tuple[int, ...]) -> str:
    """``j = 2`` or ``(i, j) = (1, 2)`` (1-based, as the documents count)."""
    if len(idx) == 1:
        return f"{over[0]} = {idx[0] + 1}"
    return f"({', '.join(over)}) = ({', '.join(str(i + 1) for i in idx)})"


class _OpaqueNormaliser(ExpressionAlgebra):
    """The expression algebra with the normaliser S as one positive symbol: an identity that holds for
    every S > 0 holds for S = exp(z_1) + ... + exp(z_C), and SymPy need not walk a C-term sum."""

    def __init__(self, problem: Problem, names: Names):
        super().__init__(problem, names)
        self.S = sp.Symbol("S", positive=True)


_PLACEHOLDER = re.compile(r"\b(p|sigma)_([IJ])\b")


class _NotTemplatable(Exception):
    """A closed form that depends on its indices through more than p_i, p_j (sigma_i, sigma_j) and delta."""


class _Symbols(ExpressionAlgebra):
    """The expression algebra with p_k and sigma_k as plain symbols (how a closed form is displayed)."""

    def __init__(self, backend: ConcreteBackend):
        super().__init__(backend.problem, backend.names)

    def p(self, m: int) -> sp.Expr:
        return self.names.p[m]

    def sigma(self, m: int) -> sp.Expr:
        return self.names.sigma[m]


class _Named(_Symbols):
    """The display algebra with the normaliser Z and the summed effective targets s as names too."""

    def __init__(self, backend: ConcreteBackend):
        super().__init__(backend)
        # Z, not S: sympy.parse_expr reads a bare S as SymPy's singleton registry
        self.S = sp.Symbol("Z", positive=True)
        self.total_symbol = sp.Symbol("s", real=True)

    def memo(self, key: tuple[Any, ...], make: Callable[[], V]) -> V:
        if key == ("total",):
            return self.total_symbol
        return super().memo(key, make)

    def lse(self) -> sp.Expr:
        return self.names.lse if self.names.lse is not None else super().lse()


class _Placeholder(_Named):
    """p and sigma at the placeholder indices 0 -> I and 1 -> J; anything else of an index is refused."""

    def p(self, m: int) -> sp.Expr:
        return sp.Symbol(f"p_{'IJ'[m]}", positive=True)

    def sigma(self, m: int) -> sp.Expr:
        return sp.Symbol(f"sigma_{'IJ'[m]}", positive=True)

    def _refuse(self, *_args: Any) -> Any:
        raise _NotTemplatable

    y = w = q = o = sum = arbitrary = _refuse  # type: ignore[assignment]
