"""The ``--claim`` step: prove a user's closed form or refute it with a counterexample."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import sympy as sp

from ..errors import XentInputError
from . import claims
from .model import Check, Step, Tex

if TYPE_CHECKING:
    from .concrete import Concrete

COUNTEREXAMPLE_TRIES = 8


def check_names(used: set[str], *, smoothing: bool, weights: bool, mean: bool, weighted_mean: bool) -> None:
    """Refuse names whose option is not on (they would be free symbols, not the user's intent)."""
    needs = {
        "eps": (smoothing, "--label-smoothing"),
        "w": (weights, "--weights"),
        "N": (mean and not weighted_mean, "--reduction mean (without --weights)"),
        "W": (mean and weighted_mean, "--reduction mean with --weights"),
    }
    for name, (ok, option) in needs.items():
        if name in used and not ok:
            raise XentInputError(f"uses {name!r}, which needs {option}", source="--claim")


def _fmt(x: sp.Expr) -> str:
    v = float(x)
    return f"{v:.6g}"


def concrete_claim_step(dv: Concrete, text: str) -> Step:
    C = dv.C
    tree = claims.parse(text)
    s = dv.sym
    weighted_mean = s.den is not None and s.den.name == "W"
    check_names(claims.names(tree), smoothing=s.eps is not None, weights=bool(s.w), mean=dv.spec.mean,
                weighted_mean=weighted_mean)
    bce = dv.spec.family == "bce"

    def vector(name: str, k: int) -> sp.Expr:
        if name == "p":
            return dv.sigma_z(k) if bce else dv.p_z(k)
        return {"y": s.y, "z": s.z, "w": s.w}[name][k]

    def scalar(name: str) -> sp.Expr:
        if name == "C":
            return sp.Integer(C)
        if name == "eps":
            return s.eps
        return s.den  # N or W, checked above

    env = claims.Env(vector, scalar, lambda: range(C), lambda f: sp.Add(*[f(k) for k in range(C)]))
    den = None
    if dv.spec.mean:
        den = dv.DEN * C if bce else dv.DEN
    targets = [dv.G[j] if den is None else dv.G[j] / den for j in range(C)]
    subs = {}
    normalized = dv.spec.assume_normalized and not bce
    if normalized:
        others = sum((dv.space.gen[v] for v in s.y[:-1]), dv.space.ring.zero)
        subs = {dv.space.symbols.index(s.y[-1]): dv.space.ring.one - others}

    st = Step("Claim")
    pname = "σ" if bce else "p"
    st.say(f"Claim, elementwise for j = 1..{C} ({pname} is the {'sigmoid' if bce else 'softmax'} output):")
    st.eq(Tex(r"\frac{\partial L}{\partial z_j}", "∂L/∂z_j"), Tex(r"\texttt{" + _tex_escape(text) + "}", text))
    condition = " given Σy = 1" if normalized else ""
    statement = f"the claim {text!r} equals ∂L/∂z_j for all {C} j{condition}"
    values = [claims.evaluate(tree, env, j) for j in range(C)]
    fracs = []
    decidable = True
    for v in values:
        try:
            fracs.append(dv.z_expr_to_frac(v))
        except (ValueError, ZeroDivisionError):
            decidable = False
            fracs.append(None)
    if decidable:
        failing = [j for j in range(C) if not fracs[j].compose(subs).equals(targets[j].compose(subs))]
        if not failing:
            st.checks.append(Check("claim", statement, "exact comparison as rational functions of u = exp(z)", True, C))
            st.say("Proved: the claim is the derivative.")
            return st
    else:
        failing = list(range(C))
    example = _counterexample(dv, values, fracs, targets, failing, normalized)
    if example is None:
        detail = "neither proved (the claim is not a rational function of exp(z)) nor refuted at random points"
    else:
        detail = example
    st.checks.append(Check("claim", statement, "exact comparison; counterexample at a random rational point", False, C, detail))
    st.say("Refuted: " + detail if example else "Not proved: " + detail)
    return st


def _tex_escape(text: str) -> str:
    return text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("{", r"\{").replace("}", r"\}")


def _counterexample(dv, values, fracs, targets, failing, normalized) -> str | None:
    """A point (z, y, ...) where the claim and the derivative differ, found with exact rationals."""
    s = dv.sym
    C = dv.C
    rng = random.Random(20251121)
    gens = dv.space.ring.gens
    for _ in range(COUNTEREXAMPLE_TRIES):
        u = [sp.Rational(rng.randint(1, 19), rng.randint(1, 7)) for _ in range(C)]
        y = [sp.Rational(rng.randint(0, 6), 1) for _ in range(C)]
        if normalized:
            total = sum(y) or 1
            y = [v / total for v in y] if sum(y) else [sp.Rational(1, C)] * C
        point = dict(zip(gens[:C], u))
        point.update({dv.space.gen[sym]: val for sym, val in zip(s.y, y)})
        extra = {}
        for sym in s.w:
            extra[sym] = sp.Rational(rng.randint(1, 6), 2)
        if s.eps is not None:
            extra[s.eps] = sp.Rational(rng.randint(1, 9), 10)
        if s.den is not None:
            extra[s.den] = sp.Integer(rng.randint(2, 5))
            extra[s.rest] = sp.Integer(0)
        point.update({dv.space.gen[sym]: val for sym, val in extra.items()})
        subs_z = {z: sp.log(v) for z, v in zip(s.z, u)}
        subs_z.update(dict(zip(s.y, y)))
        subs_z.update(extra)
        best = None
        for j in failing:
            want = targets[j].evaluate(point)
            if fracs[j] is not None:
                got = fracs[j].evaluate(point)
                gap = abs(sp.N(got - want, 30))
                differs = got != want
            else:
                got = sp.N(values[j].xreplace(subs_z), 30)
                gap = abs(got - sp.N(want, 30))
                differs = gap > sp.Float("1e-20") * (1 + abs(sp.N(want, 30)))
            if differs and (best is None or gap > best[0]):
                best = (gap, j, got, want)
        if best is not None:
            _gap, j, got, want = best
            if True:
                zs = ", ".join(_fmt(sp.log(v)) for v in u)
                ys = ", ".join(str(v) for v in y)
                others = "".join(f", {sym} = {val}" for sym, val in extra.items() if sym != s.rest)
                return (
                    f"at z = ({zs}), y = ({ys}){others}: the claim gives ∂L/∂z_{j + 1} = {_fmt(got)}, "
                    f"the derivative is {_fmt(want)}"
                )
    return None
