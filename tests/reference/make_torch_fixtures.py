"""Write tests/reference/torch_matrix.json: what PyTorch returns for every loss option combination.

Run from the repo root (needs torch and numpy; the test suite that reads the JSON does not need torch):

    python tests/reference/make_torch_fixtures.py

Every case is computed in float64 on the CPU; the loss is PyTorch's and the gradient is d loss / d logits
through the whole composite by autograd (of ``loss.sum()`` for reduction none). Each case draws its own
inputs from ``numpy.random.default_rng([SEED, index])``, so the file is the same on every run.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SEED = 20240611
N, C = 5, 4
SMOOTHING = 0.1
IGNORE = 1  # a real class index: samples whose target is 1 are ignored when ignore_index is given
OUT = Path(__file__).with_name("torch_matrix.json")


# ---------------------------------------------------------------- inputs


def draw_logits(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(0.0, 2.0, size=(N, C))


def draw_vector(rng: np.random.Generator) -> np.ndarray:
    """A weight or pos_weight vector of C values, uniform in [0.5, 2.5], 3 decimals."""
    return np.round(rng.uniform(0.5, 2.5, size=C), 3)


def draw_index_targets(rng: np.random.Generator) -> np.ndarray:
    """Class indices with at least one sample of class IGNORE and at least one of another class."""
    t = rng.integers(0, C, size=N)
    t[0] = IGNORE
    t[1] = rng.choice([k for k in range(C) if k != IGNORE])
    return t.astype(np.int64)


def draw_prob_targets(rng: np.random.Generator) -> np.ndarray:
    """Dirichlet rows; row 3 is one-hot, row 4 is scaled by 1.3 (it sums to 1.3)."""
    y = rng.dirichlet(np.ones(C), size=N)
    y[3] = np.eye(C)[rng.integers(0, C)]
    y[4] *= 1.3
    return y


def draw_kl_targets(rng: np.random.Generator) -> np.ndarray:
    """Dirichlet rows with exact zeros: row 0 has one zero, row 1 is one-hot; row 2 sums to 1.3."""
    y = rng.dirichlet(np.ones(C), size=N)
    y[0, rng.integers(0, C)] = 0.0
    y[0] /= y[0].sum()
    y[1] = np.eye(C)[rng.integers(0, C)]
    y[2] *= 1.3
    return y


def draw_binary_targets(rng: np.random.Generator) -> np.ndarray:
    """Values in [0, 1], the same shape as the logits: about 40% exact 0 or 1, the rest soft."""
    y = rng.uniform(0.0, 1.0, size=(N, C))
    hard = rng.uniform(size=(N, C)) < 0.4
    y[hard] = rng.integers(0, 2, size=(N, C))[hard].astype(float)
    y[0, 0], y[0, 1] = 0.0, 1.0
    return y


# ---------------------------------------------------------------- torch


def t64(a) -> torch.Tensor:
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def run(loss_fn, logits: np.ndarray, reduction: str):
    """Loss and d loss / d logits (of loss.sum() for reduction none) as numpy arrays."""
    z = t64(logits).requires_grad_(True)
    loss = loss_fn(z)
    (loss.sum() if reduction == "none" else loss).backward()
    return loss.detach().numpy(), z.grad.numpy()


def torch_ce(logits, target, reduction, weight, label_smoothing, ignore_index):
    tgt = torch.tensor(target) if target.dtype == np.int64 else t64(target)
    kw = {} if ignore_index is None else {"ignore_index": ignore_index}
    w = None if weight is None else t64(weight)

    def loss(z):
        return F.cross_entropy(z, tgt, weight=w, reduction=reduction, label_smoothing=label_smoothing, **kw)

    return run(loss, logits, reduction)


def torch_nll(logits, target, reduction, weight, ignore_index):
    tgt = torch.tensor(target)
    kw = {} if ignore_index is None else {"ignore_index": ignore_index}
    w = None if weight is None else t64(weight)

    def loss(z):
        return F.nll_loss(F.log_softmax(z, dim=1), tgt, weight=w, reduction=reduction, **kw)

    return run(loss, logits, reduction)


def torch_kl(logits, target, reduction):
    y = t64(target)

    def loss(z):
        return F.kl_div(F.log_softmax(z, dim=1), y, reduction=reduction, log_target=False)

    with warnings.catch_warnings():  # reduction 'mean' warns that it divides by N*C, not N
        warnings.simplefilter("ignore", UserWarning)
        return run(loss, logits, reduction)


def torch_bce(logits, target, reduction, weight, pos_weight):
    y = t64(target)
    w = None if weight is None else t64(weight)
    q = None if pos_weight is None else t64(pos_weight)

    def loss(z):
        return F.binary_cross_entropy_with_logits(z, y, weight=w, pos_weight=q, reduction=reduction)

    return run(loss, logits, reduction)


# ---------------------------------------------------------------- cases


def case(kind, targets, reduction, logits, target, loss, grad, *, weight=None, label_smoothing=0.0,
         ignore_index=None, pos_weight=None, suffix=(), id=None, note="", **extra):
    parts = [kind, *([targets] if kind == "ce" else []), reduction]
    parts += ["weight"] * (weight is not None) + ["posweight"] * (pos_weight is not None)
    parts += ["smooth"] * (label_smoothing != 0.0) + ["ignore"] * (ignore_index is not None) + list(suffix)
    return {
        "id": id or "-".join(parts), "kind": kind, "reduction": reduction, "targets": targets,
        "weight": weight, "label_smoothing": label_smoothing, "ignore_index": ignore_index,
        "pos_weight": pos_weight, "logits": logits, "target": target, "loss": loss, "grad": grad,
        "note": note, **extra,
    }


def ce_case(rng, targets, reduction, weighted, smoothing, ignore):
    logits = draw_logits(rng)
    target = draw_index_targets(rng) if targets == "index" else draw_prob_targets(rng)
    weight = draw_vector(rng) if weighted else None
    ignore_index = IGNORE if ignore else None
    loss, grad = torch_ce(logits, target, reduction, weight, smoothing, ignore_index)
    return case("ce", targets, reduction, logits, target, loss, grad, weight=weight,
                label_smoothing=smoothing, ignore_index=ignore_index)


def nll_case(rng, reduction, weighted, ignore):
    logits, target = draw_logits(rng), draw_index_targets(rng)
    weight = draw_vector(rng) if weighted else None
    ignore_index = IGNORE if ignore else None
    loss, grad = torch_nll(logits, target, reduction, weight, ignore_index)
    return case("nll", "index", reduction, logits, target, loss, grad, weight=weight, ignore_index=ignore_index)


def kl_case(rng, reduction):
    logits, target = draw_logits(rng), draw_kl_targets(rng)
    loss, grad = torch_kl(logits, target, reduction)
    return case("kl", "prob", reduction, logits, target, loss, grad)


def bce_case(rng, reduction, weighted, pos_weighted):
    logits, target = draw_logits(rng), draw_binary_targets(rng)
    weight = draw_vector(rng) if weighted else None
    pos_weight = draw_vector(rng) if pos_weighted else None
    loss, grad = torch_bce(logits, target, reduction, weight, pos_weight)
    return case("bce", "binary", reduction, logits, target, loss, grad, weight=weight, pos_weight=pos_weight)


def matrix():
    """Every valid combination: 36 ce + 12 nll + 4 kl + 12 bce, as (function, arguments) pairs."""
    reductions, flags = ("none", "sum", "mean"), (False, True)
    for ignore, r, w, s in itertools.product(flags, reductions, flags, (0.0, SMOOTHING)):
        yield ce_case, ("index", r, w, s, ignore)
    for r, w, s in itertools.product(reductions, flags, (0.0, SMOOTHING)):
        yield ce_case, ("prob", r, w, s, False)
    for r, w, ignore in itertools.product(reductions, flags, flags):
        yield nll_case, (r, w, ignore)
    for r in ("none", "sum", "mean", "batchmean"):
        yield kl_case, (r,)
    for r, w, q in itertools.product(reductions, flags, flags):
        yield bce_case, (r, w, q)


# ---------------------------------------------------------------- edge cases


def edge_ignore_all(rng, reduction):
    logits = draw_logits(rng)
    target = np.full(N, IGNORE, dtype=np.int64)
    loss, grad = torch_ce(logits, target, reduction, None, 0.0, IGNORE)
    assert np.all(grad == 0.0) and (math.isnan(loss) if reduction == "mean" else loss == 0.0), "the note below is wrong"
    note = {
        "mean": "every sample is ignored: PyTorch's mean is 0/0 = nan, and the gradient is exactly zero (not nan)",
        "sum": "every sample is ignored: PyTorch's sum is 0.0 and the gradient is exactly zero",
    }[reduction]
    return case("ce", "index", reduction, logits, target, loss, grad, ignore_index=IGNORE,
                id=f"edge-ce-index-{reduction}-ignore-all", note=note)


def edge_prob_onehot_weight(rng):
    logits = draw_logits(rng)
    classes = rng.integers(0, C, size=N)
    target = np.eye(C)[classes]
    weight = draw_vector(rng)
    loss, grad = torch_ce(logits, target, "mean", weight, 0.0, None)
    loss_sum, _ = torch_ce(logits, target, "sum", weight, 0.0, None)
    index_mean, _ = torch_ce(logits, classes.astype(np.int64), "mean", weight, 0.0, None)
    wsum = float(weight[classes].sum())
    note = (f"one-hot probability rows with weight and mean: PyTorch divides by N = {N} (denominator = sum/mean), "
            f"not by sum of w[target] = {wsum!r}; the same data as class indices gives mean {float(index_mean)!r}")
    return case("ce", "prob", "mean", logits, target, loss, grad, weight=weight, id="edge-ce-prob-mean-weight-onehot",
                note=note, denominator=float(loss_sum / loss), index_target_mean=float(index_mean))


def edge_kl_pair(rng):
    logits, target = draw_logits(rng), draw_kl_targets(rng)
    out = []
    for r, what in (("mean", f"N*C = {N * C}"), ("batchmean", f"N = {N}")):
        loss, grad = torch_kl(logits, target, r)
        loss_sum, _ = torch_kl(logits, target, "sum")
        note = (f"same inputs as the other edge-kl-*-same-inputs case: reduction {r} divides the elementwise sum "
                f"by {what} (denominator = sum/{r})")
        out.append(case("kl", "prob", r, logits, target, loss, grad, id=f"edge-kl-{r}-same-inputs",
                        note=note, denominator=float(loss_sum / loss)))
    return out


def edge_smooth_ignore_denominator(rng):
    logits, target, weight = draw_logits(rng), draw_index_targets(rng), draw_vector(rng)
    loss, grad = torch_ce(logits, target, "mean", weight, SMOOTHING, IGNORE)
    loss_sum, _ = torch_ce(logits, target, "sum", weight, SMOOTHING, IGNORE)
    kept = target != IGNORE
    wsum = float(weight[target[kept]].sum())
    # Check the claim of the note: mean = ((1 - eps) * weighted NLL sum + eps * smoothing sum) / wsum, where the
    # smoothing sum is sum over kept samples of -(1/C) * sum_c w_c log p_c (every class weight, not w[target]).
    nll_mean, _ = torch_ce(logits, target, "mean", weight, 0.0, IGNORE)
    logp = torch.log_softmax(t64(logits), dim=1).numpy()
    smooth_sum = float(-(logp[kept] * weight).sum() / C)
    assert math.isclose(loss, (1 - SMOOTHING) * nll_mean + SMOOTHING * smooth_sum / wsum, rel_tol=1e-13)
    note = (f"weight + label smoothing {SMOOTHING} + ignore_index {IGNORE} + mean: denominator = sum/mean; "
            f"sum of w[target] over the non-ignored samples is {wsum!r}, and both the NLL and the smoothing "
            f"term are divided by it")
    return case("ce", "index", "mean", logits, target, loss, grad, weight=weight, label_smoothing=SMOOTHING,
                ignore_index=IGNORE, id="edge-ce-index-mean-weight-smooth-ignore-denominator", note=note,
                denominator=float(loss_sum / loss), sum_weight_kept=wsum)


def edge_zero_target_neginf(rng, kind):
    logits = draw_logits(rng)
    logits[0, 2] = -math.inf
    if kind == "kl":
        target = draw_kl_targets(rng)
    else:
        target = draw_prob_targets(rng)
    target[0] = rng.dirichlet(np.ones(C))
    target[0, 2] = 0.0
    target[0] /= target[0].sum()
    if kind == "kl":
        loss, grad = torch_kl(logits, target, "none")
    else:
        loss, grad = torch_ce(logits, target, "none", None, 0.0, None)
    assert np.isnan(loss).sum() == 1 and np.all(np.isfinite(grad)) and grad[0, 2] == 0.0, "the note below is wrong"
    where = "element" if kind == "kl" else "row"
    note = (f"target 0 on a -inf logit (row 0, class 2): PyTorch computes 0 * -inf = nan for that {where}'s loss, "
            f"yet the gradient is finite everywhere (0 at the -inf logit)")
    return case(kind, "prob", "none", logits, target, loss, grad, id=f"edge-{kind}-none-zero-target-neginf-logit",
                note=note)


def edges():
    yield edge_ignore_all, ("mean",)
    yield edge_ignore_all, ("sum",)
    yield edge_prob_onehot_weight, ()
    yield edge_kl_pair, ()
    yield edge_smooth_ignore_denominator, ()
    yield edge_zero_target_neginf, ("kl",)
    yield edge_zero_target_neginf, ("ce",)


# ---------------------------------------------------------------- output


def plain(x):
    """Numpy values to JSON-able Python: floats keep repr precision; nan/inf become strings."""
    if isinstance(x, np.ndarray):
        return plain(x.tolist())
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return x
    return x


def dumps(doc) -> str:
    """JSON with one case field per line (compact values), so diffs stay readable."""
    dump = lambda v: json.dumps(plain(v), allow_nan=False)  # noqa: E731
    head = ",\n".join(f" {json.dumps(k)}: {dump(v)}" for k, v in doc.items() if k != "cases")
    cases = ",\n".join(
        "  {\n" + ",\n".join(f"   {json.dumps(k)}: {dump(v)}" for k, v in c.items()) + "\n  }" for c in doc["cases"]
    )
    return "{\n" + head + ',\n "cases": [\n' + cases + "\n ]\n}\n"


def build_cases() -> list:
    """Every case, in file order, each from its own seeded generator."""
    torch.set_num_threads(1)
    cases = []
    for index, (fn, args) in enumerate(itertools.chain(matrix(), edges())):
        made = fn(np.random.default_rng([SEED, index]), *args)
        cases.extend(made if isinstance(made, list) else [made])
    return cases


def main() -> None:
    cases = build_cases()
    ids = [c["id"] for c in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    doc = {
        "generated_by": "python tests/reference/make_torch_fixtures.py",
        "torch": torch.__version__,
        "numpy": np.__version__,
        "seed": SEED,
        "N": N,
        "C": C,
        "cases": cases,
    }
    text = dumps(doc)
    json.loads(text)  # must round-trip
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
