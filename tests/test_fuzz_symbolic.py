"""Hardening of ``xent derive`` and ``xent verify`` against hostile and random input (Hypothesis).

The contract checked on every run: exit 0 (success), exit 1 (a genuine
mathematical or verification failure: a claim refuted or not proved, an
implementation wrong, drift), or exit 2 with exactly one line on stderr that
starts with ``xent: error:`` (bad input or usage). Never a traceback, never
exit 1 for bad input, never a hang. The CLI runs in-process with
``XENT_DEBUG=1``, so an unexpected internal exception propagates (and fails
the test with its traceback) instead of being masked as "unexpected failure".

Covered:

1. ``--claim``: random text; random expression trees of the claim grammar
   (each must be proved, exit 0, or refuted/not proved, exit 1 -- never 2);
   true claims disguised with junk that cancels (must be proved) and with a
   strictly positive junk term (must be refuted with a counterexample);
   unsafe or out-of-grammar claims (exit 2, one line, nothing written); the
   claim never reaches ``eval``/``exec``/``compile``/``sympify``/``parse_expr``.
2. Resource limits: enormous powers, nested powers and sums, 100k-character
   claims, deep nesting (also past the length limit, to exercise the
   parser's own limits), claims too large for a concrete C; ``--classes`` and
   option garbage. Every refusal is exit 2, one line, and fast.
3. Symbolic honesty: a wrong closed form fed into the provers (concrete and
   symbolic C) and exceptions raised inside SymPy/ring arithmetic during a
   check give "not proved" (exit 1), never a pass.
4. ``xent derive --check`` on hostile directories and headers (shell
   injection, ``--output``/``--check`` in a header, ``--help``, binary files,
   non-text JSON headers, FIFOs...).
5. ``xent verify``: malformed targets, targets that are not loss functions
   (classes, the standard library: ``os:system``), broken implementations
   (raising, exiting, printing, returning garbage), random return values, and
   hostile ``--results`` directories (pickles, random bytes, paths that leave
   the directory, malformed manifests).

Runtime: about 40 s by default. ``XENT_FUZZ_SCALE=N`` multiplies every
``max_examples`` by N for a longer soak run, e.g.
``XENT_FUZZ_SCALE=25 python -m pytest tests/test_fuzz_symbolic.py``.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import pickle
import random
import re
import shlex
import shutil
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from claim_reference import claim_value
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from xentcli.cli import cli

FUZZ_SCALE = max(1, int(os.environ.get("XENT_FUZZ_SCALE", "1") or "1"))
ENV = {"XENT_DEBUG": "1", "COLUMNS": "120", "TERM": "dumb", "NO_COLOR": "1"}
FAST = 2.0  # seconds: every refusal of bad input must be this quick (in fact they take milliseconds)


def fuzz(n: int, **kwargs):
    """Hypothesis settings with ``n`` examples times XENT_FUZZ_SCALE, no deadline."""
    return settings(
        max_examples=n * FUZZ_SCALE,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        **kwargs,
    )


class Run:
    def __init__(self, result, seconds: float):
        self.code = result.exit_code
        self.stdout = result.stdout
        self.stderr = result.stderr
        self.seconds = seconds

    def json(self):
        return json.loads(self.stdout)

    @property
    def lines(self) -> list[str]:
        return self.stderr.strip("\n").split("\n") if self.stderr.strip() else []

    def __repr__(self) -> str:
        return f"<Run code={self.code} stdout={self.stdout[:300]!r} stderr={self.stderr[:500]!r}>"


def xent(*args, input=None, own_lines: bool = False) -> Run:
    """Run ``xent ARGS`` in-process with XENT_DEBUG=1 and check the error contract.

    ``own_lines``: the implementation under test writes to stderr itself; only
    xent's last line is held to the one-line rule then.
    """
    start = time.perf_counter()
    result = CliRunner().invoke(cli, [str(a) for a in args], input=input, env=ENV, catch_exceptions=True)
    seconds = time.perf_counter() - start
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # an internal error: XENT_DEBUG=1 lets it through with its traceback
    run = Run(result, seconds)
    assert "unexpected failure" not in run.stderr, run
    assert "Traceback" not in run.stderr, run
    assert run.code in (0, 1, 2), run
    if run.code == 2:
        lines = run.lines
        if own_lines:
            lines = lines[-1:]
        assert len(lines) == 1, run
        assert lines[0].startswith("xent: error: "), run
    return run


def refused(run: Run, *fragments: str) -> str:
    """Exit 2, one line, quickly; the line contains every fragment. Returns the line."""
    assert run.code == 2, run
    assert run.seconds < FAST, (run.seconds, run)
    line = run.lines[-1]
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def claim_check(doc: dict) -> dict:
    (check,) = [c for c in doc["checks"] if c["name"] == "claim"]
    return check


# ============================================================================
# 1. --claim: grammar fuzzing
# ============================================================================

# (options, names the claim may use): every name needs its option.
VARIANTS = [
    ([], ["p", "y", "z", "C"]),
    (["--targets", "prob", "--no-assume-normalized"], ["p", "y", "z", "C"]),
    (["--loss", "bce"], ["p", "y", "z", "C"]),
    (["--loss", "bce", "--pos-weight", "sym"], ["p", "y", "q", "C"]),
    (["--loss", "nll"], ["p", "y", "C"]),
    (["--loss", "kl", "--reduction", "mean"], ["p", "y", "C", "N"]),
    (["--reduction", "mean"], ["p", "y", "z", "C", "N"]),
    (["--label-smoothing", "sym"], ["p", "y", "C", "eps"]),
    (["--weight", "sym", "--targets", "prob", "--no-assume-normalized"], ["p", "y", "w", "C"]),
    (["--weight", "sym", "--reduction", "mean"], ["p", "y", "w", "W"]),
    (["--ignore-index", "-100", "--reduction", "sum"], ["p", "y", "m"]),
]
NUMBERS = ["0", "1", "2", "3", "7", "12", "0.5", "2.25", "1e-3", "3e2", "1_000"]


def _leaf(names: list[str]):
    return st.one_of(
        st.sampled_from(names).map(lambda n: (n, 1)),
        st.sampled_from(NUMBERS).map(lambda n: (n, 0)),
    )


def _binop(t):
    (a, da), op, (b, db) = t
    return f"({a}) {op} ({b})", (max(da, db) if op in "+-" else da + db)


def _grow(children):
    return st.one_of(
        st.tuples(children, st.sampled_from(["+", "-", "*", "/"]), children).map(_binop),
        st.tuples(children, st.integers(-3, 3)).map(lambda t: (f"({t[0][0]})**{t[1]}", abs(t[1]) * t[0][1])),
        children.map(lambda c: (f"-({c[0]})", c[1])),
        st.tuples(st.sampled_from(["sum", "exp", "log"]), children).map(
            lambda t: (f"{t[0]}({t[1][0]})", max(1, t[1][1]))
        ),
    )


def grammar_claims(names: list[str], max_leaves: int = 7):
    """Random claims of the documented grammar, with their degree (names 1, products add, ** multiplies)."""
    return st.recursive(_leaf(names), _grow, max_leaves=max_leaves).filter(lambda c: c[1] <= 8 and len(c[0]) <= 400)


def _assert_decided(run: Run, options: list[str] | None = None, classes: str = "3") -> None:
    """A grammar-valid claim: proved (0), or refuted / not proved (1) with the reason; 2 only when a part
    of it is undefined for every input (a division by 0, the log of 0 or of a negative number), named in
    the message and checked here: that part evaluates to zoo, nan or a complex number at a random point."""
    if run.code == 2:
        line = refused(run, "--claim: is malformed: ")
        assert options is not None, run
        _assert_really_undefined(line, options, classes)
        return
    assert run.code in (0, 1), run
    doc = run.json()
    check = claim_check(doc)
    others = [c for c in doc["checks"] if c["name"] != "claim"]
    assert others and all(c["passed"] for c in others), [c for c in others if not c["passed"]]
    if run.code == 0:
        assert check["passed"] and doc["verified"] is True
        assert run.stderr == ""
    else:
        assert not check["passed"] and doc["verified"] is False
        detail = check["detail"]
        assert re.search(r"at z = \(.*\).*: the claim gives ∂L/∂z_\d+ = \S+, the derivative is \S+", detail) or (
            re.search(r"at z = \(.*\).*: for ∂L/∂z_\d+ the claim is undefined \(", detail)
        ) or ("not proved" in detail or "neither proved" in detail or "no counterexample" in detail), detail
        assert run.lines == [run.lines[0]] and run.lines[0].startswith("xent: error: not proved: claim failed"), run


def _assert_really_undefined(line: str, options: list[str], classes: str) -> None:
    """The part the message names is undefined for every input: at a random valid point (z = log of
    rationals, p its softmax or sigmoid, valid targets) the tests' own evaluator gives zoo, nan, an
    infinity or a complex number."""
    m = re.search(r"is malformed: (?:at C = (\d+), )?'(.+)' (divides by 0|is the log of)", line)
    assert m, line
    size = int(m.group(1) or (classes if classes.isdigit() else 3))
    part = m.group(2)
    rng = random.Random(7)
    binary = "bce" in options
    for _ in range(2):
        def r() -> str:
            return f"{rng.randint(1, 9)}/{rng.randint(1, 9)}"

        y = [r() for _ in range(size)] if binary or "prob" in options else ["1"] + ["0"] * (size - 1)
        sample = {"z": [f"log({r()})" for _ in range(size)], "y": y, "w": [r() for _ in range(size)],
                  "q": [r() for _ in range(size)], "eps": r(), "N": r(), "W": r(), "m": "1"}
        value = claim_value(part, sample, 0, binary)
        assert value.has(sp.zoo, sp.nan) or value.is_infinite or value.is_real is False, (part, value, line)


@fuzz(45)
@given(variant=st.sampled_from(VARIANTS), classes=st.sampled_from(["2", "3"]), data=st.data())
def test_grammar_claims_are_proved_or_refuted_concrete_c(variant, classes, data):
    options, names = variant
    text, _degree = data.draw(grammar_claims(names))
    run = xent("derive", "--classes", classes, *options, f"--claim={text}", "--format", "json")
    _assert_decided(run, options, classes)


@fuzz(5)
@given(variant=st.sampled_from(VARIANTS[:5]), data=st.data())
def test_grammar_claims_are_proved_or_refuted_symbolic_c(variant, data):
    options, names = variant
    text, _degree = data.draw(grammar_claims(names, max_leaves=4))
    run = xent("derive", "--classes", "n", *options, f"--claim={text}", "--format", "json")
    _assert_decided(run, options, "n")


# True claims, and junk built so that its exact value is known: rational in p, y, C, exp(z) and sums,
# divided only by 1 + x**2 (never 0). "T + (J) - (J)" is T; "T + 1/(1 + (J)**2)" is never T.
TRUE_CLAIMS = [
    ([], "p - y"),
    (["--targets", "prob", "--no-assume-normalized"], "p*sum(y) - y"),
    (["--reduction", "mean"], "(p - y)/N"),
    (["--loss", "bce"], "p - y"),
    (["--loss", "kl"], "exp(z)/sum(exp(z)) - y"),
    (["--label-smoothing", "sym"], "p - ((1 - eps)*y + eps/C)"),
    (["--weight", "sym", "--targets", "prob", "--no-assume-normalized"], "p*sum(w*y) - w*y"),
]


def _junk_leaf():
    return st.one_of(
        st.sampled_from(["p", "y", "C", "exp(z)", "sum(p)", "sum(y)", "sum(exp(z))"]).map(lambda n: (n, 1)),
        st.sampled_from(["1", "2", "0.5", "3"]).map(lambda n: (n, 0)),
    )


def _junk_grow(children):
    return st.one_of(
        st.tuples(children, st.sampled_from(["+", "-", "*"]), children).map(_binop),
        st.tuples(children, st.integers(1, 2)).map(lambda t: (f"({t[0][0]})**{t[1]}", t[1] * t[0][1])),
        st.tuples(children, children).map(lambda t: (f"({t[0][0]})/(1 + ({t[1][0]})**2)", t[0][1] + 2 * t[1][1])),
    )


junk = st.recursive(_junk_leaf(), _junk_grow, max_leaves=4).filter(lambda j: j[1] <= 3)


@fuzz(20)
@given(case=st.sampled_from(TRUE_CLAIMS), j=junk, classes=st.sampled_from(["2", "3", "4"]))
def test_true_claim_plus_cancelling_junk_is_proved(case, j, classes):
    options, claim = case
    text = f"{claim} + ({j[0]}) - ({j[0]})"
    run = xent("derive", "--classes", classes, *options, f"--claim={text}", "--format", "json")
    assert run.code == 0, run
    assert claim_check(run.json())["passed"]


@fuzz(20)
@given(case=st.sampled_from(TRUE_CLAIMS), j=junk, classes=st.sampled_from(["2", "3", "4"]))
def test_true_claim_plus_positive_junk_is_refuted_with_a_counterexample(case, j, classes):
    options, claim = case
    text = f"{claim} + 1/(1 + ({j[0]})**2)"
    run = xent("derive", "--classes", classes, *options, f"--claim={text}", "--format", "json")
    assert run.code == 1, run
    check = claim_check(run.json())
    detail = check["detail"]
    assert detail.startswith("at z = (") and "the claim gives" in detail, detail
    # The counterexample is real: the claim's value minus the derivative's is 1/(1 + J^2) > 0, exactly.
    difference = Fraction(check["counterexample"]["difference"])
    assert 0 < difference <= 1, check["counterexample"]
    assert Fraction(check["counterexample"]["claim"]) - Fraction(check["counterexample"]["derivative"]) == difference


@fuzz(3)
@given(case=st.sampled_from(TRUE_CLAIMS[:3]), j=junk)
def test_symbolic_c_true_claim_plus_junk(case, j):
    options, claim = case
    run = xent("derive", "--classes", "n", *options, f"--claim={claim} + ({j[0]}) - ({j[0]})", "--format", "json")
    assert run.code == 0, run
    run = xent("derive", "--classes", "n", *options, f"--claim={claim} + 1/(1 + ({j[0]})**2)", "--format", "json")
    assert run.code == 1, run
    assert claim_check(run.json())["detail"].startswith("refuted at C = ")


@fuzz(60)
@given(text=st.text(max_size=60))
def test_random_text_claims_keep_the_contract(text):
    run = xent("derive", "--classes", "2", f"--claim={text}", "--format", "json")
    if run.code == 2:
        refused(run, "--claim")
        assert run.stdout == ""
    else:  # text that happens to be a valid claim
        _assert_decided(run, [], "2")


@fuzz(40)
@given(text=st.text(alphabet="pyzCNW*+-/()0123456789.e, sumexplog[]_'\"#:=<>!@%&|^~\\", max_size=40))
def test_claim_shaped_text_keeps_the_contract(text):
    run = xent("derive", "--classes", "3", f"--claim={text}", "--format", "json")
    if run.code == 2:
        refused(run, "--claim")
    else:
        _assert_decided(run, [], "3")


UNSAFE_CLAIMS = [
    ("p.__class__", "attribute access"),
    ("(p).__class__.__mro__", "attribute access"),
    ("p.real", "attribute access"),
    ("sum.__globals__", "attribute access"),
    ("__import__('os').system('true')", "can be called"),
    ("__import__('os')", "can be called"),
    ("eval('1')", "can be called"),
    ("exec('x = 1')", "can be called"),
    ("getattr(p, 'x')", "can be called"),
    ("open('/etc/passwd')", "can be called"),
    ("print(p)", "can be called"),
    ("globals()", "can be called"),
    ("p(y)", "can be called"),
    ("lambda: p", "not allowed"),
    ("lambda p: p", "not allowed"),
    ("x", "unknown name 'x'"),
    ("P - y", "unknown name 'P'"),
    ("pp", "unknown name 'pp'"),
    ("pi", "unknown name 'pi'"),
    ("inf", "unknown name 'inf'"),
    ("nan", "unknown name 'nan'"),
    ("e", "unknown name 'e'"),
    ("os", "unknown name 'os'"),
    ("__builtins__", "unknown name"),
    ("p[0]", "subscripts"),
    ("p[0:1]", "subscripts"),
    ("p['a']", "subscripts"),
    ("sum", "sum is a function"),  # a bare function name once reached the evaluator as a scalar
    ("p - log", "log is a function"),
    ("sum(exp)", "exp is a function"),
    ("sqrt(p)", "can be called"),
    ("sin(z)", "can be called"),
    ("'p' - y", "not a number"),
    ("b'p'", "not a number"),
    ("f'{p}'", "not allowed"),
    ("'''p'''", "not a number"),
    ("True", "not a number"),
    ("None", "not a number"),
    ("...", "not a number"),
    ("1j", "not a number"),
    ("p if y else z", "not allowed"),
    ("p and y", "not allowed"),
    ("not p", "not allowed"),
    ("p < y", "not allowed"),
    ("p == y", "not allowed"),
    ("(x := p)", "not allowed"),
    ("[p, y]", "not allowed"),
    ("(p, y)", "not allowed"),
    ("{p}", "not allowed"),
    ("{'a': p}", "not allowed"),
    ("[q for q in p]", "not allowed"),
    ("*p", "not a valid expression"),
    ("sum(*p)", "exactly one argument"),
    ("sum(**y)", "exactly one argument"),
    ("sum()", "exactly one argument"),
    ("sum(p, y)", "exactly one argument"),
    ("exp(x=1)", "exactly one argument"),
    ("p @ y", "operator"),
    ("p // y", "operator"),
    ("p % y", "operator"),
    ("p << 1", "operator"),
    ("~p", "not allowed"),
    ("yield p", "not a valid expression"),
    ("await p", "not allowed"),
    ("p = y", "not a valid expression"),
    ("p; y", "not a valid expression"),
    ("import os", "not a valid expression"),
    ("p - y # a comment", "'#'"),
    ("(p -\\\ny)", "not allowed"),
    ("p - y\n", "not allowed"),
    ("p\t- y", "not allowed"),
    ("p \u2212 y", "U+2212"),  # a unicode minus, pasted from a paper
    ("\uff50 - y", "U+FF50"),  # fullwidth p: Python would normalise it to p
    ("p\x00", "not allowed"),
    ("1e999*p", "finite"),
    ("10000000000000*p", "12 digits"),
    ("", "empty"),
    ("   ", "empty"),
    ("p - eps*y", "--label-smoothing"),
    ("(p - y)/N", "--reduction mean"),
    ("(p - y)/W", "--reduction mean with --weight"),
    ("w*(p - y)", "--weight"),
    ("q*(p - y)", "--pos-weight"),
    ("m*(p - y)", "--ignore-index"),
]


@pytest.mark.parametrize(("claim", "fragment"), UNSAFE_CLAIMS, ids=[repr(c)[:40] for c, _ in UNSAFE_CLAIMS])
@pytest.mark.parametrize("classes", ["3", "n"])
def test_unsafe_or_invalid_claims_exit_2(tmp_path, monkeypatch, claim, fragment, classes):
    monkeypatch.chdir(tmp_path)
    run = xent("derive", "--classes", classes, f"--claim={claim}")
    refused(run, "--claim", fragment)
    assert run.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_a_claim_never_reaches_eval_exec_compile_or_sympify(monkeypatch):
    """Every code path that could run a string is guarded; the guard fires only on the user's claim
    (SymPy may use sympify internally on its own strings)."""
    import sympy
    import sympy.parsing.sympy_parser as sympy_parser

    core_sympify = sys.modules["sympy.core.sympify"]  # the module (sympy.core.sympify is also the function)
    # The same runs without the marker first: what SymPy and NumPy compile for themselves on first use
    # (lambdify's printers, lazily loaded modules) is then done, and the guards below see only the claim's path,
    # whatever ran before this test in its process.
    for classes in ("3", "n"):
        assert xent("derive", "--classes", classes, "--claim", "p - y", "--format", "json").code == 0

    marker = "7654321"
    seen: list[str] = []

    def guard(name, original, code_flags_at=None):
        def wrapper(*args, **kwargs):
            texts = [a for a in (*args, *kwargs.values()) if isinstance(a, (str, bytes))]
            if any((marker in t if isinstance(t, str) else marker.encode() in t) for t in texts):
                if code_flags_at is not None:  # compile() to an AST (ast.parse) is parsing, not running
                    flags = kwargs.get("flags", args[code_flags_at] if len(args) > code_flags_at else 0)
                    if flags & ast.PyCF_ONLY_AST:
                        return original(*args, **kwargs)
                seen.append(name)
                raise AssertionError(f"the claim reached {name}")
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(builtins, "eval", guard("eval", builtins.eval))
    monkeypatch.setattr(builtins, "exec", guard("exec", builtins.exec))
    monkeypatch.setattr(builtins, "compile", guard("compile", builtins.compile, code_flags_at=3))
    monkeypatch.setattr(sympy, "sympify", guard("sympify", sympy.sympify))
    monkeypatch.setattr(core_sympify, "sympify", guard("sympify", core_sympify.sympify))
    monkeypatch.setattr(sympy, "parse_expr", guard("parse_expr", sympy.parse_expr))
    monkeypatch.setattr(sympy_parser, "parse_expr", guard("parse_expr", sympy_parser.parse_expr))
    # The guards are live: this test can fail.
    for call in (lambda: sympy.sympify(f"p + {marker}"), lambda: eval(marker), lambda: compile(marker, "x", "eval")):
        with pytest.raises(AssertionError):
            call()
    assert ast.parse(marker, mode="eval")  # parsing to a tree stays allowed
    seen.clear()

    claim = f"p - y + 0*({marker} - 1)"
    for classes in ("3", "n"):
        run = xent("derive", "--classes", classes, f"--claim={claim}", "--format", "json")
        assert run.code == 0, run
        assert claim_check(run.json())["passed"]
    run = xent("derive", "--classes", "3", f"--claim=p - y + {marker}", "--format", "json")
    assert run.code == 1, run  # refuted, by arithmetic
    for bad in (f"__import__('os').getcwd() + {marker}", f"eval('{marker}')", f"p.__class__({marker})"):
        refused(xent("derive", "--classes", "3", f"--claim={bad}"), "--claim")
    assert seen == []


# ============================================================================
# 2. Resource limits
# ============================================================================

LIMITS = [
    ("p**999999999", "exponent between -8 and 8"),
    ("10**10**10", "exponent between -8 and 8"),
    ("p**(10**10)", "exponent between -8 and 8"),
    ("(p - y)**9", "exponent between -8 and 8"),
    ("p**-9", "exponent between -8 and 8"),
    ("p**y", "exponent"),
    ("p**0.5", "exponent"),
    ("((p**8)**8)**8", "degree 512"),
    ("(p - y)**8*p", "degree 9"),
    ("p*p*p*p*p*p*p*p*p", "degree 9"),
    ("sum(" * 40 + "p" + ")" * 40, "nested 41 levels"),
    ("exp(" * 40 + "z" + ")" * 40, "nested 41 levels"),
    ("-" * 40 + "p", "nested 41 levels"),
    ("(" * 1000 + "p" + ")" * 1000, "claims are limited to 400"),
    ("sum(" * 1000 + "p" + ")" * 1000, "claims are limited to 400"),
    ("p" + " + p" * 25_000, "claims are limited to 400"),
    ("p - y" + " " * 100_000, "claims are limited to 400"),
    ("p+" * 100 + "p", "more than 200 parts"),
]


@pytest.mark.parametrize(("claim", "fragment"), LIMITS, ids=[c[:30] for c, _ in LIMITS])
@pytest.mark.parametrize("classes", ["200", "n"])
def test_claims_beyond_the_limits_are_refused_fast(claim, fragment, classes):
    """Refused before any derivation work, even for the largest C (whose derivation alone takes seconds)."""
    refused(xent("derive", "--classes", classes, f"--claim={claim}"), "--claim", fragment)


@pytest.mark.parametrize(
    "claim",
    [
        "(" * 1000 + "p" + ")" * 1000,  # Python's parser: too many nested parentheses
        "-" * 100_000 + "p",  # the parser's own stack limit (MemoryError/RecursionError inside ast)
        "not " * 50_000 + "p",
        "p" + "+p" * 100_000,  # RecursionError while compiling
        "x." * 5000 + "x",
        "sum(" * 150 + "p" + ")" * 150,
        "1" * 5000,  # more digits than int() takes
    ],
    ids=["parens-1000", "minus-100k", "not-50k", "plus-100k", "attr-5000", "sum-150", "digits-5000"],
)
def test_parser_limits_are_clean_errors_even_past_the_length_limit(monkeypatch, claim):
    """With the length limit out of the way, the parser's own failures are still one clean line."""
    from xentcli.errors import XentInputError
    from xentcli.symbolic import claims

    monkeypatch.setattr(claims, "MAX_LENGTH", 10**7)
    start = time.perf_counter()
    with pytest.raises(XentInputError) as info:
        claims.parse(claim)
    assert time.perf_counter() - start < FAST
    assert str(info.value).startswith("--claim: ") and "\n" not in str(info.value)


