"""The semantics matrix: derive, compute and verify against each other and against PyTorch.

For every valid combination of loss options in ``reference/torch_matrix.json``
(what PyTorch's autograd returned, float64; made by
``reference/make_torch_fixtures.py``), four answers must agree to 1e-12:

* derive's proved gradient, read from its JSON strings, for C = 4 and for a
  symbolic number of classes (at C = 4), with the options kept as symbols;
* compute's kernel (``xentcli.numeric.evaluate``);
* verify's reference (``xentcli.verify.runner.reference``);
* PyTorch.

The denominators fed to derive's strings are counted here from the case's
own labels (samples not ignored, their summed class weights, N), not taken
from xent. Run as a script, it checks the cases whose id contains any of the
given words and exits 1 on the first disagreement (the mutation test runs it
against a deliberately altered copy of the package).
"""

from __future__ import annotations

import functools
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import sympy as sp
from derived_json import parsed

FIXTURES = Path(__file__).resolve().parent / "reference" / "torch_matrix.json"
RTOL = 1e-12
# Where xent deliberately differs from PyTorch (README, "Where xent and PyTorch differ"): a zero target on a
# masked (-inf) logit is a zero term for xent (0 log 0 = 0); PyTorch computes 0 * (-inf) = nan.
DOCUMENTED_DIVERGENCES = {"edge-kl-none-zero-target-neginf-logit", "edge-ce-none-zero-target-neginf-logit"}


class Mismatch(AssertionError):
    pass


def cases() -> list[dict[str, Any]]:
    doc = json.loads(FIXTURES.read_text(encoding="utf-8"))
    return [c for c in doc["cases"] if c["id"] not in DOCUMENTED_DIVERGENCES]


def _array(v: Any) -> np.ndarray:
    def num(x: Any) -> Any:
        if isinstance(x, list):
            return [num(e) for e in x]
        return float(x) if isinstance(x, str) else x

    return np.asarray(num(v), dtype=np.float64)


def spec_of(case: dict[str, Any], symbolic: bool = False) -> Any:
    """The case's LossSpec; with ``symbolic``, the options that have values are ``SYM`` (for derive)."""
    from xentcli.spec import SYM, LossSpec

    def value(v: Any) -> Any:
        if v is None or v == 0.0:
            return None if v is None else 0
        return SYM if symbolic else (tuple(v) if isinstance(v, list) else v)

    return LossSpec(case["kind"], case["reduction"], weight=value(case["weight"]),
                    label_smoothing=value(case["label_smoothing"]) or 0, ignore_index=case["ignore_index"],
                    pos_weight=value(case["pos_weight"]), targets=case["targets"])


def _close(what: str, got: Any, want: Any, case: dict[str, Any]) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise Mismatch(f"{case['id']}: {what}: shape {got.shape}, PyTorch {want.shape}")
    same_nan = np.isnan(got) & np.isnan(want)
    scale = max(float(np.max(np.abs(want[np.isfinite(want)]), initial=0.0)), 1e-300)
    err = np.where(same_nan, 0.0, np.abs(got - want))
    if not (np.all(np.isfinite(err) | same_nan) and float(np.max(err)) <= RTOL * scale):
        raise Mismatch(f"{case['id']}: {what} differs from PyTorch: got {got.ravel()[:4]}, want {want.ravel()[:4]}")


# --------------------------------------------------------------------------
# compute and verify
# --------------------------------------------------------------------------


def _targets(case: dict[str, Any]) -> np.ndarray:
    t = case["target"]
    return np.asarray(t, dtype=np.int64) if case["targets"] == "index" else _array(t)


def check_compute(case: dict[str, Any]) -> None:
    from xentcli import numeric

    r = numeric.evaluate(spec_of(case), _array(case["logits"]), _targets(case), warn=False)
    _close("compute loss", r.loss if r.loss is not None else r.losses, _array(case["loss"]), case)
    _close("compute grad", r.grad, _array(case["grad"]), case)


def check_verify(case: dict[str, Any]) -> None:
    from xentcli.verify.battery import Case
    from xentcli.verify.runner import reference

    z = _array(case["logits"])
    r = reference(Case(case["id"], "", z, _targets(case)), spec_of(case))
    _close("verify reference loss", r.loss if r.loss is not None else r.losses, _array(case["loss"]), case)
    _close("verify reference grad", r.grad, _array(case["grad"]), case)


# --------------------------------------------------------------------------
# derive: the JSON strings, evaluated with values counted from the case
# --------------------------------------------------------------------------


@functools.cache
def _derivation(classes: int | str, spec_key: str) -> dict[str, Any]:
    """derive's JSON document for the spec registered under ``spec_key`` (each derived once per run)."""
    from xentcli.symbolic import derive
    from xentcli.symbolic.documents import to_json

    spec = _SPECS[spec_key]
    d = derive(classes, spec)
    if not d.verified:
        raise Mismatch(f"derive {spec.describe()} at C = {classes}: not proved: {[c.name for c in d.failed]}")
    return json.loads(to_json(d))


_SPECS: dict[str, Any] = {}


