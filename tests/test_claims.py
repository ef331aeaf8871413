"""Claims (``xent derive --claim``): proved, refuted with an exact counterexample, or refused as malformed.

References outside the code under test (``tests/claim_reference.py``): the claim is re-evaluated at the
counterexample by the tests' own evaluator (Python's ``ast`` and SymPy), and the derivative there is
``sympy.diff`` of the textbook loss; both are compared exactly with the strings the counterexample gives.
Through the command line, the derivative is also ``sympy.diff`` of the document's own JSON loss string.
"""

from __future__ import annotations

import time
from fractions import Fraction

import pytest
import sympy as sp
from claim_reference import claim_value, derivative, number, same
from conftest import one_error_line
from derived_json import parsed

from xentcli.errors import XentInputError
from xentcli.spec import SYM, LossSpec
from xentcli.symbolic.claim_steps import CLAIM_CHECK_CLASSES, claim_step
from xentcli.symbolic.concrete import ConcreteBackend
from xentcli.symbolic.general import GeneralBackend
from xentcli.symbolic.problem import Problem

IDX = {}  # ce, class indices, no reduction
PROB = {"targets": "prob"}
RAW = {"targets": "prob", "normalized": False}
BCE = {"kind": "bce"}


def decide(classes, claim, kind="ce", reduction="none", normalized=True, **options):
    problem = Problem(classes, LossSpec(kind, reduction, **options), normalized, claim)
    backend = ConcreteBackend(problem) if isinstance(classes, int) else GeneralBackend(problem)
    (check,) = claim_step(backend, claim).checks
    return check


def run_decide(classes, claim, options):
    options = dict(options)
    return decide(classes, claim, **options)


# --------------------------------------------------------------------------
# True claims in other forms are proved
# --------------------------------------------------------------------------

TRUE = [
    ("p - y", IDX),
    ("-(y - p)", IDX),
    ("(p - y)*1", IDX),
    ("p*sum(y) - y", IDX),  # class indices sum to 1
    ("exp(log(p)) - y", IDX),
    ("log(exp(p)) - y", IDX),
    ("p - y + log(p) - z + log(sum(exp(z)))", IDX),  # log p = z - log S
    ("exp(z - log(sum(exp(z)))) - y", IDX),
    ("exp(z)/sum(exp(z)) - y", IDX),
    ("log(exp(p - y))", IDX),
    ("p - y + exp(p)*exp(-p) - 1", IDX),
    ("p - y + log(p**2) - 2*log(p)", IDX),
    ("p - y + log(6*p) - log(2) - log(3) - log(p)", IDX),  # log 6 = log 2 + log 3, exactly
    ("p - y + exp(1) - exp(1)", IDX),
    ("p - y + exp(6000)*exp(-6000) - 1", IDX),  # beyond what is expanded exactly at a point, still not refuted
    ("p - y**2", IDX),  # y is one-hot for class indices
    ("p - y*y/y", IDX),
    ("(p - y)*(1 - y)/(1 - y)", IDX),  # a 0/0 that cancels is not a pole
    ("p - y + log(p)**2 - log(p)**2", IDX),  # the same part cancels, even one the exact form cannot hold
    ("(p - y)*sum(w*y)", {"weight": SYM}),  # PyTorch's w_t (p - e_t) for a class index t
    ("(p - y)*sum(w*y)", {"weight": (1, 2, Fraction(3, 2))}),
    ("p*sum(w*y) - w*y", {"weight": (1, 2, Fraction(3, 2))}),
    ("m**2*(p - y)", {"ignore_index": -100}),
    ("p - ((1 - eps)*y + eps/C)", {"label_smoothing": SYM}),
    ("(p - y)/N", {"reduction": "mean"}),
    ("(p*sum(w*y) - w*y)/W", {"reduction": "mean", "weight": SYM}),
    ("p - y", PROB),
    ("p*sum(y) - y", PROB),
    ("p - y + log(sum(y))", PROB),  # log 1 where the rows sum to 1
    ("p - y + log(2 - sum(y))", IDX),
    ("p - y + log(1 + y - y**2)", IDX),  # log 1 at every one-hot y
    ("p*sum(y) - y", RAW),
    ("exp(log(p) + log(sum(y))) - y", RAW),
    ("p - y", {"kind": "kl"}),
    ("p - y", {"kind": "nll"}),
    ("exp(z)/(1 + exp(z)) - y", BCE),
    ("1/(1 + exp(-z)) - y", BCE),
    ("p - y + log(1 - p) + log(1 + exp(z))", BCE),  # 1 - sigma = 1/(1 + exp(z))
    ("(1 - y)*p - q*y*(1 - p)", {"kind": "bce", "pos_weight": SYM}),
]


