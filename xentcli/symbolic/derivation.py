"""A whole derivation: the pipeline's steps, the claim, the numeric cross-check and the JSON strings."""

from __future__ import annotations

from typing import Any

import sympy as sp

from . import claims
from . import quantities as Q
from .backend import Backend
from .claim_steps import check_names, claim_step
from .concrete import ConcreteBackend
from .crosscheck import numeric_step
from .general import GeneralBackend
from .model import Derivation, Progress, no_progress
from .pipeline import Context, steps
from .problem import Problem
from .prose import Notation


def backend_for(problem: Problem, progress: Progress = no_progress) -> Backend:
    """The backend that decides ``problem``: concrete C, or a symbolic number of classes."""
    if problem.concrete:
        return ConcreteBackend(problem, progress)
    return GeneralBackend(problem)


def derive_problem(problem: Problem, *, command: str = "", progress: Progress | None = None,
                   expand: bool = False) -> Derivation:
    if problem.claim is not None:  # a malformed claim is refused before any derivation work
        check_names(claims.names(claims.parse(problem.claim)), problem)
    backend = backend_for(problem, progress or no_progress)
    ctx = Context(backend, problem, Notation(problem))
    # The claim is decided first (it needs only the closed form the steps prove): a claim that is refused
    # (malformed, or too large to decide at this C) is refused before the derivation's own work.
    claim = claim_step(backend, problem.claim) if problem.claim is not None else None
    out = steps(ctx)
    if claim is not None:
        out.append(claim)
    out.append(numeric_step(backend))
    strings = json_strings(backend, expand)
    if claim is not None:
        _name_the_point(claim, strings["definitions"])
    return Derivation(
        command=command,
        problem=problem,
        steps=out,
        loss_expr=strings["loss"],
        gradient=strings["gradient"],
        gradient_assuming=strings["gradient_assuming"],
        assumptions=strings["assumptions"],
        jacobian=strings["jacobian"],
        jacobian_of="sigmoid" if problem.bce else "softmax",
        symbols=symbols(problem),
        definitions=strings["definitions"],
    )


def _name_the_point(claim: Any, definitions: dict[str, str]) -> None:
    """Give a counterexample's ``subs`` the values of the definitions' names too (p1, Z, s, ...), exactly,
    so that ``sympify(gradient[j]).subs(subs)`` is the derivative there as the JSON strings write it."""
    for check in claim.checks:
        example = check.data.get("counterexample") if check.data else None
        if not example or "subs" not in example or not definitions:
            continue
        values = {sp.Symbol(k): sp.parse_expr(v) for k, v in example["subs"].items()}
        named: dict[str, str] = {}
        for name, text in reversed(list(definitions.items())):  # each uses only names listed after it
            value = sp.parse_expr(text).xreplace(values)
            values[sp.Symbol(name)] = value
            named[name] = str(value)
        example["subs"] = {**example["subs"], **dict(reversed(list(named.items())))}


