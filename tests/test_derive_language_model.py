"""xent derive with the options of a language model: z-loss, soft-capping and temperature.

References outside the code under test:

* the loss written here directly from its definition (x = cap tanh(z/cap)/T, p = softmax(x),
  lse = log Σ exp(x), ℓ = −Σ a log p + m λ lse², as in Liger-Kernel and Gemma 2), differentiated by
  ``sympy.diff`` and evaluated at 30 digits;
* central differences of that loss with mpmath at 40 digits (``mpmath.diff``);
* exact rational values: with a temperature alone, z = T log u for rational u makes p rational, so the
  derivative (p − y)/T is an exact Fraction computed here by hand.

Each test fails if the derivation's gradient, its claim verdicts or its counterexamples are wrong.
"""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Any

import mpmath
import pytest
import sympy as sp
from derived_json import parsed

from xentcli.errors import XentInputError
from xentcli.spec import SYM, LossSpec
from xentcli.symbolic import derive

LM = {"z_loss": "lam", "softcap": "cap", "temperature": "T"}
# Values for the symbols at the comparison points (exact), and the same options given as values.
VALUES = {"lam": Fraction(3, 10), "cap": Fraction(5, 2), "T": Fraction(3, 2)}


def spec(reduction: str = "none", **options: Any) -> LossSpec:
    return LossSpec("ce", reduction, **options)


def direct_loss(z: list[Any], y: list[Any], *, lam: Any = 0, cap: Any = None, T: Any = 1, eps: Any = 0,
                w: list[Any] | None = None, mask: Any = 1, lib: Any = sp) -> Any:
    """One sample's loss, written from the definitions (sympy or mpmath as ``lib``)."""
    C = len(z)
    x = [(cap * lib.tanh(v / cap) if cap is not None else v) / T for v in z]
    lse = lib.log(sum(lib.exp(v) for v in x))
    a = [mask * (w[k] if w else 1) * ((1 - eps) * y[k] + (eps / C if eps else 0)) for k in range(C)]
    return -sum(a[k] * (x[k] - lse) for k in range(C)) + mask * lam * lse**2


def options_of(s: LossSpec) -> dict[str, Any]:
    """The values the reference uses for the spec's options (symbols get VALUES)."""
    out: dict[str, Any] = {}
    for option, name in LM.items():
        v = getattr(s, option)
        if option == "softcap" and v is None:
            continue
        out[name] = VALUES[name] if v is SYM else Fraction(v)
    return out


def subs_of(d: Any, s: LossSpec, z: list[Any], y: list[Any]) -> dict[sp.Symbol, Any]:
    """The values of the derivation's JSON names at a point (concrete C)."""
    values: dict[sp.Symbol, Any] = {}
    for k, (zk, yk) in enumerate(zip(z, y), start=1):
        values[sp.Symbol(f"z{k}")] = zk
        values[sp.Symbol(f"y{k}")] = yk
    for option, name in LM.items():
        if getattr(s, option) is SYM:
            values[sp.Symbol(name)] = sp.Rational(VALUES[name].numerator, VALUES[name].denominator)
    return values


POINT_Z = [sp.Rational(7, 5), sp.Rational(-2, 3), sp.Rational(1, 4)]


@pytest.mark.parametrize("options", [
    {"z_loss": SYM}, {"softcap": SYM}, {"temperature": SYM},
    {"z_loss": Fraction(1, 10), "softcap": 30, "temperature": 2},
    {"z_loss": SYM, "softcap": SYM, "temperature": SYM},
    {"z_loss": SYM, "softcap": SYM, "temperature": SYM, "label_smoothing": Fraction(1, 10)},
], ids=lambda o: ",".join(o))
@pytest.mark.parametrize("targets", ["index", "prob"])
def test_c3_gradient_is_sympy_diff_of_the_loss_written_directly(options, targets):
    s = spec(targets=targets, **options)
    d = derive(3, s)
    assert d.verified, [c.name for c in d.failed]
    y = [sp.Integer(0), sp.Integer(1), sp.Integer(0)] if targets == "index" else \
        [sp.Rational(1, 5), sp.Rational(1, 2), sp.Rational(3, 10)]
    z = [sp.Symbol(f"z{k}") for k in range(1, 4)]
    o = {k: sp.Rational(v.numerator, v.denominator) for k, v in options_of(s).items()}
    eps = sp.Rational(1, 10) if s.smoothing else 0
    L = direct_loss(z, y, lam=o.get("lam", 0), cap=o.get("cap"), T=o.get("T", 1), eps=eps)
    values = subs_of(d, s, POINT_Z, y)
    for j in range(3):
        want = sp.N(sp.diff(L, z[j]).xreplace(dict(zip(z, POINT_Z))), 30)
        got = sp.N(parsed(d.gradient[j], d).xreplace(values), 30)
        assert abs(got - want) < 1e-25, (j, got, want)
        closed = sp.N(parsed(d.gradient_assuming[j], d).xreplace(values), 30)
        assert abs(closed - want) < 1e-25, (j, closed, want)


