"""The derivation pipeline and its two backends (``xent derive --classes 3`` and ``--classes n``).

Every derivation must close all its checks; the two backends must agree with
each other (their JSON gradients are the same functions at C = 3); wrong
claims must be refuted with a counterexample and true ones proved. Outside
references: central finite differences of the JSON loss string itself, and
``resolve_piecewise``/``reduces_to_zero`` on hand-written SymPy inputs.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
import warnings

import numpy as np
import pytest
import sympy as sp
from derived_json import parsed

from xentcli.errors import XentInputError
from xentcli.spec import SYM, LossSpec
from xentcli.symbolic import derive
from xentcli.symbolic.indexed import normalize_sums, reduces_to_zero, resolve_piecewise


def spec(kind: str = "ce", reduction: str = "none", **options) -> LossSpec:
    return LossSpec(kind, reduction, **options)


def _specs():
    """Every valid combination of kind x reduction x targets x weight x smoothing x ignore x pos_weight."""
    for kind, reduction, targets in itertools.product(("ce", "nll", "kl", "bce"), ("none", "sum", "mean", "batchmean"),
                                                      ("index", "prob", "binary")):
        for weight, eps, ignore, pos in itertools.product((None, SYM), (0, SYM), (None, 1), (None, SYM)):
            try:
                yield LossSpec(kind, reduction, weight=weight, label_smoothing=eps, ignore_index=ignore,
                               pos_weight=pos, targets=targets)
            except XentInputError:
                pass


SPECS = list(_specs())


def _assert_verified(d) -> None:
    assert d.checks, "a derivation without checks proves nothing"
    bad = [(c.name, c.detail) for c in d.failed]
    assert d.verified, bad


def test_the_matrix_of_options_is_complete():
    """36 ce + 12 nll + 4 kl + 12 bce combinations PyTorch defines (and derive accepts)."""
    counts = {k: sum(s.kind == k for s in SPECS) for k in ("ce", "nll", "kl", "bce")}
    assert counts == {"ce": 36, "nll": 12, "kl": 4, "bce": 12}


@pytest.mark.parametrize("classes", ["n", 3])
@pytest.mark.parametrize("s", SPECS, ids=lambda s: s.describe().replace(", ", "-"))
def test_every_combination_is_proved(s, classes):
    start = time.perf_counter()
    d = derive(classes, s)
    assert time.perf_counter() - start < 5.0  # measured: 0.05-0.6 s each
    _assert_verified(d)
    names = {c.name for c in d.checks}
    assert {"direct", "numeric"} <= names
    if classes == "n":
        assert any(n.endswith("-piecewise") for n in names)  # the .doit() ranges were proved, not assumed
    if s.kind == "bce":
        assert d.jacobian_of == "sigmoid" and not d.assumptions
        assert {"dloss-dsigma", "sigmoid-jacobian", "cancellation", "chain-rule"} <= names
    else:
        assert d.jacobian_of == "softmax"
        assert {"jacobian", "chain-rule"} <= names
        assert ("normalized-targets" in names) == (s.weight is None)
        assert ("one-hot-targets" in names) == (s.weight is not None and s.targets == "index")
    assert ("ignored" in names) == (s.ignore_index is not None)
    assert ("reduction" in names) == (s.reduction != "none")


@pytest.mark.parametrize("kind", ["ce", "nll", "kl", "bce"])
def test_letter_C_is_proved(kind):
    d = derive("C", spec(kind))
    _assert_verified(d)
    assert "C = C" not in d.steps[0].blocks[0].parts[0]


@pytest.mark.parametrize("classes", ["n", 3])
def test_without_the_normalization_assumption(classes):
    d = derive(classes, spec(targets="prob"), assume_normalized=False)
    _assert_verified(d)
    assert "normalized-targets" not in {c.name for c in d.checks}
    assert d.assumptions == [] and d.gradient_assuming == d.gradient


@pytest.mark.parametrize("classes", ["n", 3])
def test_exact_values_are_proved(classes):
    s = spec("ce", "mean", label_smoothing="1/10")
    d = derive(classes, s)
    _assert_verified(d)
    grad = d.gradient[0] + " ".join(d.definitions.values())
    assert "epsilon" not in grad and "/10" in grad
    bce = derive(classes, spec("bce", pos_weight="3/2"))
    _assert_verified(bce)
    assert "q" not in bce.gradient[0] and "3" in bce.gradient[0]


def test_options_and_titles_agree_between_the_backends():
    s = spec("ce", "mean", weight=SYM, label_smoothing=SYM, ignore_index=1)
    sym = derive("n", s, claim="m*(p*sum(w*((1 - eps)*y + eps/C)) - w*((1 - eps)*y + eps/C))/W")
    con = derive(3, s, claim="m*(p*sum(w*((1 - eps)*y + eps/C)) - w*((1 - eps)*y + eps/C))/W")
    _assert_verified(sym)
    _assert_verified(con)
    assert sym.options == con.options
    assert sym.title.replace("symbolic number of classes n", "C = 3") == con.title


def test_deriving_leaves_the_warning_filters_alone():
    """The numeric cross-check asks the kernel for no warnings instead of changing the process's filters."""
    before = list(warnings.filters)
    for classes in (3, "n"):
        derive(classes, spec(targets="prob"))
        derive(classes, spec("bce", "mean"))
    assert warnings.filters == before
    from xentcli import XentWarning, cross_entropy

    with pytest.warns(XentWarning, match="does not sum to 1"):
        cross_entropy([[1.0, 2.0]], [[0.5, 0.7]])


