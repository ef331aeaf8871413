"""A whole derivation: the pipeline's steps, the claim, the numeric cross-check and the JSON strings."""

from __future__ import annotations

from typing import Any

import sympy as sp

from . import claims
from . import quantities as Q
from .backend import Backend
from .claim_steps import check_names, claim_step
from .concrete import ConcreteBackend, ExpressionAlgebra
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


def derive_problem(problem: Problem, *, command: str = "", progress: Progress | None = None) -> Derivation:
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
    strings = json_strings(backend)
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


def json_strings(backend: Backend) -> dict[str, Any]:
    """The loss, the gradient (general and under the assumption) and the Jacobian as SymPy-parsable text."""
    problem = backend.problem
    E = backend.expressions

    def text(v: Any) -> str:
        # SymPy's canonical argument order (deterministic) instead of sorting every sum for display:
        # the strings are for parsing, and ordering C-term sums C*C times dominated large C.
        return str(sp.sstr(sp.sympify(v), order="none"))

    jac = Q.sigmoid_jacobian if problem.bce else Q.softmax_jacobian
    assuming = problem.normalized and not problem.weighted and not problem.bce
    definitions: dict[str, str] = {}
    if isinstance(backend, ConcreteBackend):
        C = backend.C
        rows = range(C)
        grad = [text(Q.scaled(E, Q.grad(E, j))) for j in rows]
        closed = [text(Q.scaled(E, Q.grad_normalized(E, j))) for j in rows] if assuming else grad
        # The Jacobian in the outputs' own names (C*C entries with the softmax written out would be C^3 long).
        P = backend.display_algebra()
        jacobian = [[text(jac(P, i, j)) for j in rows] for i in rows]
        names = backend.names
        assert isinstance(E, ExpressionAlgebra)
        if problem.bce:
            definitions = {str(s): text(E.sigma(k)) for k, s in enumerate(names.sigma)}
        else:
            definitions = {"S": text(E.S)}
            definitions.update({str(s): f"exp({names.z[k]})/S" for k, s in enumerate(names.p)})
        sums_to_one = " + ".join(f"y{k}" for k in range(1, C + 1)) + " = 1"
    else:
        assert isinstance(backend, GeneralBackend)
        i, j = backend.index["i"], backend.index["j"]
        grad = [text(Q.scaled(E, Q.grad(E, j)))]
        closed = [text(Q.scaled(E, Q.grad_normalized(E, j)))] if assuming else grad
        jacobian = [[text(jac(E, i, j))]]
        sums_to_one = f"Sum(y[k], (k, 1, {problem.classes})) = 1"
    return {
        "loss": text(Q.reduced_loss(E)),
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
    if spec.reduction != "none":
        out["rest"] = "R: the sum of the other samples' losses (independent of z)"
    return out
