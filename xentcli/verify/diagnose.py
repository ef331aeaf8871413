"""Name the mistake behind a failure: compare the implementation with models of known mistakes.

Each model recomputes what a specific, common mistake would return on the
same inputs (the gradient of the sum with the mean loss, probabilities
clipped to [eps, 1 - eps], softmax over the wrong axis, ...). When the
implementation's failing output matches a model, that mistake is named.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import numeric
from ..spec import LossSpec
from .runner import CaseResult, reference

CLIP_EPS = (1e-7, 1e-8, 1e-9, 1e-10, 1e-12, 1e-15)
_EXP_LIMIT = {"float64": 709.0, "float32": 88.0, "float16": 11.0}


Outputs = dict[str, np.ndarray]  # "loss" and/or "grad" as a mistake would return them
Candidate = tuple[Outputs, str]  # what a mistake returns, and its name


@dataclass(frozen=True)
class Model:
    key: str
    compute: Callable[[CaseResult, LossSpec, numeric.LossResult], list[Candidate]]


def _ce(case_logits: np.ndarray, case_targets: np.ndarray, options: LossSpec, **changes: object) -> numeric.LossResult:
    """The reference with some options changed (a model of a mistake)."""
    return numeric.evaluate(options.with_(dtype="float64", **changes), case_logits, case_targets, warn=False)


def _out(r: numeric.LossResult) -> Outputs:
    return {"loss": np.asarray(r.loss if r.loss is not None else r.losses, dtype=np.float64), "grad": r.grad}


def _scaled(ref: numeric.LossResult, loss_factor: float | None, grad_factor: float | None) -> Outputs:
    out: Outputs = {}
    if loss_factor is not None:
        out["loss"] = np.asarray(ref.loss if ref.loss is not None else ref.losses, dtype=np.float64) * loss_factor
    if grad_factor is not None:
        out["grad"] = ref.grad * grad_factor
    return out


def _n_rows(res: CaseResult) -> int:
    return res.case.shape[0]


# -------------------------------------------------------------------- models


def _batch_factor(res: CaseResult, options: LossSpec, ref: numeric.LossResult) -> list[Candidate]:
    out: list[Candidate] = []
    if options.reduction == "mean" and ref.denominator and ref.denominator != 1:
        d = ref.denominator
        out.append((_scaled(ref, None, d), "the gradient is off by the batch size (N times too large): it is the "
                    "gradient of the sum while the loss is the mean"))
        out.append((_scaled(ref, None, 1 / d), "the gradient is off by the batch size (N times too small): it is "
                    "divided by N twice"))
        out.append((_scaled(ref, d, None), "the loss is reported as the sum over the batch instead of the mean"))
        out.append((_scaled(ref, d, d), "the loss and the gradient are the sum over the batch, not the mean "
                    "(reduction sum computed where mean was asked)"))
    if options.reduction == "sum" and _n_rows(res) > 1:
        n = _n_rows(res)
        out.append((_scaled(ref, 1 / n, None), "the loss is reported as the mean instead of the sum"))
        out.append((_scaled(ref, None, 1 / n), "the gradient is divided by the batch size although the reduction "
                    "is sum"))
    return out


def _sign(res: CaseResult, options: LossSpec, ref: numeric.LossResult) -> list[Candidate]:
    return [
        (_scaled(ref, None, -1.0), "the gradient has the wrong sign (y − p instead of p − y)"),
        (_scaled(ref, -1.0, None), "the loss has the wrong sign (log p instead of −log p)"),
    ]


def _clipping(res: CaseResult, options: LossSpec, ref: numeric.LossResult) -> list[Candidate]:
    if options.kind not in ("ce", "nll"):  # models of the cross-entropy's loss
        return []
    out = []
    z = res.case.logits
    t = res.case.targets
    for eps in CLIP_EPS:
        p = numeric.softmax(z)
        logp = np.log(np.clip(p, eps, 1 - eps))
        r = _ce(z, t, options)
        # -sum_c a_c log clip(p_c): rebuild a from the reference gradient's definition via prob targets
        a = _effective_targets(res, options)
        with np.errstate(invalid="ignore"):
            losses = -np.sum(np.where(a > 0, a * logp, 0.0), axis=1)
        loss = losses if options.reduction == "none" else losses.sum()
        pc = np.clip(p, eps, 1 - eps)
        grad = pc * a.sum(axis=1, keepdims=True) - a
        if options.reduction == "mean":
            loss = loss / r.denominator
            grad = grad / r.denominator
        message = (f"clipping p to [ε, 1 − ε] (ε = {eps:g}, as in np.clip(p, eps, 1 - eps)) caps the loss of "
                   f"confident wrong predictions at −log ε = {-math.log(eps):.3g}")
        out.append(({"loss": np.asarray(loss, dtype=np.float64), "grad": grad}, message))
        out.append(({"loss": np.asarray(loss, dtype=np.float64)}, message))
    return out


def _effective_targets(res: CaseResult, options: LossSpec) -> np.ndarray:
    """a_ic = w_c ((1 - eps) y_ic + eps / C), with ignored rows all zero."""
    z = res.case.logits
    n, c = z.shape
    t = res.case.targets
    if options.targets == "prob":
        y = np.asarray(t, dtype=np.float64)
        valid = np.ones(n, dtype=bool)
    else:
        ii = options.ignore
        valid = t != ii
        y = np.zeros((n, c))
        y[np.nonzero(valid)[0], t[valid]] = 1.0
    eps = float(options.label_smoothing)  # type: ignore[arg-type]  # a numeric spec: no SYM
    a: np.ndarray = (1 - eps) * y + eps / c
    a[~valid] = 0.0
    if options.weight is not None:
        a = a * np.asarray(options.weight, dtype=np.float64)
    return a


def _unnormalised(res: CaseResult, options: LossSpec, ref: numeric.LossResult) -> list[Candidate]:
    if options.kind == "bce" or options.targets != "prob" or "unnormalised" not in res.case.tags:
        return []
    a = _effective_targets(res, options)
    p = numeric.softmax(res.case.logits)
    g = p - a
    if options.reduction == "mean":
        g = g / ref.denominator
    return [({"grad": g}, "the gradient p − y assumes targets that sum to 1; for these targets it is "
             "p·Σy − y")]


def _weighted_mean(res: CaseResult, options: LossSpec, ref: numeric.LossResult) -> list[Candidate]:
    if options.kind == "bce" or options.weight is None or options.reduction != "mean" or options.targets != "index":
        return []
    ii = options.ignore
    count = float(np.sum(res.case.targets != ii))
    if not count or not ref.denominator:
        return []
    f = ref.denominator / count
    return [(_scaled(ref, f, f), "the weighted mean is divided by the number of samples instead of the sum of "
             "their target weights (PyTorch divides by Σ w_{y_i})")]


def _smoothing(res: CaseResult, options: LossSpec, ref: numeric.LossResult) -> list[Candidate]:
    eps = float(options.label_smoothing)  # type: ignore[arg-type]  # a numeric spec: no SYM
    if options.kind == "bce" or not eps:
        return []
    z = res.case.logits
    n, c = z.shape
    if c < 2:
        return []
    out = []
    t = res.case.targets
    if options.targets == "prob":
        y = np.asarray(t, dtype=np.float64)
        valid = np.ones(n, dtype=bool)
    else:
        ii = options.ignore
        valid = t != ii
        y = np.zeros((n, c))
        y[np.nonzero(valid)[0], t[valid]] = 1.0
    for smoothed, why in (
        ((1 - eps) * y + eps / (c - 1) * (1 - y), "ε/(C−1) to each of the other classes"),
        ((1 - eps) * y + eps / (c - 1), "ε/(C−1) to every class"),
        (y * (1 - eps) + (1 - y) * eps / c, "ε/C to the other classes only"),
    ):
        smoothed = smoothed.copy()
        smoothed[~valid] = 0.0
        r = _ce(z, smoothed, options, reduction="sum", label_smoothing=0, targets="prob", ignore_index=None)
        d = (ref.denominator if options.reduction == "mean" else None) or 1.0
        model = _out(r) if options.reduction == "none" else {"loss": np.asarray(r.loss) / d, "grad": r.grad / d}
        out.append((model, f"label smoothing gives {why}; PyTorch mixes ε/C into every class: (1 − ε)y + ε/C"))
    r = _ce(z, t, options, label_smoothing=0)
    out.append((_out(r), "label smoothing is ignored"))
    return out


def _ignored(res: CaseResult, options: LossSpec, ref: numeric.LossResult) -> list[Candidate]:
    if options.ignore_index is None or options.targets != "index" or "ignored" not in res.case.tags:
        return []
    out = []
    n = _n_rows(res)
    if options.reduction == "mean" and ref.denominator:
        if options.weight is None:
            f = ref.denominator / n
            out.append((_scaled(ref, f, f), "ignored samples are counted in the mean's denominator"))
    if 0 <= options.ignore_index < res.case.shape[1]:
        r = _ce(res.case.logits, res.case.targets, options, ignore_index=None)
        out.append((_out(r), f"ignore_index={options.ignore_index} is not honoured: ignored samples contribute"))
    return out


def _wrong_axis(res: CaseResult, options: LossSpec, ref: numeric.LossResult) -> list[Candidate]:
    if options.kind not in ("ce", "nll"):  # models of the cross-entropy's loss
        return []
    z = res.case.logits
    if not np.isfinite(z).all():
        return []
    logp = z - numeric.logsumexp(z, axis=0)[None, :]
    a = _effective_targets(res, options)
    losses = -np.sum(a * logp, axis=1)
    loss = losses if options.reduction == "none" else losses.sum()
    grad = np.exp(logp) * a.sum(axis=1, keepdims=True) - a
    if options.reduction == "mean":
        loss = loss / ref.denominator
        grad = grad / ref.denominator
    message = "softmax is taken over the wrong axis (over the samples instead of the classes)"
    return [({"loss": np.asarray(loss, dtype=np.float64), "grad": grad}, message),
            ({"loss": np.asarray(loss, dtype=np.float64)}, message)]


def _weights_ignored(res: CaseResult, options: LossSpec, ref: numeric.LossResult) -> list[Candidate]:
    if options.weight is None:
        return []
    if options.kind == "bce":
        r = _ce(res.case.logits, res.case.targets, options, weight=None)
    else:
        r = _ce(res.case.logits, res.case.targets, options, weight=None)
    return [(_out(r), "the class weights are ignored")]


def _binary(res: CaseResult, options: LossSpec, ref: numeric.LossResult) -> list[Candidate]:
    if not options.kind == "bce":
        return []
    out = []
    if options.reduction == "mean":
        c = res.case.shape[1]
        if c > 1:
            out.append((_scaled(ref, c, c), f"the mean is divided by N instead of the number of elements N·C "
                        f"(PyTorch's BCE mean is over all {c}·N elements)"))
    if options.pos_weight is not None:
        r = _ce(res.case.logits, res.case.targets, options, pos_weight=None)
        out.append((_out(r), "pos_weight is ignored"))
    return out


MODELS = [
    Model("batch", _batch_factor),
    Model("sign", _sign),
    Model("clip", _clipping),
    Model("unnormalised", _unnormalised),
    Model("weighted-mean", _weighted_mean),
    Model("smoothing", _smoothing),
    Model("ignored", _ignored),
    Model("axis", _wrong_axis),
    Model("weights", _weights_ignored),
    Model("binary", _binary),
]


# -------------------------------------------------------------------- rules


def _nonfinite(res: CaseResult, options: LossSpec, ref: numeric.LossResult) -> str | None:
    """Explain non-finite outputs where the reference is finite (equal non-finite values are fine)."""
    want = {"loss": np.asarray(ref.loss if ref.loss is not None else ref.losses, dtype=np.float64), "grad": ref.grad}
    nan = posinf = False
    for key, got in (("loss", res.got_loss), ("grad", res.got_grad)):
        if got is None:
            continue
        try:
            g = np.asarray(got, dtype=np.float64)
        except (TypeError, ValueError):
            return None
        w = want[key]
        if g.shape != w.shape:
            if g.size == w.size == 1:
                g = g.reshape(w.shape)
            else:
                continue
        bad = ~np.isfinite(g) & np.isfinite(w)
        nan = nan or bool((bad & np.isnan(g)).any())
        posinf = posinf or (key == "loss" and bool((bad & np.isposinf(g)).any()))
    if not (nan or posinf):
        return None
    z = res.case.logits
    finite = z[np.isfinite(z)]
    limit = _EXP_LIMIT.get(options.dtype, 709.0)
    large = bool(finite.size) and float(np.max(np.abs(finite))) > limit
    if options.kind == "bce":
        if posinf and not nan:
            return ("log(sigmoid(x)) underflows for confident predictions: use log σ(x) = −softplus(−x), "
                    "i.e. max(x, 0) − x·y + log1p(exp(−|x|)), as binary_cross_entropy_with_logits does")
        if large:
            return ("overflow or NaN at large logits: exp(−x) overflows in 1/(1 + exp(−x)); use the stable form "
                    "max(x, 0) − x·y + log1p(exp(−|x|))")
        return None
    if nan and large:
        return ("overflow or NaN at large logits: softmax is not shifted by the max (exp(z) overflows; subtract "
                "max(z) first: p = exp(z − max z) / Σ exp(z − max z))")
    if posinf:
        return ("the log of softmax underflows: log(p) is −inf when p rounds to 0 for a confident wrong "
                "prediction; compute log_softmax(z) = z − logsumexp(z) instead of log(softmax(z))")
    if "masked" in res.case.tags:
        return "NaN with masked (−inf) logits: 0·log 0 or −inf − (−inf) is not handled"
    if large:
        return ("overflow or NaN at large logits: softmax is not shifted by the max (exp(z) overflows; subtract "
                "max(z) first: p = exp(z − max z) / Σ exp(z − max z))")
    return None


def _matches(got: np.ndarray, model: np.ndarray, rtol: float, atol: float) -> bool:
    """Does the output match a mistake model, relative to the model's own scale (no absolute floor)?"""
    model = np.asarray(model, dtype=np.float64)
    if got.shape != model.shape:
        if got.size == model.size == 1:
            got = got.reshape(model.shape)
        else:
            return False
    if not (np.isfinite(got).all() and np.isfinite(model).all()):
        return False
    scale = float(np.max(np.abs(model))) if model.size else 0.0
    return bool(np.all(np.abs(got - model) <= rtol * np.abs(model) + atol * scale))