@pytest.mark.parametrize(("claim", "options"), TRUE, ids=[f"{c} {o}" for c, o in TRUE])
def test_true_claims_in_any_form_are_proved_at_concrete_c(claim, options):
    for classes in (2, 3):
        if isinstance(options.get("weight"), tuple) and classes != 3:
            continue
        check = run_decide(classes, claim, options)
        assert check.passed, (classes, check.detail)


@pytest.mark.parametrize(("claim", "options"), [t for t in TRUE if not isinstance(t[1].get("weight"), tuple)],
                         ids=[c for c, o in TRUE if not isinstance(o.get("weight"), tuple)])
def test_true_claims_are_never_refuted_at_symbolic_c(claim, options):
    """A symbolic C proves most of them; the one-hot ones (p - y**2) may stay open, but never refuted."""
    check = run_decide("n", claim, options)
    assert check.passed or "no counterexample" in check.detail, check.detail
    assert "counterexample" not in check.data


# --------------------------------------------------------------------------
# Wrong claims are refuted with an exact, reproducible counterexample
# --------------------------------------------------------------------------

WRONG = [
    ("p - y + 1e-300", IDX),  # off by a tiny constant
    ("p - y - 1e-300", PROB),
    ("p - y + y*1e-300", IDX),  # wrong only at the target class
    ("p - y + (1 - y)*1e-300", IDX),  # wrong only away from it
    ("p*sum(y) - y", {"weight": (1, 1, 3)}),  # right for the classes of weight 1, wrong for the third
    ("p - y", {"label_smoothing": SYM}),  # wrong only when eps != 0
    ("p - y", {"kind": "bce", "pos_weight": SYM}),  # wrong only when q != 1
    ("p - y", {"kind": "bce", "weight": SYM}),
    ("p - y", RAW),  # wrong only when the targets do not sum to 1
    ("p - y*y", PROB),  # right for one-hot rows only
    ("p - y + log(p) - z", IDX),  # off by log S
    ("p - y + log(6) - log(2) - log(3) + 1e-300", IDX),
    ("exp(p)*exp(-p)*(p - y) + 1e-300", IDX),
    ("p - y + log(p)**2 - log(p)**2 + 1e-300", IDX),  # beyond the exact form: decided at the point
    ("p - 2*y", IDX),
    ("(p - y)/N", {"kind": "kl", "reduction": "mean"}),  # kl's mean divides by N*C
    ("m*(p - y) + (1 - m)*1e-300", {"ignore_index": -100}),  # wrong only for an ignored sample
    ("p - y + 1/(1 + (p - y)**2)", {"reduction": "mean", "weight": SYM}),
]


def _reference_derivative(sample, j, options):
    kind = options.get("kind", "ce")
    reduction = options.get("reduction", "none")
    if reduction in ("mean", "batchmean"):
        if kind in ("bce", "kl") and reduction == "mean":
            den = "NC"
        else:
            den = "W" if "W" in sample else "N"
    else:
        den = None
    return derivative(sample, j, kind=kind, reduction=reduction, smoothing="eps" in sample, denominator=den)


def assert_reproduces(check, claim, options):
    """The counterexample's strings are exact and reproduce: the claim re-evaluated there, the derivative by
    sympy.diff, and their difference, which is not 0."""
    cx = check.data["counterexample"]
    sample, j = cx["sample"], cx["class"] - 1
    binary = options.get("kind") == "bce"
    z = [number(v) for v in sample["z"]]
    for v, u in zip(z, (sp.exp(v) for v in z)):
        assert u.is_Rational and u > 0, v  # z = log of a positive rational, exactly
    for got, want in zip(sample["p"], (sp.simplify(1 / (1 + sp.exp(-v))) if binary else None for v in z)):
        if want is not None:
            assert number(got) == want
    want = _reference_derivative(sample, j, options)
    assert want.is_Rational
    assert number(cx["derivative"]) == want
    value = claim_value(claim, sample, j, binary)
    if cx["claim"] is None:  # the claim itself is undefined there
        assert value.has(sp.zoo, sp.nan, sp.oo, -sp.oo) or value.is_infinite, value
        return
    assert same(value, number(cx["claim"])), (value, cx["claim"])
    assert same(value - want, number(cx["difference"])), (value - want, cx["difference"])
    assert not same(number(cx["difference"]), 0)


@pytest.mark.parametrize(("claim", "options"), WRONG, ids=[f"{c} {o}" for c, o in WRONG])
def test_wrong_claims_are_refuted_with_an_exact_counterexample(claim, options):
    classes = 3
    check = run_decide(classes, claim, options)
    assert not check.passed
    assert check.detail.startswith("at z = (log(") or check.detail.startswith("at z = (-log(") or \
        check.detail.startswith("at z = (0"), check.detail
    assert_reproduces(check, claim, options)


