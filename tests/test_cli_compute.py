"""``xent compute`` end to end through click's CliRunner: every option and format.

Expected numbers come from outside the code: the seed's worked example
(../shared/seeds/004_*.txt, 3 decimals), TensorFlow's softmax cross-entropy
test, PyTorch issue 25571, TensorFlow's sigmoid_cross_entropy_with_logits
documentation, and mpmath evaluations of the textbook definitions.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import mpmath as mp
import numpy as np
import pytest
from conftest import (
    SEED_GRAD_MEAN,
    SEED_LABELS,
    SEED_LOGITS,
    SEED_LOSSES,
    SEED_MEAN,
    SEED_PROBS,
)

# TensorFlow, tensorflow/python/kernel_tests/nn_ops/xent_op_test_base.py (testNpXent):
TF_LOGITS = "1,1,1,1;1,2,3,4"
TF_LABELS = "0,0,0,1;0,0.5,0.5,0"
TF_LOSSES = [1.3862944, 1.9401897]
TF_GRAD = [[0.25, 0.25, 0.25, -0.75], [0.0320586, -0.4128557, -0.2631172, 0.6439143]]

# PyTorch issue 25571 (weighted cross-entropy): none / sum / mean.
PT_LOGITS = ".2,.3,.5;.5,.2,.3"
PT_TARGETS = "2,1"
PT_WEIGHT = "2,4,6"
PT_NONE = [5.6390, 4.9593]
PT_SUM = 10.5983
PT_MEAN = 1.0598

# TensorFlow docs, tf.nn.sigmoid_cross_entropy_with_logits example.
TF_SIG_LOGITS = "1,-1,0,1,-1,0,0"
TF_SIG_LABELS = "0,0,0,1,1,1,0.5"
TF_SIG_LOSSES = [1.3132617, 0.3132617, 0.6931472, 0.3132617, 1.3132617, 0.6931472, 0.6931472]


def mp_ce(z, a):
    """-sum_j a_j log softmax(z)_j and its gradient p*sum(a) - a, in mpmath (50 digits)."""
    with mp.workdps(50):
        z = [mp.mpf(v) for v in z]
        a = [mp.mpf(v) for v in a]
        lse = mp.log(mp.fsum(mp.exp(v) for v in z))
        p = [mp.exp(v - lse) for v in z]
        s = mp.fsum(a)
        loss = -mp.fsum(aj * (zj - lse) for aj, zj in zip(a, z))
        return float(loss), [float(pj * s - aj) for pj, aj in zip(p, a)]


def test_seed_example_inline(xent):
    run = xent("compute", "--logits", SEED_LOGITS, "--labels", SEED_LABELS)
    assert run.code == 0, run
    assert run.stderr == ""
    out = run.json()
    assert out["n"] == 2 and out["classes"] == 3 and out["reduction"] == "mean"
    assert out["targets"] == "index"
    np.testing.assert_allclose(out["losses"], SEED_LOSSES, atol=5e-4)
    assert out["loss"] == pytest.approx(SEED_MEAN, abs=5e-4)
    np.testing.assert_allclose(out["grad"], SEED_GRAD_MEAN, atol=5e-4)
    np.testing.assert_allclose(out["probs"], SEED_PROBS, atol=5e-4)


def test_seed_example_table(xent):
    run = xent("compute", "--logits", SEED_LOGITS, "--labels", SEED_LABELS, "--format", "table")
    assert run.code == 0, run
    text = run.stdout
    for token in ("1.417", "2.620", "0.3295", "-0.3788", "-0.4636", "0.2202", "softmax cross-entropy"):
        assert token in text
    assert "loss = 2.018508395" in text  # 2.019 in the seed, to 3 decimals
    assert "\x1b[" not in text  # no escape codes when not a terminal


def test_seed_example_csv(xent):
    run = xent("compute", "--logits", SEED_LOGITS, "--labels", SEED_LABELS, "--format", "csv")
    assert run.code == 0, run
    rows = list(csv.reader(io.StringIO(run.stdout)))
    assert rows[0] == ["sample", "loss", "p_0", "p_1", "p_2", "grad_0", "grad_1", "grad_2"]
    body = np.array([[float(v) for v in r] for r in rows[1:3]])
    np.testing.assert_allclose(body[:, 1], SEED_LOSSES, atol=5e-4)
    np.testing.assert_allclose(body[:, 2:5], SEED_PROBS, atol=5e-4)
    np.testing.assert_allclose(body[:, 5:8], SEED_GRAD_MEAN, atol=5e-4)
    assert rows[3][0] == "mean" and float(rows[3][1]) == pytest.approx(SEED_MEAN, abs=5e-4)


def test_default_format_is_json_when_not_a_terminal(xent):
    run = xent("compute", "--logits", SEED_LOGITS, "--labels", SEED_LABELS)
    json.loads(run.stdout)


@pytest.mark.parametrize(
    "logits_text",
    [
        "2,1,0.1\n0.1,2,1.9\n",
        "\ufeff2,1,0.1\r\n0.1,2,1.9\r\n\r\n\r\n",
        "z0,z1,z2\n2,1,0.1\n0.1,2,1.9\n",
        " 2 , 1 , 0.1 \n 0.1 , 2 , 1.9 \n\n",
        "2\t1\t0.1\n0.1\t2\t1.9\n",
        "2;1;0.1\n0.1;2;1.9\n",
        "2 1 0.1\n0.1   2 1.9\n",
        '"2","1","0.1"\n"0.1","2","1.9"\n',
        "# logits of the seed example\n2,1,0.1\n\n0.1,2,1.9\n",
    ],
    ids=["plain", "bom-crlf-blank", "header", "spaces", "tsv", "semicolon", "whitespace", "quoted", "comment"],
)
@pytest.mark.parametrize(
    "labels_text",
    ["1\n0\n", "1,0\n", "label\n1\n0\n", "0,1,0\n1,0,0\n", "1.0\n0.0\n"],
    ids=["column", "row", "header", "onehot", "float-index"],
)
def test_text_dialects(xent, write, logits_text, labels_text):
    lg = write("logits.csv", logits_text)
    lb = write("labels.csv", labels_text)
    run = xent("compute", lg, lb)
    assert run.code == 0, run
    out = run.json()
    np.testing.assert_allclose(out["losses"], SEED_LOSSES, atol=5e-4)
    np.testing.assert_allclose(out["grad"], SEED_GRAD_MEAN, atol=5e-4)


def test_npy_inputs_and_stdin(xent, tmp_path):
    lg = tmp_path / "logits.npy"
    np.save(lg, np.array([[2, 1, 0.1], [0.1, 2, 1.9]]))
    lb = tmp_path / "labels.npy"
    np.save(lb, np.array([1, 0], dtype=np.int64))
    run = xent("compute", lg, lb)
    assert run.code == 0, run
    np.testing.assert_allclose(run.json()["losses"], SEED_LOSSES, atol=5e-4)
    run = xent("compute", "-", lb, input="2,1,0.1\n0.1,2,1.9\n")
    assert run.code == 0, run
    np.testing.assert_allclose(run.json()["losses"], SEED_LOSSES, atol=5e-4)
    run = xent("compute", lg, "-", input=lb.read_bytes())
    assert run.code == 0, run
    np.testing.assert_allclose(run.json()["losses"], SEED_LOSSES, atol=5e-4)
    # float32 .npy with an inline labels option
    np.save(lg, np.array([[2, 1, 0.1], [0.1, 2, 1.9]], dtype=np.float32))
    run = xent("compute", lg, "--labels", "1,0", "--dtype", "float32")
    assert run.code == 0, run
    assert run.json()["dtype"] == "float32"
    np.testing.assert_allclose(run.json()["losses"], SEED_LOSSES, atol=5e-4)


def test_logits_inline_with_labels_file(xent, write):
    lb = write("labels.csv", "1\n0\n")
    run = xent("compute", "--logits", SEED_LOGITS, lb)
    assert run.code == 0, run
    assert run.json()["loss"] == pytest.approx(SEED_MEAN, abs=5e-4)


@pytest.mark.parametrize(
    ("reduction", "expect_loss"),
    [("none", None), ("sum", sum(TF_LOSSES)), ("mean", sum(TF_LOSSES) / 2)],
)
def test_probability_targets_tf_reference(xent, reduction, expect_loss):
    run = xent("compute", "--logits", TF_LOGITS, "--labels", TF_LABELS, "--reduction", reduction)
    assert run.code == 0, run
    out = run.json()
    assert out["targets"] == "prob"
    np.testing.assert_allclose(out["losses"], TF_LOSSES, rtol=1e-7)
    if expect_loss is None:
        assert out["loss"] is None
    else:
        assert out["loss"] == pytest.approx(expect_loss, rel=1e-7)
    scale = 0.5 if reduction == "mean" else 1.0
    np.testing.assert_allclose(out["grad"], np.array(TF_GRAD) * scale, atol=1e-7)


@pytest.mark.parametrize(("reduction", "expect"), [("none", PT_NONE), ("sum", PT_SUM), ("mean", PT_MEAN)])
def test_class_weights_pytorch_issue_25571(xent, reduction, expect):
    run = xent(
        "compute", "--logits", PT_LOGITS, "--labels", PT_TARGETS, "--weight", PT_WEIGHT, "--reduction", reduction
    )
    assert run.code == 0, run
    out = run.json()
    if reduction == "none":
        np.testing.assert_allclose(out["losses"], expect, atol=5e-5)
    else:
        assert out["loss"] == pytest.approx(expect, abs=5e-5)
    assert out["options"]["weight"] == [2.0, 4.0, 6.0]


def test_ignore_index(xent):
    # Ignoring the second sample leaves the first one alone: mean over 1 sample,
    # gradient p - y of sample 1 (seed values x 2) and zeros for sample 2.
    run = xent("compute", "--logits", SEED_LOGITS, "--labels", "1,7", "--ignore-index", "7")
    assert run.code == 0, run
    out = run.json()
    assert out["loss"] == pytest.approx(SEED_LOSSES[0], abs=5e-4)
    np.testing.assert_allclose(out["grad"][0], [0.659, -0.758, 0.099], atol=5e-4)
    assert out["grad"][1] == [0.0, 0.0, 0.0]
    assert out["losses"][1] == 0.0
    # PyTorch's default ignore index is -100.
    run = xent("compute", "--logits", SEED_LOGITS, "--labels", "1,-100")
    assert run.json()["loss"] == pytest.approx(SEED_LOSSES[0], abs=5e-4)


def test_all_ignored_mean_is_nan_with_warning(xent):
    run = xent("compute", "--logits", SEED_LOGITS, "--labels", "-100,-100")
    assert run.code == 0, run
    out = run.json()
    assert out["loss"] == "nan"
    assert "0/0" in run.stderr and run.stderr.startswith("xent: warning: ")
    assert out["grad"] == [[0.0] * 3, [0.0] * 3]


@pytest.mark.parametrize("eps", ["0.1", "0.5", "1"])
def test_label_smoothing_index_targets(xent, eps):
    e = float(eps)
    z = [[2, 1, 0.1], [0.1, 2, 1.9]]
    y = [1, 0]
    run = xent("compute", "--logits", SEED_LOGITS, "--labels", SEED_LABELS, "--label-smoothing", eps,
               "--reduction", "none")
    assert run.code == 0, run
    out = run.json()
    for i in range(2):
        a = [(1 - e) * (j == y[i]) + e / 3 for j in range(3)]
        loss, grad = mp_ce(z[i], a)
        assert out["losses"][i] == pytest.approx(loss, rel=1e-13)
        np.testing.assert_allclose(out["grad"][i], grad, rtol=1e-12, atol=1e-15)


def test_label_smoothing_with_weights_and_ignore_mean(xent):
    # PyTorch: mean divides by the summed target weights of non-ignored samples.
    z = [[2, 1, 0.1], [0.1, 2, 1.9], [0.5, -1, 3]]
    y = [1, 0, -100]
    w = [2.0, 4.0, 6.0]
    e = 0.2
    run = xent(
        "compute", "--logits", "2,1,0.1;0.1,2,1.9;0.5,-1,3", "--labels", "1,0,-100",
        "--weight", "2,4,6", "--label-smoothing", "0.2",
    )
    assert run.code == 0, run
    out = run.json()
    total = 0.0
    grads = []
    for i in range(2):
        a = [w[j] * ((1 - e) * (j == y[i]) + e / 3) for j in range(3)]
        loss, grad = mp_ce(z[i], a)
        total += loss
        grads.append(grad)
    denom = w[1] + w[0]
    assert out["denominator"] == denom
    assert out["loss"] == pytest.approx(total / denom, rel=1e-13)
    np.testing.assert_allclose(out["grad"][:2], np.array(grads) / denom, rtol=1e-12, atol=1e-15)
    assert out["grad"][2] == [0.0, 0.0, 0.0]


def test_unnormalised_probability_targets_warn_and_are_exact(xent):
    run = xent("compute", "--logits", "1,2,3", "--labels", "0.2,0.3,0.1", "--reduction", "sum")
    assert run.code == 0, run
    assert "do" in run.stderr and "not sum to 1" in run.stderr and "0.6" in run.stderr
    out = run.json()
    loss, grad = mp_ce([1, 2, 3], [0.2, 0.3, 0.1])
    assert out["loss"] == pytest.approx(loss, rel=1e-13)
    np.testing.assert_allclose(out["grad"][0], grad, rtol=1e-12)  # p * sum(y) - y, not p - y
    assert abs(sum(out["grad"][0]) - (-0.4 * 0 + 0.6 - 0.6)) < 1e-12  # rows sum to sum(y)*1 - sum(y) = 0


@pytest.mark.parametrize(
    ("labels", "targets_opt", "expect"),
    [
        ("1;0", "auto", "index"),
        ("0,1;1,0", "auto", "prob"),
        ("0,1;1,0", "prob", "prob"),
        ("1;0", "index", "index"),
        ("1,0", "index", "index"),
    ],
)
def test_targets_reading(xent, labels, targets_opt, expect):
    run = xent("compute", "--logits", "1,2;3,4", "--labels", labels, "--targets", targets_opt)
    assert run.code == 0, run
    assert run.json()["targets"] == expect


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_binary_tf_sigmoid_reference(xent, reduction):
    run = xent("compute", "--binary", "--logits", TF_SIG_LOGITS, "--labels", TF_SIG_LABELS, "--reduction", reduction)
    assert run.code == 0, run
    out = run.json()
    assert out["kind"] == "binary_cross_entropy_with_logits"
    np.testing.assert_allclose(out["losses"], [TF_SIG_LOSSES], rtol=1e-7)
    if reduction == "mean":
        assert out["loss"] == pytest.approx(sum(TF_SIG_LOSSES) / 7, rel=1e-7)
    if reduction == "sum":
        assert out["loss"] == pytest.approx(sum(TF_SIG_LOSSES), rel=1e-7)
    sig = [1 / (1 + mp.e ** (-x)) for x in (1, -1, 0, 1, -1, 0, 0)]
    y = [0, 0, 0, 1, 1, 1, 0.5]
    scale = 1 / 7 if reduction == "mean" else 1
    np.testing.assert_allclose(out["grad"][0], [float((s - t) * scale) for s, t in zip(sig, y)], rtol=1e-13)
    np.testing.assert_allclose(out["probs"][0], [float(s) for s in sig], rtol=1e-15)


def test_binary_pos_weight_and_weight(xent):
    # PyTorch docs (BCEWithLogitsLoss): all targets 1, logits 1.5 -> -log(sigmoid(1.5)) per element;
    # with pos_weight q and weight w the element loss is w * q * softplus(-x).
    run = xent(
        "compute", "--binary", "--logits", "1.5,1.5;1.5,-2", "--labels", "1,1;1,0",
        "--pos-weight", "3,1", "--weight", "0.5,2", "--reduction", "none",
    )
    assert run.code == 0, run
    out = run.json()
    def sp(t):  # softplus
        return float(mp.log1p(mp.e ** t))

    expect = [[0.5 * 3 * sp(-1.5), 2 * 1 * sp(-1.5)], [0.5 * 3 * sp(-1.5), 2 * sp(-2)]]
    np.testing.assert_allclose(out["losses"], expect, rtol=1e-14)
    assert out["options"]["pos_weight"] == [3.0, 1.0]


def test_binary_column_labels_for_a_single_column(xent, write):
    lg = write("z.csv", "1\n-1\n0\n")
    lb = write("y.csv", "0,0,1\n")
    run = xent("compute", "--binary", lg, lb, "--reduction", "none")
    assert run.code == 0, run
    np.testing.assert_allclose(np.ravel(run.json()["losses"]), [1.3132617, 0.3132617, 0.6931472], rtol=1e-7)


def test_masked_classes(xent):
    # Keras docs example with probabilities [[.05,.95,0],[.1,.8,.1]], labels [1,2] -> 1.177;
    # logits = log(probabilities), so the 0 becomes a masked -inf logit.
    z = np.log([[0.05, 0.95, 1e-300], [0.1, 0.8, 0.1]]).tolist()
    inline = f"{z[0][0]!r},{z[0][1]!r},-inf;{z[1][0]!r},{z[1][1]!r},{z[1][2]!r}"
    run = xent("compute", "--logits", inline, "--labels", "1,2")
    assert run.code == 0, run
    assert run.json()["loss"] == pytest.approx(1.177, abs=5e-4)
    assert run.json()["probs"][0][2] == 0.0
    run = xent("compute", "--logits", "0,-inf,1", "--labels", "1")
    assert run.code == 0, run
    assert run.json()["loss"] == "inf"
    assert "infinite" in run.stderr and "-inf" in run.stderr


def test_float32(xent):
    run = xent("compute", "--logits", SEED_LOGITS, "--labels", SEED_LABELS, "--dtype", "float32")
    assert run.code == 0, run
    out = run.json()
    assert out["dtype"] == "float32"
    np.testing.assert_allclose(out["grad"], SEED_GRAD_MEAN, atol=5e-4)
    # float32 values are printed with float32's shortest round-trip digits
    assert all(len(repr(v)) <= 12 for row in out["grad"] for v in row)


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".npy", ".txt"])
def test_output_file(xent, tmp_path, ext):
    out = tmp_path / f"grad{ext}"
    run = xent("compute", "--logits", SEED_LOGITS, "--labels", SEED_LABELS, "--output", out)
    assert run.code == 0, run
    if ext == ".npy":
        grad = np.load(out, allow_pickle=False)
    else:
        grad = np.loadtxt(out, delimiter="\t" if ext == ".tsv" else ",")
    np.testing.assert_allclose(grad, SEED_GRAD_MEAN, atol=5e-4)
    full = xent("compute", "--logits", SEED_LOGITS, "--labels", SEED_LABELS).json()
    np.testing.assert_array_equal(grad, np.array(full["grad"]))  # full precision
    summary = run.json()  # with --output, stdout is a summary: the gradient is in the file
    assert summary["grad"] is None and summary["output"] == str(out) and summary["rows_written"] == 2
    assert summary["loss"] == full["loss"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary left behind


def test_output_replaces_an_existing_file_atomically(xent, tmp_path):
    out = tmp_path / "grad.csv"
    out.write_text("old\n")
    run = xent("compute", "--logits", SEED_LOGITS, "--labels", SEED_LABELS, "-o", out, "--format", "table")
    assert run.code == 0, run
    assert "gradient of 2 rows written to" in run.stdout
    assert out.read_text() != "old\n"


def test_header_option(xent, write):
    lg = write("z.csv", "2,1,0.1\n0.1,2,1.9\n")
    lb = write("y.csv", "9\n0\n")
    run = xent("compute", lg, lb, "--header", "yes")
    assert run.code == 0, run
    # with --header yes the first line of *both* files is skipped: one sample is left
    assert run.json()["n"] == 1
    assert run.json()["losses"] == pytest.approx([2.620], abs=5e-4)


def test_digits_option(xent):
    run = xent("compute", "--logits", SEED_LOGITS, "--labels", SEED_LABELS, "--format", "table", "--digits", "8")
    assert run.code == 0, run
    assert "1.4170300" in run.stdout


def test_large_table_is_truncated(xent, write):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(60, 12)).tolist()
    lg = write("z.csv", "\n".join(",".join(repr(v) for v in row) for row in z))
    lb = write("y.csv", "\n".join(str(i % 12) for i in range(60)))
    run = xent("compute", lg, lb, "--format", "table")
    assert run.code == 0, run
    assert "20 more samples" in run.stdout
    assert "…" in run.stdout


def test_single_class_warns(xent):
    run = xent("compute", "--logits", "1;2", "--labels", "0,0")
    assert run.code == 0, run
    assert "--binary" in run.stderr
    assert run.json()["loss"] == 0.0


def test_version_and_help(xent):
    from xentcli import __version__

    run = xent("--version")
    assert run.code == 0 and run.stdout.strip() == f"xent {__version__}"
    run = xent("--help")
    assert run.code == 0 and "xent compute --logits" in run.stdout and "Exit codes" in run.stdout
    run = xent("compute", "--help")
    assert run.code == 0
    for opt in ("--reduction", "--weight", "--ignore-index", "--label-smoothing", "--binary", "--pos-weight",
                "--dtype", "--format", "--output", "--targets", "--header"):
        assert opt in run.stdout


def _run_module(*args, **kw):
    env = dict(os.environ, COLUMNS="120", TERM="dumb")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120, **kw)


def test_python_dash_m_and_no_sympy_import():
    code = (
        "import sys\n"
        "from xentcli.cli import main\n"
        "try:\n"
        "    main(['compute', '--logits', '2,1,0.1;0.1,2,1.9', '--labels', '1,0', '--format', 'json'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "assert 'sympy' not in sys.modules, 'xent compute imported sympy'\n"
        "print('OK')\n"
    )
    proc = _run_module("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("OK")
    proc = _run_module("-m", "xentcli", "compute", "--logits", SEED_LOGITS, "--labels", SEED_LABELS)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["loss"] == pytest.approx(SEED_MEAN, abs=5e-4)


def test_help_does_not_import_numpy_or_sympy():
    code = (
        "import sys\n"
        "from xentcli.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0\n"
        "bad = [m for m in ('sympy', 'numpy', 'rich') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = _run_module("-c", code)
    assert proc.returncode == 0, proc.stderr + proc.stdout
