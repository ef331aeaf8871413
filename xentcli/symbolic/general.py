r"""The symbolic-C backend: one derivation for every number of classes C (a letter such as ``n``).

The quantities of :mod:`xentcli.symbolic.quantities` are SymPy expressions
over ``IndexedBase`` logits and targets with sums over ``k = 1..C``; each
identity is decided once, for symbolic class indices, by
:mod:`xentcli.symbolic.indexed` (``sympy.diff``, ``.doit()``, proved
``Piecewise`` ranges, and a zero test without ``simplify``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sympy as sp
from sympy import IndexedBase, KroneckerDelta, Sum

from ..spec import SYM
from . import quantities as Q
from .backend import Backend, Derived, Side, guarded, short
from .concrete import option_value, rational, softmax_input
from .indexed import plain_conditions, reduces_to_zero, reduces_to_zero_by_cases, resolve_piecewise
from .model import Block, Check, Equation, Para, Tex
from .problem import Problem
from .prose import Notation, dz
from .quantities import Algebra, V

DIFF_METHOD = (
    "sympy.diff on IndexedBase z, .doit(), proved Piecewise branches taken; then factors free of the summation "
    "index pulled out of each Sum, sums split over +, together + expand: 0"
)
SUM_INDICES = ("k", "l", "r", "v")  # summation indices, innermost first; i, j, t index the statements


class GeneralAlgebra(Algebra):
    """The quantities with ``IndexedBase`` z, y (w, q) and ``Sum`` over the symbolic number of classes."""

    def __init__(self, backend: GeneralBackend, space: str):
        self.problem = backend.problem
        self.space = space
        self.C = backend.C
        self.b = backend
        spec = self.problem.spec
        self.eps = backend.eps if backend.eps is not None else (
            rational(spec.label_smoothing) if spec.smoothing else sp.Integer(0))
        self.mask = backend.mask if backend.mask is not None else sp.Integer(1)
        self.den = backend.den if backend.den is not None else sp.Integer(1)
        self.zden = backend.zden if backend.zden is not None else self.den
        self.rest = backend.rest if backend.rest is not None else sp.Integer(0)
        self.lam, self.cap, self.temp = backend.lam, backend.cap, backend.temp
        # The softmax inputs: the capped and scaled logits of z (x_m = cap tanh(z_m / cap) / T), or, in the x
        # space, the IndexedBase x itself (derivatives by x).
        k = backend.k
        self.S = Sum(sp.exp(backend.x[k] if space == "x" else self.x(k)), (k, 1, self.C))
        if space == "zs":  # the summed effective targets s as one name
            self.memo(("total",), lambda: backend.total)

    def x(self, m: Any) -> sp.Expr:
        """The softmax input of class m."""
        if self.space == "x":
            return self.b.x[m]
        return softmax_input(self.problem.spec, self.b.z[m], self.cap, self.temp)

    def lse(self) -> sp.Expr:
        return sp.log(self.S)

    def tanh(self, m: Any) -> sp.Expr:
        return sp.tanh(self.b.z[m] / self.cap)

    def _vector(self, value: Any, base: IndexedBase | None, m: Any) -> sp.Expr:
        if base is not None:
            return base[m]
        if value is None:
            return sp.Integer(1)
        return rational(value[0])  # one value for every class (checked by Problem)

    def y(self, m: Any) -> sp.Expr:
        return self.b.y[m]

    def w(self, m: Any) -> sp.Expr:
        return self._vector(self.problem.spec.weight, self.b.w, m)

    def q(self, m: Any) -> sp.Expr:
        return self._vector(self.problem.spec.pos_weight, self.b.q, m)

    def v(self, m: Any) -> sp.Expr:
        return self.b.v[m]

    def p(self, m: Any) -> sp.Expr:
        return sp.exp(self.x(m)) / self.S if self.space in ("z", "x", "zv", "zs") else self.b.p[m]

    def logp(self, m: Any) -> sp.Expr:
        return sp.log(self.p(m))

    def o(self, m: Any) -> sp.Expr:
        return self.b.z[m] - sp.log(self.S)

    def sigma(self, m: Any) -> sp.Expr:
        return 1 / (1 + sp.exp(-self.b.z[m])) if self.space in ("z", "zv", "zs") else self.b.sigma[m]

    def log_sigma(self, m: Any) -> sp.Expr:
        return sp.log(self.sigma(m))

    def log_one_minus_sigma(self, m: Any) -> sp.Expr:
        return sp.log(1 - self.sigma(m))

    def log(self, v: sp.Expr) -> sp.Expr:
        return sp.log(v)

    def sum(self, f: Callable[[Any], V]) -> sp.Expr:
        """``Sum(f(k), (k, 1, C))`` over the first index name that captures nothing in ``f(k)``."""
        dummy = sp.Dummy("k", integer=True, positive=True)
        body = f(dummy)
        taken = {s.name for s in sp.sympify(body).atoms(sp.Symbol) if s != dummy}
        name = next(n for n in SUM_INDICES if n not in taken)
        k = sp.Symbol(name, integer=True, positive=True)
        return Sum(sp.sympify(body).xreplace({dummy: k}), (k, 1, self.C))

    def delta(self, a: Any, b: Any) -> sp.Expr:
        return KroneckerDelta(a, b)

    def dz(self, v: sp.Expr, j: Any) -> sp.Expr:
        """The derivative by z_j (or by p_j, sigma_j in those spaces), unevaluated sums left to .doit()."""
        var = {"z": self.b.z, "x": self.b.x, "zv": self.b.z, "zs": self.b.z, "p": self.b.p,
               "sigma": self.b.sigma}[self.space][j]
        return sp.diff(v, var)

    def arbitrary(self, m: Any) -> sp.Expr:
        """An arbitrary positive quantity a_m (identities that hold for any targets)."""
        return self.b.a[m]


class GeneralBackend(Backend):
    """Decides the pipeline's identities once, for symbolic class indices in 1..C."""

    def __init__(self, problem: Problem):
        assert isinstance(problem.classes, str)
        self.problem = problem
        spec = problem.spec
        pos_int = {"integer": True, "positive": True}
        self.C = sp.Symbol(problem.classes, **pos_int)
        self.index = {n: sp.Symbol(n, **pos_int) for n in ("i", "j", "t")}
        self.k = sp.Symbol("k", **pos_int)
        self.slack = sp.Symbol("s", integer=True, nonnegative=True)
        self.z = IndexedBase("z", real=True)
        self.y = IndexedBase("y", real=True)
        self.w = IndexedBase("w", positive=True) if spec.weight is SYM else None
        self.q = IndexedBase("q", positive=True) if spec.pos_weight is SYM else None
        self.p = IndexedBase("p", positive=True)
        self.sigma = IndexedBase("sigma", positive=True)
        self.a = IndexedBase("a", positive=True)
        self.v = IndexedBase("v", real=True)  # an arbitrary vector (the Hessian's quadratic form)
        self.total = sp.Symbol("s", real=True)  # the summed effective targets, as a name (space "zs")
        self.eps = sp.Symbol("epsilon", nonnegative=True) if spec.label_smoothing is SYM else None
        self.mask = sp.Symbol("mask", nonnegative=True) if problem.masked else None
        self.den = sp.Symbol("w_total" if spec.denominator == "weights" else "n_samples", positive=True) \
            if spec.denominator is not None else None
        # the z-loss's own denominator N (the counted samples) when the cross-entropy's is W
        self.zden = sp.Symbol("n_samples", positive=True) if Q.split_mean(problem) else None
        self.rest = sp.Symbol("rest", real=True) if spec.reduction != "none" else None
        self.x = IndexedBase("x", real=True)  # the softmax inputs (capped and scaled logits) as variables
        self.lam = option_value(sp.Symbol("lam", nonnegative=True) if spec.z_loss is SYM else None, spec.z_loss, 0)
        self.cap = option_value(sp.Symbol("cap", positive=True) if spec.softcap is SYM else None, spec.softcap, 1)
        self.temp = option_value(sp.Symbol("T", positive=True) if spec.temperature is SYM else None,
                                 spec.temperature, 1)
        self.options = [s for s in (self.lam, self.cap, self.temp) if isinstance(s, sp.Symbol)]
        self.chained = spec.softcap is not None or spec.has_temperature
        self.S = Sum(sp.exp(self.z[self.k]), (self.k, 1, self.C))
        self._algebras: dict[str, GeneralAlgebra] = {}

    def forall(self, over: Sequence[str]) -> str:
        return "for every " + ", ".join(f"1 ≤ {o} ≤ {self.n}" for o in over)

    def algebra(self, space: str = "z") -> GeneralAlgebra:
        if space not in self._algebras:
            self._algebras[space] = GeneralAlgebra(self, space)
        return self._algebras[space]

    @property
    def expressions(self) -> GeneralAlgebra:
        return self.algebra("z")

    @property
    def normalized_given(self) -> dict[sp.Expr, sp.Expr]:
        return {Sum(self.y[self.k], (self.k, 1, self.C)): sp.Integer(1)}

    def zero(self, expr: sp.Expr, given: str | None = None, cases: tuple[str, str] | None = None
             ) -> tuple[bool, sp.Expr]:
        kwargs: dict[str, Any] = {"dummy": self.k, "exp_bases": (self.x,) if self.chained else (self.z,),
                                  "given": self.normalized_given if given == "normalized" else None}
        if self.chained:
            expr = self.in_x(expr)
        if cases is not None:
            a, b = (self.index[c] for c in cases)
            return reduces_to_zero_by_cases(expr, a, b, **kwargs)
        return reduces_to_zero(expr, **kwargs)

    def in_x(self, expr: sp.Expr) -> sp.Expr:
        """``expr`` with every logit z_m written through the softmax input x_m: z_m = cap atanh(T x_m / cap)
        (z_m = T x_m without soft-capping). SymPy evaluates tanh(atanh(v)) to v, so x_m = cap tanh(z_m / cap) / T
        becomes x_m and exp(x_m) the positive u of the zero test: an identity in free x holds at every z."""
        def logit(x: sp.Expr) -> sp.Expr:
            v = self.temp * x if self.problem.spec.has_temperature else x
            return self.cap * sp.atanh(v / self.cap) if self.problem.spec.softcap is not None else v

        zs = [a for a in sp.sympify(expr).atoms(sp.Indexed) if a.base == self.z]
        return sp.sympify(expr).xreplace({a: logit(self.x[a.indices[0]]) for a in zs})

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
        A = self.algebra(space)
        idx = [self.index[o] for o in over]
        checks: list[Check] = []
        kept: dict[str, sp.Expr] = {}

        def decide() -> tuple[bool, str]:
            resolved, proved, unresolved = resolve_piecewise(
                sp.sympify(lhs(A, *idx)).doit(), self.C, [(b, self.slack) for b in idx])
            kept["lhs"] = resolved
            pw = self._piecewise_check(name, proved, unresolved)
            if pw is not None:
                checks.append(pw)
            ok, rest = self.zero(resolved - rhs(A, *idx), given, cases)
            return ok, "" if ok else f"the difference did not reduce to 0; left: {short(rest)}"

        main = guarded(name, statement, method or DIFF_METHOD, 1, decide)
        checks.insert(0, main)

        def at(*values: Any) -> sp.Expr:
            return kept["lhs"].xreplace(dict(zip(idx, values)))

        return checks, Derived(at)

    def _piecewise_check(self, name: str, proved: list[sp.Basic], unresolved: list[sp.Basic]) -> Check | None:
        """The check that every Piecewise condition .doit() produced holds for all indices in range."""
        if not proved and not unresolved:
            return None
        conds = plain_conditions(proved + unresolved)
        idx = sorted({str(x) for c in proved + unresolved for x in c.free_symbols if x != self.C})
        n = self.n
        statement = (
            f".doit() gave a Piecewise on {conds}; the condition holds for every "
            + ", ".join(f"1 ≤ {x} ≤ {n}" for x in idx)
            + ", so its first branch is taken"
        )
        method = (
            f"substitute {n} = " + " or ".join(f"{x} + s" for x in idx)
            + " with an integer s ≥ 0: SymPy evaluates the condition to True"
        )
        detail = "" if not unresolved else f"not shown to hold: {plain_conditions(unresolved)}"
        return Check(f"{name}-piecewise", statement, method, not unresolved, len(proved) + len(unresolved), detail)

    def prove_zero(self, name: str, statement: str, f: Callable[..., Any], method: str,
                   over: Sequence[str] = ()) -> Check:
        idx = [self.index[o] for o in over]

        def decide() -> tuple[bool, str]:
            ok, rest = self.zero(sp.sympify(f(self.expressions, *idx)))
            return ok, "" if ok else f"left: {short(rest)}"

        return guarded(name, statement, method, 1, decide)

    # -- what the documents show ------------------------------------------------
    def method_parts(self) -> tuple[str | Tex, ...]:
        n = self.n
        return (
            "Method: the expressions are written with SymPy's IndexedBase z, y (and the weights) and Sum over "
            f"the {n} classes. sympy.diff by z_j gives KroneckerDelta terms; .doit() sums them into a Piecewise "
            f"on j ≤ {n}, whose branch is taken only after the condition is proved for every class j (with "
            f"{n} = j + s for an integer s ≥ 0, SymPy must evaluate it to True). An equality holds only when the "
            "difference reduces to the literal 0: factors free of the summation index are pulled out of each Sum, "
            "sums are split over +, then together + expand (no simplify)."
            + (" With soft-capping or a temperature, each z_m is written through the softmax input x_m "
               "(z_m = c atanh(T x_m / c), SymPy evaluates tanh(atanh(v)) = v) before the zero test, which then "
               "runs in free x." if self.chained else ""),
        )

    def _resolved(self, expr: sp.Expr, bounds: Sequence[sp.Symbol]) -> sp.Expr:
        out, _proved, _unresolved = resolve_piecewise(expr.doit(), self.C, [(b, self.slack) for b in bounds])
        return out

    def examples(self, name: str, nt: Notation) -> list[Block]:
        A = self.expressions
        i, j = self.index["i"], self.index["j"]
        n = self.n
        if name == "softmax-jacobian":
            raw = sp.diff(A.p(i), self.z[j])
            return [
                Para(("SymPy differentiates ", Tex(rf"p_i = e^{{z_i}} / \sum_{{k=1}}^{{{n}}} e^{{z_k}}",
                                                   "p_i = exp(z_i) / Σ_k exp(z_k)"), " by z_j:")),
                Equation((dz("p_i", "z_j"), raw)),
                Para((f".doit() sums the KroneckerDelta; the Piecewise condition j ≤ {n} holds for every class j, "
                      "so",)),
                Equation((dz("p_i", "z_j"), self._resolved(raw, [j]), self.p[i] * (KroneckerDelta(i, j) - self.p[j]))),
            ]
        if name == "softmax-matrix":
            return [Equation((Tex("J", "J"), Tex(r"\operatorname{diag}(p) - p\,p^{\top}", "diag(p) − p pᵀ")))]
        if name == "sigmoid-jacobian":
            raw = sp.diff(A.sigma(i), self.z[j])
            return [
                Para(("SymPy differentiates ", Tex(r"\sigma_i = 1/(1 + e^{-z_i})", "σ_i = 1/(1 + exp(−z_i))"),
                      " by z_j:")),
                Equation((dz(r"\sigma_i", "z_j", "σ_i", "z_j"), raw,
                          KroneckerDelta(i, j) * self.sigma[i] * (1 - self.sigma[i]))),
            ]
        if name == "direct":
            raw = sp.diff(Q.loss(A), self.z[j])
            return [
                Para((f"sympy.diff, then .doit() with the Piecewise branch for j ≤ {n} (which holds for every "
                      "class j):",)),
                Equation((dz(nt.ell.latex, "z_j", nt.ell.plain), self._resolved(raw, [j]))),
            ]
        if name == "cancellation" and not (self.problem.weighted or self.problem.smoothing or self.problem.masked):
            P = self.algebra("p")
            chain = P.sum(lambda m: Q.dloss_dp(P, m) * Q.softmax_jacobian(P, m, j))
            return [
                Para((f"SymPy sums the KroneckerDelta (.doit()); the branch for j ≤ {n} applies to every class j:",)),
                Equation((dz(nt.ell.latex, "z_j", nt.ell.plain), chain, self._resolved(chain, [j]))),
            ]
        return []