def test_a_claim_too_large_for_its_c_is_refused_with_a_smaller_c_named():
    """(p + y)**4 at C = 40 expands to ~10^5 terms per class; the claim equals p - y, so no random point
    refutes it, and only an exact proof could decide it: refused, bounded in time."""
    run = xent("derive", "--classes", "40", "--claim=p - y + (p + y)**4 - (p + y)**4", "--format", "json")
    assert run.code == 2, run
    line = run.lines[0]
    assert "--claim: is too large to decide exactly at C = 40" in line and "--classes n" in line
    assert run.seconds < 20, run.seconds
    # ... while at a small C the same claim is proved exactly.
    assert xent("derive", "--classes", "3", "--claim=p - y + (p + y)**4 - (p + y)**4").code == 0


def test_nested_sums_cost_linear_not_exponential_time():
    """sum(sum(...(p))) 30 deep: each sum is evaluated once (C^30 evaluations would never finish)."""
    claim = "sum(" * 30 + "p" + ")" * 30
    for classes in ("5", "n"):
        run = xent("derive", "--classes", classes, f"--claim={claim}", "--format", "json")
        assert run.code == 1, run
        assert run.seconds < 20


@pytest.mark.parametrize(
    "claim",
    ["exp(exp(exp(exp(exp(z)))))", "exp(1e300*z)", "exp(exp(1e300))", "log(log(log(log(p))))", "exp(999999999999*z)",
     "(1e300*p)**8", "999999999999**8*p**8", "1e-300**8*p", "exp(-1e300*z) - y", "p - y + exp(-10000)",
     "p - y + exp(-1e20)"],
)
def test_extreme_values_in_claims_are_refuted_not_computed_forever(claim):
    for classes in ("3", "n"):
        run = xent("derive", "--classes", classes, f"--claim={claim}", "--format", "json")
        assert run.code == 1, run
        assert run.seconds < 20
        assert "at z = (" in claim_check(run.json())["detail"]