def _row_values(case: dict[str, Any], n: int, C: int) -> dict[str, float]:
    """Every name of derive's strings for sample n, counted from the case (not from xent)."""
    z = _array(case["logits"])
    vals: dict[str, float] = {f"z{k + 1}": z[n, k] for k in range(C)}
    ignore = case["ignore_index"]
    if case["targets"] == "index":
        t = case["target"]
        y = np.zeros(C)
        if t[n] != ignore:
            y[t[n]] = 1.0
        counted = [tn for tn in t if tn != ignore]
    else:
        y = _array(case["target"])[n]
        counted = []
    vals.update({f"y{k + 1}": y[k] for k in range(C)})
    for name, key in (("w", "weight"), ("q", "pos_weight")):
        if case[key] is not None:
            vals.update({f"{name}{k + 1}": case[key][k] for k in range(C)})
    if case["label_smoothing"]:
        vals["epsilon"] = case["label_smoothing"]
    if ignore is not None:
        vals["mask"] = 0.0 if case["target"][n] == ignore else 1.0
    N = len(case["logits"])
    if case["weight"] is not None and case["targets"] == "index":
        vals["w_total"] = math.fsum(case["weight"][tn] for tn in counted)
    vals["n_samples"] = float(len(counted)) if case["targets"] == "index" else float(N)
    vals["rest"] = 0.0
    return vals


def _evaluate(expr: str, vals: dict[str, float], zero_targets: list[str]) -> float:
    e = sp.parse_expr(expr)
    for y in zero_targets:  # 0 log 0 = 0: the log of a zero target is multiplied by 0, any finite value does
        e = e.xreplace({sp.log(sp.Symbol(y)): 0})
    out = e.xreplace({sp.Symbol(k): sp.Float(v, 30) for k, v in vals.items()})
    return float(sp.N(out, 30))


def _general_strings(doc: dict[str, Any], C: int) -> tuple[str, list[str]]:
    """The symbolic-C loss and gradient strings at C classes, flattened to z1..zC (derive's parse rules)."""
    local = {name: sp.IndexedBase(name) for name in ("z", "y", "w", "q")}
    n = sp.Symbol(str(doc["classes"]))

    def flat(text: str, j: int | None = None) -> str:
        e = sp.parse_expr(text, local_dict=dict(local)).subs(n, C).doit()
        if j is not None:
            e = e.subs(sp.Symbol("j"), j)
        swap = {local[v][m]: sp.Symbol(f"{v}{m}") for v in local for m in range(1, C + 1)}
        return str(e.xreplace(swap))

    return flat(doc["loss"]), [flat(doc["gradient"][0], j) for j in range(1, C + 1)]


def check_derive(case: dict[str, Any], classes: int | str) -> None:
    z = _array(case["logits"])
    N, C = z.shape
    spec = spec_of(case, symbolic=True)
    key = spec.describe()
    _SPECS[key] = spec
    doc = _derivation(classes, key)
    if isinstance(classes, int):  # the names of 'definitions' (p_k, S, s) written out, as the JSON says
        loss_text, grads = str(parsed(doc["loss"], doc)), [str(parsed(g, doc)) for g in doc["gradient"]]
    else:
        loss_text, grads = _general_strings(doc, C)
    grad = np.zeros((N, C))
    per_sample = np.zeros(N)
    for n in range(N):
        vals = _row_values(case, n, C)
        zero = [f"y{k + 1}" for k in range(C) if vals[f"y{k + 1}"] == 0.0]
        grad[n] = [_evaluate(g, vals, zero) for g in grads]
        per_sample[n] = _evaluate(loss_text, vals, zero)  # (loss_n + 0) / D, or loss_n
    _close(f"derive (C = {classes}) grad", grad, _array(case["grad"]), case)
    torch_loss = _array(case["loss"])
    if case["reduction"] == "none":
        want = torch_loss.sum(axis=1) if torch_loss.ndim == 2 else torch_loss  # elementwise kinds: row sums
        _close(f"derive (C = {classes}) per-sample loss", per_sample, want, case)
    else:
        _close(f"derive (C = {classes}) loss", math.fsum(per_sample), torch_loss, case)


def check_case(case: dict[str, Any], subsystems: tuple[str, ...] = ("compute", "verify", "concrete", "general")
               ) -> None:
    if "compute" in subsystems:
        check_compute(case)
    if "verify" in subsystems:
        check_verify(case)
    derivable = "ignore-all" not in case["id"]  # a mean over no sample is 0/0: there is no gradient to derive
    if "concrete" in subsystems and derivable:
        check_derive(case, len(case["logits"][0]))
    if "general" in subsystems and derivable:
        check_derive(case, "n")


def main(argv: list[str]) -> int:
    words = argv[1:]
    chosen = [c for c in cases() if not words or any(w in c["id"] for w in words)]
    if not chosen:
        print("no case matches", words, file=sys.stderr)
        return 2
    for case in chosen:
        try:
            check_case(case)
        except Mismatch as exc:
            print(f"MISMATCH {exc}", file=sys.stderr)
            return 1
    print(f"{len(chosen)} cases agree", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
