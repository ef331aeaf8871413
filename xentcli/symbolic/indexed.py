r"""Deciding identities with a symbolic number of classes C: sums, deltas and their ranges, with no simplify.

The logits and targets are ``IndexedBase`` objects with integer indices
``1 <= i, j, k <= C``; every sum is a SymPy ``Sum`` with the symbolic upper
limit. ``sympy.diff`` produces ``KroneckerDelta``; ``.doit()`` evaluates sums
over a delta into a ``Piecewise`` on the index being in range (``j <= C``).
Such a ``Piecewise`` is resolved only after its condition is *proved* for
every index in ``1..C``: with ``C = j + s`` for an integer ``s >= 0`` (every
pair ``1 <= j <= C`` has this form) SymPy must evaluate the condition to
``True``.

Equalities are decided by :func:`reduces_to_zero` with predictable
operations only: ``expand_log(force=False)`` over symbols with positivity
assumptions, pulling factors that do not depend on the summation index out of
each ``Sum`` and splitting sums over ``+`` (:func:`normalize_sums`), then each
remaining sum is an opaque atom, ``exp(z[m])`` becomes a positive symbol, and
``together`` + ``expand`` must give the literal 0. There is no ``simplify``:
anything that does not reduce to 0 is a failed check.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sympy as sp
from sympy import Indexed, IndexedBase, KroneckerDelta, Piecewise, Sum

from .algebra import is_zero_expr

__all__ = ["normalize_sums", "plain_conditions", "reduces_to_zero", "reduces_to_zero_by_cases", "resolve_piecewise"]



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


def _pull_out(summand: sp.Expr, limit: tuple[Any, Any, Any], dummy: sp.Symbol) -> sp.Expr:
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

    Innermost sums first (also the limits of one ``Sum`` over several indices,
    which SymPy makes of nested sums). A remaining single sum is renamed to run over
    ``dummy`` (when that captures nothing), so equal sums written with
    different indices become the same object. ``Sum(c, (k, a, b))`` with
    ``c`` free of ``k`` becomes ``c*(b - a + 1)``.
    """
    if not isinstance(expr, sp.Basic) or not expr.has(Sum):
        return expr
    if isinstance(expr, Sum):
        out = normalize_sums(expr.function, dummy)
        for limit in expr.limits:  # Sum(f, inner, outer) is Sum(Sum(f, inner), outer): innermost first
            out = _pull_out(out, limit, dummy)
        return out
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
    expr: sp.Expr, a: sp.Symbol, b: sp.Symbol, **kwargs: Any
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


def plain_conditions(conds: Iterable[sp.Basic]) -> str:
    seen: list[str] = []
    for c in conds:
        text = str(c).replace("<=", "≤").replace(">=", "≥")
        if text not in seen:
            seen.append(text)
    return ", ".join(seen)