@pytest.mark.parametrize("claim", ["p/0", "0/0", "log(0)", "log(-1)", "0**-1", "(p - p)**-1", "1/(y - y)",
                                   "exp(1e300)*log(p - p)", "log(0)*exp(exp(1e300))"])
def test_claims_undefined_for_every_input_are_refused_fast(claim):
    for classes in ("3", "n"):
        refused(xent("derive", "--classes", classes, f"--claim={claim}"), "--claim: is malformed: ")


CLASSES_GARBAGE = [
    ("0", "outside 2..200"),
    ("1", "outside 2..200"),
    ("-3", "outside 2..200"),
    ("201", "outside 2..200"),
    ("100000", "outside 2..200"),
    ("9" * 5000, "outside 2..200"),
    ("-" + "9" * 5000, "outside 2..200"),
    ("0" * 5000 + "3", "neither"),  # hmm: 3 with leading zeros is 3 -- see below
    ("3.5", "neither a whole number"),
    ("1e2", "neither a whole number"),
    ("0x3", "neither a whole number"),
    ("ab", "neither a whole number"),
    ("", "neither a whole number"),
    ("   ", "neither a whole number"),
    ("\u0663", "neither a whole number"),  # ARABIC-INDIC DIGIT THREE
    ("\u00e9", "neither a whole number"),
    ("3\x00", "neither a whole number"),
    ("e", "clashes with Euler's number"),
    ("N", "clashes"),
    ("j", "clashes"),
]