def test_a_tiny_difference_is_shown_exactly_and_the_values_with_enough_digits():
    check = decide(3, "p - y + 1e-300")
    cx = check.data["counterexample"]
    assert number(cx["difference"]) == sp.Rational(1, 10**300)
    assert "claim − derivative = 1.0e-300" in check.detail
    assert "log(" in check.detail  # z exactly: log(5/2), not 0.916291
    # Values that differ early are printed with enough digits to see it.
    check = decide(3, "p - y + 1e-9")
    got, want = check.detail.split("the claim gives ∂L/∂z_")[1].split("; ")[0].split(", the derivative is ")
    assert got.split(" = ")[1] != want


def test_a_claim_undefined_at_a_valid_input_is_refuted_there():
    """log(y) is log 0 away from the target class: the claim is undefined at every class-index target."""
    check = decide(3, "p - y + log(y)")
    assert not check.passed
    cx = check.data["counterexample"]
    assert cx["claim"] is None and "log of 0" in cx["undefined"] and "'log(y)'" in cx["undefined"]
    assert_reproduces(check, "p - y + log(y)", IDX)


def test_refutation_at_symbolic_c_tries_up_to_12_classes_and_says_which():
    claim = "p - y + (C-2)*(C-3)*(C-4)*(C-5)*(C-6)"  # 0 for C = 2..6
    check = decide("n", claim)
    assert not check.passed
    assert check.data["classes_tried"] == [2, 3, 4, 5, 6, 7]
    assert check.detail.startswith("refuted at C = 7 (tried C = 2, 3, …, 7): at z = (")
    cx = check.data["counterexample"]
    assert cx["classes"] == 7 and len(cx["sample"]["z"]) == 7
    assert_reproduces(check, claim, IDX)
    # A true claim a symbolic C cannot prove (y is one-hot only at each concrete C) is left open, with the sizes.
    check = decide("n", "(p - y)*sum(w*y)", weight=SYM)
    assert not check.passed and "counterexample" not in check.data
    assert check.data["classes_tried"] == list(CLAIM_CHECK_CLASSES) and CLAIM_CHECK_CLASSES[-1] >= 12
    assert "it holds exactly at C = 2, 3, …, 12" in check.detail


# --------------------------------------------------------------------------
# Malformed claims: exit 2, one line, naming the part
# --------------------------------------------------------------------------

MALFORMED = [
    ("1/0", "'1 / 0' divides by 0"),
    ("log(0)", "'log(0)' is the log of 0"),
    ("p - y + 0*log(0)", "'log(0)' is the log of 0"),
    ("log(p-p)", "'log(p - p)' is the log of 0"),
    ("1/(y-y)", "'1 / (y - y)' divides by 0"),
    ("0**-1", "divides by 0"),
    ("(p - p)**-2", "divides by 0"),
    ("log(-1)", "'log(-1)' is the log of a negative number"),
    ("log(-p)", "is the log of a negative number for every input"),
    ("p/(sum(p) - 1)", "divides by 0"),
    ("p - y + log(exp(p) - exp(p))", "is the log of 0"),
    ("p - y + 1/(log(p) - z + log(sum(exp(z))))", "divides by 0"),
]


@pytest.mark.parametrize(("claim", "fragment"), MALFORMED, ids=[c for c, _ in MALFORMED])
@pytest.mark.parametrize("classes", [3, "n"])
def test_malformed_claims_are_refused(claim, fragment, classes):
    with pytest.raises(XentInputError) as info:
        decide(classes, claim)
    message = str(info.value)
    assert message.startswith("--claim: is malformed: ") and fragment in message, message
    assert "\n" not in message


def test_malformed_claims_exit_2_through_the_cli(xent):
    for claim in ("1/0", "log(0)", "log(p-p)", "1/(y-y)", "0**-1"):
        for classes in ("3", "n"):
            line = one_error_line(xent("derive", "--classes", classes, "--claim", claim))
            assert "--claim: is malformed" in line, line


@pytest.mark.parametrize("claim", ["p - y + log(z) - log(z)", "p - y + log(y) - log(y)", "p - y + 1/(y-1) - 1/(y-1)"])
@pytest.mark.parametrize("classes", [3, "n"])
def test_a_claim_equal_where_defined_but_undefined_somewhere_is_neither_proved_nor_refuted(claim, classes):
    """Its parts cancel, but log(z) is undefined for z <= 0 (log(y) at y = 0, 1/(y - 1) at y = 1): it is not
    the derivative at every input, and not a wrong formula where it is defined."""
    check = decide(classes, claim)
    assert not check.passed and "counterexample" not in check.data
    assert "is undefined at C = " in check.detail and "where the derivative is defined" in check.detail


