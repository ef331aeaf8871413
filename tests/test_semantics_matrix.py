"""One semantics: derive's proved gradient, compute's kernel and verify's reference agree with PyTorch.

The cases and PyTorch's answers are in ``reference/torch_matrix.json``
(``reference/make_torch_fixtures.py`` made them with torch's autograd); the
comparison is :mod:`semantics_matrix`. When torch is installed, the fixtures
are also checked against it in the run, so they cannot go stale unnoticed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import semantics_matrix as sm

ROOT = Path(__file__).resolve().parent.parent
CASES = sm.cases()


def test_the_fixtures_cover_every_combination():
    from test_symbolic import SPECS

    covered = {sm.spec_of(c, symbolic=True).describe() for c in CASES}
    wanted = {s.describe() for s in SPECS}
    assert wanted <= covered, sorted(wanted - covered)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_compute_and_verify_agree_with_pytorch(case):
    sm.check_compute(case)
    sm.check_verify(case)


@pytest.mark.parametrize("classes", [4, "n"])
@pytest.mark.parametrize("case", [c for c in CASES if "ignore-all" not in c["id"]], ids=lambda c: c["id"])
def test_derived_gradients_agree_with_pytorch(case, classes):
    sm.check_derive(case, classes)


def test_the_documented_divergence_is_what_the_readme_says():
    """A zero target on a -inf logit: PyTorch gives nan, xent 0 log 0 = 0 (and the same gradient)."""
    import json

    from xentcli import numeric

    doc = json.loads(sm.FIXTURES.read_text(encoding="utf-8"))
    for case in (c for c in doc["cases"] if c["id"] in sm.DOCUMENTED_DIVERGENCES):
        r = numeric.evaluate(sm.spec_of(case), sm._array(case["logits"]), sm._targets(case), warn=False)
        torch_loss = sm._array(case["loss"])
        assert np.isnan(torch_loss).any() and np.isfinite(r.losses).all()
        np.testing.assert_allclose(r.grad, sm._array(case["grad"]), rtol=1e-12, atol=1e-15)


def test_the_fixtures_match_the_installed_torch():
    torch = pytest.importorskip("torch")  # checked where torch is installed; the fixtures stand in elsewhere
    sys.path.insert(0, str(ROOT / "tests" / "reference"))
    try:
        import make_torch_fixtures as make
    finally:
        sys.path.pop(0)
    fresh = {c["id"]: c for c in make.build_cases()}
    assert set(fresh) >= {c["id"] for c in CASES}
    for case in CASES:
        again = fresh[case["id"]]
        np.testing.assert_allclose(sm._array(make.plain(again["grad"])), sm._array(case["grad"]), rtol=1e-12,
                                   atol=1e-15)
        np.testing.assert_allclose(sm._array(make.plain(again["loss"])), sm._array(case["loss"]), rtol=1e-12,
                                   atol=1e-15)
    assert torch.__version__


MUTATIONS = [
    # (subsystem, file, text, replacement, cases): a plausible drift in one subsystem only
    ("kernel", "numeric/plan.py", 'return cls(spec.reduction, float(rows) * classes)',
     'return cls(spec.reduction, float(rows))', ["kl-mean", "bce-mean"]),
    ("concrete engine", "symbolic/concrete.py", "return sp.log(1 - self.sigma(m))",
     "return sp.log(1 + self.sigma(m))", ["bce-none"]),
    ("symbolic-C engine", "symbolic/general.py",
     'return self._vector(self.problem.spec.pos_weight, self.b.q, m)', "return sp.Integer(1)",
     ["bce-none-posweight"]),
    ("shared loss definition", "symbolic/quantities.py", "return (1 - A.eps) * y + A.eps / A.C",
     "return (1 - A.eps) * y + A.eps / (A.C - 1)", ["ce-index-none-smooth"]),
]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_a_drift_in_any_subsystem_fails_the_matrix(tmp_path, mutation):
    """Alter a copy of the package in one place: the matrix must catch it (and pass on the unaltered copy)."""
    name, rel, text, replacement, words = mutation
    copy = tmp_path / "xentcli"
    shutil.copytree(ROOT / "xentcli", copy, ignore=shutil.ignore_patterns("__pycache__"))
    script = [sys.executable, str(ROOT / "tests" / "semantics_matrix.py"), *words]
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    clean = subprocess.run(script, capture_output=True, text=True, env=env, timeout=600)
    assert clean.returncode == 0, clean.stderr
    target = copy / rel
    source = target.read_text(encoding="utf-8")
    assert text in source, f"the {name} no longer contains the text this test alters"
    target.write_text(source.replace(text, replacement, 1), encoding="utf-8")
    altered = subprocess.run(script, capture_output=True, text=True, env=env, timeout=600)
    assert altered.returncode == 1, (altered.returncode, altered.stderr)
    assert "MISMATCH" in altered.stderr