@pytest.mark.parametrize(("value", "fragment"), CLASSES_GARBAGE, ids=[repr(v)[:20] for v, _ in CLASSES_GARBAGE])
def test_classes_garbage_exit_2(value, fragment):
    if value == "0" * 5000 + "3":  # a valid 3: accepted without ever int()-ing 5000 characters
        run = xent("derive", "--classes", value, "--format", "json")
        assert run.code == 0 and run.json()["classes"] == 3
        return
    refused(xent("derive", "--classes", value), "--classes", fragment)


@fuzz(40)
@given(value=st.text(max_size=12))
def test_classes_text_fuzz(value):
    v = value.strip()
    assume(not re.fullmatch(r"[A-Za-z]", v))
    assume(not (re.fullmatch(r"\+?[0-9]+", v) and 2 <= int(v) <= 200))
    refused(xent("derive", f"--classes={value}"), "--classes")


DERIVE_OPTION_GARBAGE = [
    (["--weights=yes"], "does not take a value"),
    (["--label-smoothing=abc"], "--label-smoothing: 'abc' is not a number"),
    (["--label-smoothing", "1e999"], "--label-smoothing: '1e999' is out of range"),
    (["--label-smoothing", "1/0"], "divides by zero"),
    (["--weights", "1,2,3"], "unexpected extra argument"),
    (["--weight", "sym,1"], "sym stands alone"),
    (["--weight", ""], "--weight"),
    (["--pos-weight", "2"], "--pos-weight: does not apply to the softmax"),
    (["--ignore-index", "x"], "--ignore-index"),
    (["--targets", "soft"], "--targets"),
    (["--reduction", "avg"], "--reduction"),
    (["--reduction", "batchmean"], "batchmean applies only to the KL divergence"),
    (["--loss", "mse"], "--loss"),
    (["--format", "html"], "--format"),
    (["--claim"], "requires an argument"),
    (["--classes"], "requires an argument"),
    (["--output", "out.pdf"], "cannot tell the format"),
    (["--check", "no/such/dir"], "no such file or directory"),
    (["--check", ".", "--claim", "p - y"], "--check takes no other options"),
    (["--check", ".", "--classes", "2"], "--check takes no other options"),
    (["--check", ".", "--output", "x.md"], "--check takes no other options"),
    (["--bogus"], "No such option"),
]


@pytest.mark.parametrize(("args", "fragment"), DERIVE_OPTION_GARBAGE,
                         ids=[" ".join(a) for a, _ in DERIVE_OPTION_GARBAGE])
def test_derive_option_garbage_exit_2(tmp_path, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    refused(xent("derive", *args) if "--check" in args else xent("derive", "--classes", "2", *args), fragment)
    assert list(tmp_path.iterdir()) == []


# ============================================================================
# 3. Symbolic honesty: a wrong closed form, or an exception inside a check, never passes
# ============================================================================


def _not_proved(run: Run) -> list[dict]:
    assert run.code == 1, run
    doc = run.json()
    assert doc["verified"] is False
    assert run.lines[-1].startswith("xent: error: not proved: ")
    return [c for c in doc["checks"] if not c["passed"]]


@pytest.mark.parametrize("classes", ["3", "n"])
def test_wrong_jacobian_closed_form_is_not_proved(monkeypatch, classes):
    """The Jacobian's closed form is written once (quantities.softmax_jacobian) and both backends compare the
    derived entries with it: make it twice too large and the Jacobian check must fail in both."""
    from xentcli.symbolic import quantities

    real = quantities.softmax_jacobian
    monkeypatch.setattr(quantities, "softmax_jacobian", lambda A, i, j: 2 * real(A, i, j))
    failed = _not_proved(xent("derive", "--classes", classes, "--format", "json"))
    assert "jacobian" in [c["name"] for c in failed]
    if classes == "3":
        assert next(c for c in failed if c["name"] == "jacobian")["detail"].startswith("fails for (i, j) = (1, 1)")
    else:
        assert "did not reduce to 0" in next(c for c in failed if c["name"] == "jacobian")["detail"]


@pytest.mark.parametrize("classes", ["3", "n"])
@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_wrong_gradient_closed_form_is_not_proved(monkeypatch, classes, loss):
    """The closed-form gradient is what the chain rule and the direct derivative are compared with:
    perturb it and the derivation is not proved, in both backends."""
    from xentcli.symbolic import quantities

    real = quantities.grad
    monkeypatch.setattr(quantities, "grad", lambda A, j: real(A, j) + 1)
    failed = {c["name"] for c in _not_proved(xent("derive", "--classes", classes, "--loss", loss,
                                                   "--format", "json"))}
    assert {"direct", "chain-rule"} <= failed


def test_exception_inside_a_concrete_check_is_a_failed_check(monkeypatch):
    from xentcli.symbolic import algebra

    def boom(self, other):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(algebra.Frac, "equals", boom)
    failed = _not_proved(xent("derive", "--classes", "3", "--format", "json"))
    assert {"jacobian", "direct"} <= {c["name"] for c in failed}
    # every failure names the exception (checks built on an aborted one fail with their own exception)
    assert all("raised during the check" in c["detail"] for c in failed), failed
    assert "RuntimeError raised during the check (injected failure)" in failed[0]["detail"]


@pytest.mark.parametrize("loss", ["ce", "nll", "kl", "bce"])
def test_exception_inside_a_symbolic_check_is_a_failed_check(monkeypatch, loss):
    from xentcli.symbolic import indexed

    def boom(expr):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(indexed, "is_zero_expr", boom)
    failed = _not_proved(xent("derive", "--classes", "n", "--loss", loss, "--format", "json"))
    assert "direct" in {c["name"] for c in failed}
    assert any("RuntimeError raised during the check" in c["detail"] for c in failed), failed
    # and the library function itself reports "not zero", never zero
    import sympy as sp

    ok, rest = indexed.reduces_to_zero(sp.Integer(0), dummy=sp.Symbol("k"))
    assert ok is False and "RuntimeError" in str(rest)


@pytest.mark.parametrize("classes", ["3", "n"])
def test_exception_inside_sympy_together_is_never_a_pass(monkeypatch, classes):
    import sympy

    def boom(*args, **kwargs):
        raise RuntimeError("together is broken")

    monkeypatch.setattr(sympy, "together", boom)
    failed = _not_proved(xent("derive", "--classes", classes, "--loss", "nll", "--format", "json"))
    assert any("RuntimeError" in c["detail"] for c in failed)


@pytest.mark.parametrize("classes", ["3", "n"])
def test_exception_in_the_numeric_cross_check_is_a_failed_check(monkeypatch, classes):
    import sympy

    def boom(*args, **kwargs):
        raise RuntimeError("lambdify is broken")

    monkeypatch.setattr(sympy, "lambdify", boom)
    failed = _not_proved(xent("derive", "--classes", classes, "--format", "json"))
    assert [c["name"] for c in failed] == ["numeric"]
    assert "RuntimeError raised during the check (lambdify is broken)" in failed[0]["detail"]


def test_claim_decision_errors_and_a_blind_exact_path_never_pass(monkeypatch):
    from xentcli.symbolic import claim_steps

    # An exception while deciding a true claim: not proved.
    def boom(*args, **kwargs):
        raise RuntimeError("ring arithmetic is broken")

    with monkeypatch.context() as m:
        m.setattr(claim_steps, "_exact_decision", boom)
        failed = _not_proved(xent("derive", "--classes", "3", "--claim=p - y", "--format", "json"))
        assert [c["name"] for c in failed] == ["claim"]
        assert "RuntimeError raised during the check" in failed[0]["detail"]
    # With the quick refutation at one point switched off, the exact comparison alone still refutes a wrong
    # claim (and the counterexample search is what then finds the point).
    with monkeypatch.context() as m:
        m.setattr(claim_steps, "_quick", lambda *a, **k: (None, False, None))
        for claim in ("p - 2*y", "p - y + 1e-300", "p - y + y*1e-300", "p - y + log(p) - z"):
            failed = _not_proved(xent("derive", "--classes", "3", f"--claim={claim}", "--format", "json"))
            assert [c["name"] for c in failed] == ["claim"] and failed[0]["detail"].startswith("at z = (")
        assert xent("derive", "--classes", "3", "--claim=p - y", "--format", "json").code == 0
    # And with the exact comparison blind (it never finds a failing class), a wrong claim is still not proved:
    # the quick point refutes it.
    with monkeypatch.context() as m:
        m.setattr(claim_steps, "vanishes", lambda *a, **k: ([], []))
        failed = _not_proved(xent("derive", "--classes", "3", "--claim=p - 2*y", "--format", "json"))
        assert failed[0]["detail"].startswith("at z = (")


# ============================================================================
# 4. xent derive --check on hostile directories
# ============================================================================


def _header_dir(root: Path, header: str, name: str = "d.md", body: str = "body\n") -> Path:
    d = Path(tempfile.mkdtemp(dir=root))
    (d / name).write_text(f"<!-- Generated by: {header} -->\n{body}", encoding="utf-8")
    return d


HOSTILE_HEADERS = [
    ("xent derive --classes 3; rm -rf {tmp}", "not valid"),
    ("xent derive --classes '$(touch {tmp}/PWNED)'", "not valid"),
    ("xent derive --classes `touch {tmp}/PWNED`", "not valid"),
    ("xent derive --classes 2 && touch {tmp}/PWNED", "not valid"),
    ("xent derive --classes 2 | tee {tmp}/PWNED", "not valid"),
    ("xent derive --classes 2 --format markdown --output {tmp}/PWNED.md", "must not use --check or --output"),
    ("xent derive --classes 2 -o {tmp}/PWNED.md", "must not use --check or --output"),
    ("xent derive --classes 2 --output=/etc/passwd", "must not use --check or --output"),
    ("xent derive --check {tmp}", "must not use --check or --output"),
    ("xent derive --check .", "must not use --check or --output"),
    ("xent derive --help", "--help"),
    ("xent derive -h", "--help"),
    ("xent derive --classes 2 --claim \"__import__('os').system('touch {tmp}/PWNED')\"", "only sum(), exp(), log()"),
    ("xent derive --classes 2 --claim 'p.__class__'", "attribute access"),
    ("xent derive --classes 2 --claim 'p - eps'", "needs --label-smoothing"),
    ("xent derive --classes 2 --claim 'p**99999999'", "exponent"),
    ("xent derive --classes e", "clashes"),
    ("xent derive --classes 99999", "outside 2..200"),
    ("xent derive --format html", "not valid"),
    ("xent derive --version", "not valid"),
    ("xent derive --classes 'unbalanced", "cannot be parsed"),
    ("xent compute --logits 1,2", "does not name an 'xent derive' command"),
    ("sh -c 'touch {tmp}/PWNED'", "does not name an 'xent derive' command"),
    ("python -m xentcli derive", "does not name an 'xent derive' command"),
    ("", "does not name an 'xent derive' command"),
    ("xent derive --classes 2 extra arguments", "not valid"),
]


@pytest.mark.parametrize(("header", "fragment"), HOSTILE_HEADERS, ids=[h[:40] for h, _ in HOSTILE_HEADERS])
def test_hostile_headers_are_refused_and_never_run(tmp_path, monkeypatch, header, fragment):
    import subprocess

    def no_shell(*args, **kwargs):
        raise AssertionError("xent derive --check started a process")

    monkeypatch.setattr(subprocess, "Popen", no_shell)
    monkeypatch.setattr(os, "system", no_shell)
    header = header.replace("{tmp}", str(tmp_path))
    d = _header_dir(tmp_path, header)
    before = sorted(p.name for p in d.iterdir())
    run = xent("derive", "--check", d)
    line = refused(run, fragment)
    assert str(d / "d.md") in line
    assert run.stdout == ""
    assert not list(tmp_path.rglob("PWNED*"))
    assert sorted(p.name for p in d.iterdir()) == before


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        (lambda d: (d / "x.md").write_bytes(os.urandom(200) + b"\xff\xfe"), "cannot be read"),
        (lambda d: (d / "x.md").write_bytes(b"\x00" * 100), "has no 'Generated by: xent derive ...' header"),
        (lambda d: (d / "x.md").write_text("# my notes\n", encoding="utf-8"), "has no 'Generated by"),
        (lambda d: (d / "x.json").write_text('{\n  "generated_by": 5,\n}', encoding="utf-8"), "not text: 5"),
        (lambda d: (d / "x.json").write_text('{\n  "generated_by": ["xent", "derive"],\n}', encoding="utf-8"),
         "not text"),
        (lambda d: (d / "x.json").write_text('{\n  "generated_by": null,\n}', encoding="utf-8"),
         "has no 'Generated by"),
        (lambda d: (d / "x.md").write_text("", encoding="utf-8"), "has no 'Generated by"),
        (lambda d: None, "holds no derivation files"),
        (lambda d: (d / "inner.md").mkdir(), "holds no derivation files"),
        (lambda d: (d / "notes.pdf").write_text("Generated by: xent derive --classes 2", encoding="utf-8"),
         "holds no derivation files"),
    ],
    ids=["binary", "nul-bytes", "no-header", "json-int", "json-list", "json-null", "empty-file", "empty-dir",
         "dir-named-md", "other-extension"],
)
def test_hostile_directories_exit_2(tmp_path, setup, fragment):
    d = tmp_path / "docs"
    d.mkdir()
    setup(d)
    refused(xent("derive", "--check", d), fragment)