# --------------------------------------------------------------------------
# The two backends agree
# --------------------------------------------------------------------------

K = 3
LOCAL = {name: sp.IndexedBase(name) for name in ("z", "y", "w", "q")}


def _parse(text: str) -> sp.Expr:
    return sp.parse_expr(text, local_dict=dict(LOCAL))


@pytest.mark.parametrize("s", [spec("ce", "mean", weight=SYM, label_smoothing=SYM, ignore_index=1),
                               spec("nll", "mean", weight=SYM), spec("kl", "batchmean"),
                               spec("ce", "mean", weight=SYM, targets="prob"),
                               spec("bce", "mean", weight=SYM, pos_weight=SYM)],
                         ids=lambda s: s.describe())
def test_json_gradients_of_the_backends_are_the_same_functions(s):
    """At C = 3 the symbolic strings and the concrete ones are the same functions of every symbol."""
    sym, con = derive("n", s), derive(3, s)
    z, y, w, q = (LOCAL[v] for v in "zywq")
    flat = {}
    for m in range(1, 4):
        flat.update({z[m]: sp.Symbol(f"z{m}"), y[m]: sp.Symbol(f"y{m}"), w[m]: sp.Symbol(f"w{m}"),
                     q[m]: sp.Symbol(f"q{m}")})
    rng = np.random.default_rng(3)
    for j in range(1, 4):
        g_sym = _parse(sym.gradient[0]).subs(sp.Symbol("n"), 3).doit().subs(sp.Symbol("j"), j).xreplace(flat)
        g_con = parsed(con.gradient[j - 1], con)
        point = {v: rng.uniform(0.2, 1.5) for v in g_sym.free_symbols | g_con.free_symbols}
        assert math.isclose(float(g_sym.subs(point)), float(g_con.subs(point)), rel_tol=1e-12)


# --------------------------------------------------------------------------
# Claims
# --------------------------------------------------------------------------


def _claim(d):
    (c,) = [c for c in d.checks if c.name == "claim"]
    return c


