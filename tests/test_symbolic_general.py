"""Symbolic number of classes: ``xent derive --classes n`` (xentcli.symbolic.general).

Every derivation must close all its checks; wrong claims must be refuted with a
counterexample and true ones proved; the JSON strings are checked against an
outside reference: central finite differences of the loss string itself.
"""

from __future__ import annotations

import functools
import itertools
import math
import time

import numpy as np
import pytest
import sympy as sp

from xentcli.errors import XentInputError
from xentcli.symbolic import derive
from xentcli.symbolic import general as gen
from xentcli.symbolic.general import General, derive_general, reduces_to_zero, resolve_piecewise

LOSSES = ("ce", "nll", "kl", "bce")


def _variants():
    for loss in LOSSES:
        for mean, smoothing, weights in itertools.product((False, True), repeat=3):
            if loss == "bce" and smoothing:
                continue  # BCE has no label smoothing
            yield loss, mean, smoothing, weights


VARIANTS = list(_variants())


def _id(v) -> str:
    loss, mean, smoothing, weights = v
    return "-".join([loss] + [n for n, on in (("mean", mean), ("smooth", smoothing), ("w", weights)) if on])


def _assert_verified(d) -> None:
    assert d.checks, "a derivation without checks proves nothing"
    bad = [(c.name, c.detail) for c in d.failed]
    assert d.verified, bad


# --------------------------------------------------------------------------
# Every variant is derived and proved
# --------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS, ids=_id)
def test_every_variant_is_proved_letter_n(variant):
    loss, mean, smoothing, weights = variant
    start = time.perf_counter()
    d = derive_general("n", loss=loss, mean=mean, smoothing=smoothing, weights=weights)
    assert time.perf_counter() - start < 3.0  # measured: 0.05-0.5 s each
    _assert_verified(d)
    assert d.classes == "n" and d.loss == loss
    names = {c.name for c in d.checks}
    assert {"direct", "numeric"} <= names
    assert any(n.endswith("-piecewise") for n in names)  # the .doit() ranges were proved, not assumed
    if loss == "bce":
        assert d.jacobian_of == "sigmoid" and not d.assumptions
        assert {"dloss-dsigma", "sigmoid-jacobian", "chain-rule"} <= names
    else:
        assert d.jacobian_of == "softmax"
        assert d.assumptions == ["Sum(y[k], (k, 1, n)) = 1"]
        assert {"jacobian", "chain-rule"} <= names
        assert ("normalized-targets" in names) == (not weights)
        assert ("one-hot-targets" in names) == weights
    if mean:
        assert "batch-mean" in names
    assert len(d.jacobian) == 1 and len(d.jacobian[0]) == 1
    assert len(d.gradient) == 1 and len(d.gradient_assuming) == 1


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("options", [{}, {"mean": True, "weights": True}, {"smoothing": True, "mean": True}])
def test_letter_C_is_proved(loss, options):
    if loss == "bce" and options.get("smoothing"):
        pytest.skip("BCE has no label smoothing")
    d = derive_general("C", loss=loss, **options)
    _assert_verified(d)
    assert d.title.endswith("symbolic number of classes C")
    assert "(i, 1, C)" in d.loss_expr


@pytest.mark.parametrize("loss", ["ce", "nll", "kl"])
def test_without_the_normalization_assumption(loss):
    d = derive_general("n", loss=loss, assume_normalized=False)
    _assert_verified(d)
    assert d.assumptions == [] and d.options["assume_normalized"] is False
    assert d.gradient_assuming == d.gradient
    assert "normalized-targets" not in {c.name for c in d.checks}


def test_dispatch_through_derive():
    d = derive("n", loss="nll")
    _assert_verified(d)
    assert d.classes == "n"


def test_options_match_concrete():
    sym = derive_general("n", mean=True, smoothing=True, weights=True, claim="p - y")
    con = derive(3, mean=True, smoothing=True, weights=True, claim="p - y")
    assert sym.options == con.options
    assert sym.title.replace("symbolic number of classes n", "C = 3") == con.title


# --------------------------------------------------------------------------
# Claims
# --------------------------------------------------------------------------


def _claim(d):
    (c,) = [c for c in d.checks if c.name == "claim"]
    return c