def test_check_on_missing_paths_and_special_files(tmp_path):
    refused(xent("derive", "--check", tmp_path / "nope"), "no such file or directory")
    refused(xent("derive", "--check", tmp_path / "nope" / "x.md"), "no such file or directory")
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "pipe.md"
        os.mkfifo(fifo)
        refused(xent("derive", "--check", fifo), "neither a regular file nor a directory")  # never opened: no hang
        refused(xent("derive", "--check", tmp_path), "holds no derivation files")


def test_check_drift_and_a_refuted_claim_in_a_header_exit_1(tmp_path):
    good = tmp_path / "good.md"
    assert xent("derive", "--classes", "2", "-o", good).code == 0
    assert xent("derive", "--check", good).code == 0
    refuted = tmp_path / "refuted.md"
    run = xent("derive", "--classes", "2", "--claim", "p - 2*y", "-o", refuted)
    assert run.code == 1 and refuted.exists()  # written, and reported as not proved
    run = xent("derive", "--check", tmp_path)
    assert run.code == 1, run
    assert f"fails {refuted}" in run.stdout and f"ok      {good}" in run.stdout
    good.write_text(good.read_text(encoding="utf-8") + "an edit by hand\n", encoding="utf-8")
    run = xent("derive", "--check", good)
    assert run.code == 1 and f"differs {good}" in run.stdout


HEADER_TOKENS = ["--classes", "-c", "2", "3", "n", "e", "0", "--loss", "bce", "nll", "kl", "mse", "--reduction", "mean",
                 "sum", "--label-smoothing", "sym", "1/10", "--weight", "--weights", "--no-assume-normalized",
                 "--format", "markdown", "text",
                 "json", "latex", "--claim", "p - y", "p*sum(y) - y", "p.x", "--output", "-o", "--check", "--help",
                 ";", "&&", "|", "$(id)", "`id`", "'", '"', "\\", "\n", "-", "--"]


@fuzz(30)
@given(tokens=st.lists(st.one_of(st.sampled_from(HEADER_TOKENS),
                                 st.text(alphabet=st.characters(blacklist_categories=("Nd", "Cs")), max_size=8)),
                       max_size=8),
       quoted=st.booleans())
def test_random_header_commands_keep_the_contract(tmp_path, tokens, quoted):
    """Random argument lists (no digits beyond 0, 2, 3: a random big C would only be slow) in a header."""
    assume(not any(re.search(r"[1-9]", t) and t not in ("2", "3") for t in tokens))
    command = "xent derive " + (shlex.join(tokens) if quoted else " ".join(tokens))
    d = _header_dir(tmp_path, command.replace("-->", ""))
    run = xent("derive", "--check", d)
    if run.code == 2:
        assert str(d / "d.md") in run.lines[0], run
    else:
        assert run.code == 1, run  # the body is "body": it cannot match a fresh run
    assert [p.name for p in d.iterdir()] == ["d.md"]


# ============================================================================
# 5. xent verify
# ============================================================================

CORRECT_CE = '''
import numpy as np


def _ce(z, t):
    z = np.asarray(z, dtype=np.float64)
    s = z - z.max(axis=1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    n = len(t)
    g = np.exp(logp)
    g[np.arange(n), t] -= 1
    return -logp[np.arange(n), t].mean(), g / n
'''

IMPL = CORRECT_CE + '''
import functools
import os
import sys

NUMBER = 3.0
good = _ce
lam = lambda z, t: _ce(z, t)  # noqa: E731
partial = functools.partial(_ce)


class Loss:
    def __call__(self, z, t):
        return _ce(z, t)


instance = Loss()
Klass = Loss


class Holder:
    @property
    def bad(self):
        raise RuntimeError("property raised")


holder = Holder()
'''


@pytest.fixture
def impl_dir(tmp_path):
    (tmp_path / "impl.py").write_text(IMPL, encoding="utf-8")
    (tmp_path / "bad_syntax.py").write_text("def f(z, t)\n    return 0\n", encoding="utf-8")
    (tmp_path / "bad_import.py").write_text("raise RuntimeError('no GPU\\nfound')\n", encoding="utf-8")
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(7)\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    return tmp_path


TARGETS = [
    # (target, exit code, fragments of the error line)
    ("{tmp}/impl.py", 2, ["name a function as"]),
    ("", 2, ["name a function as"]),
    (":", 2, ["name a function as"]),
    ("{tmp}/impl.py:", 2, ["name a function as"]),
    (":good", 2, ["name a function as"]),
    ("{tmp}/nope.py:f", 2, ["no such file"]),
    ("{tmp}/sub/../nope.py:f", 2, ["no such file"]),
    ("{tmp}:f", 2, ["is a directory"]),
    ("{tmp}/bad_syntax.py:f", 2, ["importing", "SyntaxError"]),
    ("{tmp}/bad_import.py:f", 2, ["importing", "RuntimeError: no GPU found"]),
    ("{tmp}/exits_on_import.py:f", 2, ["importing", "SystemExit: 7"]),
    ("{tmp}/impl.py:NUMBER", 2, ["is not callable"]),
    ("{tmp}/impl.py:nope", 2, ["has no attribute 'nope'"]),
    ("{tmp}/impl.py:good-1", 2, ["is not a Python name"]),
    ("{tmp}/impl.py:good.__globals__", 2, ["Python internals"]),
    ("{tmp}/impl.py:__builtins__", 2, ["Python internals"]),
    ("{tmp}/impl.py:holder.bad", 2, ["reading 'bad' failed: RuntimeError: property raised"]),
    ("{tmp}/impl.py:Klass", 2, ["is a class"]),
    ("{tmp}/impl.py:os.system", 2, ["standard library"]),
    ("{tmp}/impl.py:sys.exit", 2, ["standard library"]),
    ("os:system", 2, ["standard library"]),
    ("os:remove", 2, ["standard library"]),
    ("shutil:rmtree", 2, ["standard library"]),
    ("subprocess:run", 2, ["standard library"]),
    ("builtins:len", 2, ["standard library"]),
    ("builtins:exec", 2, ["standard library"]),
    ("json:loads", 2, ["standard library"]),
    ("functools:partial", 2, ["is a class"]),
    ("xq_no_such_module_91:f", 2, ["no module named 'xq_no_such_module_91'"]),
    ("..xq_relative:f", 2, ["importing ..xq_relative failed"]),
    ("{tmp}/impl.py:good", 0, []),
    ("{tmp}/sub/../impl.py:good", 0, []),
    ("{tmp}/impl.py:lam", 0, []),
    ("{tmp}/impl.py:partial", 0, []),
    ("{tmp}/impl.py:instance", 0, []),
]