@pytest.mark.parametrize(
    ("claim", "s", "normalized"),
    [
        ("p - y", spec(), True),
        ("p*sum(y) - y", spec(targets="prob"), False),
        ("(p - y)/N", spec(reduction="mean"), True),
        ("p - ((1 - eps)*y + eps/C)", spec(label_smoothing=SYM), True),
        ("p*sum(w*y) - w*y", spec(weight=SYM), True),
        ("p - y + sum(p) - 1", spec(), True),  # sum(p) = 1 is proved, not assumed
        ("p - y", spec("bce"), True),
        ("(p - y)/(N*C)", spec("bce", "mean"), True),
        ("exp(z)/(1 + exp(z)) - y", spec("bce"), True),
        ("p - y", spec("nll"), True),
        ("p - y", spec("kl"), True),
        ("(p - y)/(N*C)", spec("kl", "mean"), True),
        ("(p - y)/N", spec("kl", "batchmean"), True),
        ("(p*sum(w*y) - w*y)/N", spec("ce", "mean", weight=SYM, targets="prob"), True),
        ("m*(p - y)", spec(ignore_index=-100), True),
    ],
)
def test_true_claims_are_proved(claim, s, normalized):
    d = derive("n", s, claim=claim, assume_normalized=normalized)
    _assert_verified(d)
    c = _claim(d)
    assert c.passed and "together + expand" in c.method
    assert d.options["claim"] == claim


@pytest.mark.parametrize(
    ("claim", "s", "normalized"),
    [
        ("p - 2*y", spec(), True),
        ("p - y", spec(weight=SYM), True),
        ("p - ((1-eps)*y + eps/(C-1))", spec(label_smoothing=SYM), True),
        ("p - y", spec(targets="prob"), False),
        ("(p - y)/N", spec("bce", "mean"), True),  # BCE's mean divides by N*C
        ("(p - y)/N", spec("kl", "mean"), True),  # so does kl's mean
        ("p - y", spec("bce", pos_weight=SYM), True),
    ],
)
def test_wrong_claims_are_refuted_with_a_counterexample(claim, s, normalized):
    d = derive("n", s, claim=claim, assume_normalized=normalized)
    assert not d.verified  # -> exit code 1 in the CLI
    assert [c.name for c in d.failed] == ["claim"]  # everything else is still proved
    c = _claim(d)
    assert c.detail.startswith("refuted at C = ")
    assert "at z = (" in c.detail and "the derivative is" in c.detail


def test_claim_true_at_small_C_only_is_refuted_at_a_larger_one():
    """(C-2)...(C-8) vanishes at C = 2..8: the concrete search goes on to C = 9 (and up to 12)."""
    c = _claim(derive("n", spec(), claim="p - y + (C-2)*(C-3)*(C-4)*(C-5)*(C-6)*(C-7)*(C-8)"))
    assert not c.passed
    assert c.detail.startswith("refuted at C = 9 (tried C = 2, 3, …, 9): ")
    assert c.data["classes_tried"] == list(range(2, 10))


def test_claim_true_at_every_size_tried_is_not_proved_for_symbolic_c():
    """y**2 = y only for one-hot targets: exact at each C = 2..12, but not a proof for every n."""
    c = _claim(derive("n", spec(), claim="p - y**2"))
    assert not c.passed
    assert "it holds exactly at C = 2, 3, …, 12, and no counterexample was found there" in c.detail


def test_non_rational_false_claim_is_refuted():
    c = _claim(derive("n", spec(), claim="p - y + log(2 + p)"))
    assert not c.passed and c.detail.startswith("refuted at C = 2")


@pytest.mark.parametrize(
    ("claim", "s"),
    [("p - w*y", spec()), ("p - eps", spec()), ("(p - y)/N", spec()), ("(p - y)/W", spec(reduction="mean")),
     ("(p - y)/N", spec(reduction="mean", weight=SYM)), ("q*(p - y)", spec("bce")), ("m*(p - y)", spec())],
)
def test_claim_names_need_their_option(claim, s):
    for classes in ("n", 3):
        with pytest.raises(XentInputError):
            derive(classes, s, claim=claim)


# --------------------------------------------------------------------------
# The JSON strings against finite differences of the loss string
# --------------------------------------------------------------------------


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