def _distance(a: Any, b: Any) -> float:
    """Largest difference relative to the scale of ``b``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        a = a.reshape(b.shape) if a.size == b.size else a
    if a.shape != b.shape:
        return np.inf
    scale = float(np.max(np.abs(b))) if b.size else 1.0
    return float(np.max(np.abs(a - b))) / (scale or 1.0) if b.size else 0.0


def diagnose(res: CaseResult, options: LossSpec) -> str | None:
    """One line naming the mistake behind a failing case, or ``None`` when none matches.

    A mistake is named only when its model reproduces the failing output and
    differs from the reference on this case. Models that explain every failing
    output (loss and gradient) win over models of one output; a model of one
    output is only used when the other output passes.
    """
    if res.passed or res.error:
        return None
    ref = reference(res.case, options)
    rule = _nonfinite(res, options, ref)
    if rule:
        return rule
    rtol = max(res.rtol, 1e-6)
    atol = max(res.atol, 1e-9)
    got = {"loss": res.got_loss, "grad": res.got_grad}
    want = {"loss": np.asarray(ref.loss if ref.loss is not None else ref.losses, dtype=np.float64), "grad": ref.grad}
    failing = {k for k, comp in (("loss", res.loss), ("grad", res.grad)) if comp is not None and not comp.passed}
    candidates = []
    for model in MODELS:
        try:
            candidates += model.compute(res, options, ref)
        except (ValueError, ZeroDivisionError, FloatingPointError):
            continue
    for full in (True, False):
        for outputs, message in candidates:
            keys = [k for k in outputs if got.get(k) is not None]
            if not keys:
                continue
            if full and not failing <= set(keys):
                continue
            if not full and (not set(keys) <= failing or not set(keys) & failing):
                continue
            if all(_matches(np.asarray(want[k], dtype=np.float64), outputs[k], res.rtol, res.atol) for k in keys):
                continue  # the model is indistinguishable from the reference here: it explains nothing
            if not all(_matches(np.asarray(got[k], dtype=np.float64), outputs[k], rtol, atol) for k in keys):
                continue
            # The model must explain the deviation, not just sit inside a loose tolerance: the output is
            # much closer to the mistake than to the reference.
            off_ref = max(_distance(got[k], want[k]) for k in keys)
            off_model = max(_distance(got[k], outputs[k]) for k in keys)
            if off_model <= 0.05 * off_ref:
                return message
    return None