@pytest.mark.parametrize(("target", "code", "fragments"), TARGETS, ids=[t[0] or "empty" for t in TARGETS])
def test_verify_targets(impl_dir, target, code, fragments):
    target = target.replace("{tmp}", str(impl_dir))
    run = xent("verify", target, "--format", "json")
    if code == 2:
        refused(run, *fragments)
    else:
        assert run.code == code, run
        assert run.json()["passed"] is True


def test_verify_module_target_from_the_current_directory(impl_dir, monkeypatch):
    (impl_dir / "xq_fuzz_losses.py").write_text(IMPL, encoding="utf-8")
    monkeypatch.chdir(impl_dir)
    try:
        assert xent("verify", "xq_fuzz_losses:good", "--format", "json").code == 0
        refused(xent("verify", "xq_fuzz_losses:os.system"), "standard library")
    finally:
        sys.modules.pop("xq_fuzz_losses", None)


BROKEN = [
    # (body of f(z, t), exit code, fragment of the error line) -- exit 2: no case produced numbers to
    # compare (the implementation cannot be run on the battery); exit 1: numbers came back, and are wrong.
    ("raise ValueError('shapes\\n(8,5) differ')", 2,
     "raised on every case; the first: ValueError: shapes (8,5) differ"),
    ("raise MemoryError()", 2, "raised on every case; the first: MemoryError"),
    ("return f(z, t)", 2, "RecursionError"),
    ("sys.exit(0)", 2, "SystemExit: 0"),
    ("sys.exit(3)", 2, "SystemExit: 3"),
    ("raise SystemExit('bye')", 2, "SystemExit: bye"),
    ("return None", 2, "not numbers"),
    ("return '1.5'", 2, "not numbers"),
    ("return b'1.5'", 2, "not numbers"),
    ("return ('1.5', '2')", 2, "not numbers"),
    ("return np.array(['x'])", 2, "not numbers"),
    ("return complex(1, 2)", 2, "complex numbers"),
    ("return _ce(z, t)[0] + 0j, _ce(z, t)[1]", 2, "complex numbers"),
    ("return object()", 2, "not numbers"),
    ("return {'loss': 1.0}", 2, "not numbers"),
    ("return 1.0, [[1.0, 2.0], [3.0]]", 2, "not numbers"),
    ("return True", 2, "not numbers"),
    ("return np.datetime64('2020-01-01')", 2, "not numbers"),
    ("return np.zeros(1, dtype=[('a', 'f8')])", 2, "not numbers"),
    ("return (x for x in [1.0])", 2, "not numbers"),
    ("return 10**400", 2, "not numbers"),
    ("return Weird()", 2, "not numbers"),
    ("return float('nan'), np.full(z.shape, np.nan)", 1, "verification failed on 14 of 14 cases"),
    ("return _ce(z, t)[0], _ce(z, t)[1].T", 1, "verification failed"),
    ("return _ce(z, t)[0], _ce(z, t)[1].ravel()", 1, "verification failed"),
    ("return 1.0, 2.0, 3.0", 1, "verification failed"),
    ("return 1e308 * 10, _ce(z, t)[1]", 1, "verification failed"),
    ("return 1", 1, "verification failed"),
    ("return z", 1, "verification failed"),
    ("return np.array([])", 1, "verification failed"),
    ("return _ce(z, t) if len(t) > 1 else _ce(z, t)[0] * 2", 1, "verification failed on 1 of 14 cases"),
    ("raise IndexError('one') if len(t) == 1 else None; return _ce(z, t)", 1, "verification failed on 1 of 14"),
]

BROKEN_MODULE = CORRECT_CE + '''
import sys


class Weird:
    def __array__(self, *args, **kwargs):
        raise RuntimeError("no array for you")

    def __len__(self):
        raise RuntimeError("no len either")


def f(z, t):
    {body}
'''


@pytest.mark.parametrize(("body", "code", "fragment"), BROKEN, ids=[b[:40] for b, _, _ in BROKEN])
def test_broken_implementations(tmp_path, body, code, fragment):
    if body.startswith("raise IndexError"):
        body = "if len(t) == 1:\n        raise IndexError('one')\n    return _ce(z, t)"
    (tmp_path / "broken.py").write_text(BROKEN_MODULE.format(body=body), encoding="utf-8")
    run = xent("verify", f"{tmp_path / 'broken.py'}:f", "--format", "json")
    assert run.code == code, run
    if code == 2:
        refused(run, fragment)
    else:
        assert run.lines[-1].startswith("xent: error: ") and fragment in run.lines[-1], run
        assert run.json()["passed"] is False  # the report is still valid JSON


def test_printing_implementation_keeps_the_report_parseable(tmp_path):
    body = "print('garbage\\x00\\x1b[31m', {'x': 1}); sys.stderr.write('noise\\n'); return _ce(z, t)"
    (tmp_path / "chatty.py").write_text(BROKEN_MODULE.format(body=body), encoding="utf-8")
    run = xent("verify", f"{tmp_path / 'chatty.py'}:f", "--format", "json")
    assert run.code == 0
    assert run.json()["passed"] is True
    # Captured in the worker process, and shown for failing cases only: here, nowhere.
    assert "garbage" not in run.stderr and "garbage" not in run.stdout and "noise" not in run.stderr
    run = xent("verify", f"{tmp_path / 'chatty.py'}:f", "--format", "json", "--in-process")
    assert run.code == 0 and run.json()["passed"] is True  # in xent's process it goes to stderr
    assert "garbage" in run.stderr and "garbage" not in run.stdout
    body = "print('garbage'); raise ValueError('after printing')"
    (tmp_path / "chatty2.py").write_text(BROKEN_MODULE.format(body=body), encoding="utf-8")
    run = xent("verify", f"{tmp_path / 'chatty2.py'}:f", "--format", "json", own_lines=True)
    assert run.code == 2 and run.stdout == ""
    assert run.lines[-1].startswith("xent: error: ") and "ValueError: after printing" in run.lines[-1]


RETURN_LEAVES = ["None", "'abc'", "b'x'", "1.5", "-0.0", "float('nan')", "float('inf')", "10**400", "True",
                 "complex(1, 2)", "object()", "z", "t", "z.T", "z[0]", "z.sum()", "np.zeros((0, 0))", "np.array(['x'])",
                 "np.float16(1)", "np.int8(-1)", "np.uint64(2**64 - 1)", "_ce(z, t)[0]", "_ce(z, t)[1]", "{}", "[]",
                 "len(t)", "np.datetime64(1, 'D')"]