def _point(rng, normalized: bool) -> dict:
    z, y, w, q = (LOCAL[v] for v in "zywq")
    vals = {}
    targets = rng.dirichlet(np.ones(K)) if normalized else rng.uniform(0.05, 1.0, size=K)
    for m in range(1, K + 1):
        vals[z[m]] = sp.Float(rng.normal(0.0, 1.5), 30)
        vals[y[m]] = sp.Float(targets[m - 1], 30)
        vals[w[m]] = sp.Float(rng.uniform(0.5, 2.0), 30)
        vals[q[m]] = sp.Float(rng.uniform(0.5, 2.0), 30)
    for name in ("epsilon", "mask", "n_samples", "w_total", "rest"):
        vals[sp.Symbol(name)] = sp.Float(rng.uniform(0.1, 0.9) if name in ("epsilon", "mask")
                                         else rng.uniform(1.0, 5.0), 30)
    return vals


@pytest.mark.parametrize(
    "s",
    [spec(), spec("ce", "mean", weight=SYM, label_smoothing=SYM, ignore_index=-100), spec("nll", label_smoothing=0),
     spec("nll", "sum", weight=SYM), spec("kl", "mean"), spec("kl", "batchmean"), spec("bce"),
     spec("bce", "mean", weight=SYM, pos_weight=SYM)],
    ids=lambda s: s.describe(),
)
def test_json_strings_match_finite_differences(s):
    letter = "n"
    d = derive(letter, s)
    L = _parse(d.loss_expr)
    G = _parse(d.gradient[0])
    GA = _parse(d.gradient_assuming[0])
    J = _parse(d.jacobian[0][0])
    z = LOCAL["z"]
    rng = np.random.default_rng(7)
    h = sp.Float("1e-12", 30)
    for _ in range(2):
        vals = _point(rng, normalized=True)
        for j in range(1, K + 1):
            fd = _central_difference(L, letter, vals, z[j], h)
            assert math.isclose(_numeric(G, letter, vals, j=j), fd, rel_tol=1e-9, abs_tol=1e-12)
            assert math.isclose(_numeric(GA, letter, vals, j=j), fd, rel_tol=1e-9, abs_tol=1e-12)
        # The Jacobian entry against finite differences of the softmax / sigmoid, written out independently.
        zs = [float(vals[z[m]]) for m in range(1, K + 1)]
        for i, j in itertools.product(range(1, K + 1), repeat=2):
            def out(v, i=i):
                if s.kind == "bce":
                    return 1.0 / (1.0 + math.exp(-v[i - 1]))
                e = [math.exp(x) for x in v]
                return e[i - 1] / sum(e)

            hh = 1e-6
            vu, vd = list(zs), list(zs)
            vu[j - 1] += hh
            vd[j - 1] -= hh
            fd = (out(vu) - out(vd)) / (2 * hh)
            assert math.isclose(_numeric(J, letter, vals, i=i, j=j), fd, rel_tol=1e-6, abs_tol=1e-9)
    # Without sum(y) = 1 the general gradient still matches; gradient_assuming only under the assumption.
    if s.kind != "bce":
        vals = _point(rng, normalized=False)
        for j in range(1, K + 1):
            fd = _central_difference(L, letter, vals, z[j], h)
            assert math.isclose(_numeric(G, letter, vals, j=j), fd, rel_tol=1e-9, abs_tol=1e-12)


def test_strings_avoid_the_bare_name_N():
    d = derive("n", spec("bce", "mean"))
    for text in (d.loss_expr, *d.gradient, *d.gradient_assuming):
        assert "N" not in text
        _parse(text)
    assert "n_samples" in d.symbols and "rest" in d.symbols


