"""The numeric cross-check: the proved gradient, through ``sympy.lambdify``, against ``xent compute``'s kernel.

Written once for both backends: a symbolic C is checked at C = 4. The
gradient expressions are those the derivation wrote (:func:`gradient_rows`),
evaluated at random points with the options drawn where they are symbols,
and compared with :func:`xentcli.numeric.evaluate` for the same
:class:`~xentcli.spec.LossSpec` with those values.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import sympy as sp

from ..spec import SYM, LossSpec
from . import quantities as Q
from .backend import Backend, raised
from .concrete import ConcreteBackend, Names
from .model import Check, Step
from .problem import Problem

NUMERIC_POINTS = 5
NUMERIC_RTOL = 1e-12
NUMERIC_CLASSES = 4  # a symbolic C is checked at this C
BATCH = 3


Definitions = list[tuple[sp.Symbol, sp.Expr]]


def gradient_rows(backend: Backend) -> tuple[Names, list[sp.Expr], Definitions]:
    """The proved gradient of every class as expressions over plain symbols (a symbolic C at C = 4), and the
    definitions of the names they use (p_k, S, s), in evaluation order, as the JSON strings write them."""
    problem = backend.problem
    if problem.concrete:
        assert isinstance(backend, ConcreteBackend)
        A, defs = backend.named_algebra()
        rows = [sp.sympify(Q.scaled_grad(A, j)) for j in range(problem.classes)]  # type: ignore[arg-type]
        return backend.names, rows, defs
    E = backend.expressions
    from .general import GeneralBackend

    assert isinstance(backend, GeneralBackend)
    K = NUMERIC_CLASSES
    flat = Names(Problem(K, problem.spec, problem.assume_normalized))
    j = backend.index["j"]
    general = sp.sympify(Q.scaled_grad(E, j)).subs(backend.C, K).doit()
    swap: dict[Any, Any] = {}
    for m in range(K):
        swap[backend.z[m + 1]] = flat.z[m]
        swap[backend.y[m + 1]] = flat.y[m]
        if backend.w is not None:
            swap[backend.w[m + 1]] = flat.w[m]
        if backend.q is not None:
            swap[backend.q[m + 1]] = flat.q[m]
    for a, b in ((backend.eps, flat.eps), (backend.mask, flat.mask), (backend.den, flat.den),
                 (backend.zden, flat.zden)):
        if a is not None:
            swap[a] = b
    return flat, [general.subs(j, m + 1).xreplace(swap) for m in range(K)], []


def numeric_step(backend: Backend) -> Step:
    """Compare the lambdified gradient with the kernel at seeded random points; any exception fails the check."""
    problem = backend.problem
    K = problem.classes if problem.concrete else NUMERIC_CLASSES
    where = "" if problem.concrete else f" at {problem.classes} = {K}"
    statement = (f"lambdify(gradient{where}) agrees with xent compute's kernel at {NUMERIC_POINTS} random points "
                 f"(relative difference below {NUMERIC_RTOL:g})")
    method = "sympy.lambdify vs xentcli.numeric.evaluate on the same loss specification, float64"
    st = Step("Numeric cross-check")
    st.say(f"The proved gradient{where}, turned into a NumPy function with sympy.lambdify, is compared with "
           f"the NumPy kernel of xent compute at {NUMERIC_POINTS} random points (seeded; the options that are "
           "symbols take random values).")
    try:
        worst, detail = _compare(backend)
        passed = worst <= NUMERIC_RTOL
        if not passed and not detail:
            detail = f"largest relative difference {worst:.3g}"
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - SymPy, lambdify or NumPy failing is a failed check
        passed, detail = False, raised(exc)
    st.checks.append(Check("numeric", statement, method, passed, NUMERIC_POINTS, detail))
    return st


def _compare(backend: Backend) -> tuple[float, str]:
    from .. import numeric

    problem = backend.problem
    names, exprs, defs = gradient_rows(backend)
    K = len(exprs)
    args = [*names.z, *names.y, *names.w, *names.q]
    args += [s for s in (names.eps, names.mask, names.den, names.zden) if s is not None]
    args += names.options
    known = set(args)
    for name, value in defs:  # each definition may use only what is known before it
        if value.free_symbols - known:
            return float("inf"), f"undefined names in the definition of {name}"
        known.add(name)
    leftover = set().union(*(e.free_symbols for e in exprs)) - known
    if leftover:
        return float("inf"), f"symbols left in the gradient: {', '.join(sorted(map(str, leftover)))}"
    # The definitions become the generated function's intermediate variables (lambdify's cse hook).
    f = sp.lambdify(args, exprs, modules="numpy", cse=(lambda e: (defs, e)) if defs else True)
    rng = np.random.default_rng(0)
    worst = 0.0
    for k in range(NUMERIC_POINTS):
        spec, values = _draw(problem.spec, K, rng)
        z = rng.normal(0.0, 2.0, size=(BATCH, K))
        targets, y0, mask = _targets(spec, K, rng, ignored=problem.masked and k % 2 == 1, normalized=k % 2 == 0)
        ref = numeric.evaluate(spec, z, targets, with_probs=False, warn=False)
        want, denominator = np.asarray(ref.grad[0], dtype=np.float64), ref.denominator
        point = [*z[0], *y0, *values.get("w", []), *values.get("q", [])]
        if names.eps is not None:
            point.append(values["eps"])
        if names.mask is not None:
            point.append(mask)
        if names.den is not None:
            den = float(denominator or 0.0)
            point.append(den / K if spec.denominator == "elements" else den)
        if names.zden is not None:  # the z-loss's count: the batch's samples whose class index is not ignored
            point.append(float(np.count_nonzero(targets != spec.ignore)))
        point += [values[str(s)] for s in names.options]
        got = np.array(f(*point), dtype=np.float64)
        scale = max(float(np.max(np.abs(want))), 1e-300)
        worst = max(worst, float(np.max(np.abs(got - want))) / scale)
    return worst, ""


def _draw(spec: LossSpec, K: int, rng: np.random.Generator) -> tuple[LossSpec, dict[str, Any]]:
    """The spec with its symbolic options given random values (and float64), and those values."""
    values: dict[str, Any] = {}
    changes: dict[str, Any] = {"dtype": "float64"}
    for option, key in (("weight", "w"), ("pos_weight", "q")):
        v = getattr(spec, option)
        if v is SYM:
            draw = [float(x) for x in rng.uniform(0.5, 2.0, size=K)]
            values[key] = draw
            changes[option] = tuple(draw)
    if spec.label_smoothing is SYM:
        values["eps"] = float(rng.uniform(0.0, 1.0))
        changes["label_smoothing"] = values["eps"]
    # the options of a language model: lam, cap and T (the names the derivation gives them)
    for option, key, low, high in (("z_loss", "lam", 0.0, 0.5), ("softcap", "cap", 1.0, 10.0),
                                   ("temperature", "T", 0.5, 3.0)):
        if getattr(spec, option) is SYM:
            values[key] = float(rng.uniform(low, high))
            changes[option] = values[key]
    return replace(spec, **changes), values


def _targets(spec: LossSpec, K: int, rng: np.random.Generator, *, ignored: bool, normalized: bool
             ) -> tuple[np.ndarray, np.ndarray, float]:
    """The batch's targets, the first sample's target row y (as the gradient expressions take it) and its mask."""
    if spec.targets == "binary":
        y = rng.uniform(0.0, 1.0, size=(BATCH, K))
        return y, y[0], 1.0
    if spec.targets == "index":
        t = rng.integers(0, K, size=BATCH)
        if t[1] == spec.ignore:  # a counted sample, so that a mean never divides by zero
            t[1] = (t[1] + 1) % K
        if ignored:
            t[0] = spec.ignore
            return t, np.zeros(K), 0.0
        if t[0] == spec.ignore:  # the first sample is the one compared: it must be counted
            t[0] = (t[0] + 1) % K
        return t, np.eye(K)[t[0]], 1.0
    if normalized:
        y = rng.dirichlet(np.ones(K), size=BATCH)
    else:
        y = rng.uniform(0.0, 1.0, size=(BATCH, K))  # not normalised: p*sum(a) - a still holds
    return y, y[0], 1.0