def _returns(children):
    return st.one_of(
        st.lists(children, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.lists(children, max_size=3).map(lambda xs: "(" + "".join(x + ", " for x in xs) + ")"),
    )


@fuzz(25)
@given(value=st.recursive(st.sampled_from(RETURN_LEAVES), _returns, max_leaves=4))
def test_random_return_values_keep_the_contract(tmp_path, value):
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "ret.py"
    path.write_text(BROKEN_MODULE.format(body=f"return {value}"), encoding="utf-8")
    run = xent("verify", f"{path}:f", "--format", "json")
    if run.code == 0:  # _ce(z, t)[0] alone (or with its gradient) is a correct implementation
        assert "_ce(z, t)" in value and json.loads(run.stdout)["passed"] is True
    elif run.code == 2:
        assert "raised on every case" in run.lines[0] or "not numbers" in run.lines[0], run
    else:
        assert json.loads(run.stdout)["passed"] is False


@fuzz(30)
@given(target=st.text(max_size=30))
def test_random_targets_exit_2_without_importing_anything_new(tmp_path, target):
    """A random string names no loss function: refused (2). Module names are prefixed so that nothing
    installed (``antigravity``...) is ever imported by a random string."""
    where, colon, name = target.rpartition(":")
    if colon and where:
        if any(c in where for c in "/\\") or where.endswith(".py"):
            target = f"{tmp_path}/xq_no_such_dir/{where}:{name}"
        else:
            target = f"xq_no_such_package_77.{where}:{name}"
    refused(xent("verify", "xq_no_such_package_77:f"))  # warm up: xent's own lazy imports
    before = set(sys.modules)
    refused(xent("verify", target))
    assert set(sys.modules) - before <= {m for m in sys.modules if m.startswith("encodings.")}


VERIFY_OPTION_GARBAGE = [
    (["--weight", "nan,1"], "--weight: value 1: 'nan' is not a number"),
    (["--weight", "inf,1"], "--weight: value 1: 'inf' is not a number"),
    (["--weight", "-1,2"], "--weight: value 1 must be finite and not negative"),
    (["--weight", ""], "--weight"),
    (["--weight", "a,b"], "--weight"),
    (["--weight", "1"], "one value per class"),
    (["--label-smoothing", "nan"], "--label-smoothing: 'nan' is not a number"),
    (["--label-smoothing", "inf"], "--label-smoothing: 'inf' is not a number"),
    (["--label-smoothing", "-0.5"], "between 0 and 1"),
    (["--label-smoothing", "2"], "between 0 and 1"),
    (["--label-smoothing", "abc"], "--label-smoothing"),
    (["--ignore-index", "1" + "0" * 30], "does not fit in int64"),
    (["--ignore-index", "-" + "9" * 30], "does not fit in int64"),
    (["--ignore-index", "1.5"], "--ignore-index"),
    (["--seed", "-1"], "--seed"),
    (["--seed", "abc"], "--seed"),
    (["--rtol", "nan"], "--rtol"),
    (["--rtol", "-1"], "--rtol"),
    (["--atol", "inf"], "--atol"),
    (["--pos-weight", "2"], "--pos-weight: does not apply to the softmax cross-entropy"),
    (["--binary", "--pos-weight", "nan"], "--pos-weight: 'nan' is not a number"),
    (["--binary", "--label-smoothing", "0.1"], "--label-smoothing: does not apply to the binary cross-entropy"),
    (["--binary", "--targets", "prob"], "--targets: prob targets do not apply to the binary cross-entropy"),
    (["--targets", "soft"], "--targets"),
    (["--dtype", "float8"], "--dtype"),
    (["--reduction", "avg"], "--reduction"),
    (["--targets", "prob", "--ignore-index", "0"], "class-index targets only"),
]


@pytest.mark.parametrize(("args", "fragment"), VERIFY_OPTION_GARBAGE,
                         ids=[" ".join(a)[:40] for a, _ in VERIFY_OPTION_GARBAGE])
def test_verify_option_garbage_exit_2(impl_dir, args, fragment):
    refused(xent("verify", f"{impl_dir / 'impl.py'}:good", *args), fragment)
    assert not (impl_dir / "cases").exists()


@fuzz(40)
@given(option=st.sampled_from(["--weight", "--label-smoothing", "--ignore-index", "--seed", "--rtol", "--atol"]),
       value=st.text(max_size=16))
def test_verify_option_text_fuzz(impl_dir, option, value):
    run = xent("verify", f"{impl_dir / 'impl.py'}:good", f"{option}={value}", "--format", "json")
    if run.code == 2:
        assert run.seconds < FAST
    else:  # a valid value: the correct implementation passes or (ignoring a weight, a tolerance) fails
        assert isinstance(run.json()["passed"], bool)


# --------------------------------------------------------------------------- --results / --export


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One exported battery with the reference's own outputs written next to it (a passing --results)."""
    from xentcli import cross_entropy

    base = tmp_path_factory.mktemp("battery") / "cases"
    run = xent("verify", "--export", base)
    assert run.code == 0, run
    manifest = json.loads((base / "manifest.json").read_text(encoding="utf-8"))
    for case in manifest["cases"]:
        z = np.load(base / case["inputs"]["logits"])
        t = np.load(base / case["inputs"]["targets"])
        r = cross_entropy(z, t)
        (base / case["outputs"]["loss"]).write_text(repr(float(r.loss)) + "\n", encoding="utf-8")
        np.save(base / case["outputs"]["grad_npy"], r.grad)
    assert xent("verify", "--results", base, "--format", "json").code == 0
    return base


def _copy(exported: Path, root: Path) -> tuple[Path, dict]:
    d = Path(tempfile.mkdtemp(dir=root)) / "cases"
    shutil.copytree(exported, d)
    return d, json.loads((d / "manifest.json").read_text(encoding="utf-8"))


def _set(path: list, value):
    def edit(m):
        o = m
        for k in path[:-1]:
            o = o[k]
        o[path[-1]] = value

    return edit


MANIFEST_EDITS = [
    ("absolute input", _set(["cases", 0, "inputs", "logits"], "/etc/passwd"), "is not a path inside"),
    ("dotdot input", _set(["cases", 0, "inputs", "targets"], "../../random/targets.npy"), "is not a path inside"),
    ("absolute output", _set(["cases", 0, "outputs", "loss"], "/etc/hostname"), "is not a path inside"),
    ("dotdot output", _set(["cases", 0, "outputs", "grad_npy"], "../x.npy"), "is not a path inside"),
    ("no loss output", _set(["cases", 0, "outputs"], {}), "output 'loss' is not a file name"),
    ("outputs null", _set(["cases", 0, "outputs"], None), "must be JSON objects"),
    ("output int", _set(["cases", 0, "outputs", "loss"], 3), "is not a file name"),
    ("tags int", _set(["cases", 0, "tags"], 3), "tags are not text"),
    ("tags text", _set(["cases", 0, "tags"], "large"), "tags are not text"),
    ("name object", _set(["cases", 0, "name"], {"a": 1}), "has no name"),
    ("case text", _set(["cases", 0], "x"), "not a JSON object"),
    ("no cases", _set(["cases"], []), "lists no cases"),
    ("cases object", _set(["cases"], {}), "is not an xent verify manifest"),
    ("wrong format", _set(["format"], "xent-verify-battery/99"), "is not an xent verify manifest"),
    ("seed text", _set(["seed"], "abc"), "seed"),
    ("seed negative", _set(["seed"], -1), "seed"),
    ("seed float", _set(["seed"], 1.5), "seed"),
    ("reduction bogus", _set(["options", "reduction"], "bogus"), "reduction: must be one of"),
    ("reduction missing", lambda m: m["options"].pop("reduction"), "is missing"),
    ("weight negative", _set(["options", "weight"], [-1, 2, 3, 4, 5]),
     "weight: value 1 must be finite and not negative"),
    ("weight text", _set(["options", "weight"], "abc"), "weight: 'abc' is not a number"),
    ("weight wrong length", _set(["options", "weight"], [1, 2]), "inputs cannot be used"),
    ("dtype bogus", _set(["options", "dtype"], "float8"), "dtype: must be one of"),
    ("smoothing 7", _set(["options", "label_smoothing"], 7), "between 0 and 1"),
    ("smoothing text", _set(["options", "label_smoothing"], "nan"), "not a number"),
    ("targets bogus", _set(["options", "targets"], "soft"), "targets: must be one of"),
    ("binary text", _set(["options", "binary"], "no"), "not true or false"),
    ("ignore text", _set(["options", "ignore_index"], "x"), "ignore_index: must be a whole number"),
    ("ignore huge", _set(["options", "ignore_index"], 10**30), "does not fit in int64"),
    ("options list", _set(["options"], []), "options are not a JSON object"),
]


@pytest.mark.parametrize(("edit", "fragment"), [e[1:] for e in MANIFEST_EDITS], ids=[e[0] for e in MANIFEST_EDITS])
def test_results_with_a_hostile_manifest_exit_2(exported, tmp_path, edit, fragment):
    d, manifest = _copy(exported, tmp_path)
    edit(manifest)
    (d / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    line = refused(xent("verify", "--results", d), fragment)
    assert "root:" not in line  # never the content of a file outside the directory


def test_results_never_follow_a_symlink_out_of_the_directory(exported, tmp_path):
    d, manifest = _copy(exported, tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret\n", encoding="utf-8")
    loss = d / manifest["cases"][0]["outputs"]["loss"]
    loss.unlink()
    loss.symlink_to(secret)
    line = refused(xent("verify", "--results", d), "leads outside")
    assert "s3cret" not in line


INPUT_EDITS = [
    ("pickled object array", lambda p: np.save(p, np.array([object()], dtype=object), allow_pickle=True),
     "cannot be read"),
    ("raw pickle", lambda p: p.write_bytes(pickle.dumps([1.0, 2.0])), "cannot be read"),
    ("random bytes", lambda p: p.write_bytes(os.urandom(300)), "cannot be read"),
    ("empty file", lambda p: p.write_bytes(b""), "cannot be read"),
    ("truncated", lambda p: p.write_bytes(p.read_bytes()[:100]), "cannot be read"),
    ("missing", lambda p: p.unlink(), "cannot be read"),
    ("directory", lambda p: (p.unlink(), p.mkdir()), "cannot be read"),
    ("npz archive", lambda p: (np.savez(p.with_suffix(".npz"), a=np.zeros(2)), p.with_suffix(".npz").rename(p)),
     "cannot be read"),
    ("1-D", lambda p: np.save(p, np.zeros(5)), "must be N x C"),
    ("3-D", lambda p: np.save(p, np.zeros((2, 3, 4))), "must be N x C"),
    ("empty array", lambda p: np.save(p, np.zeros((0, 5))), "non-empty array of real numbers"),
    ("strings", lambda p: np.save(p, np.array([["a"]])), "non-empty array of real numbers"),
    ("complex", lambda p: np.save(p, np.zeros((8, 5), complex)), "non-empty array of real numbers"),
    ("bool", lambda p: np.save(p, np.zeros((8, 5), bool)), "non-empty array of real numbers"),
    ("NaN", lambda p: np.save(p, np.full((8, 5), np.nan)), "NaN is not a valid logit"),
    ("+inf", lambda p: np.save(p, np.full((8, 5), np.inf)), "inputs cannot be used"),
]


@pytest.mark.parametrize(("edit", "fragment"), [e[1:] for e in INPUT_EDITS], ids=[e[0] for e in INPUT_EDITS])
def test_results_with_broken_inputs_exit_2(exported, tmp_path, edit, fragment):
    d, manifest = _copy(exported, tmp_path)
    logits = d / manifest["cases"][0]["inputs"]["logits"]
    edit(logits)
    line = refused(xent("verify", "--results", d), fragment)
    assert manifest["cases"][0]["name"] in line


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda p: np.save(p, np.full(8, 99)), "out of range"),
        (lambda p: np.save(p, np.full(8, 0.5)), "whole numbers (class indices)"),
        (lambda p: np.save(p, np.zeros(3, np.int64)), "whole numbers (class indices)"),
        (lambda p: np.save(p, np.zeros((8, 5))), "whole numbers (class indices)"),
        (lambda p: p.write_bytes(os.urandom(64)), "cannot be read"),
    ],
    ids=["out-of-range", "float", "wrong-length", "2-D", "random"],
)
def test_results_with_broken_targets_exit_2(exported, tmp_path, edit, fragment):
    d, manifest = _copy(exported, tmp_path)
    edit(d / manifest["cases"][0]["inputs"]["targets"])
    refused(xent("verify", "--results", d), fragment)