# --------------------------------------------------------------------------
# The proof machinery itself: a wrong closed form never passes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("classes", ["n", 3])
def test_backends_record_a_failed_check_for_a_wrong_closed_form(classes):
    from xentcli.symbolic import quantities as Q
    from xentcli.symbolic.derivation import backend_for
    from xentcli.symbolic.problem import Problem

    b = backend_for(Problem(classes, spec("bce")))
    checks, _ = b.prove("direct", "right", lambda A, j: A.dz(Q.loss(A), j), Q.grad)
    assert checks[0].passed
    checks, _ = b.prove("direct", "wrong on purpose", lambda A, j: A.dz(Q.loss(A), j),
                        lambda A, j: A.sigma(j) + A.y(j))
    assert not checks[0].passed
    assert ("did not reduce to 0" if classes == "n" else "fails for j = 1") in checks[0].detail


@pytest.mark.parametrize("classes", ["n", 3])
def test_p_minus_y_needs_the_assumption(classes):
    from xentcli.symbolic import quantities as Q
    from xentcli.symbolic.derivation import backend_for
    from xentcli.symbolic.problem import Problem

    b = backend_for(Problem(classes, spec(targets="prob")))

    def derived(A, j):
        return A.dz(Q.loss(A), j)

    def p_minus_y(A, j):
        return A.p(j) - A.y(j)

    assert not b.prove("x", "without", derived, p_minus_y)[0][0].passed
    assert b.prove("x", "given sum(y) = 1", derived, p_minus_y, given="normalized")[0][0].passed


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
    assert normalize_sums(e, k) == 3 * z[j] * sp.Sum(y[k], (k, 1, n)) + 2 * n
    ok, _ = reduces_to_zero(e - (3 * z[j] * sp.Sum(y[i], (i, 1, n)) + 2 * n), dummy=k)
    assert ok


# --------------------------------------------------------------------------
# Letters
# --------------------------------------------------------------------------


@pytest.mark.parametrize("letter", ["i", "j", "k", "t", "s", "z", "y", "w", "q", "m", "p", "N", "W", "E", "I", "S",
                                    "Q", "O", "e"])
def test_reserved_letters_are_refused(letter):
    with pytest.raises(XentInputError, match="clashes"):
        derive(letter)


@pytest.mark.parametrize("letter", ["", "nn", "1", "é", "n1", " "])
def test_non_letters_are_refused(letter):
    with pytest.raises(XentInputError, match="single ASCII letter"):
        derive(letter)


# --------------------------------------------------------------------------
# The Hessian step

HESSIAN_CHECKS = {"hessian", "hessian-s-constant", "jacobian-times-v", "jacobian-quadratic-form", "jacobian-null-space"}


@pytest.mark.parametrize("classes", ["n", 3, 5])
@pytest.mark.parametrize("s", [spec(), spec("ce", "mean", weight=SYM, label_smoothing=SYM, ignore_index=1),
                               spec("kl", "batchmean"), spec("ce", targets="prob"), spec("nll", "sum")],
                         ids=lambda s: s.describe())
def test_the_hessian_is_proved_with_its_properties(s, classes):
    d = derive(classes, s)
    _assert_verified(d)
    names = {c.name for c in d.checks}
    assert HESSIAN_CHECKS <= names
    assert ("hessian-normalized" in names) == (s.weight is None)


@pytest.mark.parametrize("classes", ["n", 4])
def test_the_bce_hessian_is_diagonal_and_proved(classes):
    d = derive(classes, spec("bce", "mean", weight=SYM, pos_weight=SYM))
    _assert_verified(d)
    assert "hessian" in {c.name for c in d.checks}