@pytest.mark.parametrize(("claim", "options"), [
    ("p - y + (1 - y)*y/(1 - y)", IDX),  # p as a function, and 0/0 at the target class: neither is p - y
    ("p - y + exp(log(2 - sum(y))) + 1", IDX),  # exp(log x) = x, not -x: this is p - y + 2
    ("p - y + exp(log(2 - sum(y))) + 1", PROB),
    ("p - y + exp(log(1 - y))*0 + exp(log(y - 2)) + 2", RAW),
])
def test_wrong_claims_are_not_proved_even_without_the_quick_point(monkeypatch, claim, options):
    """The exact decision alone (the refutation at the first random point switched off) never proves them."""
    from xentcli.symbolic import claim_steps

    monkeypatch.setattr(claim_steps, "_quick", lambda *a, **k: (None, True, None))
    try:
        check = run_decide(3, claim, options)
    except XentInputError as exc:  # a part undefined for every input: refused, which is not a proof either
        assert "is malformed" in str(exc)
        return
    assert not check.passed, check.method


def test_undefined_somewhere_is_not_malformed():
    """1/(y - 1) has a pole only at the target class: a refutation (exit 1), not a malformed claim."""
    check = decide(3, "p - y + 1/(y - 1) + 1")
    assert not check.passed and check.data["counterexample"]["claim"] is None
    assert "division by zero" in check.data["counterexample"]["undefined"]


# --------------------------------------------------------------------------
# Through the command line: the JSON object and the text
# --------------------------------------------------------------------------


def test_counterexample_in_json_reproduces_with_the_document_s_own_strings(xent):
    run = xent("derive", "--classes", "3", "--label-smoothing", "sym", "--reduction", "mean",
               "--claim", "(p - ((1 - eps)*y + eps/C))/N + 1e-300", "--format", "json")
    assert run.code == 1, run
    doc = run.json()
    cx = doc["counterexample"]
    (check,) = [c for c in doc["checks"] if c["name"] == "claim"]
    assert check["counterexample"] == cx
    assert set(cx) >= {"classes", "class", "sample", "subs", "claim", "derivative", "difference"}
    subs = {sp.Symbol(k, real=True): number(v) for k, v in cx["subs"].items()}
    j = cx["class"]
    expanded = parsed(doc["loss"], doc)  # the names of 'definitions' written out, in their listed order
    loss = expanded.xreplace({s: sp.Symbol(s.name, real=True) for s in expanded.free_symbols})
    z = sp.Symbol(f"z{j}", real=True)
    by_diff = sp.simplify(sp.diff(loss, z).xreplace(subs))
    assert by_diff == number(cx["derivative"])
    # subs also names the definitions' values at the point (p1, Z, s), so the compact string evaluates as is
    gradient = sp.sympify(doc["gradient"][j - 1]).xreplace({s: sp.Symbol(s.name, real=True)
                                                             for s in sp.sympify(doc["gradient"][j - 1]).free_symbols})
    assert sp.simplify(gradient.xreplace(subs)) == number(cx["derivative"])
    assert number(cx["difference"]) == sp.Rational(1, 10**300)
    assert "claim − derivative = 1.0e-300" in run.stderr
    # A proved claim has a null counterexample; a document without a claim has no such key.
    assert xent("derive", "--classes", "3", "--claim", "p - y", "--format", "json").json()["counterexample"] is None
    assert "counterexample" not in xent("derive", "--classes", "2", "--format", "json").json()


# --------------------------------------------------------------------------
# Cost at the largest C
# --------------------------------------------------------------------------


def test_claims_at_c_200_are_decided_or_refused_quickly():
    """The claim step alone (the derivation's own steps are not run here)."""
    for claim, expect in (("p*sum(y) - y", True), ("exp(z)/sum(exp(z)) - y", True), ("p - y + 1e-300", False),
                          ("p - y + log(p) - z + log(sum(exp(z)))", True)):
        start = time.perf_counter()
        check = decide(200, claim)
        assert check.passed is expect, (claim, check.detail[:200])
        assert time.perf_counter() - start < 10
    start = time.perf_counter()
    with pytest.raises(XentInputError, match="too large to decide exactly at C = 200"):
        decide(200, "p - y + (p + y)**2 - (p + y)**2")
    assert time.perf_counter() - start < 10


def test_a_refused_claim_at_c_200_is_refused_before_the_derivation(xent):
    start = time.perf_counter()
    line = one_error_line(xent("derive", "--classes", "200", "--claim", "p - y + sum(p*y)**2 - sum(p*y)**2"))
    assert "too large to decide exactly at C = 200" in line
    assert time.perf_counter() - start < 10  # the C = 200 derivation alone takes far longer