OUTPUT_EDITS = [
    # A broken *output* is the implementation's failure on that case: exit 1, the others still judged.
    ("grad pickled object array", "grad_npy",
     lambda p: np.save(p, np.array([object()] * 3, dtype=object), allow_pickle=True),
     "the gradient file cannot be read"),
    ("grad raw pickle", "grad_npy", lambda p: p.write_bytes(pickle.dumps([1, 2])), "the gradient file cannot be read"),
    ("grad empty", "grad_npy", lambda p: p.write_bytes(b""), "the gradient file cannot be read (EOFError"),
    ("grad truncated", "grad_npy", lambda p: p.write_bytes(p.read_bytes()[:100]), "the gradient file cannot be read"),
    ("grad strings", "grad_npy", lambda p: np.save(p, np.array([["a"]])), "not numbers"),
    ("grad complex", "grad_npy", lambda p: np.save(p, np.zeros((8, 5), complex) + 1j), "complex numbers"),
    ("grad bool", "grad_npy", lambda p: np.save(p, np.zeros((8, 5), bool)), "not numbers"),
    ("grad records", "grad_npy", lambda p: np.save(p, np.zeros(3, dtype=[("a", "f8")])), "not numbers"),
    ("grad 3-D", "grad_npy", lambda p: np.save(p, np.zeros((8, 5, 1))), None),
    ("loss random bytes", "loss", lambda p: p.write_bytes(b"\xff\xfe" + os.urandom(100)), "is not a list of numbers"),
    ("loss words", "loss", lambda p: p.write_text("loss = ?\n", encoding="utf-8"), "is not a list of numbers"),
    ("loss many", "loss", lambda p: p.write_text("1\n2\n3\n", encoding="utf-8"), None),
    ("loss nan", "loss", lambda p: p.write_text("nan\n", encoding="utf-8"), None),
    ("loss missing", "loss", lambda p: p.unlink(), "was not written"),
    ("loss directory", "loss", lambda p: (p.unlink(), p.mkdir()), "was not written"),
]


@pytest.mark.parametrize(("which", "edit", "error"), [e[1:] for e in OUTPUT_EDITS], ids=[e[0] for e in OUTPUT_EDITS])
def test_results_with_broken_outputs_exit_1(exported, tmp_path, which, edit, error):
    d, manifest = _copy(exported, tmp_path)
    case = manifest["cases"][0]
    edit(d / case["outputs"][which])
    run = xent("verify", "--results", d, "--format", "json")
    assert run.code == 1, run
    bad = [c for c in run.json()["cases"] if not c["passed"]]
    assert [c["name"] for c in bad] == [case["name"]]
    if error is not None:
        assert error in (bad[0]["error"] or ""), bad[0]


def test_results_never_unpickle(exported, tmp_path, monkeypatch):
    """A pickle whose loading would create a file, in every place a .npy is read: never loaded, and
    np.load is only ever called with allow_pickle=False."""
    sentinel = tmp_path / "UNPICKLED"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (sentinel,))

    calls = []
    real_load = np.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("allow_pickle", "default"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    for where in ("grad_npy", "logits", "targets"):
        d, manifest = _copy(exported, tmp_path)
        case = manifest["cases"][0]
        path = d / (case["outputs"] if where == "grad_npy" else case["inputs"])[where]
        np.save(path, np.array([Payload()], dtype=object), allow_pickle=True)
        raw = d / "raw.npy"
        raw.write_bytes(pickle.dumps(Payload()))
        run = xent("verify", "--results", d, "--format", "json")
        assert run.code == (1 if where == "grad_npy" else 2), run
        path.write_bytes(raw.read_bytes())  # a bare pickle under the .npy name
        run = xent("verify", "--results", d, "--format", "json")
        assert run.code == (1 if where == "grad_npy" else 2), run
    assert not sentinel.exists()
    assert calls and set(calls) == {False}


@fuzz(25)
@given(data=st.binary(max_size=300), which=st.sampled_from(["loss", "grad", "grad_npy", "logits"]))
def test_random_bytes_in_results_files(exported, tmp_path, data, which):
    d, manifest = _copy(exported, tmp_path)
    case = manifest["cases"][0]
    if which == "logits":
        (d / case["inputs"]["logits"]).write_bytes(data)
        refused(xent("verify", "--results", d), case["name"])
        return
    if which == "grad":  # the CSV is read only when there is no .npy
        (d / case["outputs"]["grad_npy"]).unlink()
    (d / case["outputs"][which]).write_bytes(data)
    run = xent("verify", "--results", d, "--format", "json")
    assert run.code == 1, run  # random bytes are never this case's loss and gradient
    assert [c["name"] for c in run.json()["cases"] if not c["passed"]] == [case["name"]]


def test_export_to_hostile_places(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    refused(xent("verify", "--export", blocker), "exists and is not a directory")
    refused(xent("verify", "--export", blocker / "sub"), "cannot be created")
    refused(xent("verify", "--results", blocker), "has no manifest.json")
    refused(xent("verify", "--results", tmp_path / "nope"), "has no manifest.json")


# ----------------------------------------------------------------------------
# The pieces the contract relies on, checked directly
# ----------------------------------------------------------------------------


def test_loader_refusals_name_the_reason():
    import functools
    import shutil as shutil_module

    from xentcli.verify.loader import refuse

    def mine(z, t):
        return 0.0

    assert refuse(mine) is None
    assert refuse(functools.partial(mine)) is None
    assert refuse(lambda z, t: 0.0) is None
    assert refuse(np.add) is None  # numpy is not the standard library: run (and judged) like any callable
    assert "standard library" in refuse(os.system)
    assert "standard library" in refuse(functools.partial(shutil_module.rmtree))
    assert "standard library" in refuse(print)
    assert "is a class" in refuse(dict)
    assert "is a class" in refuse(Fraction)


def test_point_evaluation_is_exact_where_the_claim_is_rational():
    """The counterexample's numbers are exact fractions (so "differs" is exact); exact SymPy numbers once
    exp/log enter; undefined values say why, and only a pole or a log of a number <= 0 is genuine."""
    import sympy as sp

    from xentcli.symbolic import claims
    from xentcli.symbolic.claim_values import Big, PointAlgebra, Undef

    def alg():
        return PointAlgebra({"p": [Fraction(1, 3), Fraction(2, 3)], "y": [Fraction(1), Fraction(0)],
                             "z": [Fraction(0), sp.log(2)], "w": [Fraction(1)] * 2, "q": [Fraction(1)] * 2},
                            {"C": Fraction(2)})

    assert claims.fold(claims.parse("p - y + sum(p)**8/3"), alg(), 0) == Fraction(1, 3) - 1 + Fraction(1, 3)
    assert claims.fold(claims.parse("exp(z)"), alg(), 1) == Fraction(2)  # exp(log 2) = 2, exactly
    assert claims.fold(claims.parse("log(p) - log(1/3)"), alg(), 0) == 0
    undefined = claims.fold(claims.parse("(p - p)/(p - p)"), alg(), 0)
    assert isinstance(undefined, Undef) and not undefined.genuine and undefined.where == "(p - p) / (p - p)"  # 0/0
    pole = claims.fold(claims.parse("1/(y - 1)"), alg(), 0)
    assert isinstance(pole, Undef) and pole.genuine and pole.why == "division by zero"
    log0 = claims.fold(claims.parse("log(y)"), alg(), 1)
    assert isinstance(log0, Undef) and log0.genuine and log0.why == "log of 0"
    big = claims.fold(claims.parse("exp(exp(exp(exp(exp(C)))))"), alg(), 0)
    assert isinstance(big, Big) and big.sign == 1
    assert claims.fold(claims.parse("0*exp(exp(exp(exp(exp(C)))))"), alg(), 0) == 0


def test_a_header_argument_with_a_nul_byte_is_bad_input(tmp_path):
    """Found by the fuzzer above: click's path type raises ValueError on a NUL byte (a header is a file's
    text, so it can hold one where a real command line cannot)."""
    d = tmp_path / "doc.md"
    d.write_text("<!-- Generated by: xent derive --classes 2 --format markdown \x00 -->\n")
    run = xent("derive", "--check", d)
    assert run.code == 2 and "NUL" in run.stderr
