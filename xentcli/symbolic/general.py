r"""Derivations for a symbolic number of classes C (a letter such as ``n``).

The logits and targets are ``IndexedBase`` objects ``z``, ``y`` (and ``w`` for
class weights) with integer indices ``1 <= i, j, k <= C``; every sum is a
SymPy ``Sum`` with the symbolic upper limit. Derivatives are taken with
``sympy.diff`` on the indexed expressions, which produces ``KroneckerDelta``;
``.doit()`` evaluates the sums over a ``KroneckerDelta`` into a ``Piecewise``
on the index being in range (``j <= C``). Such a ``Piecewise`` is resolved
only after its condition is *proved* for every index in ``1..C``: with
``C = j + s`` for an integer ``s >= 0`` (every pair ``1 <= j <= C`` has this
form) SymPy must evaluate the condition to ``True``.

Equalities are decided by :func:`reduces_to_zero` with predictable
operations only: ``expand_log(force=False)`` over symbols with positivity
assumptions, pulling factors that do not depend on the summation index out of
each ``Sum`` and splitting sums over ``+`` (:func:`normalize_sums`), then each
remaining sum is an opaque atom, ``exp(z[m])`` becomes a positive symbol, and
``together`` + ``expand`` must give the literal 0. There is no ``simplify``:
anything that does not reduce to 0 is a failed check.

A ``--claim`` is proved the same way; when its difference from the derivative
does not reduce to 0 it is instantiated at C = 2, 3, 4 with the concrete
derivation (:mod:`xentcli.symbolic.concrete`), which proves or refutes it
exactly and gives a counterexample. A claim that is neither proved nor
refuted fails as "not proved".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import sympy as sp
from sympy import Indexed, IndexedBase, KroneckerDelta, Piecewise, Sum

from ..errors import XentInputError
from .algebra import is_zero_expr
from .concrete import NUMERIC_POINTS, NUMERIC_RTOL, title
from .model import Check, Derivation, Step, Tex

__all__ = [
    "RESERVED_LETTERS",
    "derive_general",
    "normalize_sums",
    "reduces_to_zero",
    "reduces_to_zero_by_cases",
    "resolve_piecewise",
]

# Letters the number of classes may not be: each already names something in the
# derivation, its JSON strings or SymPy's parser.
RESERVED_LETTERS: dict[str, str] = {
    **{c: "a class index (i, j, k, t) or the slack s of the range proofs" for c in "ijkts"},
    **{c: "a per-class quantity (z, y, w, p, a, o)" for c in "zywpao"},
    "e": "Euler's number in exp/e^z",
    "N": "the batch size N (and sympy.N)",
    "W": "the summed target weights W",
    "R": "the other samples' losses R",
    "L": "the loss L",
    "H": "the entropy H",
    "J": "the Jacobian J",
    **{c: f"SymPy's {c} when the JSON strings are parsed" for c in "EIOQS"},
}
CLAIM_CHECK_CLASSES = (2, 3, 4)
NUMERIC_CLASSES = 4

DIFF_METHOD = (
    "sympy.diff on IndexedBase z, .doit(), proved Piecewise branches taken; then factors free of the summation "
    "index pulled out of each Sum, sums split over +, together + expand: 0"
)
IDENTITY_METHOD = (
    "factors free of the summation index pulled out of each Sum, sums split over +, together + expand: 0"
)
LOG_METHOD = "expand_log over positive symbols, sums normalised as above, together + expand: 0"


# --------------------------------------------------------------------------
# Proof helpers (symbols are passed in; nothing is looked up by name)
# --------------------------------------------------------------------------


def _decide(cond: sp.Basic, classes: sp.Symbol, bounds: Sequence[tuple[sp.Symbol, sp.Symbol]]) -> bool | None:
    """True/False when ``cond`` holds/fails for every index in 1..classes; None when undecided.

    ``bounds`` are pairs (index, slack): the index ranges over 1..classes, so
    ``classes = index + slack`` with an integer ``slack >= 0`` covers every case.
    """
    if cond is sp.true:
        return True
    if cond is sp.false:
        return False
    if isinstance(cond, sp.And):
        vals = [_decide(a, classes, bounds) for a in cond.args]
        if all(v is True for v in vals):
            return True
        return False if any(v is False for v in vals) else None
    if isinstance(cond, sp.Or):
        vals = [_decide(a, classes, bounds) for a in cond.args]
        if any(v is True for v in vals):
            return True
        return False if all(v is False for v in vals) else None
    for index, slack in bounds:
        if index not in cond.free_symbols:
            continue
        got = cond.subs(classes, index + slack)
        if got is sp.true:
            return True
        if got is sp.false:
            return False
    return None


def resolve_piecewise(
    expr: sp.Expr, classes: sp.Symbol, bounds: Sequence[tuple[sp.Symbol, sp.Symbol]]
) -> tuple[sp.Expr, list[sp.Basic], list[sp.Basic]]:
    """Replace every ``Piecewise`` by the branch whose condition is proved for all indices in range.

    A branch is taken only when its condition is proved True and every earlier
    condition proved False (see :func:`_decide`). Returns the new expression,
    the conditions proved, and the conditions that could not be decided (their
    ``Piecewise`` is left in place, so a later zero test fails too).
    """
    proved: list[sp.Basic] = []
    unresolved: list[sp.Basic] = []

    def pick(pw: Piecewise) -> sp.Expr:
        for branch, cond in pw.args:
            verdict = _decide(cond, classes, bounds)
            if verdict is True:
                if cond is not sp.true:
                    proved.append(cond)
                return branch
            if verdict is None:
                unresolved.append(cond)
                return pw
        unresolved.append(pw.args[-1].cond)
        return pw

    out = expr.replace(lambda e: isinstance(e, Piecewise), pick)
    return out, proved, unresolved


def _pull_out(summand: sp.Expr, limit: tuple, dummy: sp.Symbol) -> sp.Expr:
    var, lo, hi = limit
    out = []
    for term in sp.Add.make_args(sp.expand(summand)):
        coeff, dep = term.as_independent(var, as_Add=False)
        if dep == 1:
            out.append(coeff * (hi - lo + 1))
            continue
        v = var
        if var != dummy and not dep.has(dummy):
            dep, v = dep.xreplace({var: dummy}), dummy
        out.append(coeff * Sum(dep, (v, lo, hi)))
    return sp.Add(*out)


def normalize_sums(expr: sp.Expr, dummy: sp.Symbol) -> sp.Expr:
    """Pull factors free of the summation index out of every ``Sum`` and split sums over ``+``.

    Innermost sums first. A remaining single sum is renamed to run over
    ``dummy`` (when that captures nothing), so equal sums written with
    different indices become the same object. ``Sum(c, (k, a, b))`` with
    ``c`` free of ``k`` becomes ``c*(b - a + 1)``.
    """
    if not isinstance(expr, sp.Basic) or not expr.has(Sum):
        return expr
    if isinstance(expr, Sum):
        body = normalize_sums(expr.function, dummy)
        if len(expr.limits) != 1:
            return Sum(body, *expr.limits)
        return _pull_out(body, expr.limits[0], dummy)
    args = [normalize_sums(a, dummy) if isinstance(a, sp.Basic) else a for a in expr.args]
    return expr.func(*args)


def reduces_to_zero(
    expr: sp.Expr,
    *,
    dummy: sp.Symbol,
    exp_bases: Iterable[IndexedBase] = (),
    given: dict[sp.Expr, sp.Expr] | None = None,
) -> tuple[bool, sp.Expr]:
    """Decide ``expr == 0`` with predictable steps only; return (proved, what is left).

    1. ``expand_log(force=False)`` (logs of products of positive factors split);
    2. :func:`normalize_sums` with ``dummy``;
    3. the substitutions ``given`` (e.g. ``Sum(y[k], (k, 1, C)) -> 1``), applied to
       the normalised sums;
    4. each remaining ``Sum`` becomes an opaque symbol (positive when SymPy knows the
       sum is), each ``b[m]`` for ``b`` in ``exp_bases`` becomes ``log(u)`` with
       ``u > 0``, so ``exp(b[m])`` is ``u``;
    5. ``expand_log``, then ``together`` + ``expand`` of the numerator must give 0.

    An exception inside SymPy gives (False, ``error: ...``): a failed check, never a pass.
    """
    try:
        return _reduces_to_zero(expr, dummy=dummy, exp_bases=exp_bases, given=given)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - an error inside SymPy is a failed check, never a pass
        return False, _error_symbol(exc)


def _error_symbol(exc: BaseException) -> sp.Symbol:
    """What is 'left' when SymPy raised: the exception, named, in one line."""
    text = " ".join(str(exc).split())[:200]
    return sp.Symbol(f"error: {type(exc).__name__} raised during the check" + (f" ({text})" if text else ""))


def _reduces_to_zero(
    expr: sp.Expr,
    *,
    dummy: sp.Symbol,
    exp_bases: Iterable[IndexedBase],
    given: dict[sp.Expr, sp.Expr] | None,
) -> tuple[bool, sp.Expr]:
    e = sp.expand_log(expr, force=False)
    e = normalize_sums(e, dummy)
    if given:
        e = e.xreplace(given)
    sums = sorted(e.atoms(Sum), key=sp.default_sort_key)
    atoms = {}
    for n, s in enumerate(sums):
        kind = {"positive": True} if s.is_positive else ({"real": True} if s.is_real else {})
        atoms[s] = sp.Dummy(f"sum{n}", **kind)
    e = e.xreplace(atoms)
    bases = set(exp_bases)
    idx = sorted((a for a in e.atoms(Indexed) if a.base in bases), key=sp.default_sort_key)
    e = e.xreplace({a: sp.log(sp.Dummy(f"u_{a.base}", positive=True)) for a in idx})
    e = sp.expand_log(sp.powsimp(sp.expand_power_exp(e)), force=False)
    if is_zero_expr(e):
        return True, sp.Integer(0)
    back = {v: k for k, v in atoms.items()}
    return False, e.xreplace(back)


def reduces_to_zero_by_cases(
    expr: sp.Expr, a: sp.Symbol, b: sp.Symbol, **kwargs
) -> tuple[bool, sp.Expr]:
    """:func:`reduces_to_zero` in the two cases of ``KroneckerDelta(a, b)``.

    Case b = a: ``b`` is substituted by ``a`` (the delta becomes 1). Case b != a:
    the delta is replaced by 0 and the rest must vanish identically in a and b.
    Both must reduce to 0. (Needed e.g. for ``w_j δ_jt = w_t δ_jt``.)
    """
    try:
        case_same = expr.subs(b, a)
        case_other = expr.xreplace({KroneckerDelta(a, b): 0, KroneckerDelta(b, a): 0})
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - never a pass
        return False, _error_symbol(exc)
    same, rest_same = reduces_to_zero(case_same, **kwargs)
    other, rest_other = reduces_to_zero(case_other, **kwargs)
    if same and other:
        return True, sp.Integer(0)
    return False, rest_same if not same else rest_other


def _plain_cond(conds: Iterable[sp.Basic]) -> str:
    seen: list[str] = []
    for c in conds:
        text = str(c).replace("<=", "≤").replace(">=", "≥")
        if text not in seen:
            seen.append(text)
    return ", ".join(seen)


def _short(expr: sp.Expr, limit: int = 160) -> str:
    text = str(expr)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------
# The derivation
# --------------------------------------------------------------------------


def check_letter(letter: str) -> str:
    """The validated letter for the symbolic number of classes; XentInputError otherwise."""
    if not isinstance(letter, str) or len(letter) != 1 or not (letter.isascii() and letter.isalpha()):
        raise XentInputError(f"{letter!r} is not a single ASCII letter (symbolic C)", source="--classes")
    if letter in RESERVED_LETTERS:
        raise XentInputError(
            f"{letter!r} clashes with {RESERVED_LETTERS[letter]}; use another letter for the number of classes "
            "(for example n or C)",
            source="--classes",
        )
    return letter


class General:
    """One symbolic-C derivation under construction: symbols, expressions, proof helpers."""

    def __init__(
        self,
        letter: str,
        *,
        loss: str,
        mean: bool,
        smoothing: bool,
        weights: bool,
        assume_normalized: bool,
    ):
        if loss not in ("ce", "nll", "kl", "bce"):
            raise XentInputError(f"unknown loss {loss!r} (ce, nll, kl or bce)", source="--loss")
        self.letter = check_letter(letter)
        self.loss = loss
        self.family = "bce" if loss == "bce" else "softmax"
        self.mean = mean
        self.assume_normalized = assume_normalized and self.family == "softmax"
        pos_int = {"integer": True, "positive": True}
        self.C = sp.Symbol(letter, **pos_int)
        self.i, self.j, self.k, self.t = (sp.Symbol(n, **pos_int) for n in "ijkt")
        self.s = sp.Symbol("s", integer=True, nonnegative=True)
        self.z = IndexedBase("z", real=True)
        self.y = IndexedBase("y", real=True)
        self.w = IndexedBase("w", positive=True) if weights else None
        self.p = IndexedBase("p", positive=True)  # softmax outputs as independent variables
        self.sigma = IndexedBase("sigma", positive=True)  # sigmoid outputs as independent variables
        self.eps = sp.Symbol("epsilon", nonnegative=True) if smoothing else None
        self.den = self.rest = None
        if mean:
            self.den = sp.Symbol("W" if weights and self.family == "softmax" else "N", positive=True)
            self.rest = sp.Symbol("R", real=True)
        self.J: sp.Expr | None = None  # the derived softmax Jacobian entry (i, j), set by its step

    # ------------------------------------------------------------ expressions

    @property
    def S(self) -> sp.Expr:
        k = self.k
        return Sum(sp.exp(self.z[k]), (k, 1, self.C))

    def p_z(self, m: sp.Expr) -> sp.Expr:
        return sp.exp(self.z[m]) / self.S

    def sigma_z(self, m: sp.Expr) -> sp.Expr:
        return 1 / (1 + sp.exp(-self.z[m]))

    def tilde(self, m: sp.Expr) -> sp.Expr:
        y = self.y[m]
        return (1 - self.eps) * y + self.eps / self.C if self.eps is not None else y

    def target(self, m: sp.Expr) -> sp.Expr:
        """The effective target a_m = w_m ((1 - eps) y_m + eps/C)."""
        t = self.tilde(m)
        return self.w[m] * t if self.w is not None else t

    def total(self) -> sp.Expr:
        k = self.k
        return Sum(self.target(k), (k, 1, self.C))

    def grad(self, m: sp.Expr, p_of: Callable[[sp.Expr], sp.Expr] | None = None) -> sp.Expr:
        """The per-sample gradient at class m: p_m Σa − a_m, or w_m (σ_m − y_m) for BCE."""
        if self.family == "bce":
            g = (p_of or self.sigma_z)(m) - self.y[m]
            return self.w[m] * g if self.w is not None else g
        return (p_of or self.p_z)(m) * self.total() - self.target(m)

    @property
    def factor(self) -> sp.Expr | None:
        """What the batch mean divides by: N, N·C (BCE) or W; None without mean."""
        if self.den is None:
            return None
        return self.den * self.C if self.family == "bce" else self.den

    def scaled(self, e: sp.Expr) -> sp.Expr:
        return e if self.factor is None else e / self.factor

    def loss_z(self) -> sp.Expr:
        """The per-sample loss ℓ(z) with the sum over i."""
        i, C = self.i, self.C
        if self.family == "bce":
            y, sg = self.y[i], self.sigma_z(i)
            term = y * sp.log(sg) + (1 - y) * sp.log(1 - sg)
            if self.w is not None:
                term = self.w[i] * term
            return -Sum(term, (i, 1, C))
        a = self.target(i)
        if self.loss == "ce":
            return -Sum(a * sp.log(self.p_z(i)), (i, 1, C))
        if self.loss == "nll":
            return -Sum(a * (self.z[i] - sp.log(self.S)), (i, 1, C))
        return Sum(a * sp.log(a / self.p_z(i)), (i, 1, C))

    @property
    def normalized_given(self) -> dict[sp.Expr, sp.Expr]:
        return {Sum(self.y[self.k], (self.k, 1, self.C)): sp.Integer(1)}

    # ------------------------------------------------------------ proof steps

    def doit(self, expr: sp.Expr, bounds: Sequence[sp.Symbol]) -> tuple[sp.Expr, list[sp.Basic], list[sp.Basic]]:
        """``expr.doit()`` with its Piecewise branches resolved for indices ``bounds`` in 1..C."""
        return resolve_piecewise(expr.doit(), self.C, [(b, self.s) for b in bounds])

    def piecewise_check(self, name: str, proved: list, unresolved: list) -> Check | None:
        """The check that every Piecewise condition .doit() produced holds for all indices in range."""
        if not proved and not unresolved:
            return None
        conds = _plain_cond(proved + unresolved)
        idx = sorted({str(x) for c in proved + unresolved for x in c.free_symbols if x != self.C})
        n = self.letter
        statement = (
            f".doit() gave a Piecewise on {conds}; the condition holds for every "
            + ", ".join(f"1 ≤ {x} ≤ {n}" for x in idx)
            + ", so its first branch is taken"
        )
        method = (
            f"substitute {n} = " + " or ".join(f"{x} + s" for x in idx)
            + " with an integer s ≥ 0: SymPy evaluates the condition to True"
        )
        detail = "" if not unresolved else f"not shown to hold: {_plain_cond(unresolved)}"
        return Check(f"{name}-piecewise", statement, method, not unresolved, len(proved) + len(unresolved), detail)

    def zero(
        self, expr: sp.Expr, given: dict | None = None, cases: tuple[sp.Symbol, sp.Symbol] | None = None
    ) -> tuple[bool, sp.Expr]:
        kwargs = dict(dummy=self.k, exp_bases=(self.z,), given=given)
        if cases is not None:
            return reduces_to_zero_by_cases(expr, *cases, **kwargs)
        return reduces_to_zero(expr, **kwargs)

    def prove(
        self,
        st: Step,
        name: str,
        statement: str,
        derived: sp.Expr,
        closed: sp.Expr,
        *,
        method: str = DIFF_METHOD,
        bounds: Sequence[sp.Symbol] = (),
        doit: bool = True,
        given: dict | None = None,
        cases: tuple[sp.Symbol, sp.Symbol] | None = None,
    ) -> sp.Expr:
        """Append the checks that ``derived`` (after .doit() and Piecewise resolution) equals ``closed``."""
        try:
            if doit:
                resolved, proved, unresolved = self.doit(derived, bounds)
                pw = self.piecewise_check(name, proved, unresolved)
                if pw is not None:
                    st.checks.append(pw)
                derived = resolved
            ok, rest = self.zero(derived - closed, given, cases)
            detail = "" if ok else f"the difference did not reduce to 0; left: {_short(rest)}"
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - an error inside SymPy is a failed check, never a pass
            ok, detail = False, str(_error_symbol(exc))
        st.checks.append(Check(name, statement, method, ok, 1, detail))
        return derived


# --------------------------------------------------------------------------
# Notation shared by the steps
# --------------------------------------------------------------------------


def _dz(a: str, b: str, plain_a: str | None = None, plain_b: str | None = None) -> Tex:
    return Tex(rf"\frac{{\partial {a}}}{{\partial {b}}}", f"∂{plain_a or a}/∂{plain_b or b}")


def _target_notation(g: General) -> tuple[str, str]:
    base_t, base_p = (r"\tilde{y}_i", "ỹ_i") if g.eps is not None else ("y_i", "y_i")
    if g.w is not None:
        return rf"w_i {base_t}", f"w_i {base_p}"
    return base_t, base_p


def _loss_name(g: General) -> tuple[str, str]:
    return (r"\ell", "ℓ") if g.mean else ("L", "L")


def _grad_tex(g: General, sub: str = "j") -> tuple[str, str]:
    at, ap = _target_notation(g)
    n = g.letter
    at_j, ap_j = at.replace("_i", f"_{sub}"), ap.replace("_i", f"_{sub}")
    return rf"p_{sub} \sum_{{i=1}}^{{{n}}} {at} - {at_j}", f"p_{sub} Σ_i {ap} − {ap_j}"


def _bce_grad_tex(g: General) -> tuple[str, str]:
    return (r"w_j(\sigma_j - y_j)", "w_j(σ_j − y_j)") if g.w is not None else (r"\sigma_j - y_j", "σ_j − y_j")


def _den_tex(g: General) -> tuple[str, str]:
    if g.den is None:
        return "", ""
    if g.den.name == "W":
        return "W", "W"
    if g.family == "bce":
        return f"N {g.letter}", f"(N·{g.letter})"
    return "N", "N"


def _vec(name: str, n: str) -> Tex:
    return Tex(rf"{name} = ({name}_{{1}}, \dots, {name}_{{{n}}})", f"{name} = ({name}1, …, {name}{n})")


def _definitions(g: General) -> Step:
    n = g.letter
    st = Step("Definitions")
    st.say(
        f"One sample with a symbolic number of classes C = {n} (any positive integer): logits ",
        _vec("z", n),
        " and targets ",
        _vec("y", n),
        f", indexed by i, j, k ∈ {{1, …, {n}}}.",
    )
    ln, lp = _loss_name(g)
    at, ap = _target_notation(g)
    if g.family == "bce":
        st.say(f"Each of the {n} outputs is its own binary problem (sigmoid, then binary cross-entropy).")
        st.eq(Tex(r"\sigma_i", "σ_i"), Tex(r"\frac{1}{1 + e^{-z_i}}", "1 / (1 + exp(−z_i))"), note=f"for i = 1, …, {n}")
        wt, wp = (r"w_i\,", "w_i ") if g.w is not None else ("", "")
        st.eq(
            Tex(ln, lp),
            Tex(
                rf"-\sum_{{i=1}}^{{{n}}} {wt}\left[y_i \log \sigma_i + (1 - y_i) \log(1 - \sigma_i)\right]",
                f"−Σ_i {wp}[y_i log σ_i + (1 − y_i) log(1 − σ_i)]",
            ),
        )
    else:
        st.eq(
            Tex("p_i", "p_i"),
            Tex(rf"\frac{{e^{{z_i}}}}{{\sum_{{k=1}}^{{{n}}} e^{{z_k}}}}", "exp(z_i) / Σ_k exp(z_k)"),
            note=f"softmax, for i = 1, …, {n}",
        )
        if g.eps is not None:
            st.say("Label smoothing with ", Tex(r"0 \le \epsilon \le 1", "0 ≤ ε ≤ 1"), " replaces each target by")
            st.eq(
                Tex(r"\tilde{y}_i", "ỹ_i"),
                Tex(rf"(1 - \epsilon)\, y_i + \frac{{\epsilon}}{{{n}}}", f"(1 − ε) y_i + ε/{n}"),
            )
        if g.w is not None:
            st.say("Class weights ", _vec("w", n), " scale each class's term (PyTorch's weight).")
        if g.loss == "ce":
            st.eq(Tex(ln, lp), Tex(rf"-\sum_{{i=1}}^{{{n}}} {at} \log p_i", f"−Σ_i {ap} log p_i"))
        elif g.loss == "nll":
            st.say("LogSoftmax followed by the negative log-likelihood (NLLLoss):")
            st.eq(
                Tex("o_i", "o_i"),
                Tex(rf"z_i - \log \sum_{{k=1}}^{{{n}}} e^{{z_k}}", "z_i − log Σ_k exp(z_k)"),
                note="LogSoftmax",
            )
            st.eq(Tex(ln, lp), Tex(rf"-\sum_{{i=1}}^{{{n}}} {at}\, o_i", f"−Σ_i {ap} o_i"))
        else:
            st.say("The Kullback–Leibler divergence of the prediction p from the target distribution:")
            st.eq(
                Tex(ln, lp),
                Tex(rf"\sum_{{i=1}}^{{{n}}} {at} \log \frac{{{at}}}{{p_i}}", f"Σ_i {ap} log({ap} / p_i)"),
                note="KL(y ‖ p); a term with target 0 is 0",
            )
    if g.mean:
        dt, dp = _den_tex(g)
        if g.den.name == "W":
            st.say(
                "Batch mean (PyTorch's weighted mean): the summed target weights W of the batch divide the sum of "
                "the per-sample losses. R, the losses of the other samples, and W do not depend on z."
            )
        elif g.family == "bce":
            st.say(
                f"Batch mean over N samples: PyTorch's mean divides by the number of elements, N·{n}. "
                "R, the losses of the other N − 1 samples, does not depend on z."
            )
        else:
            st.say(
                "Batch mean over N samples (the seed's mean loss). R, the losses of the other N − 1 samples, "
                "does not depend on z."
            )
        st.eq(Tex("L", "L"), Tex(rf"\frac{{\ell + R}}{{{dt}}}", f"(ℓ + R) / {dp}"))
    if g.assume_normalized:
        st.say(
            "Assumption (stated, and applied only in the last step): ",
            Tex(rf"\sum_{{i=1}}^{{{n}}} y_i = 1", "Σ_i y_i = 1"),
            " — one-hot or probability targets. Without it the result is the general form.",
        )
    st.say(
        "Method: the expressions are written with SymPy's IndexedBase z, y"
        + (", w" if g.w is not None else "")
        + f" and Sum over the symbolic {n}. sympy.diff by z_j gives KroneckerDelta terms; .doit() sums them into "
        f"a Piecewise on j ≤ {n}, whose branch is taken only after the condition is proved for every 1 ≤ j ≤ {n} "
        f"(with {n} = j + s, s ≥ 0 an integer, SymPy must evaluate it to True). An equality holds only when the "
        "difference reduces to the literal 0: factors free of the summation index are pulled out of each Sum, sums "
        "are split over +, then together + expand (no simplify).",
    )
    return st


# ------------------------------------------------------------------ softmax


def _softmax_jacobian(g: General) -> Step:
    i, j, z, p = g.i, g.j, g.z, g.p
    n = g.letter
    st = Step("Softmax Jacobian")
    raw = sp.diff(g.p_z(i), z[j])
    st.say(
        "SymPy differentiates ",
        Tex(rf"p_i = e^{{z_i}} / \sum_{{k=1}}^{{{n}}} e^{{z_k}}", "p_i = exp(z_i)/Σ_k exp(z_k)"),
        " by z_j:",
    )
    st.eq(_dz("p_i", "z_j"), raw)
    resolved = g.prove(
        st,
        "jacobian",
        f"∂p_i/∂z_j = δ_ij p_i − p_i p_j for every 1 ≤ i, j ≤ {n}",
        raw,
        g.p_z(i) * (KroneckerDelta(i, j) - g.p_z(j)),
        bounds=[j],
    )
    st.say(f".doit() sums the KroneckerDelta; the Piecewise condition j ≤ {n} holds for every class j, so")
    st.eq(_dz("p_i", "z_j"), resolved, p[i] * (KroneckerDelta(i, j) - p[j]))
    st.eq(
        _dz("p_i", "z_j"),
        Tex(r"\delta_{ij}\, p_i - p_i p_j", "δ_ij p_i − p_i p_j"),
        note="p_i(1 − p_i) on the diagonal, −p_i p_j off it",
    )
    st.eq(Tex("J", "J"), Tex(r"\operatorname{diag}(p) - p\,p^{\top}", "diag(p) − p pᵀ"))
    g.J = resolved
    return st


def _nll_identities(g: General) -> Step:
    i, k, C = g.i, g.k, g.C
    n = g.letter
    st = Step("LogSoftmax + NLL is cross-entropy")
    st.say("LogSoftmax is the logarithm of softmax, computed without forming p (003_*.txt):")
    st.eq(
        Tex("o_i", "o_i"),
        Tex(rf"z_i - \log \sum_{{k=1}}^{{{n}}} e^{{z_k}}", "z_i − log Σ_k exp(z_k)"),
        Tex(r"\log p_i", "log p_i"),
    )
    at, ap = _target_notation(g)
    ln, lp = _loss_name(g)
    st.say("so the NLL of the LogSoftmax outputs is the cross-entropy:")
    st.eq(Tex(ln, lp), Tex(rf"-\sum_i {at}\, o_i", f"−Σ_i {ap} o_i"), Tex(rf"-\sum_i {at} \log p_i", f"−Σ_i {ap} log p_i"))
    o = lambda m: g.z[m] - sp.log(g.S)  # noqa: E731
    ok, rest = g.zero(o(i) - sp.log(g.p_z(i)))
    st.checks.append(
        Check("log-softmax-is-log-p", f"o_i − log p_i = 0 for every 1 ≤ i ≤ {n}", LOG_METHOD, ok, 1,
              "" if ok else f"left: {_short(rest)}")
    )
    a = IndexedBase("a", positive=True)
    diff = -Sum(a[i] * o(i), (i, 1, C)) + Sum(a[k] * sp.log(g.p_z(k)), (k, 1, C))
    ok, rest = g.zero(diff)
    st.checks.append(
        Check("nll-equals-ce", "−Σ_i a_i o_i − (−Σ_i a_i log p_i) = 0 for any targets a", LOG_METHOD, ok, 1,
              "" if ok else f"left: {_short(rest)}")
    )
    return st


def _kl_identity(g: General) -> Step:
    i, C = g.i, g.C
    st = Step("KL divergence and cross-entropy")
    at, ap = _target_notation(g)
    st.say("Splitting the logarithm (003_*.txt):")
    st.eq(
        Tex(r"\mathrm{KL}(y \,\|\, p)", "KL(y ‖ p)"),
        Tex(rf"\sum_i {at} \log {at} - \sum_i {at} \log p_i", f"Σ_i {ap} log {ap} − Σ_i {ap} log p_i"),
        Tex(r"\mathrm{CE}(y, p) - H(y)", "CE(y, p) − H(y)"),
    )
    st.say(
        "The entropy ",
        Tex(rf"H(y) = -\sum_i {at} \log {at}", f"H(y) = −Σ_i {ap} log {ap}"),
        " does not depend on z, so KL and cross-entropy have the same gradient; they differ by H(y) "
        "(0 for one-hot targets).",
    )
    a = IndexedBase("a", positive=True)
    kl = Sum(a[i] * sp.log(a[i] / g.p_z(i)), (i, 1, C))
    ce = -Sum(a[i] * sp.log(g.p_z(i)), (i, 1, C))
    h = -Sum(a[i] * sp.log(a[i]), (i, 1, C))
    ok, rest = g.zero(kl - (ce - h))
    st.checks.append(
        Check(
            "kl-equals-ce-minus-entropy",
            "KL(a ‖ p) − (CE(a, p) − H(a)) = 0 for any positive targets a (a zero target contributes 0 to all three)",
            LOG_METHOD,
            ok,
            1,
            "" if ok else f"left: {_short(rest)}",
        )
    )
    return st


def _chain_rule(g: General) -> list[Step]:
    i, j, k, C, p = g.i, g.j, g.k, g.C, g.p
    n = g.letter
    at, ap = _target_notation(g)
    ln, lp = _loss_name(g)
    a = g.target
    G = g.grad(j)
    st = Step("Chain rule")
    if g.loss == "nll":
        st.say("Through the LogSoftmax outputs o: first ", Tex(rf"\partial {ln}/\partial o_i", f"∂{lp}/∂o_i"), ",")
        st.eq(_dz(ln, "o_i", lp), Tex(f"-{at}", f"−{ap}"))
        st.say("then the LogSoftmax Jacobian, from ", Tex(r"o_i = z_i - \log \sum_k e^{z_k}", "o_i = z_i − log Σ exp(z_k)"), ":")
        raw = sp.diff(g.z[i] - sp.log(g.S), g.z[j])
        st.eq(_dz("o_i", "z_j"), raw, Tex(r"\delta_{ij} - p_j", "δ_ij − p_j"))
        Jo = g.prove(
            st,
            "log-softmax-jacobian",
            f"∂o_i/∂z_j = δ_ij − p_j for every 1 ≤ i, j ≤ {n}",
            raw,
            KroneckerDelta(i, j) - g.p_z(j),
            bounds=[j],
        )
        st.eq(
            _dz(ln, "z_j", lp),
            Tex(rf"\sum_{{i=1}}^{{{n}}} \frac{{\partial {ln}}}{{\partial o_i}} \frac{{\partial o_i}}{{\partial z_j}}", f"Σ_i ∂{lp}/∂o_i ∂o_i/∂z_j"),
            Tex(rf"\sum_{{i=1}}^{{{n}}} -{at} \left(\delta_{{ij}} - p_j\right)", f"Σ_i −{ap} (δ_ij − p_j)"),
            Tex(*_grad_tex(g)),
        )
        g.prove(
            st,
            "chain-rule",
            f"Σ_i −a_i ∂o_i/∂z_j, with the derived LogSoftmax Jacobian, = p_j Σ_i a_i − a_j for every 1 ≤ j ≤ {n}",
            Sum(-a(i) * Jo, (i, 1, C)),
            G,
            bounds=[j],
        )
        return [st]

    st.say("The loss depends on z only through p. Its derivative by each p_i:")
    st.eq(_dz(ln, "p_i", lp), Tex(rf"-\frac{{{at}}}{{p_i}}", f"−{ap}/p_i"))
    if g.loss == "kl":
        Lp = Sum(a(k) * sp.log(a(k)) - a(k) * sp.log(p[k]), (k, 1, C))
    else:
        Lp = -Sum(a(k) * sp.log(p[k]), (k, 1, C))
    g.prove(
        st,
        "dloss-dp",
        f"∂{lp}/∂p_i = −a_i/p_i for every 1 ≤ i ≤ {n}, differentiating {lp} as a function of independent p",
        sp.diff(Lp, p[i]),
        -a(i) / p[i],
        bounds=[i],
    )
    st.say("and the chain rule with the Jacobian of the previous step:")
    st.eq(
        _dz(ln, "z_j", lp),
        Tex(rf"\sum_{{i=1}}^{{{n}}} \frac{{\partial {ln}}}{{\partial p_i}} \frac{{\partial p_i}}{{\partial z_j}}", f"Σ_i ∂{lp}/∂p_i ∂p_i/∂z_j"),
        Tex(
            rf"\sum_{{i=1}}^{{{n}}} \left(-\frac{{{at}}}{{p_i}}\right) \left(\delta_{{ij}}\, p_i - p_i p_j\right)",
            f"Σ_i (−{ap}/p_i)(δ_ij p_i − p_i p_j)",
        ),
    )
    canc = Step("Cancellation")
    canc.say("Every Jacobian entry carries the factor p_i, which cancels the 1/p_i of the logarithm's derivative:")
    canc.eq(
        Tex(
            rf"\sum_{{i=1}}^{{{n}}} \left(-\frac{{{at}}}{{p_i}}\right) \left(\delta_{{ij}}\, p_i - p_i p_j\right)",
            f"Σ_i (−{ap}/p_i)(δ_ij p_i − p_i p_j)",
        ),
        Tex(rf"\sum_{{i=1}}^{{{n}}} -{at} \left(\delta_{{ij}} - p_j\right)", f"Σ_i −{ap} (δ_ij − p_j)"),
        Tex(*_grad_tex(g)),
    )
    chain_p = Sum((-a(i) / p[i]) * (KroneckerDelta(i, j) * p[i] - p[i] * p[j]), (i, 1, C))
    if g.w is None and g.eps is None:
        canc.say(f"SymPy sums the KroneckerDelta (.doit()); the branch for j ≤ {n} applies to every class j:")
        canc.eq(_dz(ln, "z_j", lp), chain_p, chain_p.doit())
    g.prove(
        canc,
        "cancellation",
        f"Σ_i (−a_i/p_i)(δ_ij p_i − p_i p_j) = p_j Σ_i a_i − a_j for every 1 ≤ j ≤ {n} (an identity in any p)",
        chain_p,
        p[j] * g.total() - a(j),
        bounds=[j],
    )
    g.prove(
        canc,
        "chain-rule",
        f"Σ_i ∂{lp}/∂p_i · ∂p_i/∂z_j, with the derived Jacobian, = p_j Σ_i a_i − a_j for every 1 ≤ j ≤ {n}",
        Sum((-a(i) / g.p_z(i)) * g.J, (i, 1, C)),
        G,
        bounds=[j],
    )
    return [st, canc]


def _direct(g: General) -> Step:
    j = g.j
    n = g.letter
    ln, lp = _loss_name(g)
    st = Step("Direct differentiation")
    st.say(
        "Differentiating the loss as a function of z, without the chain rule: sympy.diff, then .doit() with the "
        f"Piecewise branch for j ≤ {n} (which holds for every class j):"
    )
    raw = sp.diff(g.loss_z(), g.z[j])
    if g.family == "bce":
        gt = _bce_grad_tex(g)
        statement = f"∂{lp}/∂z_j = " + gt[1] + f" for every 1 ≤ j ≤ {n}"
    else:
        gt = _grad_tex(g)
        statement = f"∂{lp}/∂z_j = p_j Σ_i a_i − a_j for every 1 ≤ j ≤ {n}"
    derived = g.prove(st, "direct", statement, raw, g.grad(j), bounds=[j])
    st.eq(_dz(ln, "z_j", lp), derived, Tex(*gt))
    return st


def _one_hot(g: General, st: Step) -> None:
    j, k, t, C = g.j, g.k, g.t, g.C
    n = g.letter
    st.say("For a class-index target t (y = e_t, y_k = δ_kt), as PyTorch's weight applies it:")
    w = g.w
    if g.eps is None:
        closed = w[t] * (g.p_z(j) - KroneckerDelta(j, t))
        st.eq(_dz(r"\ell", "z_j", "ℓ"), Tex(r"w_t \left(p_j - \delta_{jt}\right)", "w_t (p_j − δ_jt)"))
        want = "w_t (p_j − δ_jt)"
    else:
        eps = g.eps
        closed = g.p_z(j) * ((1 - eps) * w[t] + eps / C * Sum(w[k], (k, 1, C))) - w[j] * (
            (1 - eps) * KroneckerDelta(j, t) + eps / C
        )
        st.eq(
            _dz(r"\ell", "z_j", "ℓ"),
            Tex(
                rf"p_j \left((1-\epsilon) w_t + \frac{{\epsilon}}{{{n}}} \sum_c w_c\right) - w_j \left((1-\epsilon)\delta_{{jt}} + \frac{{\epsilon}}{{{n}}}\right)",
                f"p_j ((1−ε) w_t + (ε/{n}) Σ_c w_c) − w_j ((1−ε) δ_jt + ε/{n})",
            ),
        )
        want = f"p_j ((1−ε) w_t + (ε/{n}) Σ_c w_c) − w_j ((1−ε) δ_jt + ε/{n})"
    y = g.y
    onehot = g.grad(j).replace(lambda e: isinstance(e, Indexed) and e.base == y, lambda e: KroneckerDelta(e.indices[0], t))
    g.prove(
        st,
        "one-hot-targets",
        f"for every target class 1 ≤ t ≤ {n} and every 1 ≤ j ≤ {n}: with y_k = δ_kt the gradient p_j Σ_k a_k − a_j is {want}",
        onehot,
        closed,
        method=DIFF_METHOD + "; in the two cases t = j and t ≠ j (δ_jt = 0) separately",
        bounds=[t, j],
        cases=(j, t),
    )


def _result(g: General) -> Step:
    j = g.j
    n = g.letter
    st = Step("Result")
    dt, dp = _den_tex(g)
    lhs = _dz("L", "z_j")

    def scaled_tex(t: str, p: str) -> Tex:
        if not dt:
            return Tex(t, p)
        return Tex(rf"\frac{{{t}}}{{{dt}}}", f"({p}) / {dp}")

    if g.family == "bce":
        gt, gp = _bce_grad_tex(g)
        st.eq(lhs, scaled_tex(gt, gp), note=f"for every 1 ≤ j ≤ {n}: the gradient is p − c of 001_*.txt")
        vt, vp = (r"w \odot (\sigma(z) - y)", "w ⊙ (σ(z) − y)") if g.w is not None else (r"\sigma(z) - y", "σ(z) − y")
        st.eq(Tex(r"\nabla_z L", "∇_z L"), scaled_tex(vt, vp))
        return st
    gt, gp = _grad_tex(g)
    st.eq(lhs, scaled_tex(gt, gp), note=f"for every 1 ≤ j ≤ {n}, with no assumption on the targets")
    if g.assume_normalized and g.w is None:
        tt, tp = (r"\tilde{y}_j", "ỹ_j") if g.eps is not None else ("y_j", "y_j")
        if g.eps is not None:
            st.say(
                "With ",
                Tex(rf"\sum_{{i=1}}^{{{n}}} y_i = 1", "Σ_i y_i = 1"),
                " the smoothed targets also sum to 1: ",
                Tex(
                    rf"\sum_i \tilde{{y}}_i = (1 - \epsilon) + {n} \cdot \frac{{\epsilon}}{{{n}}} = 1",
                    f"Σ_i ỹ_i = (1 − ε) + {n}·ε/{n} = 1",
                ),
                ", so",
            )
        else:
            st.say("With ", Tex(rf"\sum_{{i=1}}^{{{n}}} y_i = 1", "Σ_i y_i = 1"), " the sum drops out:")
        st.eq(lhs, scaled_tex(f"p_j - {tt}", f"p_j − {tp}"))
        if g.eps is not None:
            st.eq(
                lhs,
                scaled_tex(
                    rf"p_j - \left((1 - \epsilon)\, y_j + \frac{{\epsilon}}{{{n}}}\right)", f"p_j − ((1 − ε) y_j + ε/{n})"
                ),
            )
        vt, vp = (r"p - \tilde{y}", "p − ỹ") if g.eps is not None else ("p - y", "p − y")
        st.eq(Tex(r"\nabla_z L", "∇_z L"), scaled_tex(vt, vp))
        g.prove(
            st,
            "normalized-targets",
            f"with Sum(y[k], (k, 1, {n})) = 1 substituted: the gradient equals "
            + ("p_j − ((1 − ε) y_j + ε/C)" if g.eps is not None else "p_j − y_j")
            + (f" over {dp}" if dp else "")
            + f" for every 1 ≤ j ≤ {n}",
            g.scaled(g.grad(j)),
            g.scaled(g.p_z(j) - g.tilde(j)),
            method=IDENTITY_METHOD + f"; Sum(y[k], (k, 1, {n})) -> 1 after normalising the sums",
            doit=False,
            given=g.normalized_given,
        )
    if g.w is not None:
        _one_hot(g, st)
    return st


# ------------------------------------------------------------------ BCE


def _bce_steps(g: General) -> list[Step]:
    i, j, k, C = g.i, g.j, g.k, g.C
    n = g.letter
    ln, lp = _loss_name(g)
    wt, wp = (r"w_i", "w_i ") if g.w is not None else ("", "")
    sig, y = g.sigma, g.y

    def wgt(m):
        return g.w[m] if g.w is not None else sp.Integer(1)

    st1 = Step("Derivative by the sigmoid outputs")
    st1.say("As a function of independent σ_i (001_*.txt, step 1):")
    st1.eq(
        _dz(ln, r"\sigma_i", lp, "σ_i"),
        Tex(rf"-{wt}\left(\frac{{y_i}}{{\sigma_i}} - \frac{{1 - y_i}}{{1 - \sigma_i}}\right)", f"−{wp}(y_i/σ_i − (1 − y_i)/(1 − σ_i))"),
    )
    Es = -Sum(wgt(k) * (y[k] * sp.log(sig[k]) + (1 - y[k]) * sp.log(1 - sig[k])), (k, 1, C))
    dEds = lambda m: -wgt(m) * (y[m] / sig[m] - (1 - y[m]) / (1 - sig[m]))  # noqa: E731
    g.prove(
        st1,
        "dloss-dsigma",
        (f"∂{lp}/∂σ_i = −w_i (y_i/σ_i − (1 − y_i)/(1 − σ_i))" if g.w is not None else
         f"∂{lp}/∂σ_i = −(y_i/σ_i − (1 − y_i)/(1 − σ_i))") + f" for every 1 ≤ i ≤ {n}",
        sp.diff(Es, sig[i]),
        dEds(i),
        bounds=[i],
    )

    st2 = Step("Sigmoid derivative")
    raw = sp.diff(g.sigma_z(i), g.z[j])
    st2.say("SymPy differentiates σ_i = 1/(1 + e^{−z_i}) by z_j:")
    st2.eq(_dz(r"\sigma_i", "z_j", "σ_i", "z_j"), raw, KroneckerDelta(i, j) * sig[i] * (1 - sig[i]))
    st2.eq(
        _dz(r"\sigma_i", "z_j", "σ_i", "z_j"),
        Tex(r"\delta_{ij}\, \sigma_i (1 - \sigma_i)", "δ_ij σ_i (1 − σ_i)"),
        note="a diagonal Jacobian: each output depends on its own logit only",
    )
    Js = g.prove(
        st2,
        "sigmoid-jacobian",
        f"∂σ_i/∂z_j = δ_ij σ_i(1 − σ_i) for every 1 ≤ i, j ≤ {n}",
        raw,
        KroneckerDelta(i, j) * g.sigma_z(i) * (1 - g.sigma_z(i)),
        bounds=[j],
    )

    st3 = Step("Chain rule and cancellation")
    st3.say("Only the i = j term survives; σ_i(1 − σ_i) cancels both denominators (001_*.txt, step 3):")
    st3.eq(
        _dz(ln, "z_i", lp),
        Tex(
            rf"-{wt}\left(\frac{{y_i}}{{\sigma_i}} - \frac{{1 - y_i}}{{1 - \sigma_i}}\right) \sigma_i (1 - \sigma_i)",
            f"−{wp}(y_i/σ_i − (1 − y_i)/(1 − σ_i)) σ_i (1 − σ_i)",
        ),
        Tex(rf"-{wt}\left(y_i (1 - \sigma_i) - (1 - y_i)\sigma_i\right)", f"−{wp}(y_i (1 − σ_i) − (1 − y_i) σ_i)"),
        Tex(rf"{wt}(\sigma_i - y_i)" if g.w is not None else r"\sigma_i - y_i", f"{wp}(σ_i − y_i)" if g.w is not None else "σ_i − y_i"),
    )
    g.prove(
        st3,
        "cancellation",
        "∂ℓ/∂σ_i · σ_i(1 − σ_i) = " + ("w_i(σ_i − y_i)" if g.w is not None else "σ_i − y_i")
        + f" for every 1 ≤ i ≤ {n} (an identity in any σ)",
        dEds(i) * sig[i] * (1 - sig[i]),
        wgt(i) * (sig[i] - y[i]),
        method=IDENTITY_METHOD,
        doit=False,
    )
    chain = Sum(dEds(i).xreplace({sig[i]: g.sigma_z(i)}) * Js, (i, 1, C))
    g.prove(
        st3,
        "chain-rule",
        f"Σ_i ∂{lp}/∂σ_i · ∂σ_i/∂z_j, with the derived sigmoid Jacobian, = "
        + _bce_grad_tex(g)[1] + f" for every 1 ≤ j ≤ {n}",
        chain,
        g.grad(j),
        bounds=[j],
    )
    return [st1, st2, st3]


# ------------------------------------------------------------------ shared tail


def _batch_mean(g: General) -> Step:
    j = g.j
    n = g.letter
    dt, dp = _den_tex(g)
    st = Step("Batch mean")
    st.say("R and ", Tex(dt, dp), " do not depend on z, so the mean only rescales the per-sample gradient:")
    gt, gp = _grad_tex(g) if g.family == "softmax" else _bce_grad_tex(g)
    st.eq(
        _dz("L", "z_j"),
        Tex(rf"\frac{{1}}{{{dt}}} \frac{{\partial \ell}}{{\partial z_j}}", f"(1/{dp}) ∂ℓ/∂z_j"),
        Tex(rf"\frac{{{gt}}}{{{dt}}}", f"({gp}) / {dp}"),
    )
    full = (g.loss_z() + g.rest) / g.factor
    g.prove(
        st,
        "batch-mean",
        f"∂L/∂z_j = (per-sample gradient)/{dp} for every 1 ≤ j ≤ {n}, differentiating (ℓ + R)/{dp}",
        sp.diff(full, g.z[j]),
        g.grad(j) / g.factor,
        bounds=[j],
    )
    return st


def _claim_step(g: General, text: str, command_options: dict) -> Step:
    from . import claims
    from .claim_steps import _tex_escape, check_names

    tree = claims.parse(text)
    weighted_mean = g.den is not None and g.den.name == "W"
    check_names(claims.names(tree), smoothing=g.eps is not None, weights=g.w is not None, mean=g.mean,
                weighted_mean=weighted_mean)
    bce = g.family == "bce"
    n = g.letter
    j, C = g.j, g.C

    def vector(name: str, m: sp.Expr) -> sp.Expr:
        if name == "p":
            return g.sigma_z(m) if bce else g.p_z(m)
        return {"y": g.y, "z": g.z, "w": g.w}[name][m]

    def scalar(name: str) -> sp.Expr:
        if name == "C":
            return C
        if name == "eps":
            return g.eps
        return g.den  # N or W, checked above

    def summation(f: Callable[[sp.Expr], sp.Expr]) -> sp.Expr:
        m = sp.Dummy("m", integer=True, positive=True)
        return Sum(f(m), (m, 1, C))

    env = claims.Env(vector, scalar, lambda: (1, C), summation)
    st = Step("Claim")
    pname = "σ" if bce else "p"
    st.say(f"Claim, elementwise for j = 1..{n} ({pname} is the {'sigmoid' if bce else 'softmax'} output):")
    st.eq(Tex(r"\frac{\partial L}{\partial z_j}", "∂L/∂z_j"), Tex(r"\texttt{" + _tex_escape(text) + "}", text))
    normalized = g.assume_normalized
    condition = " given Σy = 1" if normalized else ""
    statement = f"the claim {text!r} equals ∂L/∂z_j for every 1 ≤ j ≤ {n}, for every {n}{condition}"
    given = g.normalized_given if normalized else None
    try:
        value = claims.evaluate(tree, env, j)
        target = g.scaled(g.grad(j))
        ok, rest = g.zero(value - target, given)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - SymPy failing on the claim is "not proved", never a pass
        ok, rest = False, _error_symbol(exc)
    if ok:
        st.checks.append(
            Check(
                "claim",
                statement,
                IDENTITY_METHOD + (f"; Sum(y[k], (k, 1, {n})) -> 1" if normalized else ""),
                True,
            )
        )
        st.say("Proved: the claim is the derivative, for every number of classes.")
        return st
    # Not reduced to 0: look for a counterexample at small concrete C (proved or refuted exactly there).
    from . import derive

    for K in CLAIM_CHECK_CLASSES:
        d = derive(K, claim=text, **command_options)
        checks = [c for c in d.checks if c.name == "claim"]
        if checks and not checks[0].passed and checks[0].detail.startswith("at "):
            detail = f"refuted at C = {K}: {checks[0].detail}"
            st.checks.append(
                Check(
                    "claim",
                    statement,
                    f"symbolic difference not 0; exact comparison at C = {K} (the concrete derivation) with a "
                    "counterexample at a rational point",
                    False,
                    1,
                    detail,
                )
            )
            st.say("Refuted: " + detail)
            return st
    tried = ", ".join(str(K) for K in CLAIM_CHECK_CLASSES)
    detail = (
        f"not proved: the difference did not reduce to 0 for symbolic {n} (left: {_short(rest)}), and no "
        f"counterexample was found at C = {tried}"
    )
    st.checks.append(
        Check("claim", statement, IDENTITY_METHOD + f"; concrete C = {tried} tried for a counterexample", False, 1, detail)
    )
    st.say("Not proved: " + detail)
    return st


def _numeric(g: General) -> Step:
    """Substitute C = 4, lambdify the proved gradient and compare it with the NumPy kernel of xent compute.

    An exception on the way (SymPy, lambdify, NumPy) is a failed check, never a pass.
    """
    try:
        return _numeric_unguarded(g)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001
        st = Step("Numeric cross-check")
        st.checks.append(
            Check(
                "numeric",
                f"lambdify(gradient at {g.letter} = {NUMERIC_CLASSES}) agrees with xent compute's kernel at "
                f"{NUMERIC_POINTS} random points (relative difference below {NUMERIC_RTOL:g})",
                "sympy.lambdify vs xentcli.numeric, float64",
                False,
                NUMERIC_POINTS,
                str(_error_symbol(exc)),
            )
        )
        return st


def _numeric_unguarded(g: General) -> Step:
    import warnings

    import numpy as np

    from .. import numeric
    from ..errors import XentWarning

    K = NUMERIC_CLASSES
    st = Step("Numeric cross-check")
    zs = [sp.Symbol(f"z{m}", real=True) for m in range(1, K + 1)]
    ys = [sp.Symbol(f"y{m}", real=True) for m in range(1, K + 1)]
    ws = [sp.Symbol(f"w{m}", positive=True) for m in range(1, K + 1)] if g.w is not None else []
    flat = {g.z[m + 1]: zs[m] for m in range(K)}
    flat.update({g.y[m + 1]: ys[m] for m in range(K)})
    if g.w is not None:
        flat.update({g.w[m + 1]: ws[m] for m in range(K)})
    general = g.scaled(g.grad(g.j)).subs(g.C, K).doit()
    exprs = [general.subs(g.j, m).xreplace(flat) for m in range(1, K + 1)]
    args = [*zs, *ys, *ws]
    if g.eps is not None:
        args.append(g.eps)
    if g.den is not None:
        args.append(g.den)
    leftover = set().union(*(e.free_symbols for e in exprs)) - set(args)
    f = sp.lambdify(args, exprs, modules="numpy", cse=True)
    rng = np.random.default_rng(0)
    worst = 0.0
    batch = 3
    weighted_mean = g.den is not None and g.den.name == "W"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XentWarning)
        for k in range(NUMERIC_POINTS):
            z = rng.normal(0.0, 2.0, size=(batch, K))
            w = rng.uniform(0.5, 2.0, size=K) if g.w is not None else None
            eps = float(rng.uniform(0.0, 1.0)) if g.eps is not None else None
            if g.family == "bce":
                y = rng.uniform(0.0, 1.0, size=(batch, K))
            elif weighted_mean:
                t = rng.integers(0, K, size=batch)
                y = np.eye(K)[t]
            elif k % 2 == 0:
                y = rng.dirichlet(np.ones(K), size=batch)
            else:
                y = rng.uniform(0.0, 1.0, size=(batch, K))  # not normalised: p*sum(a) - a still holds
            values = [*z[0], *y[0], *([] if w is None else w)]
            if eps is not None:
                values.append(eps)
            red = "mean" if g.mean else "sum"
            zz, yy = (z, y) if g.mean else (z[:1], y[:1])
            if g.family == "bce":
                ref = numeric.binary_cross_entropy(zz, yy, weight=w, reduction=red).grad[0]
                if g.mean:
                    values.append(float(batch))
            elif weighted_mean:
                r = numeric.cross_entropy(zz, t, weight=w, label_smoothing=eps or 0.0, reduction=red)
                ref = r.grad[0]
                values.append(float(r.denominator))
            else:
                ref = numeric.cross_entropy(
                    zz, yy, weight=w, label_smoothing=eps or 0.0, reduction=red, target_type="prob"
                ).grad[0]
                if g.mean:
                    values.append(float(batch))
            if leftover:
                worst = float("inf")
                break
            got = np.array(f(*values), dtype=np.float64)
            scale = max(float(np.max(np.abs(ref))), 1e-300)
            worst = max(worst, float(np.max(np.abs(got - ref))) / scale)
    passed = worst <= NUMERIC_RTOL
    st.say(
        f"The proved general gradient at {g.letter} = {K} (Sum(...).doit() with the numeric bound) is turned into a "
        f"NumPy function with sympy.lambdify and compared with the NumPy kernel of xent compute at {NUMERIC_POINTS} "
        "random points (seeded; targets normalised and not)."
    )
    detail = ""
    if leftover:
        detail = f"symbols left after substituting {g.letter} = {K}: {', '.join(sorted(map(str, leftover)))}"
    elif not passed:
        detail = f"largest relative difference {worst:.3g}"
    st.checks.append(
        Check(
            "numeric",
            f"lambdify(gradient at {g.letter} = {K}) agrees with xent compute's kernel at {NUMERIC_POINTS} random points "
            f"(relative difference below {NUMERIC_RTOL:g})",
            "sympy.lambdify vs xentcli.numeric, float64",
            passed,
            NUMERIC_POINTS,
            detail,
        )
    )
    return st


# ------------------------------------------------------------------ JSON strings


def _json_strings(g: General) -> dict:
    n = g.letter
    S = f"Sum(exp(z[k]), (k, 1, {n}))"

    def p(m: str) -> str:
        return f"exp(z[{m}])/{S}"

    def sig(m: str) -> str:
        return f"1/(1 + exp(-z[{m}]))"

    def tilde(m: str) -> str:
        return f"((1 - epsilon)*y[{m}] + epsilon/{n})" if g.eps is not None else f"y[{m}]"

    def a(m: str) -> str:
        return f"w[{m}]*{tilde(m)}" if g.w is not None else tilde(m)

    den = ""
    if g.den is not None:
        den = "w_total" if g.den.name == "W" else "n_samples"
        if g.family == "bce":
            den = f"({den}*{n})"

    def scaled(text: str) -> str:
        return f"({text})/{den}" if den else text

    if g.family == "bce":
        wt = "w[i]*" if g.w is not None else ""
        per = f"{wt}(y[i]*log({sig('i')}) + (1 - y[i])*log(1 - {sig('i')}))"
        loss = f"-Sum({per}, (i, 1, {n}))"
        wj = "w[j]*" if g.w is not None else ""
        grad = [scaled(f"{wj}({sig('j')} - y[j])")]
        assuming = list(grad)
        jac = [[f"KroneckerDelta(i, j)*{sig('i')}*(1 - {sig('i')})"]]
    else:
        if g.loss == "ce":
            loss = f"-Sum({a('i')}*log({p('i')}), (i, 1, {n}))"
        elif g.loss == "nll":
            loss = f"-Sum({a('i')}*(z[i] - log({S})), (i, 1, {n}))"
        else:
            loss = f"Sum({a('i')}*log({a('i')}/({p('i')})), (i, 1, {n}))"
        total = f"Sum({a('k')}, (k, 1, {n}))"
        grad = [scaled(f"{p('j')}*{total} - {a('j')}")]
        if g.assume_normalized and g.w is None:
            assuming = [scaled(f"{p('j')} - {tilde('j')}")]
        else:
            assuming = list(grad)
        jac = [[f"{p('i')}*(KroneckerDelta(i, j) - {p('j')})"]]
    if den:
        loss = f"(({loss}) + rest)/{den}"
    return {"loss": loss, "gradient": grad, "gradient_assuming": assuming, "jacobian": jac}


def derive_general(
    letter: str,
    *,
    loss: str = "ce",
    mean: bool = False,
    smoothing: bool = False,
    weights: bool = False,
    assume_normalized: bool = True,
    claim: str | None = None,
    command: str = "",
) -> Derivation:
    """Derive and prove the gradient of ``loss`` for a symbolic number of classes named ``letter``."""
    if claim is not None:  # a malformed claim is refused before any derivation work
        from . import claims

        claims.parse(claim)
    g = General(letter, loss=loss, mean=mean, smoothing=smoothing, weights=weights, assume_normalized=assume_normalized)
    steps = [_definitions(g)]
    if g.family == "bce":
        steps += _bce_steps(g)
    else:
        steps.append(_softmax_jacobian(g))
        if loss == "nll":
            steps.append(_nll_identities(g))
        if loss == "kl":
            steps.append(_kl_identity(g))
        steps += _chain_rule(g)
    steps.append(_direct(g))
    if mean:
        steps.append(_batch_mean(g))
    steps.append(_result(g))
    if claim is not None:
        options = dict(loss=loss, mean=mean, smoothing=smoothing, weights=weights, assume_normalized=assume_normalized)
        steps.append(_claim_step(g, claim, options))
    steps.append(_numeric(g))
    strings = _json_strings(g)
    n = letter
    symbols = {
        n: "number of classes C (a symbolic positive integer)",
        "i, j, k": f"class indices, 1 ≤ i, j, k ≤ {n}",
        "z": f"logits z[1], …, z[{n}] (IndexedBase)",
        "y": f"targets y[1], …, y[{n}] (IndexedBase)",
    }
    if g.w is not None:
        symbols["w"] = f"{'class weights' if g.family == 'softmax' else 'weights'} w[1], …, w[{n}] (IndexedBase)"
    if g.eps is not None:
        symbols["epsilon"] = "label smoothing ε"
    if g.den is not None:
        if g.den.name == "W":
            symbols["w_total"] = "summed target weights W of the batch (PyTorch's weighted mean)"
        else:
            symbols["n_samples"] = "batch size N"
        symbols["rest"] = "sum of the other samples' losses R (independent of z)"
    assumptions = [f"Sum(y[k], (k, 1, {n})) = 1"] if g.assume_normalized else []
    return Derivation(
        command=command,
        title=title(loss, n, mean=mean, smoothing=smoothing, weights=weights),
        classes=n,
        loss=loss,
        options={
            "reduction": "mean" if mean else "none",
            "label_smoothing": smoothing,
            "weights": weights,
            "assume_normalized": g.assume_normalized,
            "claim": claim,
        },
        steps=steps,
        loss_expr=strings["loss"],
        gradient=strings["gradient"],
        gradient_assuming=strings["gradient_assuming"] if assumptions else strings["gradient"],
        assumptions=assumptions,
        jacobian=strings["jacobian"],
        jacobian_of="sigmoid" if g.family == "bce" else "softmax",
        symbols=symbols,
    )