def test_symbolic_c_gradient_matches_mpmath_differences_of_the_direct_loss():
    s = spec("mean", z_loss=SYM, softcap=SYM, temperature=SYM, label_smoothing=SYM, ignore_index=0)
    d = derive("n", s)
    assert d.verified, [c.name for c in d.failed]
    K = 5
    local = {name: sp.IndexedBase(name) for name in ("z", "y")}
    g = sp.parse_expr(d.gradient[0], local_dict=dict(local)).subs(sp.Symbol("n"), K).doit()
    zv = [mpmath.mpf(v) for v in ("1.3", "-0.4", "2.2", "0.1", "-1.7")]
    t = 2  # the class index (1-based)
    eps, N = Fraction(1, 5), 3
    values = {**{local["z"][k + 1]: sp.Float(str(zv[k]), 40) for k in range(K)},
              **{local["y"][k + 1]: int(k + 1 == t) for k in range(K)},
              sp.Symbol("epsilon"): sp.Rational(1, 5), sp.Symbol("mask"): 1, sp.Symbol("n_samples"): N,
              **{sp.Symbol(n): sp.Rational(v.numerator, v.denominator) for n, v in VALUES.items()}}
    o = {n: mpmath.mpf(v.numerator) / v.denominator for n, v in VALUES.items()}
    y = [1 if k + 1 == t else 0 for k in range(K)]
    with mpmath.workdps(40):
        for j in range(1, K + 1):
            def f(v: Any, j: int = j) -> Any:
                zz = list(zv)
                zz[j - 1] = v
                return direct_loss(zz, y, lam=o["lam"], cap=o["cap"], T=o["T"], eps=mpmath.mpf(eps.numerator) / 5,
                                   lib=mpmath) / N
            want = mpmath.diff(f, zv[j - 1])
            got = sp.N(g.subs(sp.Symbol("j"), j).xreplace(values), 35)
            assert abs(float(got) - float(want)) < 1e-14 * max(1.0, abs(float(want))), (j, got, want)


def test_c50_all_options_prove_in_seconds_and_match_mpmath():
    s = spec(z_loss=SYM, softcap=SYM, temperature=SYM)
    start = time.perf_counter()
    d = derive(50, s)
    elapsed = time.perf_counter() - start
    assert d.verified, [c.name for c in d.failed]
    assert elapsed < 60, f"C = 50 took {elapsed:.1f} s"
    zv = [mpmath.mpf(k % 7) / 3 - 1 for k in range(50)]
    y = [1 if k == 4 else 0 for k in range(50)]
    o = {n: mpmath.mpf(v.numerator) / v.denominator for n, v in VALUES.items()}
    values = subs_of(d, s, [sp.Float(str(v), 40) for v in zv], y)
    with mpmath.workdps(40):
        for j in (0, 4, 49):
            def f(v: Any, j: int = j) -> Any:
                zz = list(zv)
                zz[j] = v
                return direct_loss(zz, y, lam=o["lam"], cap=o["cap"], T=o["T"], lib=mpmath)
            want = mpmath.diff(f, zv[j])
            got = sp.N(parsed(d.gradient[j], d).xreplace(values), 35)
            assert abs(float(got) - float(want)) < 1e-14, (j, got, want)