def json_strings(backend: Backend, expand: bool = False) -> dict[str, Any]:
    """The loss, the gradient (general and under the assumption) and the Jacobian as SymPy-parsable text.

    For a concrete C the strings use the names p_k (or sigma_k), Z and s, defined once in
    ``definitions``; ``expand`` writes everything in the logits instead.
    """
    problem = backend.problem
    E = backend.expressions

    def text(v: Any) -> str:
        # SymPy's canonical argument order (deterministic) instead of sorting every sum for display:
        # the strings are for parsing, and ordering C-term sums C*C times dominated large C.
        return str(sp.sstr(sp.sympify(v), order="none"))

    jac = Q.sigmoid_jacobian if problem.bce else Q.softmax_jacobian
    assuming = problem.normalized and not problem.weighted and not problem.bce
    definitions: dict[str, str] = {}
    loss_algebra: Any = E
    if isinstance(backend, ConcreteBackend):
        C = backend.C
        rows = range(C)
        if expand:  # every string in the logits alone (C*C entries with the softmax written out: huge at large C)
            A: Any = E
            jacobian = [[text(jac(E, i, j)) for j in rows] for i in rows]
        else:
            A, defs = backend.named_algebra()
            # p_k (sigma_k) first, then Z, then s: each uses only names listed after it
            for name, value in sorted(defs, key=lambda d: {"Z": 1, "s": 2}.get(str(d[0]), 0)):
                definitions[str(name)] = text(value)
            jacobian = backend.entrywise(jac, text)
        loss_algebra = A
        grad = [text(Q.scaled_grad(A, j)) for j in rows]
        closed = [text(Q.scaled(A, Q.grad_normalized(A, j))) for j in rows] if assuming else grad
        sums_to_one = " + ".join(f"y{k}" for k in range(1, C + 1)) + " = 1"
    else:
        assert isinstance(backend, GeneralBackend)
        i, j = backend.index["i"], backend.index["j"]
        grad = [text(Q.scaled_grad(E, j))]
        closed = [text(Q.scaled(E, Q.grad_normalized(E, j)))] if assuming else grad
        jacobian = [[text(jac(E, i, j))]]
        sums_to_one = f"Sum(y[k], (k, 1, {problem.classes})) = 1"
    return {
        "loss": text(Q.reduced_loss(loss_algebra)),
        "gradient": grad,
        "gradient_assuming": closed,
        "assumptions": [sums_to_one] if assuming else [],
        "jacobian": jacobian,
        "definitions": definitions,
    }


def symbols(problem: Problem) -> dict[str, str]:
    """What each name in the JSON strings stands for."""
    spec = problem.spec
    n = problem.classes
    concrete = problem.concrete
    out: dict[str, str] = {}
    if not concrete:
        out[str(n)] = "number of classes C (a symbolic positive integer)"
        out["i, j, k"] = f"class indices, 1 ≤ i, j, k ≤ {n}"

    def vec(name: str, what: str) -> None:
        if concrete:
            out[f"{name}1..{name}{n}"] = what
        else:
            out[name] = f"{what}: {name}[1], …, {name}[{n}] (IndexedBase)"

    vec("z", "logits")
    vec("y", "targets (the one-hot row of a class index)" if spec.targets == "index" else "targets")
    from ..spec import SYM

    if spec.weight is SYM:
        vec("w", "class weights" if not problem.bce else "weights")
    if spec.pos_weight is SYM:
        vec("q", "positive weights (pos_weight)")
    if spec.label_smoothing is SYM:
        out["epsilon"] = "label smoothing ε"
    if problem.masked:
        out["mask"] = f"1, or 0 for a sample whose class index is the ignore index {spec.ignore_index}"
    d = spec.denominator
    if d == "weights":
        out["w_total"] = "W: the summed weights w of the counted samples' classes (PyTorch's weighted mean)"
    elif d == "samples":
        out["n_samples"] = "N: the number of samples whose class index is not ignored"
    elif d == "elements":
        out["n_samples"] = "N: the number of samples (the mean divides by N*C)"
    elif d == "rows":
        out["n_samples"] = "N: the number of samples"
    if Q.split_mean(problem):
        out["n_samples"] = "N: the number of samples whose class index is not ignored (the z-loss's mean)"
    if Q.split_mean(problem):
        out["rest"] = "R: the other samples' terms of L, their cross-entropies over W and z-losses over N " \
                      "(independent of z)"
    elif spec.reduction != "none":
        out["rest"] = "R: the sum of the other samples' losses (independent of z)"
    if spec.z_loss is SYM:
        out["lam"] = "λ: the weight of the z-loss λ lse² (Liger-Kernel's lse_square_scale)"
    if spec.softcap is SYM:
        out["cap"] = "c: the soft-cap (the softmax sees cap tanh(z/cap), divided by T)"
    if spec.temperature is SYM:
        out["T"] = "the temperature (the softmax sees the capped logits divided by T)"
    if spec.language_model:
        out["lse"] = "lse = log Σ_k exp(x_k), x the capped and scaled logits" + \
            (" (in definitions: log(Z))" if concrete else "")
    return out
