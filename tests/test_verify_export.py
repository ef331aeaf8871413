"""The export protocol is complete: an implementation written from README.txt alone passes.

``follow_readme`` below is the "C++ kernel" of the issue, in NumPy: it knows
nothing of xent. It reads README.txt and manifest.json of an exported battery,
checks that README.txt states each formula it is about to use (the lines are
quoted from it), computes in the dtype README.txt names, and writes the files
README.txt asks for. Its results must pass ``xent verify --results``; a
missing or extra file, or float32 work on a float64 battery, must fail, named.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

# The formulas the implementation uses, as README.txt must state them (quoted, whitespace-normalised).
SOFTMAX_LINES = [
    "log p[n,c] = z[n,c] - logsumexp(z[n,:])",
    "loss[n] = - sum_c a[n,c] * log p[n,c]",
    "d loss[n] / d z[n,c] = p[n,c] * sum_k a[n,k] - a[n,c]",
]
BCE_LINES = [
    "softplus(x) = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))",
]


def _said(readme: str, line: str) -> bool:
    return " ".join(line.split()) in " ".join(readme.split())


def _vector(readme: str, name: str) -> np.ndarray | None:
    m = re.search(rf"^\s*{name} = \[([^\]]*)\]", readme, re.M)
    return None if m is None else np.array([float(x) for x in m.group(1).split(",")])


def follow_readme(directory: Path, *, dtype: str | None = None, skip_grad_of: str | None = None) -> None:
    """Write loss.txt and grad.csv for every case, from README.txt and the manifest only."""
    readme = (directory / "README.txt").read_text(encoding="utf-8")
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    stated = re.search(r"^Precision: (\w+)$", readme, re.M)
    assert stated is not None, "README.txt names the dtype to compute in"
    dt = np.dtype(dtype or stated.group(1))
    binary = "softplus" in readme
    for line in BCE_LINES if binary else SOFTMAX_LINES:
        assert _said(readme, line), line
    eps_m = re.search(r"with eps = ([0-9.e-]+)", readme)
    eps = float(eps_m.group(1)) if eps_m else 0.0
    w, pw = _vector(readme, "w"), _vector(readme, "pw")
    ignore_m = re.search(r"m\[n\] = 0 if t\[n\] == (-?\d+)", readme)
    reduction = re.search(r"^reduction (\w+)", readme, re.M).group(1)
    for case in manifest["cases"]:
        z = np.loadtxt(directory / case["inputs"]["logits_csv"], delimiter=",", ndmin=2).astype(dt)
        n, c = z.shape
        kind = case["inputs"]["targets_kind"]
        if kind == "index":
            t = np.loadtxt(directory / case["inputs"]["targets_csv"], dtype=np.int64, ndmin=1)
        else:
            t = np.loadtxt(directory / case["inputs"]["targets_csv"], delimiter=",", ndmin=2).astype(dt)
        with np.errstate(all="ignore"):
            if binary:
                wc = np.ones(c, dt) if w is None else w.astype(dt)
                pwc = np.ones(c, dt) if pw is None else pw.astype(dt)

                def softplus(x):
                    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))

                losses = wc * (pwc * t * softplus(-z) + (1 - t) * softplus(z))
                sig = 1 / (1 + np.exp(-z))
                grads = wc * ((1 - t) * sig - pwc * t * (1 - sig))
                denominator = dt.type(n * c)
            else:
                mx = np.max(np.where(np.isfinite(z), z, -np.inf), axis=1, keepdims=True)
                logp = z - (mx + np.log(np.sum(np.exp(z - mx), axis=1, keepdims=True)))
                p = np.exp(logp)
                wc = np.ones(c, dt) if w is None else w.astype(dt)
                if kind == "index":
                    y = np.zeros((n, c), dt)
                    keep = np.ones(n, bool) if ignore_m is None else t != int(ignore_m.group(1))
                    y[np.arange(n)[keep], t[keep]] = 1
                    a = keep[:, None] * wc * ((1 - eps) * y + eps / c)
                    denominator = (wc[t[keep]].sum() if w is not None else dt.type(keep.sum()))
                else:
                    a = wc * ((1 - eps) * t + eps / c)
                    denominator = dt.type(n)
                losses = -np.sum(np.where(a == 0, 0, a * logp), axis=1)
                grads = p * a.sum(axis=1, keepdims=True) - a
            if reduction == "mean":
                loss = np.atleast_1d(losses.sum() / denominator)
                grad = grads / denominator if denominator else np.zeros_like(grads)
                if not denominator:
                    loss = np.array([np.nan])
            elif reduction == "sum":
                loss, grad = np.atleast_1d(losses.sum()), grads
            else:
                loss, grad = losses, grads
        fmt = "%.9g" if dt == np.float32 else "%.17g"
        np.savetxt(directory / case["outputs"]["loss"], np.atleast_2d(loss) if binary and loss.ndim == 2 else loss,
                   fmt=fmt, delimiter=",")
        if case["name"] != skip_grad_of:
            np.savetxt(directory / case["outputs"]["grad"], grad, fmt=fmt, delimiter=",")


OPTIONS = [
    [],
    ["--weight", "1,2,0.5,1,3", "--ignore-index", "-100", "--label-smoothing", "0.1"],
    ["--weight", "1,2,0.5,1,3", "--ignore-index", "-100", "--label-smoothing", "0.1", "--reduction", "none"],
    ["--targets", "prob", "--label-smoothing", "0.2", "--reduction", "sum"],
    ["--binary", "--weight", "1,0.5,2,1,1.5", "--pos-weight", "3,1,0.5,2,1"],
    ["--dtype", "float32", "--weight", "1,2,0.5,1,3", "--ignore-index", "-100"],
    ["--dtype", "float32", "--binary", "--pos-weight", "2"],
]


@pytest.mark.parametrize("options", OPTIONS, ids=[" ".join(o) or "default" for o in OPTIONS])
def test_an_implementation_written_from_readme_alone_passes(xent, tmp_path, options):
    out = tmp_path / "cases"
    assert xent("verify", "--export", out, *options).code == 0
    follow_readme(out)
    run = xent("verify", "--results", out, "--format", "json")
    report = run.json()
    assert run.code == 0, [(c["name"], c["error"], c["loss"], c["grad"]) for c in report["cases"]
                           if c["verdict"] == "fail"]
    assert report["checked"] == "loss and gradient"


def test_readme_states_what_the_issue_found_missing(xent, tmp_path):
    out = tmp_path / "cases"
    assert xent("verify", "--export", out, "--dtype", "float32", "--binary").code == 0
    readme = (out / "README.txt").read_text(encoding="utf-8")
    assert "Precision: float32" in readme and "float64" not in readme.split("Outputs")[0].split("Precision")[1]
    assert "N * C, the number of elements" in readme  # BCE's mean over N·C
    assert "When both exist, grad.npy is read and grad.csv ignored." in readme
    assert np.load(out / "random" / "logits.npy").dtype == np.float32
    out2 = tmp_path / "weighted"
    assert xent("verify", "--export", out2, "--weight", "1,2,0.5,1,3", "--label-smoothing", "0.1").code == 0
    readme = (out2 / "README.txt").read_text(encoding="utf-8")
    assert "eps / C" in readme and "w[t[n]]" in readme  # ε/C smoothing, the Σ w_y denominator


def test_float32_work_on_a_float64_battery_fails_and_accept_dtype_states_the_lower_bar(xent, tmp_path):
    out = tmp_path / "cases"
    assert xent("verify", "--export", out).code == 0
    follow_readme(out, dtype="float32")
    run = xent("verify", "--results", out, "--format", "json")
    assert run.code == 1
    assert "float32" in run.json()["diagnoses"][0]
    run = xent("verify", "--results", out, "--format", "json", "--accept-dtype", "float32")
    assert run.code == 0, run


def test_a_missing_gradient_for_one_case_fails_that_case_named(xent, tmp_path):
    out = tmp_path / "cases"
    assert xent("verify", "--export", out).code == 0
    follow_readme(out, skip_grad_of="ties")
    run = xent("verify", "--results", out, "--format", "json")
    assert run.code == 1
    [bad] = [c for c in run.json()["cases"] if c["verdict"] == "fail"]
    assert bad["name"] == "ties"
    assert bad["error"] == "no gradient: neither ties/grad.npy nor ties/grad.csv was written, but other cases have one"


def test_grad_npy_takes_precedence_over_grad_csv(xent, tmp_path):
    out = tmp_path / "cases"
    assert xent("verify", "--export", out).code == 0
    follow_readme(out)
    np.save(out / "random" / "grad.npy", np.zeros((8, 5)))  # wrong, and read instead of the right grad.csv
    run = xent("verify", "--results", out, "--format", "json")
    assert run.code == 1
    assert [c["name"] for c in run.json()["cases"] if c["verdict"] == "fail"] == ["random"]
