"""``xent compute --loss nll|kl``: PyTorch's values through the command line, streamed and in memory.

Expected numbers: PyTorch's autograd (``reference/torch_matrix.json``, made by
``reference/make_torch_fixtures.py``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import semantics_matrix as sm
from conftest import one_error_line

from xentcli import numeric, sources

CASES = {c["id"]: c for c in sm.cases()}


@pytest.fixture
def tiny_blocks(monkeypatch):
    monkeypatch.setattr(sources, "CHUNK_BYTES", 97)  # read blocks of a line or two
    monkeypatch.setattr(numeric.blocks, "BLOCK_ELEMENTS", 8)  # kernel blocks of two rows
    monkeypatch.setattr(numeric.blocks, "PARALLEL_MIN", 16)


def _files(tmp_path, case):
    z, t = sm._array(case["logits"]), sm._targets(case)
    zp, tp = tmp_path / "z.csv", tmp_path / "t.csv"
    zp.write_text("\n".join(",".join(repr(float(v)) for v in row) for row in z) + "\n", encoding="utf-8")
    if t.ndim == 1:
        tp.write_text("\n".join(str(int(v)) for v in t) + "\n", encoding="utf-8")
    else:
        tp.write_text("\n".join(",".join(repr(float(v)) for v in row) for row in t) + "\n", encoding="utf-8")
    return zp, tp


def _args(case):
    args = ["--loss", case["kind"], "--reduction", case["reduction"]]
    if case["weight"] is not None:
        args += ["--weight", ",".join(repr(w) for w in case["weight"])]
    if case["ignore_index"] is not None:
        args += ["--ignore-index", str(case["ignore_index"])]
    return args


KINDS = [i for i in CASES if i.startswith(("nll-", "kl-"))]


@pytest.mark.parametrize("case_id", KINDS)
def test_compute_gives_pytorch_s_values(xent, tmp_path, case_id):
    case = CASES[case_id]
    zp, tp = _files(tmp_path, case)
    run = xent("compute", zp, tp, *_args(case), "--format", "json")
    assert run.code == 0, run
    out = run.json()
    assert out["kind"] == {"nll": "nll_loss", "kl": "kl_div"}[case["kind"]]
    want = sm._array(case["loss"])
    got = np.asarray(out["loss"] if out["loss"] is not None else out["losses"], dtype=np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.asarray(out["grad"]), sm._array(case["grad"]), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("case_id", ["kl-mean", "kl-batchmean", "kl-none", "nll-mean-weight-ignore", "nll-sum"])
@pytest.mark.parametrize("fmt", ["csv", "npy"])
def test_streamed_equals_in_memory_bit_for_bit(xent, tmp_path, tiny_blocks, case_id, fmt):
    case = CASES[case_id]
    zp, tp = _files(tmp_path, case)
    out = tmp_path / f"grad.{fmt}"
    streamed = xent("compute", zp, tp, *_args(case), "--output", out, "--format", "json")
    assert streamed.code == 0, streamed
    assert streamed.json()["streamed"] is True
    memory = xent("compute", *_args(case), "--format", "json",
                  "--logits", ";".join(",".join(repr(float(v)) for v in row) for row in sm._array(case["logits"])),
                  "--labels", tp.read_text().strip().replace("\n", ";"))
    assert memory.code == 0, memory
    grad = np.load(out) if fmt == "npy" else np.loadtxt(out, delimiter=",", ndmin=2)
    assert np.array_equal(grad, np.asarray(memory.json()["grad"]))
    assert json.dumps(streamed.json()["loss"]) == json.dumps(memory.json()["loss"])


def test_kl_needs_probability_rows(xent, tmp_path):
    case = CASES["kl-mean"]
    zp, _ = _files(tmp_path, case)
    labels = tmp_path / "labels.csv"
    labels.write_text("0\n1\n2\n3\n0\n", encoding="utf-8")
    line = one_error_line(xent("compute", zp, labels, "--loss", "kl"))
    assert "labels.csv" in line and "probability targets need one row of 4 values" in line


def test_nll_reads_a_table_as_indices_only(xent, tmp_path):
    """nll has no probability targets: an N x C table is not read as probability rows."""
    case = CASES["kl-mean"]
    zp, tp = _files(tmp_path, case)
    line = one_error_line(xent("compute", zp, tp, "--loss", "nll"))
    assert "t.csv" in line and "class-index targets need 5 values" in line


IMPLEMENTATIONS = '''
import numpy as np


def _log_softmax(z):
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    return z - m - np.log(e.sum(axis=1, keepdims=True)), e / e.sum(axis=1, keepdims=True)


def kl_batchmean(z, y):
    """KL(y || softmax(z)) / N with 0 log 0 = 0, and its gradient (p * sum(y) - y) / N."""
    z = z.astype(np.float64)
    logp, p = _log_softmax(z)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(y > 0, y * (np.log(np.where(y > 0, y, 1.0)) - logp), 0.0)
    n = z.shape[0]
    return terms.sum() / n, (p * y.sum(axis=1, keepdims=True) - y) / n


def nll_weighted_mean(z, t, w=np.array([0.5, 2.0, 1.0, 1.5, 1.0])):
    """NLL of log_softmax with class weights, divided by the summed weight of the targets."""
    z = z.astype(np.float64)
    logp, p = _log_softmax(z)
    n = z.shape[0]
    wt = w[t]
    onehot = np.zeros_like(p)
    onehot[np.arange(n), t] = 1.0
    grad = wt[:, None] * (p - onehot) / wt.sum()
    return -(wt * logp[np.arange(n), t]).sum() / wt.sum(), grad
'''


@pytest.mark.parametrize(("fn", "args"), [("kl_batchmean", ["--loss", "kl", "--reduction", "batchmean"]),
                                          ("nll_weighted_mean", ["--loss", "nll", "--weight", "0.5,2,1,1.5,1"])])
def test_verify_checks_nll_and_kl_implementations(xent, tmp_path, fn, args):
    impl = tmp_path / "impl.py"
    impl.write_text(IMPLEMENTATIONS, encoding="utf-8")
    run = xent("verify", f"{impl}:{fn}", *args, "--format", "json")
    assert run.code == 0, [(c["name"], c["loss"], c["grad"]) for c in run.json()["cases"] if not c["passed"]]
    # The same implementation with the wrong reduction is caught.
    wrong = [a if a != "batchmean" else "mean" for a in args] if "kl" in args else [*args, "--reduction", "sum"]
    assert xent("verify", f"{impl}:{fn}", *wrong, "--format", "json").code == 1