@pytest.mark.parametrize("classes", ["n", 3])
@pytest.mark.parametrize(("name", "target", "wrong"), [
    # s dropped: true only when the targets sum to 1
    ("hessian", "hessian", lambda Q, orig: lambda A, i, j: Q.softmax_jacobian(A, i, j)),
    # the factor 1/2 of the pairwise form replaced by 1/3
    ("jacobian-quadratic-form", "pairwise_form", lambda Q, orig: lambda A: orig(A) * 2 / 3),
    # the mean of v taken without the weights p
    ("jacobian-times-v", "jacobian_times_v", lambda Q, orig: lambda A, i: A.p(i) * (A.v(i) - A.sum(A.v))),
])
def test_the_hessian_checks_fail_for_a_wrong_closed_form(monkeypatch, classes, name, target, wrong):
    """Each Hessian check decides something: with its closed form altered it fails, and it is that check
    that fails (prob targets without the normalisation, so that s is not 1)."""
    from xentcli.symbolic import quantities as Q

    monkeypatch.setattr(Q, target, wrong(Q, getattr(Q, target)))
    d = derive(classes, spec(targets="prob"), assume_normalized=False)
    failed = {c.name: c.detail for c in d.failed}
    assert name in failed, (name, failed)
    assert "raised" not in failed[name] and "error" not in failed[name], failed[name]


def test_the_inverse_normaliser_ring_decides_identities_that_need_S_times_one_over_S():
    """In the prover's ring 1/S is a variable of its own: p_1 + ... + p_C = 1 is not an identity in free
    variables, and must still be proved (by clearing 1/S); p_1 + p_2 = 1 at C = 3 must not."""
    from xentcli.symbolic.derivation import backend_for
    from xentcli.symbolic.problem import Problem

    b = backend_for(Problem(3, spec()))
    A = b.prover("z")
    total = A.p(0) + A.p(1) + A.p(2)
    assert (total - 1).num  # not zero as a polynomial with 1/S free ...
    assert total.equals(1)  # ... but zero once 1/S is cleared
    assert not (A.p(0) + A.p(1)).equals(1)
    assert A.dz(total, 1).equals(0)


# --------------------------------------------------------------------------
# JSON: names defined once, and --expand


def test_json_at_200_classes_is_small_and_parses():
    from xentcli.symbolic.documents import to_json

    d = derive(200, spec())
    _assert_verified(d)
    text = to_json(d)
    assert len(text.encode()) <= 2_000_000
    assert len(d.jacobian) == 200 and all(len(r) == 200 for r in d.jacobian)
    z, y = sp.symbols("z1:201"), sp.symbols("y1:201")
    g = parsed(d.gradient[7], d)
    jac = parsed(d.jacobian[3][7], d)
    assert g.free_symbols <= set(z) | set(y) and jac.free_symbols <= set(z)
    rng = np.random.default_rng(1)
    zv, yv = rng.normal(size=200), rng.dirichlet(np.ones(200))
    p = np.exp(zv - zv.max())
    p /= p.sum()
    point = {**dict(zip(z, zv)), **dict(zip(y, yv))}
    assert math.isclose(float(g.xreplace(point)), p[7] * yv.sum() - yv[7], rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(float(jac.xreplace(point)), -p[3] * p[7], rel_tol=1e-9)


@pytest.mark.parametrize("s", [spec("ce", "mean", weight=SYM, label_smoothing=SYM), spec("bce", pos_weight=SYM),
                               spec("nll")], ids=lambda s: s.describe())
def test_expanded_json_is_the_compact_json_written_out(s):
    from xentcli.symbolic.derivation import derive_problem
    from xentcli.symbolic.problem import Problem

    compact = derive_problem(Problem(3, s))
    full = derive_problem(Problem(3, s), expand=True)
    assert full.definitions == {} and compact.definitions
    names = {sp.Symbol(n) for n in compact.definitions}
    rng = np.random.default_rng(5)
    pairs = [(compact.loss_expr, full.loss_expr), *zip(compact.gradient, full.gradient),
             (compact.jacobian[0][1], full.jacobian[0][1]), (compact.jacobian[2][2], full.jacobian[2][2])]
    for short, long in pairs:
        a, b = parsed(short, compact), sp.parse_expr(long)
        assert not (b.free_symbols & names)
        point = {v: rng.uniform(0.2, 1.5) for v in a.free_symbols | b.free_symbols}
        assert math.isclose(float(a.xreplace(point)), float(b.xreplace(point)), rel_tol=1e-12)