@pytest.mark.parametrize(
    ("claim", "options"),
    [
        ("p - y", {}),
        ("p*sum(y) - y", {"assume_normalized": False}),
        ("(p - y)/N", {"mean": True}),
        ("p - ((1 - eps)*y + eps/C)", {"smoothing": True}),
        ("p*sum(w*y) - w*y", {"weights": True}),
        ("p - y + sum(p) - 1", {}),  # sum(p) = 1 is proved, not assumed
        ("p - y", {"loss": "bce"}),
        ("(p - y)/(N*C)", {"loss": "bce", "mean": True}),
        ("exp(z)/(1 + exp(z)) - y", {"loss": "bce"}),
        ("p - y", {"loss": "nll"}),
        ("p - y", {"loss": "kl"}),
    ],
)
def test_true_claims_are_proved(claim, options):
    d = derive_general("n", claim=claim, **options)
    _assert_verified(d)
    c = _claim(d)
    assert c.passed and "together + expand" in c.method
    assert d.options["claim"] == claim


@pytest.mark.parametrize(
    ("claim", "options"),
    [
        ("p - 2*y", {}),
        ("p - y", {"weights": True}),
        ("p - ((1-eps)*y + eps/(C-1))", {"smoothing": True}),
        ("p - y", {"assume_normalized": False}),
        ("(p - y)/N", {"loss": "bce", "mean": True}),  # BCE's mean divides by N*C
    ],
)
def test_wrong_claims_are_refuted_with_a_counterexample(claim, options):
    d = derive_general("n", claim=claim, **options)
    assert not d.verified  # -> exit code 1 in the CLI
    assert [c.name for c in d.failed] == ["claim"]  # everything else is still proved
    c = _claim(d)
    assert c.detail.startswith("refuted at C = ")
    assert "at z = (" in c.detail and "the derivative is" in c.detail


def test_claim_true_at_small_C_only_is_not_proved():
    """(C-2)(C-3)(C-4) vanishes at every C the concrete search tries: passing there is not a proof."""
    d = derive_general("n", claim="p - y + (C-2)*(C-3)*(C-4)")
    c = _claim(d)
    assert not c.passed
    assert c.detail.startswith("not proved") and "C = 2, 3, 4" in c.detail


def test_non_rational_false_claim_is_refuted():
    d = derive_general("n", claim="p - y + log(2 + p)")
    c = _claim(d)
    assert not c.passed and c.detail.startswith("refuted at C = 2")


@pytest.mark.parametrize(
    ("claim", "options"),
    [("p - w*y", {}), ("p - eps", {}), ("(p - y)/N", {}), ("(p - y)/W", {"mean": True}), ("(p - y)/N", {"mean": True, "weights": True})],
)
def test_claim_names_need_their_option(claim, options):
    with pytest.raises(XentInputError):
        derive_general("n", claim=claim, **options)


# --------------------------------------------------------------------------
# The JSON strings against finite differences of the loss string
# --------------------------------------------------------------------------

K = 3
LOCAL = {name: sp.IndexedBase(name) for name in ("z", "y", "w")}


def _parse(text: str) -> sp.Expr:
    return sp.parse_expr(text, local_dict=dict(LOCAL))


@functools.cache
def _at_K(expr: sp.Expr, letter: str) -> sp.Expr:
    return expr.subs(sp.Symbol(letter), K).doit()


def _value(expr: sp.Expr, letter: str, values: dict, **indices) -> sp.Float:
    """Substitute C = K, .doit() the sums, then every symbol by its value; 30 significant digits."""
    e = _at_K(expr, letter).subs({sp.Symbol(name): v for name, v in indices.items()})
    out = sp.N(e.subs(values), 30)
    assert not out.free_symbols, out.free_symbols
    return out


def _numeric(expr: sp.Expr, letter: str, values: dict, **indices) -> float:
    return float(_value(expr, letter, values, **indices))


def _central_difference(L: sp.Expr, letter: str, vals: dict, zj: sp.Expr, h: sp.Float) -> float:
    """(L(z + h e_j) - L(z - h e_j)) / 2h, evaluated with 30 digits so that h = 1e-12 loses nothing."""
    up, down = dict(vals), dict(vals)
    up[zj] = vals[zj] + h
    down[zj] = vals[zj] - h
    return float((_value(L, letter, up) - _value(L, letter, down)) / (2 * h))