def test_temperature_alone_is_exact_at_rational_probabilities():
    """z = T log u with rational u: p = u / Σu exactly, and the derivative is (p − y)/T, a Fraction."""
    d = derive(3, spec(temperature=2))
    u = [Fraction(2), Fraction(3), Fraction(5)]
    y = [0, 0, 1]
    values = {sp.Symbol(f"z{k + 1}"): 2 * sp.log(sp.Rational(u[k].numerator, u[k].denominator)) for k in range(3)}
    values.update({sp.Symbol(f"y{k + 1}"): y[k] for k in range(3)})
    for j in range(3):
        want = (u[j] / sum(u) - y[j]) / 2
        got = sp.nsimplify(sp.expand_log(parsed(d.gradient[j], d).xreplace(values), force=True))
        assert got == sp.Rational(want.numerator, want.denominator), (j, got, want)


@pytest.mark.parametrize("classes", [3, 50, "n"])
@pytest.mark.parametrize("options", [{"z_loss": SYM}, {"softcap": SYM}, {"temperature": SYM},
                                     {"z_loss": SYM, "softcap": SYM, "temperature": SYM}],
                         ids=lambda o: ",".join(o))
def test_each_option_alone_and_combined_proves(classes, options):
    d = derive(classes, spec(**options))
    assert d.verified, [c.name for c in d.failed]
    names = {c.name for c in d.checks}
    assert "direct" in names
    if "z_loss" in options:
        assert {"dlse", "z-loss-gradient", "loss-by-softmax-inputs"} <= names
    if "softcap" in options or "temperature" in options:
        assert {"capped-logits-jacobian", "chain-rule-to-logits"} <= names


