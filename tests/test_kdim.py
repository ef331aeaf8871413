"""K-dimensional inputs (N, C, d1, ..., dk): the library and ``xent compute`` against PyTorch's own
K-dimensional ``cross_entropy`` (autograd, float64)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from frameworks import require_torch

from xentcli.errors import XentInputError
from xentcli.numeric import evaluate
from xentcli.spec import LossSpec

pytestmark = pytest.mark.filterwarnings("ignore::xentcli.errors.XentWarning")

SHAPES = [(2, 3, 4), (2, 4, 3, 5), (1, 5, 2, 2, 3)]
OPTIONS = [{}, {"weight": (1.0, 2.0, 0.5, 3.0, 0.25)}, {"label_smoothing": 0.1}, {"ignore_index": 1},
           {"weight": (1.0, 2.0, 0.5, 3.0, 0.25), "ignore_index": 0, "label_smoothing": 0.2},
           {"z_loss": 0.01, "softcap": 4.0, "temperature": 0.8}]


def torch_k(z, y, spec):
    torch = require_torch()
    zt = torch.tensor(z, requires_grad=True)
    u = zt
    if spec.softcap is not None:
        u = spec.softcap * torch.tanh(u / spec.softcap)
    u = u / spec.temperature
    c = z.shape[1]
    weight = None if spec.weight is None else torch.tensor(spec.weight[:c], dtype=torch.float64)
    ignore = -100 if spec.ignore_index is None else spec.ignore_index
    yt = torch.tensor(y)
    loss = torch.nn.functional.cross_entropy(u, yt, weight=weight, reduction=spec.reduction,
                                             label_smoothing=float(spec.label_smoothing), ignore_index=ignore)
    if spec.has_z_loss:
        counted = (yt != ignore).double() if yt.dtype == torch.int64 else torch.ones(yt.shape[:1] + yt.shape[2:],
                                                                                     dtype=torch.float64)
        zl = spec.z_loss * torch.logsumexp(u, dim=1) ** 2 * counted
        loss = loss + (zl if spec.reduction == "none" else zl.sum() / counted.sum() if spec.reduction == "mean"
                       else zl.sum())
    loss.sum().backward()
    return loss.detach().numpy(), zt.grad.numpy()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("options", OPTIONS, ids=lambda d: ",".join(d) or "plain")
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("targets", ["index", "prob"])
def test_library_matches_torch(shape, options, reduction, targets):
    if targets == "prob" and "ignore_index" in options:
        pytest.skip("ignore_index applies to class indices")
    rng = np.random.default_rng(len(shape) * 7 + len(options))
    n, c, rest = shape[0], shape[1], shape[2:]
    opts = dict(options)
    if "weight" in opts:
        opts["weight"] = opts["weight"][:c]
    z = rng.normal(size=shape) * 4
    if targets == "index":
        y = rng.integers(0, c, (n, *rest))
        if "ignore_index" in opts:
            y.reshape(-1)[::3] = opts["ignore_index"]
    else:
        y = np.moveaxis(rng.dirichlet(np.ones(c), (n, *rest)), -1, 1)
    spec = LossSpec("ce", reduction, targets=targets, **opts)
    r = evaluate(spec, z, y)
    want, want_grad = torch_k(z, y, spec)
    assert r.grad.shape == shape and r.probs.shape == shape
    got = r.losses if reduction == "none" else r.loss
    if reduction == "none":
        assert r.losses.shape == (n, *rest)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(r.grad, want_grad, rtol=1e-12, atol=1e-14)


def test_nll_and_kl_take_k_dimensional_logits_too():
    torch = require_torch()
    rng = np.random.default_rng(3)
    z = rng.normal(size=(2, 3, 4))
    y = rng.integers(0, 3, (2, 4))
    r = evaluate(LossSpec("nll", "mean"), z, y)
    zt = torch.tensor(z, requires_grad=True)
    loss = torch.nn.functional.nll_loss(torch.log_softmax(zt, 1), torch.tensor(y))
    loss.backward()
    assert r.loss == pytest.approx(loss.item(), rel=1e-13)
    np.testing.assert_allclose(r.grad, zt.grad.numpy(), rtol=1e-12, atol=1e-15)
    p = np.moveaxis(rng.dirichlet(np.ones(3), (2, 4)), -1, 1)
    r = evaluate(LossSpec("kl", "batchmean"), z, p)
    zt = torch.tensor(z, requires_grad=True)
    loss = torch.nn.functional.kl_div(torch.log_softmax(zt, 1), torch.tensor(p), reduction="batchmean")
    loss.backward()
    assert r.loss == pytest.approx(loss.item(), rel=1e-13)
    np.testing.assert_allclose(r.grad, zt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_errors_name_k_dimensional_positions():
    z = np.zeros((2, 3, 4, 5))
    y = np.zeros((2, 4, 5), dtype=int)
    bad = z.copy()
    bad[1, 2, 3, 0] = np.nan
    with pytest.raises(XentInputError, match=r"logits\[1, 2, 3, 0\]"):
        evaluate(LossSpec("ce", "mean"), bad, y)
    y2 = y.copy()
    y2[1, 0, 4] = 9
    with pytest.raises(XentInputError, match=r"target\[1, 0, 4\]"):
        evaluate(LossSpec("ce", "mean"), z, y2)
    with pytest.raises(XentInputError, match=r"must have the shape \(2, 4, 5\)"):
        evaluate(LossSpec("ce", "mean"), z, np.zeros((2, 20), dtype=int))


def test_cli_reads_k_dimensional_npy(xent, tmp_path):
    rng = np.random.default_rng(5)
    z = rng.normal(size=(3, 4, 2, 6))
    y = rng.integers(0, 4, (3, 2, 6))
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    run = xent("compute", tmp_path / "z.npy", tmp_path / "y.npy", "--weight", "1,2,3,4", "--format", "json",
               "-o", tmp_path / "g.npy")
    assert run.code == 0, run
    doc = json.loads(run.stdout)
    want, want_grad = torch_k(z, y, LossSpec("ce", "mean", weight=(1.0, 2.0, 3.0, 4.0)))
    assert doc["loss"] == pytest.approx(float(want), rel=1e-13)
    assert doc["shape"] == [3, 4, 2, 6]
    np.testing.assert_allclose(np.array(doc["grad"]), want_grad, rtol=1e-13, atol=1e-16)
    np.testing.assert_array_equal(np.load(tmp_path / "g.npy"), np.array(doc["grad"]))


def test_cli_k_dimensional_errors(xent, tmp_path):
    z = np.zeros((2, 3, 4))
    z[1, 2, 3] = np.inf
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", np.zeros((2, 4), dtype=int))
    (tmp_path / "y.csv").write_text("0\n1\n")
    run = xent("compute", tmp_path / "z.npy", tmp_path / "y.npy")
    assert run.code == 2 and "z.npy: at [1, 2, 3]" in run.stderr and "Traceback" not in run.stderr
    run = xent("compute", tmp_path / "z.npy", tmp_path / "y.csv")
    assert run.code == 2 and "need .npy labels" in run.stderr