def _point(rng, d, normalized: bool) -> dict:
    z, y, w = LOCAL["z"], LOCAL["y"], LOCAL["w"]
    vals = {}
    targets = rng.dirichlet(np.ones(K)) if normalized else rng.uniform(0.05, 1.0, size=K)
    for m in range(1, K + 1):
        vals[z[m]] = sp.Float(rng.normal(0.0, 1.5), 30)
        vals[y[m]] = sp.Float(targets[m - 1], 30)
        vals[w[m]] = sp.Float(rng.uniform(0.5, 2.0), 30)
    for name in ("epsilon", "n_samples", "w_total", "rest"):
        vals[sp.Symbol(name)] = sp.Float(rng.uniform(0.1, 0.9) if name == "epsilon" else rng.uniform(1.0, 5.0), 30)
    return vals


@pytest.mark.parametrize(
    "variant",
    [("ce", False, False, False), ("ce", True, True, True), ("nll", False, True, False), ("kl", True, False, True),
     ("kl", False, True, False), ("bce", False, False, False), ("bce", True, False, True)],
    ids=_id,
)
def test_json_strings_match_finite_differences(variant):
    loss, mean, smoothing, weights = variant
    letter = "n"
    d = derive_general(letter, loss=loss, mean=mean, smoothing=smoothing, weights=weights)
    L = _parse(d.loss_expr)
    G = _parse(d.gradient[0])
    GA = _parse(d.gradient_assuming[0])
    J = _parse(d.jacobian[0][0])
    z = LOCAL["z"]
    rng = np.random.default_rng(7)
    h = sp.Float("1e-12", 30)
    for _ in range(2):
        vals = _point(rng, d, normalized=True)
        for j in range(1, K + 1):
            fd = _central_difference(L, letter, vals, z[j], h)
            assert math.isclose(_numeric(G, letter, vals, j=j), fd, rel_tol=1e-9, abs_tol=1e-12)
            assert math.isclose(_numeric(GA, letter, vals, j=j), fd, rel_tol=1e-9, abs_tol=1e-12)
        # The Jacobian entry against finite differences of the softmax / sigmoid, written out independently.
        zs = [float(vals[z[m]]) for m in range(1, K + 1)]
        for i, j in itertools.product(range(1, K + 1), repeat=2):
            def out(v, i=i):
                if loss == "bce":
                    return 1.0 / (1.0 + math.exp(-v[i - 1]))
                e = [math.exp(x) for x in v]
                return e[i - 1] / sum(e)

            hh = 1e-6
            vu, vd = list(zs), list(zs)
            vu[j - 1] += hh
            vd[j - 1] -= hh
            fd = (out(vu) - out(vd)) / (2 * hh)
            assert math.isclose(_numeric(J, letter, vals, i=i, j=j), fd, rel_tol=1e-6, abs_tol=1e-9)
    # Without Σy = 1 the general gradient still matches; gradient_assuming only under the assumption.
    if loss != "bce":
        vals = _point(rng, d, normalized=False)
        for j in range(1, K + 1):
            fd = _central_difference(L, letter, vals, z[j], h)
            assert math.isclose(_numeric(G, letter, vals, j=j), fd, rel_tol=1e-9, abs_tol=1e-12)


def test_json_strings_agree_with_the_concrete_derivation():
    """At C = 3 the symbolic strings and the concrete ones (xent derive --classes 3) are the same functions."""
    sym = derive_general("n", mean=True, smoothing=True, weights=True)
    con = derive(3, mean=True, smoothing=True, weights=True)
    z, y, w = LOCAL["z"], LOCAL["y"], LOCAL["w"]
    flat = {}
    for m in range(1, 4):
        flat.update({z[m]: sp.Symbol(f"z{m}"), y[m]: sp.Symbol(f"y{m}"), w[m]: sp.Symbol(f"w{m}")})
    rng = np.random.default_rng(3)
    for j in range(1, 4):
        g_sym = _parse(sym.gradient[0]).subs(sp.Symbol("n"), 3).doit().subs(sp.Symbol("j"), j).xreplace(flat)
        g_con = sp.parse_expr(con.gradient[j - 1])
        point = {s: rng.uniform(0.2, 1.5) for s in g_sym.free_symbols | g_con.free_symbols}
        assert math.isclose(float(g_sym.subs(point)), float(g_con.subs(point)), rel_tol=1e-12)