@pytest.mark.parametrize("extra", [
    {"weight": SYM, "reduction": "sum"},
    {"label_smoothing": SYM, "ignore_index": 0, "reduction": "mean"},
    {"targets": "prob", "weight": SYM, "reduction": "mean"},
    {"targets": "prob", "reduction": "sum"},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("classes", [3, "n"])
def test_combined_with_the_existing_options(classes, extra):
    reduction = extra.pop("reduction", "none")
    d = derive(classes, spec(reduction, z_loss=SYM, softcap=SYM, temperature=SYM, **extra))
    assert d.verified, [c.name for c in d.failed]


# The weighted mean over class indices with a z-loss (Liger-Kernel's semantics): the batch's cross-entropy is
# divided by W = Σ over counted samples of w[t_n], its z-loss by the number of counted samples.
BATCH_T = [1, 0, 2, 0]  # class indices of a batch of four; with ignore_index 0 samples 1 and 3 are ignored
BATCH_Z = [[sp.Rational(7, 5), sp.Rational(-2, 3), sp.Rational(1, 4)],
           [sp.Rational(1, 2), sp.Rational(3, 2), sp.Rational(-1, 1)],
           [sp.Rational(-3, 4), sp.Rational(2, 5), sp.Rational(9, 10)],
           [sp.Rational(0), sp.Rational(-1, 5), sp.Rational(6, 5)]]
BATCH_W = [sp.Rational(1, 2), sp.Rational(2), sp.Rational(3, 2)]


def weighted_batch_mean(z0: list[Any], *, ignore: int | None, lam: Any, cap: Any = None, T: Any = 1,
                        eps: Any = 0, lib: Any = sp) -> tuple[Any, Any, Any]:
    """The batch's loss as Liger-Kernel defines it, sample 0's logits replaced by ``z0``: Σ_n ce_n / W +
    λ Σ_n m_n lse_n² / n_counted, with W and n_counted."""
    C = len(z0)
    ce = zl = W = counted = 0
    for n, t in enumerate(BATCH_T):
        if t == ignore:
            continue
        z = z0 if n == 0 else BATCH_Z[n]
        y = [1 if k == t else 0 for k in range(C)]
        ce += direct_loss(z, y, cap=cap, T=T, eps=eps, w=BATCH_W, lib=lib)
        zl += direct_loss(z, y, lam=lam, cap=cap, T=T, eps=eps, w=BATCH_W, lib=lib) - \
            direct_loss(z, y, cap=cap, T=T, eps=eps, w=BATCH_W, lib=lib)
        W += BATCH_W[t] if not eps else (1 - eps) * BATCH_W[t] + eps / C * sum(BATCH_W)
        counted += 1
    return ce / W + zl / counted, W, counted


@pytest.mark.parametrize("options", [
    {"z_loss": SYM},
    {"z_loss": Fraction(1, 10), "softcap": 30, "temperature": 2, "ignore_index": 0},
    {"z_loss": SYM, "softcap": SYM, "temperature": SYM, "ignore_index": 0},
], ids=lambda o: ",".join(o))
def test_weighted_mean_with_z_loss_c3_is_sympy_diff_of_the_batch_written_directly(options):
    s = spec("mean", weight=SYM, **options)
    d = derive(3, s)
    assert d.verified, [c.name for c in d.failed]
    o = {k: sp.Rational(v.numerator, v.denominator) for k, v in options_of(s).items()}
    z = [sp.Symbol(f"z{k}") for k in range(1, 4)]
    L, W, counted = weighted_batch_mean(z, ignore=s.ignore_index, lam=o["lam"], cap=o.get("cap"), T=o.get("T", 1))
    assert W != counted  # the two denominators differ at this batch
    values = subs_of(d, s, BATCH_Z[0], [0, 1, 0])
    values.update({sp.Symbol(f"w{k + 1}"): BATCH_W[k] for k in range(3)})
    values.update({sp.Symbol("w_total"): W, sp.Symbol("n_samples"): counted, sp.Symbol("mask"): 1})
    for j in range(3):
        want = sp.N(sp.diff(L, z[j]).xreplace(dict(zip(z, BATCH_Z[0]))), 30)
        got = sp.N(parsed(d.gradient[j], d).xreplace(values), 30)
        assert abs(got - want) < 1e-25, (j, got, want)


def test_weighted_mean_with_z_loss_symbolic_c_matches_mpmath_differences_of_the_batch():
    s = spec("mean", weight=SYM, z_loss=SYM, softcap=SYM, temperature=SYM, label_smoothing=SYM, ignore_index=0)
    d = derive("n", s)
    assert d.verified, [c.name for c in d.failed]
    K = 3
    local = {name: sp.IndexedBase(name) for name in ("z", "y", "w")}
    g = sp.parse_expr(d.gradient[0], local_dict=dict(local)).subs(sp.Symbol("n"), K).doit()
    o = {n: mpmath.mpf(v.numerator) / v.denominator for n, v in VALUES.items()}
    eps = mpmath.mpf(1) / 5
    with mpmath.workdps(40):
        zv = [mpmath.mpf(v.p) / v.q for v in BATCH_Z[0]]
        _L, W, counted = weighted_batch_mean(zv, ignore=0, lam=o["lam"], cap=o["cap"], T=o["T"], eps=eps, lib=mpmath)
        assert abs(W - counted) > 0.1
        values = {**{local["z"][k + 1]: sp.Float(str(zv[k]), 40) for k in range(K)},
                  **{local["y"][k + 1]: int(k == BATCH_T[0]) for k in range(K)},
                  **{local["w"][k + 1]: BATCH_W[k] for k in range(K)},
                  sp.Symbol("epsilon"): sp.Rational(1, 5), sp.Symbol("mask"): 1,
                  sp.Symbol("w_total"): sp.Float(str(W), 40), sp.Symbol("n_samples"): counted,
                  **{sp.Symbol(n): sp.Rational(v.numerator, v.denominator) for n, v in VALUES.items()}}
        for j in range(1, K + 1):
            def f(v: Any, j: int = j) -> Any:
                zz = list(zv)
                zz[j - 1] = v
                return weighted_batch_mean(zz, ignore=0, lam=o["lam"], cap=o["cap"], T=o["T"], eps=eps,
                                           lib=mpmath)[0]
            want = mpmath.diff(f, zv[j - 1])
            got = sp.N(g.subs(sp.Symbol("j"), j).xreplace(values), 35)
            assert abs(float(got) - float(want)) < 1e-14 * max(1.0, abs(float(want))), (j, got, want)


@pytest.mark.parametrize("classes", [3, 50, "n"])
def test_weighted_mean_with_z_loss_proves(classes):
    d = derive(classes, spec("mean", weight=SYM, z_loss=SYM))
    assert d.verified, [c.name for c in d.failed]
    assert "reduction" in {c.name for c in d.checks}


@pytest.mark.parametrize("classes", [3, "n"])
def test_probability_rows_divide_both_parts_by_n(classes):
    """Probability rows: the cross-entropy and the z-loss are both divided by N, also with class weights."""
    s = spec("mean", targets="prob", weight=SYM, z_loss=SYM)
    d = derive(classes, s, claim="(p*sum(w*y) - w*y + 2*lam*lse*p)/N")
    assert d.verified, [c.name for c in d.failed]
    with pytest.raises(XentInputError, match="divides by N"):
        derive(classes, s, claim="(p*sum(w*y) - w*y)/W")


WEIGHTED_MEAN = "(p*sum(w*y) - w*y)/W + 2*lam*lse*p/N"


@pytest.mark.parametrize(("classes", "claim"), [
    (3, WEIGHTED_MEAN), ("n", WEIGHTED_MEAN),
    (3, "sum(w*y)*(p - y)/W + 2*lam*lse*p/N"),  # w_j y_j = w_t y_j for a one-hot row
])
def test_weighted_mean_with_z_loss_claim_is_proved(classes, claim):
    d = derive(classes, spec("mean", weight=SYM, z_loss=SYM), claim=claim)
    check = next(c for c in d.checks if c.name == "claim")
    assert check.passed, check.detail


@pytest.mark.parametrize("classes", [3, "n"])
@pytest.mark.parametrize("claim", [
    "(p*sum(w*y) - w*y)/W + 2*lam*lse*p/W",  # the z-loss divided by W instead of the count
    "(p*sum(w*y) - w*y + 2*lam*lse*p)/W",  # the same, written as one fraction
    "(p*sum(w*y) - w*y)/N + 2*lam*lse*p/N",  # the cross-entropy divided by the count
    "(p*sum(w*y) - w*y)/W + 2*lam*lse*p*w/N",  # the z-loss weighted
])
def test_weighted_mean_with_z_loss_near_misses_are_refuted(classes, claim):
    d = derive(classes, spec("mean", weight=SYM, z_loss=SYM), claim=claim)
    check = next(c for c in d.checks if c.name == "claim")
    assert not check.passed
    example = check.data["counterexample"]
    point = example["sample"]
    assert point["N"] != point["W"]
    # the counterexample is genuine: there, the loss written directly (ℓ_CE/W + λ lse²/N) has the derivative the
    # counterexample states, and the claim's value differs from it
    z = [sp.Symbol(f"z{k}") for k in range(1, len(point["z"]) + 1)]
    y, w = ([sp.sympify(v) for v in point[key]] for key in ("y", "w"))
    lam, W, N = (sp.sympify(point[key]) for key in ("lam", "W", "N"))
    L = direct_loss(z, y, w=w) / W + (direct_loss(z, y, lam=lam, w=w) - direct_loss(z, y, w=w)) / N
    j = example["class"] - 1
    want = sp.diff(L, z[j]).xreplace(dict(zip(z, (sp.sympify(v) for v in point["z"]))))
    assert abs(sp.N(want - sp.sympify(example["derivative"]), 30)) < 1e-25
    assert abs(sp.N(sp.sympify(example["claim"]) - want, 30)) > 1e-6


# --------------------------------------------------------------------------
# Claims: the issue's example and the near-misses
# --------------------------------------------------------------------------

CORRECT = [
    ({"z_loss": SYM}, "p - y + 2*lam*lse*p"),
    ({"softcap": SYM}, "(p - y)*(1 - tanh(z/cap)**2)"),
    ({"temperature": SYM}, "(p - y)/T"),
    ({"z_loss": SYM, "softcap": SYM, "temperature": SYM}, "(p - y + 2*lam*lse*p)*(1 - tanh(z/cap)**2)/T"),
]
NEAR_MISSES = [
    ({"z_loss": SYM}, "p - y + lam*lse*p"),  # the factor 2 missing
    ({"z_loss": SYM}, "p - y + lam*p"),  # lambda applied to lse instead of lse^2
    ({"softcap": SYM}, "p - y"),  # the tanh' factor missing
    ({"temperature": SYM}, "p - y"),  # the temperature missing from the gradient
    ({"z_loss": SYM, "softcap": SYM, "temperature": SYM}, "(p - y + 2*lam*lse*p)*(1 - tanh(z/cap)**2)"),
]


@pytest.mark.parametrize("classes", [3, "n"])
@pytest.mark.parametrize(("options", "claim"), CORRECT, ids=[c for _o, c in CORRECT])
def test_correct_claims_are_proved(classes, options, claim):
    d = derive(classes, spec(**options), claim=claim)
    check = next(c for c in d.checks if c.name == "claim")
    assert check.passed, check.detail


@pytest.mark.parametrize("classes", [3, "n"])
@pytest.mark.parametrize(("options", "claim"), NEAR_MISSES, ids=[c for _o, c in NEAR_MISSES])
def test_near_misses_are_refuted_at_an_exact_point(classes, options, claim):
    s = spec(**options)
    d = derive(classes, s, claim=claim)
    check = next(c for c in d.checks if c.name == "claim")
    assert not check.passed
    example = check.data["counterexample"]
    C = example["classes"]
    # The point, as exact SymPy numbers; the claim and the derivative recomputed here from the direct loss.
    z = [sp.parse_expr(v) for v in example["sample"]["z"]]
    y = [sp.parse_expr(v) for v in example["sample"]["y"]]
    o = {k: sp.parse_expr(example["sample"][k]) for k in ("lam", "cap", "T") if k in example["sample"]}
    zs = [sp.Symbol(f"z{k}") for k in range(1, C + 1)]
    L = direct_loss(zs, y, lam=o.get("lam", 0), cap=o.get("cap"), T=o.get("T", 1))
    j = example["class"] - 1
    want = sp.diff(L, zs[j]).xreplace(dict(zip(zs, z)))
    assert abs(sp.N(want - sp.parse_expr(example["derivative"]), 40)) < 1e-30
    claimed = sp.parse_expr(claim.replace("lse", "LSE"), local_dict={
        "p": sp.exp(sp.Symbol("x")) / sp.Symbol("S"), "y": y[j], "z": z[j], "LSE": sp.log(sp.Symbol("S")),
        **{k: v for k, v in o.items()}})
    x = [(o.get("cap", 1) * sp.tanh(v / o["cap"]) if "cap" in o else v) / o.get("T", 1) for v in z]
    claimed = claimed.xreplace({sp.Symbol("x"): x[j], sp.Symbol("S"): sum(sp.exp(v) for v in x)})
    assert abs(sp.N(claimed - sp.parse_expr(example["claim"]), 40)) < 1e-30
    assert abs(sp.N(claimed - want, 30)) > 1e-6  # they do differ there


def test_the_issue_s_example_exit_codes(xent):
    ok = xent("derive", "--classes", "3", "--z-loss", "sym", "--claim", "p - y + 2*lam*lse*p")
    assert ok.code == 0, ok
    bad = xent("derive", "--classes", "3", "--z-loss", "sym", "--claim", "p - y + lam*lse*p")
    assert bad.code == 1, bad
    assert "lam = " in bad.stdout + bad.stderr and "claim − derivative" in bad.stdout + bad.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--claim", "p - y + lam*lse*p"], "needs --z-loss"),
    (["--softcap", "sym", "--claim", "(p - y)/T"], "needs --temperature"),
    (["--claim", "p - y + 0*lse"], "needs --z-loss, --softcap or --temperature"),
])
def test_names_of_options_that_are_off_are_refused(xent, args, message):
    run = xent("derive", "--classes", "3", *args)
    assert run.code == 2, run
    assert message in run.stderr


@pytest.mark.parametrize("fmt", ["text", "markdown", "latex", "json"])
def test_every_format_renders_the_new_steps(xent, fmt):
    run = xent("derive", "--classes", "3", "--z-loss", "sym", "--softcap", "sym", "--temperature", "sym",
               "--format", fmt)
    assert run.code == 0, run
    for word in ("z-loss", "Soft-capping and temperature", "lse"):
        assert word in run.stdout
    if fmt == "json":
        doc = run.json()
        assert doc["options"]["z_loss"] == "sym" and doc["options"]["softcap"] == "sym"
        assert {"lam", "cap", "T", "lse"} <= set(doc["symbols"])