def test_strings_avoid_the_bare_name_N():
    d = derive_general("n", mean=True, loss="bce")
    for text in (d.loss_expr, *d.gradient, *d.gradient_assuming):
        assert "N" not in text
        _parse(text)
    assert "n_samples" in d.symbols and "rest" in d.symbols


# --------------------------------------------------------------------------
# The proof helpers themselves
# --------------------------------------------------------------------------


def _general(**options) -> General:
    base = dict(loss="ce", mean=False, smoothing=False, weights=False, assume_normalized=True)
    base.update(options)
    return General("n", **base)


def test_proof_helper_rejects_a_wrong_closed_form():
    g = _general()
    j = g.j
    derived, proved, unresolved = g.doit(sp.diff(g.loss_z(), g.z[j]), [j])
    assert proved and not unresolved
    ok, _ = reduces_to_zero(derived - g.grad(j), dummy=g.k, exp_bases=(g.z,))
    assert ok
    for wrong in (
        g.p_z(j) - g.y[j],  # only true when Σy = 1: must not pass without the assumption
        g.p_z(j) * g.total() - 2 * g.y[j],
        g.p_z(j) * g.total() + g.y[j],
    ):
        ok, left = reduces_to_zero(derived - wrong, dummy=g.k, exp_bases=(g.z,))
        assert not ok and left != 0
    # ... and p - y does pass once Σy = 1 is given.
    ok, _ = reduces_to_zero(derived - (g.p_z(j) - g.y[j]), dummy=g.k, exp_bases=(g.z,), given=g.normalized_given)
    assert ok


def test_prove_records_a_failed_check_for_a_wrong_closed_form():
    from xentcli.symbolic.model import Step

    g = _general(loss="bce")
    st = Step("t")
    j = g.j
    g.prove(st, "direct", "wrong on purpose", sp.diff(g.loss_z(), g.z[j]), g.sigma_z(j) + g.y[j], bounds=[j])
    by_name = {c.name: c for c in st.checks}
    assert by_name["direct-piecewise"].passed
    assert not by_name["direct"].passed and "did not reduce to 0" in by_name["direct"].detail


def test_piecewise_is_resolved_only_when_its_condition_is_proved():
    C = sp.Symbol("n", integer=True, positive=True)
    i, j = (sp.Symbol(x, integer=True, positive=True) for x in "ij")
    s = sp.Symbol("s", integer=True, nonnegative=True)
    x = sp.Symbol("x")
    ok = sp.Piecewise((x, j <= C), (0, True))
    out, proved, unresolved = resolve_piecewise(ok, C, [(j, s)])
    assert out == x and len(proved) == 1 and not unresolved
    # j <= n - 1 fails for j = n: it must stay unresolved.
    bad = sp.Piecewise((x, j <= C - 1), (0, True))
    out, proved, unresolved = resolve_piecewise(bad, C, [(j, s)])
    assert out == bad and unresolved
    # i <= n is true, but nothing says i is a class index here.
    other = sp.Piecewise((x, i <= C), (0, True))
    out, _, unresolved = resolve_piecewise(other, C, [(j, s)])
    assert out == other and unresolved
    out, _, unresolved = resolve_piecewise(other, C, [(j, s), (i, s)])
    assert out == x and not unresolved


def test_normalize_sums_pulls_out_and_renames():
    n = sp.Symbol("n", integer=True, positive=True)
    i, j, k = (sp.Symbol(c, integer=True, positive=True) for c in "ijk")
    y, z = sp.IndexedBase("y"), sp.IndexedBase("z")
    e = sp.Sum(3 * z[j] * y[i] + 2, (i, 1, n))
    assert gen.normalize_sums(e, k) == 3 * z[j] * sp.Sum(y[k], (k, 1, n)) + 2 * n


# --------------------------------------------------------------------------
# Letters
# --------------------------------------------------------------------------


@pytest.mark.parametrize("letter", ["i", "j", "k", "t", "s", "z", "y", "w", "p", "N", "W", "E", "I", "S", "Q", "O", "e"])
def test_reserved_letters_are_refused(letter):
    with pytest.raises(XentInputError, match="clashes"):
        derive_general(letter)


@pytest.mark.parametrize("letter", ["", "nn", "1", "é", "n1", " "])
def test_non_letters_are_refused(letter):
    with pytest.raises(XentInputError, match="single ASCII letter"):
        derive_general(letter)


def test_reserved_letter_through_derive():
    with pytest.raises(XentInputError):
        derive("k")
