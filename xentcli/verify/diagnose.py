"""Name the mistake behind failures by simulation, or say that it is not recognised and show the evidence.

Each known mistake is a :class:`Model`: a function that computes, from the
inputs the implementation was handed, what code with that mistake returns
(the gradient of the sum with the mean loss, probabilities clipped to
[eps, 1 - eps], softmax over the samples, exp(z) without the max subtracted,
evaluated in the inputs' dtype so that it overflows where such code
overflows, ...). A mistake is named for a failing case only when its model
reproduces every output the implementation returned on that case: the same
non-finite values (NaN, +inf, -inf) in the same places and the finite ones
within the accuracy bounds, while the model itself differs from the reference
there. A model must also agree with the cases the implementation passed.
Across the report, the model that reproduces the most failing cases is named
first, and so on; a failing case that no model reproduces is "not recognised",
with the evidence: which quantity, where, how large, and the pattern of the
error (a constant factor, a shifted column, some rows only, ...).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import numeric
from ..spec import LossSpec
from .accuracy import UNIT_ROUNDOFF, Bounds, bounds, dtype_rank
from .battery import handed
from .lm import LmView, lm_view
from .runner import CaseResult, reference

__all__ = ["CLIP_EPS", "MODELS", "Model", "diagnose", "evidence"]

# Clipping constants seen in the wild: Keras (1e-7), hand-written code, and each dtype's machine epsilon
# (scikit-learn's log_loss clips at np.finfo(dtype).eps).
CLIP_EPS = (1e-7, 1e-8, 1e-9, 1e-10, 1e-12, 1e-15, float(np.finfo(np.float64).eps),
            float(np.finfo(np.float32).eps), float(np.finfo(np.float16).eps))
ROUNDING_CAP = 0.05  # a precision diagnosis explains relative errors up to this, never wrong values
SLACK = 4.0  # a model matches within SLACK times the accuracy bound (it is evaluated in float64)


@dataclass
class Sim:
    """What a mistake returns on one case, in float64 with the reference's shapes."""

    loss: np.ndarray
    grad: np.ndarray


class Ctx:
    """One case, the inputs as handed over, its reference and what models need of it."""

    def __init__(self, res: CaseResult, options: LossSpec):
        self.res = res
        self.options = options
        # bfloat16 inputs are computed in float32 (PyTorch's CPU path): the models' arithmetic dtype
        self.dtype = "float32" if options.dtype == "bfloat16" else options.dtype
        self.dt = np.dtype(self.dtype)
        case = res.case
        z, t = handed(case, options)
        self.z = z.astype(np.float64)
        self.t = t.astype(np.float64) if t.dtype.kind == "f" else t
        self.ref = reference(case, options, self.z, self.t)
        self.n, self.c = self.z.shape
        self._a: np.ndarray | None = None
        self._bounds: dict[str, Bounds] = {}

    @property
    def a(self) -> np.ndarray:
        if self._a is None:
            self._a = numeric.effective_targets(self.options, self.z, self.t)
        return self._a

    @property
    def p(self) -> np.ndarray:
        return np.asarray(self.ref.probs, dtype=np.float64)

    @property
    def denominator(self) -> float | None:
        """What the mean divides by (None for none and sum)."""
        if self.options.reduction in ("mean", "batchmean"):
            return self.ref.denominator
        return None

    @property
    def ref_loss(self) -> np.ndarray:
        return np.asarray(self.ref.loss if self.ref.loss is not None else self.ref.losses, dtype=np.float64)

    @property
    def ref_grad(self) -> np.ndarray:
        return np.asarray(self.ref.grad, dtype=np.float64)

    def bounds(self, dtype: str | None = None) -> Bounds:
        dtype = dtype or self.res.bar
        if dtype not in self._bounds:
            self._bounds[dtype] = bounds(self.options, self.z, self.t, self.ref, dtype)
        return self._bounds[dtype]

    def evaluate(self, targets: Any = None, logits: Any = None, **changes: Any) -> numeric.LossResult:
        """The reference with some options changed (the semantics stay LossSpec's)."""
        spec = self.options.with_(dtype="float64", **changes)
        z = self.z if logits is None else logits
        return numeric.evaluate(spec, z, self.t if targets is None else targets, warn=False)

    def sim_of(self, r: numeric.LossResult) -> Sim:
        return Sim(np.asarray(r.loss if r.loss is not None else r.losses, dtype=np.float64),
                   np.asarray(r.grad, dtype=np.float64))

    def reduce(self, per_sample: np.ndarray, grad_sum: np.ndarray, denominator: float | None = None) -> Sim:
        """The spec's reduction of per-sample (elementwise) losses and of the gradient of their sum."""
        if self.options.reduction == "none":
            return Sim(per_sample, grad_sum)
        total = np.sum(per_sample)
        d = self.denominator if denominator is None else denominator
        if self.options.reduction == "sum" or d is None:
            return Sim(np.asarray(total), grad_sum)
        with np.errstate(all="ignore"):
            return Sim(np.asarray(total / d), grad_sum / d)

    def prob_loss(self, a: np.ndarray, logp: np.ndarray, safe: bool = True) -> np.ndarray:
        """-sum_c a_c log p_c per sample (``safe``: a zero target is a zero term, also at log p = -inf)."""
        with np.errstate(all="ignore"):
            terms = np.where(a != 0, a * logp, 0.0) if safe else a * logp
            out: np.ndarray = -np.sum(terms, axis=1)
        return out


@dataclass(frozen=True)
class Model:
    """A known mistake: its name, the diagnosis, and what code with it returns on a case."""

    key: str
    message: str
    simulate: Callable[[Ctx], Sim | None]
    precision: str | None = None  # "float32"/"float16": reproduces an accuracy level, not values


# ------------------------------------------------------------------ models: scaling and reduction


def _scaled(loss_f: float, grad_f: float) -> Callable[[Ctx], Sim | None]:
    def sim(ctx: Ctx) -> Sim:
        return Sim(ctx.ref_loss * loss_f, ctx.ref_grad * grad_f)
    return sim


def _by_denominator(loss_pow: int, grad_pow: int) -> Callable[[Ctx], Sim | None]:
    def sim(ctx: Ctx) -> Sim | None:
        d = ctx.denominator
        if ctx.options.reduction != "mean" or not d or d == 1:
            return None
        return Sim(ctx.ref_loss * d**loss_pow, ctx.ref_grad * d**grad_pow)
    return sim


def _by_rows(loss_pow: int, grad_pow: int, reduction: str) -> Callable[[Ctx], Sim | None]:
    def sim(ctx: Ctx) -> Sim | None:
        if ctx.options.reduction != reduction or ctx.n == 1:
            return None
        return Sim(ctx.ref_loss * float(ctx.n) ** loss_pow, ctx.ref_grad * float(ctx.n) ** grad_pow)
    return sim


def _by_classes(loss_pow: int, grad_pow: int, when: Callable[[LossSpec], bool]) -> Callable[[Ctx], Sim | None]:
    def sim(ctx: Ctx) -> Sim | None:
        if not when(ctx.options) or ctx.c == 1:
            return None
        return Sim(ctx.ref_loss * float(ctx.c) ** loss_pow, ctx.ref_grad * float(ctx.c) ** grad_pow)
    return sim


# ------------------------------------------------------------------ models: options


def _index_rows(ctx: Ctx) -> tuple[np.ndarray, np.ndarray]:
    """One-hot rows of the class indices (zero for ignored samples) and the mask of the counted ones."""
    t = np.asarray(ctx.t)
    valid = t != ctx.options.ignore
    y = np.zeros((ctx.n, ctx.c))
    y[np.nonzero(valid)[0], t[valid].astype(np.int64)] = 1.0
    return y, valid


def _weights(ctx: Ctx) -> np.ndarray:
    w = ctx.options.weight
    if w is None:
        return np.ones(ctx.c)
    arr = np.array([float(v) for v in w], dtype=np.float64)  # type: ignore[union-attr]
    return np.repeat(arr, ctx.c) if arr.shape[0] == 1 and ctx.c != 1 else arr


def _weights_ignored(ctx: Ctx) -> Sim | None:
    if ctx.options.weight is None:
        return None
    return ctx.sim_of(ctx.evaluate(weight=None))


def _weights_in_grad_only(ctx: Ctx) -> Sim | None:
    if ctx.options.weight is None:
        return None
    return Sim(ctx.sim_of(ctx.evaluate(weight=None)).loss, ctx.ref_grad)


def _weights_in_loss_only(ctx: Ctx) -> Sim | None:
    if ctx.options.weight is None:
        return None
    return Sim(ctx.ref_loss, ctx.sim_of(ctx.evaluate(weight=None)).grad)


def _weighted_mean_over_n(ctx: Ctx) -> Sim | None:
    o = ctx.options
    if o.family != "softmax" or o.weight is None or o.reduction != "mean" or o.targets != "index":
        return None
    _, valid = _index_rows(ctx)
    count = float(valid.sum())
    d = ctx.denominator
    if not count or not d:
        return None
    return Sim(ctx.ref_loss * d / count, ctx.ref_grad * d / count)


def _smoothed(kind: str) -> Callable[[Ctx], Sim | None]:
    def sim(ctx: Ctx) -> Sim | None:
        o = ctx.options
        eps = float(o.label_smoothing)  # type: ignore[arg-type]  # a numeric spec: no SYM
        if o.family != "softmax" or not eps or ctx.c < 2:
            return None
        c = ctx.c
        if o.targets == "prob":
            y, valid = np.asarray(ctx.t, dtype=np.float64), np.ones(ctx.n, dtype=bool)
        else:
            y, valid = _index_rows(ctx)
        if kind == "other-c-1":
            s = (1 - eps) * y + eps / (c - 1) * (1 - y)
        elif kind == "every-c-1":
            s = (1 - eps) * y + eps / (c - 1)
        elif kind == "other-c":
            s = y * (1 - eps) + (1 - y) * eps / c
        else:  # "target-only": eps / C added to the target class only
            s = y * (1 - eps + eps / c)
        s[~valid] = 0.0
        r = numeric.evaluate(o.with_(dtype="float64", reduction="sum", label_smoothing=0, targets="prob",
                                     ignore_index=None), ctx.z, s, warn=False)
        per = np.asarray(r.losses, dtype=np.float64)
        return ctx.reduce(per, np.asarray(r.grad, dtype=np.float64))
    return sim


def _smoothing_ignored(ctx: Ctx) -> Sim | None:
    if ctx.options.family != "softmax" or not ctx.options.smoothing:
        return None
    return ctx.sim_of(ctx.evaluate(label_smoothing=0))


def _ignored_counted(ctx: Ctx) -> Sim | None:
    o = ctx.options
    if o.ignore_index is None or o.targets != "index" or o.reduction != "mean" or o.weight is not None:
        return None
    d = ctx.denominator
    if d is None:
        return None
    _, valid = _index_rows(ctx)
    if valid.all():
        return None
    if not d:  # every sample ignored: the sum (0) divided by N
        return Sim(np.asarray(0.0), np.zeros_like(ctx.ref_grad))
    f = d / ctx.n
    return Sim(ctx.ref_loss * f, ctx.ref_grad * f)


def _ignore_not_honoured(ctx: Ctx) -> Sim | None:
    o = ctx.options
    if o.ignore_index is None or o.targets != "index" or not 0 <= o.ignore_index < ctx.c:
        return None
    return ctx.sim_of(ctx.evaluate(ignore_index=None))


def _labels_shifted(shift: int) -> Callable[[Ctx], Sim | None]:
    def sim(ctx: Ctx) -> Sim | None:
        if ctx.options.targets != "index":
            return None
        t = np.asarray(ctx.t)
        valid = t != ctx.options.ignore
        moved = t.copy()
        moved[valid] = (t[valid] + shift) % ctx.c  # NumPy's index -1 is the last class
        return ctx.sim_of(ctx.evaluate(targets=moved))
    return sim


def _unnormalised(ctx: Ctx) -> Sim | None:
    o = ctx.options
    if o.family != "softmax" or o.targets != "prob":
        return None
    a = ctx.a
    if np.allclose(a.sum(axis=1), 1.0, rtol=1e-12, atol=0):
        return None
    g = ctx.p - a
    d = ctx.denominator
    return Sim(ctx.ref_loss, g / d if d else g)


def _wrong_axis(ctx: Ctx) -> Sim | None:
    o = ctx.options
    if o.family != "softmax" or ctx.n < 2:
        return None
    with np.errstate(all="ignore"):
        logp = ctx.z - numeric.logsumexp(ctx.z, axis=0)[None, :]
        a = ctx.a
        per = ctx.prob_loss(a, logp)
        grad = np.exp(logp) * a.sum(axis=1, keepdims=True) - a
    return ctx.reduce(per, grad)


def _other_targets_kind(ctx: Ctx) -> Sim | None:
    """Code written for probability rows, handed class indices: the N indices broadcast along a row."""
    o = ctx.options
    if o.family != "softmax" or o.targets != "index" or ctx.n not in (1, ctx.c):
        return None
    a = np.broadcast_to(np.asarray(ctx.t, dtype=np.float64)[None, :], (ctx.n, ctx.c)).copy()
    with np.errstate(all="ignore"):
        logp = ctx.z - numeric.logsumexp(ctx.z)[:, None]
        per = ctx.prob_loss(a, logp)
        grad = ctx.p * a.sum(axis=1, keepdims=True) - a
    return ctx.reduce(per, grad, float(ctx.n))


def _clipped(eps: float, form: str) -> Callable[[Ctx], Sim | None]:
    """Probabilities clipped to [eps, 1 - eps] before the log (the loss; the gradient per ``form``)."""
    def sim(ctx: Ctx) -> Sim | None:
        o = ctx.options
        if o.family != "softmax" or o.kind == "kl":
            return None
        a = ctx.a
        p = np.clip(ctx.p, eps, 1 - eps)
        if form == "renormalised":  # scikit-learn's log_loss before 1.5: clip, then divide by the row sum
            p = p / p.sum(axis=1, keepdims=True)
        with np.errstate(all="ignore"):
            per = ctx.prob_loss(a, np.log(p))
        s = a.sum(axis=1, keepdims=True)
        grad = p * s - a if form == "grad" else ctx.ref_grad * (ctx.denominator or 1.0)
        return ctx.reduce(per, grad)
    return sim


# ------------------------------------------------------------------ models: language-model options


def _lm(ctx: Ctx, option: str) -> LmView | None:
    """The case's language-model view, when ``option`` (z_loss, softcap, temperature) is on."""
    o = ctx.options
    on = {"z_loss": o.has_z_loss, "softcap": o.softcap is not None, "temperature": o.has_temperature}[option]
    return lm_view(o, ctx.z, ctx.t) if o.kind == "ce" and on else None


def _z_loss_without_2(ctx: Ctx) -> Sim | None:
    """The z-loss's value right, its gradient lambda lse p (one factor of lse^2 held constant)."""
    if _lm(ctx, "z_loss") is None:
        return None
    half = ctx.evaluate(z_loss=float(ctx.options.z_loss) / 2)  # type: ignore[arg-type]
    return Sim(ctx.ref_loss, np.asarray(half.grad, dtype=np.float64))


def _z_loss_parts(ctx: Ctx, view: LmView, per_z: np.ndarray, grad_z_u: np.ndarray, denominator: float | None
                  ) -> Sim:
    """The cross-entropy without a z-loss plus a z-loss term of one's own: per-sample values ``per_z`` and
    the gradient of their sum with respect to u, reduced over ``denominator`` (mean), chained to z."""
    ce = ctx.evaluate(z_loss=0)
    ce_loss = np.asarray(ce.loss if ce.loss is not None else ce.losses, dtype=np.float64)
    grad_z = grad_z_u * view.chain
    if ctx.options.reduction == "none":
        return Sim(ce_loss + per_z, np.asarray(ce.grad, dtype=np.float64) + grad_z)
    d = denominator if ctx.options.reduction == "mean" and denominator else 1.0
    return Sim(ce_loss + np.sum(per_z) / d, np.asarray(ce.grad, dtype=np.float64) + grad_z / d)


def _z_loss_on_lse(ctx: Ctx) -> Sim | None:
    """lambda lse per counted sample instead of lambda lse^2: the gradient lambda p."""
    view = _lm(ctx, "z_loss")
    if view is None:
        return None
    m = view.counted.astype(np.float64)
    per_z = view.lam * view.lse * m
    return _z_loss_parts(ctx, view, per_z, view.lam * m[:, None] * view.probs, float(m.sum()))


def _z_loss_counts_ignored(ctx: Ctx) -> Sim | None:
    """The z-loss added for every sample, ignored ones too, and its mean taken over all N samples."""
    view = _lm(ctx, "z_loss")
    if view is None or ctx.options.targets != "index" or view.counted.all():
        return None
    per_z = view.lam * view.lse**2
    return _z_loss_parts(ctx, view, per_z, 2.0 * view.lam * view.lse[:, None] * view.probs, float(ctx.n))


def _softcap_after_softmax(ctx: Ctx) -> Sim | None:
    """The cap applied to the probabilities instead of the logits, as this code does (autograd for the
    gradient; the z-loss, if any, of the uncapped logits)::

        p = softmax(z / T);  q = c * tanh(p / c);  loss = -sum(a * log(q)) + lambda * lse(z / T)**2
    """
    o = ctx.options
    if _lm(ctx, "softcap") is None:
        return None
    cap, temp = float(o.softcap), float(o.temperature)  # type: ignore[arg-type]
    x = ctx.z / temp
    dt = ctx.dt
    with np.errstate(all="ignore"):
        xs = x.astype(dt)  # the softmax in the inputs' dtype: where p underflows to 0, log q is -inf
        e = np.exp(xs - xs.max(axis=1, keepdims=True))
        p = (e / e.sum(axis=1, keepdims=True, dtype=dt)).astype(np.float64)
        q = cap * np.tanh(p / cap)
        a = ctx.a
        per = ctx.prob_loss(a, np.log(q))
        # d/dq of -a log q, through q = c tanh(p/c), then the softmax's Jacobian
        v = np.where(a != 0, -a / q, 0.0) * (1.0 - np.tanh(p / cap) ** 2)
        grad_x = p * (v - np.sum(v * p, axis=1, keepdims=True))
        grad_x[np.any(q == 0, axis=1)] = np.nan  # autograd of log q at q = 0: 0/0 fills the row
        lse = numeric.logsumexp(x, axis=1)
    ce = ctx.reduce(per, grad_x / temp)
    if not o.has_z_loss:
        return ce
    plain = lm_view(o.with_(softcap=None), ctx.z, ctx.t)  # the z-loss of the uncapped logits
    m = plain.counted.astype(np.float64)
    lam = plain.lam
    per_z = lam * lse**2 * m
    grad_z = 2.0 * lam * (lse * m)[:, None] * plain.probs / temp
    if o.reduction == "none":
        return Sim(ce.loss + per_z, ce.grad + grad_z)
    dz = float(m.sum()) if o.reduction == "mean" and m.sum() else 1.0
    return Sim(ce.loss + np.sum(per_z) / dz, ce.grad + grad_z / dz)


def _softcap_without_derivative(ctx: Ctx) -> Sim | None:
    """The cap's value used, its derivative tanh' = 1 - tanh^2(z/c) left out of the gradient."""
    view = _lm(ctx, "softcap")
    if view is None:
        return None
    return Sim(ctx.ref_loss, view.grad_u / float(ctx.options.temperature))  # type: ignore[arg-type]


def _temperature_not_in_gradient(ctx: Ctx) -> Sim | None:
    """The logits divided by T in the loss, the gradient without the factor 1/T."""
    if _lm(ctx, "temperature") is None:
        return None
    return Sim(ctx.ref_loss, ctx.ref_grad * float(ctx.options.temperature))  # type: ignore[arg-type]


def _option_ignored(option: str, off: object) -> Callable[[Ctx], Sim | None]:
    def sim(ctx: Ctx) -> Sim | None:
        if _lm(ctx, option) is None:
            return None
        return ctx.sim_of(ctx.evaluate(**{option: off}))
    return sim


# ------------------------------------------------------------------ models: binary cross-entropy


def _bce_terms(ctx: Ctx) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = ctx.z, np.asarray(ctx.t, dtype=np.float64)
    w = _weights(ctx)
    q = np.ones(ctx.c) if ctx.options.pos_weight is None else np.array(
        [float(v) for v in ctx.options.pos_weight], dtype=np.float64)  # type: ignore[union-attr]
    if q.shape[0] == 1:
        q = np.repeat(q, ctx.c)
    return x, y, w, q


def _bce_pos_weight_negative(ctx: Ctx) -> Sim | None:
    if ctx.options.family != "sigmoid" or ctx.options.pos_weight is None:
        return None
    x, y, w, q = _bce_terms(ctx)
    with np.errstate(all="ignore"):
        sp_pos, sp_neg = np.logaddexp(0, -x), np.logaddexp(0, x)
        sig = np.asarray(ctx.ref.probs, dtype=np.float64)
        loss = w * (y * sp_pos + q * (1 - y) * sp_neg)
        grad = w * (q * (1 - y) * sig - y * (1 - sig))
    return ctx.reduce(loss, grad)


def _pos_weight_ignored(ctx: Ctx) -> Sim | None:
    if ctx.options.family != "sigmoid" or ctx.options.pos_weight is None:
        return None
    return ctx.sim_of(ctx.evaluate(pos_weight=None))


def _bce_clipped(eps: float) -> Callable[[Ctx], Sim | None]:
    def sim(ctx: Ctx) -> Sim | None:
        if ctx.options.family != "sigmoid":
            return None
        x, y, w, q = _bce_terms(ctx)
        s = np.clip(np.asarray(ctx.ref.probs, dtype=np.float64), eps, 1 - eps)
        with np.errstate(all="ignore"):
            loss = -w * (q * y * np.log(s) + (1 - y) * np.log(1 - s))
        return ctx.reduce(loss, ctx.ref_grad * (ctx.denominator or 1.0))
    return sim


def _bce_naive(grad_form: str) -> Callable[[Ctx], Sim | None]:
    """s = 1 / (1 + exp(-x)) in the inputs' dtype, then -[y log s + (1 - y) log(1 - s)]."""
    def sim(ctx: Ctx) -> Sim | None:
        if ctx.options.family != "sigmoid":
            return None
        x, y, w, q = _bce_terms(ctx)
        dt = ctx.dt
        with np.errstate(all="ignore"):
            xs = x.astype(dt)
            s = (dt.type(1) / (dt.type(1) + np.exp(-xs))).astype(np.float64)
            loss = -w * (q * y * np.log(s) + (1 - y) * np.log(1 - s))
            grad = w * ((1 - y) * s - q * y * (1 - s)) if grad_form == "closed" else ctx.ref_grad * (
                ctx.denominator or 1.0)
        return ctx.reduce(loss, grad)
    return sim


# ------------------------------------------------------------------ models: numerics in the inputs' dtype


def _softmax_forms(ctx: Ctx, form: str) -> tuple[np.ndarray, np.ndarray]:
    """(p, log p) as code of a given form computes them in the inputs' dtype, as float64."""
    dt = ctx.dt
    z = ctx.z.astype(dt)
    with np.errstate(all="ignore"):
        if form == "unshifted":  # exp(z) / sum(exp(z)), log of it
            e = np.exp(z)
            p = e / e.sum(axis=1, keepdims=True, dtype=dt)
            logp = np.log(p)
        elif form == "unshifted-lse":  # z - log(sum(exp(z)))
            lse = np.log(np.exp(z).sum(axis=1, keepdims=True, dtype=dt))
            logp = z - lse
            p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True, dtype=dt)
        else:  # "log-of-softmax": a shifted softmax, then its log
            e = np.exp(z - z.max(axis=1, keepdims=True))
            p = e / e.sum(axis=1, keepdims=True, dtype=dt)
            logp = np.log(p)
    return p.astype(np.float64), logp.astype(np.float64)


def _numeric(form: str, loss_form: str, grad_form: str) -> Callable[[Ctx], Sim | None]:
    """Cross-entropy computed from ``form``'s p and log p: the loss as a gather or a dense product, the
    gradient in closed form, by autograd through log(p), or right."""
    def sim(ctx: Ctx) -> Sim | None:
        o = ctx.options
        if o.family != "softmax":
            return None
        if loss_form == "gather" and (o.targets != "index" or o.smoothing):
            return None
        if o.kind == "kl" and o.reduction == "none":
            return None  # elementwise KL terms: these per-sample models do not apply
        p, logp = _softmax_forms(ctx, form)
        a = ctx.a
        with np.errstate(all="ignore"):
            per = ctx.prob_loss(a, logp, safe=loss_form != "dense")
            if o.kind == "kl":
                ylogy = np.where(a > 0, a * np.log(np.where(a > 0, a, 1.0)), 0.0)
                per = per + ylogy.sum(axis=1)
            s = a.sum(axis=1, keepdims=True)
            if grad_form == "closed":
                grad = p * s - a
            elif grad_form == "autograd-log":  # d log p / dp = 1/p: 0 * inf = NaN on a row with p = 0
                grad = p * s - a
                grad[np.any(p == 0, axis=1) | np.any(~np.isfinite(p), axis=1)] = np.nan
            else:
                grad = ctx.ref_grad * (ctx.denominator or 1.0)
        return ctx.reduce(per, grad)
    return sim


def _overflow_in_dtype(ctx: Ctx) -> Sim | None:
    """PyTorch's smoothing term sum_c -w_c log p_c accumulated in the inputs' dtype (float16 overflows)."""
    o = ctx.options
    if o.family != "softmax" or not o.smoothing or o.kind != "ce":
        return None
    dt = ctx.dt
    eps = float(o.label_smoothing)  # type: ignore[arg-type]
    with np.errstate(all="ignore"):
        z = ctx.z.astype(dt)
        shifted = z - z.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True, dtype=dt))
        w = _weights(ctx).astype(dt)
        smooth = np.sum(-(w * logp), axis=1, dtype=dt).astype(np.float64)
        if o.targets == "index":
            y, valid = _index_rows(ctx)
            nll = -np.sum(np.where(y > 0, w.astype(np.float64) * logp.astype(np.float64), 0.0), axis=1)
            smooth = np.where(valid, smooth, 0.0)
        else:
            y = np.asarray(ctx.t, dtype=np.float64)
            nll = ctx.prob_loss(y * w.astype(np.float64), logp.astype(np.float64))
        per = (1 - eps) * nll + eps / ctx.c * smooth
    if np.isfinite(per).all():
        return None
    return ctx.reduce(per, ctx.ref_grad * (ctx.denominator or 1.0))


def _precision(dtype: str) -> Callable[[Ctx], Sim | None]:
    """The reference computed in a lower precision (only its accuracy level is compared)."""
    def sim(ctx: Ctx) -> Sim | None:
        if dtype_rank(dtype) >= dtype_rank(ctx.res.bar):
            return None
        return Sim(ctx.ref_loss, ctx.ref_grad)
    return sim


# ------------------------------------------------------------------ the list


def _models() -> list[Model]:
    ms: list[Model] = [
        Model("grad-of-sum", "the gradient is off by the batch size (N times too large): it is the gradient of the "
              "sum while the loss is the mean", _by_denominator(0, 1)),
        Model("grad-twice", "the gradient is off by the batch size (N times too small): it is divided by N twice",
              _by_denominator(0, -1)),
        Model("loss-sum", "the loss is reported as the sum over the batch instead of the mean", _by_denominator(1, 0)),
        Model("sum-for-mean", "the loss and the gradient are the sum over the batch, not the mean (reduction sum "
              "computed where mean was asked)", _by_denominator(1, 1)),
        Model("mean-for-sum", "the loss is reported as the mean instead of the sum", _by_rows(-1, 0, "sum")),
        Model("sum-grad-over-n", "the gradient is divided by the batch size although the reduction is sum",
              _by_rows(0, -1, "sum")),
        Model("none-grad-of-mean", "reduction='none' returns the gradient of the mean (divided by N) instead of "
              "the gradient of the sum (each row its own sample's gradient)", _by_rows(0, -1, "none")),
        Model("mean-over-elements", "the mean divides by the N·C elements instead of the N samples "
              "(PyTorch's cross_entropy averages over samples)",
              _by_classes(-1, -1, lambda o: o.kind in ("ce", "nll") and o.reduction == "mean")),
        Model("mean-over-elements-loss", "the loss divides by the N·C elements instead of the N samples (the "
              "gradient does not)", _by_classes(-1, 0, lambda o: o.kind in ("ce", "nll") and o.reduction == "mean")),
        Model("bce-mean-over-n", "the mean is divided by N instead of the number of elements N·C (PyTorch's BCE "
              "mean is over all N·C elements)",
              _by_classes(1, 1, lambda o: o.kind == "bce" and o.reduction == "mean")),
        Model("kl-batchmean-for-mean", "the mean divides by N (batchmean) instead of the N·C elements (kl_div's "
              "mean)", _by_classes(1, 1, lambda o: o.kind == "kl" and o.reduction == "mean")),
        Model("kl-mean-for-batchmean", "batchmean divides by the N·C elements (mean) instead of N",
              _by_classes(-1, -1, lambda o: o.kind == "kl" and o.reduction == "batchmean")),
        Model("grad-sign", "the gradient has the wrong sign (y − p instead of p − y)", _scaled(1.0, -1.0)),
        Model("loss-sign", "the loss has the wrong sign (log p instead of −log p)", _scaled(-1.0, 1.0)),
        Model("weighted-mean-over-n", "the weighted mean is divided by the number of samples instead of the sum of "
              "their target weights (PyTorch divides by Σ w_{y_i})", _weighted_mean_over_n),
        Model("weights-ignored", "the class weights are ignored", _weights_ignored),
        Model("weights-grad-only", "the class weights are applied to the gradient but not to the loss",
              _weights_in_grad_only),
        Model("weights-loss-only", "the class weights are applied to the loss but not to the gradient",
              _weights_in_loss_only),
        Model("smoothing-other-c-1", "label smoothing gives ε/(C−1) to each of the other classes; PyTorch mixes ε/C "
              "into every class: (1 − ε)y + ε/C", _smoothed("other-c-1")),
        Model("smoothing-every-c-1", "label smoothing gives ε/(C−1) to every class; PyTorch mixes ε/C into every "
              "class: (1 − ε)y + ε/C", _smoothed("every-c-1")),
        Model("smoothing-other-c", "label smoothing gives ε/C to the other classes only; PyTorch mixes ε/C into "
              "every class: (1 − ε)y + ε/C", _smoothed("other-c")),
        Model("smoothing-target-only", "label smoothing adds ε/C to the target class only (the other classes get "
              "nothing); PyTorch mixes ε/C into every class: (1 − ε)y + ε/C", _smoothed("target-only")),
        Model("smoothing-ignored", "label smoothing is ignored", _smoothing_ignored),
        Model("ignored-counted", "ignored samples are counted in the mean's denominator", _ignored_counted),
        Model("ignore-not-honoured", "", _ignore_not_honoured),  # message filled in by _message
        Model("labels-1-based", "the class labels are read as 1-based (class t is taken as t − 1, class 0 as the "
              "last): every target is off by one column", _labels_shifted(-1)),
        Model("labels-shifted", "the class labels are shifted by one (class t is taken as t + 1): every target is "
              "off by one column", _labels_shifted(1)),
        Model("unnormalised", "the gradient p − y assumes targets that sum to 1; for these targets it is p·Σy − y",
              _unnormalised),
        Model("wrong-axis", "softmax is taken over the wrong axis (over the samples instead of the classes)",
              _wrong_axis),
        Model("targets-kind", "the implementation expects probability rows (N×C), not class indices: it broadcasts "
              "the N indices against the logits; verify it with --targets prob", _other_targets_kind),
        Model("z-loss-gradient-without-2", "the z-loss's gradient misses the factor 2: it is λ·lse·p, but the "
              "derivative of λ·lse² is 2λ·lse·p (one factor of lse held constant, or detached)", _z_loss_without_2),
        Model("z-loss-on-lse", "the z-loss is λ·lse instead of λ·lse² (its gradient λ·p instead of 2λ·lse·p)",
              _z_loss_on_lse),
        Model("z-loss-counts-ignored", "the z-loss is counted for ignored samples: λ·lse² is added for samples "
              "whose class index is ignore_index and the z-loss's mean divides by all N; Liger-Kernel adds it for "
              "the counted samples only and divides by their number", _z_loss_counts_ignored),
        Model("softcap-after-softmax", "the soft-cap is applied after the softmax: the probabilities are capped, "
              "q = c·tanh(p/c), instead of the logits before it, softmax(c·tanh(z/c))", _softcap_after_softmax),
        Model("softcap-without-derivative", "the soft-cap's derivative is missing from the gradient: the gradient "
              "must be multiplied by tanh′ = 1 − tanh²(z/c) (the cap's value was used but not differentiated)",
              _softcap_without_derivative),
        Model("temperature-not-in-gradient", "the temperature is missing from the gradient: the logits are "
              "divided by T in the loss but the gradient lacks the factor 1/T", _temperature_not_in_gradient),
        Model("z-loss-ignored", "the z-loss is ignored (λ·lse² is not added)", _option_ignored("z_loss", 0)),
        Model("softcap-ignored", "the soft-cap is ignored (the logits are not capped to c·tanh(z/c))",
              _option_ignored("softcap", None)),
        Model("temperature-ignored", "the temperature is ignored (the logits are not divided by T)",
              _option_ignored("temperature", 1)),
        Model("pos-weight-ignored", "pos_weight is ignored", _pos_weight_ignored),
        Model("bce-pos-weight-negative", "pos_weight multiplies the negative term (1 − y)·log(1 − σ) instead of the "
              "positive term y·log σ", _bce_pos_weight_negative),
    ]
    # Numerics, reproduced in the inputs' dtype. Messages are completed with what went non-finite where.
    unshifted = ("softmax is not shifted by the max: exp(z) overflows for z above {limit} in {dtype}, giving "
                 "inf/inf = NaN; subtract max(z) first: p = exp(z − max z) / Σ exp(z − max z)")
    unshifted_lse = ("log-sum-exp is not shifted by the max: log Σ exp(z) is +inf once exp(z) overflows (z above "
                     "{limit} in {dtype}); compute max z + log Σ exp(z − max z)")
    log_softmax = ("the log of softmax underflows: log(p) is −inf when p rounds to 0 (a probability below "
                   "{tiny} in {dtype}) for a confident wrong prediction; compute log_softmax(z) = z − logsumexp(z) "
                   "instead of log(softmax(z))")
    autograd = ("the gradient is NaN from differentiating log(softmax(z)): where a probability is 0 (underflow "
                "below {tiny} in {dtype}, or a −inf masked class) d log p/dp = 1/0 and 0·∞ = NaN fills the row; "
                "use log_softmax, or cross_entropy on the logits")
    dense = ("a zero target times log p = −inf gives NaN (0·(−inf)): a −inf (masked) logit or an underflowed "
             "probability meets a zero target in y·log p; skip zero targets: where(y > 0, y·log p, 0)")
    for form, text in (("unshifted", unshifted), ("unshifted-lse", unshifted_lse), ("log-of-softmax", log_softmax)):
        for loss_form in ("gather", "safe", "dense"):
            for grad_form in ("closed", "autograd-log", "right"):
                message = text
                if grad_form == "autograd-log" and form == "log-of-softmax":
                    message = autograd
                elif loss_form == "dense" and form == "log-of-softmax" and grad_form != "autograd-log":
                    message = dense
                ms.append(Model(f"numeric-{form}-{loss_form}-{grad_form}", message,
                                _numeric(form, loss_form, grad_form)))
    ms.append(Model("overflow-in-dtype", "an intermediate sum overflows {dtype} (largest finite {max:.6g}): "
                    "label smoothing's Σ_c −log p_c is accumulated in {dtype}; accumulate in float32 or float64",
                    _overflow_in_dtype))
    ms += [Model("bce-naive-closed", "log(sigmoid(x)) underflows for confident predictions: σ = 1/(1 + exp(−x)) "
                 "rounds to 0 or 1 and log gives −inf (or exp(−x) overflows); use log σ(x) = −softplus(−x), i.e. "
                 "max(x, 0) − x·y + log1p(exp(−|x|)), as binary_cross_entropy_with_logits does", _bce_naive("closed")),
           Model("bce-naive-right", "log(sigmoid(x)) underflows for confident predictions: σ = 1/(1 + exp(−x)) rounds "
                 "to 0 or 1 and log gives −inf (or exp(−x) overflows); use log σ(x) = −softplus(−x), i.e. "
                 "max(x, 0) − x·y + log1p(exp(−|x|)), as binary_cross_entropy_with_logits does", _bce_naive("right"))]
    for eps in CLIP_EPS:
        clip_text = (f"clipping p to [ε, 1 − ε] (ε = {eps:g}, as in np.clip(p, eps, 1 - eps)) caps the loss of "
                     f"confident wrong predictions at −log ε = {-math.log(eps):.3g}")
        origin = {float(np.finfo(np.float64).eps): " (ε is float64's machine epsilon, as scikit-learn's log_loss)",
                  float(np.finfo(np.float32).eps): " (ε is float32's machine epsilon, as scikit-learn's log_loss)",
                  float(np.finfo(np.float16).eps): " (ε is float16's machine epsilon)"}.get(eps, "")
        ms.append(Model(f"clip-{eps:g}-grad", clip_text + origin, _clipped(eps, "grad")))
        ms.append(Model(f"clip-{eps:g}-loss", clip_text + origin, _clipped(eps, "loss")))
        ms.append(Model(f"clip-{eps:g}-renormalised", clip_text + origin + ", then renormalised",
                        _clipped(eps, "renormalised")))
        ms.append(Model(f"bce-clip-{eps:g}", f"clipping σ to [ε, 1 − ε] (ε = {eps:g}) caps the loss of confident "
                        f"wrong predictions at −log ε = {-math.log(eps):.3g}" + origin, _bce_clipped(eps)))
    ms += [Model("precision-float32", "precision is lost inside: the results have float32 accuracy (errors of "
                 "{err:.2g} relative, float32's rounding) though {dtype} was handed over and returned: part of the "
                 "computation runs in float32 (a float32 buffer or constant, torch's float32 default, JAX without "
                 "jax_enable_x64)", _precision("float32"), "float32"),
           Model("precision-float16", "precision is lost inside: the results have float16 accuracy (errors of "
                 "{err:.2g} relative) though {dtype} was handed over: part of the computation runs in float16",
                 _precision("float16"), "float16")]
    return ms


MODELS: tuple[Model, ...] = tuple(_models())
_ORDER = {m.key: i for i, m in enumerate(MODELS)}


# ------------------------------------------------------------------ matching


def _classes(x: np.ndarray) -> np.ndarray:
    """0 finite, 1 NaN, 2 +inf, 3 -inf."""
    return np.select([np.isnan(x), np.isposinf(x), np.isneginf(x)], [1, 2, 3], 0)


def _returned(res: CaseResult, ctx: Ctx) -> dict[str, np.ndarray]:
    out = {}
    for key, got, want in (("loss", res.got_loss, ctx.ref_loss), ("grad", res.got_grad, ctx.ref_grad)):
        if got is None:
            continue
        g = np.asarray(got, dtype=np.float64)
        if g.shape != want.shape:
            if g.size != want.size or g.size != 1:
                return {}
            g = g.reshape(want.shape)
        out[key] = g
    return out


def _tolerance(ctx: Ctx, key: str, sim: np.ndarray, dtype: str | None = None) -> np.ndarray:
    b = ctx.bounds(dtype)
    want = ctx.ref_loss if key == "loss" else ctx.ref_grad
    factor = b.loss_factor if key == "loss" else b.grad_factor
    passed = b.loss if key == "loss" else b.grad
    cancel = b.loss_cancel if key == "loss" else b.grad_cancel
    with np.errstate(all="ignore"):
        tol: np.ndarray = SLACK * (np.asarray(factor) * (np.abs(np.nan_to_num(sim)) + np.abs(np.nan_to_num(want)))
                                   + passed + cancel)
    return tol


def _agrees(ctx: Ctx, key: str, got: np.ndarray, sim: np.ndarray) -> bool:
    """Same non-finite values in the same places (for the gradient: the same rows), finite ones within tolerance."""
    if key == "grad" and got.ndim == 2:
        bad_got, bad_sim = ~np.isfinite(got).all(axis=1), ~np.isfinite(sim).all(axis=1)
        if not np.array_equal(bad_got, bad_sim):
            return False
        tol = _tolerance(ctx, key, sim)[~bad_got]
        got, sim = got[~bad_got], sim[~bad_sim]
        if got.size == 0:
            return True
        return bool(np.all(np.abs(got - sim) <= tol))
    if not np.array_equal(_classes(got), _classes(sim)):
        return False
    fin = np.isfinite(got)
    tol = _tolerance(ctx, key, sim)
    return bool(np.all(np.abs(got[fin] - sim[fin]) <= np.broadcast_to(tol, got.shape)[fin]))


def _differs(ctx: Ctx, key: str, sim: np.ndarray) -> bool:
    """Whether the model's output is distinguishable from the reference (else it explains nothing)."""
    want = ctx.ref_loss if key == "loss" else ctx.ref_grad
    if not np.array_equal(_classes(sim), _classes(want)):
        return True
    fin = np.isfinite(want)
    b = ctx.bounds()
    bound = (b.loss + b.loss_cancel) if key == "loss" else (b.grad + b.grad_cancel)
    with np.errstate(all="ignore"):
        return bool(np.any(np.abs(sim[fin] - want[fin]) > SLACK * np.broadcast_to(bound, want.shape)[fin]))


def _reproduces(model: Model, ctx: Ctx, got: dict[str, np.ndarray], *, failing: bool) -> bool | None:
    """True/False: the model reproduces the case's outputs; None: the model does not apply to this case."""
    try:
        with np.errstate(all="ignore"):
            sim = model.simulate(ctx)
    except (ValueError, ZeroDivisionError, FloatingPointError, IndexError):
        return None
    if sim is None:
        return None
    if model.precision is not None:
        return _precision_matches(model.precision, ctx, got) if failing else None
    outs = {"loss": sim.loss, "grad": sim.grad}
    for key, g in got.items():
        s = np.asarray(outs[key], dtype=np.float64)
        if s.shape != g.shape or not _agrees(ctx, key, g, s):
            return False
    if failing and not any(_differs(ctx, key, np.asarray(outs[key], dtype=np.float64)) for key in got):
        return False
    return True


def _precision_matches(dtype: str, ctx: Ctx, got: dict[str, np.ndarray]) -> bool:
    """Errors within ``dtype``'s accuracy bound everywhere and at ``dtype``'s rounding level somewhere."""
    b = ctx.bounds(dtype)
    level = False
    for key, g in got.items():
        want = ctx.ref_loss if key == "loss" else ctx.ref_grad
        if not np.array_equal(_classes(g), _classes(want)):
            return False
        fin = np.isfinite(want)
        bound = (b.loss + b.loss_cancel) if key == "loss" else (b.grad + b.grad_cancel)
        err = np.abs(g[fin] - want[fin])
        cancel = np.broadcast_to(b.loss_cancel if key == "loss" else b.grad_cancel, want.shape)[fin]
        if np.any(err > np.broadcast_to(bound, want.shape)[fin]):
            return False
        # rounding errors, not wrong values: where the bound of a large |z| would allow anything (it exceeds
        # the value itself), an error of more than a few percent is not a lost digit
        if np.any(err > ROUNDING_CAP * np.abs(want[fin]) + cancel):
            return False
        level = level or bool(np.any(err > UNIT_ROUNDOFF[dtype] / 8 * np.abs(want[fin])))
    return level


# ------------------------------------------------------------------ messages and evidence


def _limits(dtype: str) -> dict[str, Any]:
    info = np.finfo(np.dtype(dtype))
    return {"dtype": dtype, "limit": f"{math.log(float(info.max)):.4g}",
            "tiny": f"{float(info.smallest_subnormal):.3g}", "max": float(info.max)}


def _message(model: Model, ctx: Ctx, got: dict[str, np.ndarray]) -> str:
    if model.key == "ignore-not-honoured":
        return f"ignore_index={ctx.options.ignore_index} is not honoured: ignored samples contribute"
    if "{dtype}" not in model.message:
        return model.message
    values = _limits(ctx.dtype)
    if model.precision is not None:
        rel = 0.0
        for key, g in got.items():
            want = ctx.ref_loss if key == "loss" else ctx.ref_grad
            fin = np.isfinite(want) & (want != 0)
            if fin.any():
                rel = max(rel, float(np.max(np.abs(g[fin] - want[fin]) / np.abs(want[fin]))))
        values["err"] = rel
    return model.message.format(**values)


def _where(mask: np.ndarray, limit: int = 6) -> str:
    idx = np.argwhere(mask)
    if mask.ndim == 0:
        return ""
    if mask.ndim == 2:
        rows = sorted({int(i) for i in idx[:, 0]})
        shown = ", ".join(map(str, rows[:limit])) + (", …" if len(rows) > limit else "")
        return f"in row{'s' if len(rows) > 1 else ''} {shown} of {mask.shape[0]}"
    items = [int(i[0]) for i in idx]
    shown = ", ".join(map(str, items[:limit])) + (", …" if len(items) > limit else "")
    return f"at {shown} of {mask.shape[0]}"


def _nonfinite_summary(got: dict[str, np.ndarray], ctx: Ctx) -> str:
    parts = []
    for key, g in got.items():
        want = ctx.ref_loss if key == "loss" else ctx.ref_grad
        wrong = ~np.isfinite(g) & np.isfinite(want)
        if not wrong.any():
            continue
        kinds = []
        for label, mask in (("NaN", np.isnan(g)), ("+inf", np.isposinf(g)), ("−inf", np.isneginf(g))):
            m = mask & wrong
            if m.any():
                where = _where(m)
                kinds.append(f"{label}{' ' + where if where else ''}")
        name = "loss" if key == "loss" else "gradient"
        parts.append(f"{name} {', '.join(kinds)}")
    return "; ".join(parts)


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _pattern(g: np.ndarray, w: np.ndarray, tol: np.ndarray) -> str | None:
    """A short name for how ``g`` differs from ``w`` (both finite, same shape), or None."""
    close = np.abs(g - w) <= tol
    if np.all(g == 0) and np.any(w != 0):
        return "all zeros"
    nz = np.abs(w) > tol
    if nz.any():
        ratio = g[nz] / w[nz]
        r0 = float(np.median(ratio))
        if np.allclose(g, r0 * w, rtol=1e-6, atol=float(np.max(tol))):
            if r0 == -1 or abs(r0 + 1) < 1e-9:
                return "the sign is flipped on every element"
            return f"a constant factor {_fmt(r0)} on every element"
    if g.ndim == 2 and g.shape[1] > 1:
        c = g.shape[1]
        # shifts of a few columns (an off-by-one label, a misplaced index) either way: trying every shift
        # costs C comparisons of the whole array, minutes at C = 32768
        for k in sorted({k for k in (1, 2, 3, c - 3, c - 2, c - 1) if 0 < k < c}):
            if np.allclose(g, np.roll(w, k, axis=1), rtol=1e-6, atol=float(np.max(tol))):
                return (f"off by {min(k, c - k)} column{'s' if min(k, c - k) > 1 else ''}: got[:, j] matches the "
                        f"reference's column j {'−' if k <= c - k else '+'} {min(k, c - k)}")
    offset = g - w
    if offset.size > 1 and np.allclose(offset, offset.reshape(-1)[0], rtol=1e-6, atol=float(np.max(tol))):
        return f"a constant offset {_fmt(float(offset.reshape(-1)[0]))} on every element"
    if g.ndim == 2 and g.shape[0] > 1:
        rows_ok = close.all(axis=1)
        if rows_ok.any() and not rows_ok.all():
            return f"{_where(~rows_ok)} differ; the other rows match"
        with np.errstate(all="ignore"):
            ratio = np.where(np.abs(w) > tol, g / w, np.nan)
        per_row = np.nanmax(ratio, axis=1) - np.nanmin(ratio, axis=1)
        if np.all(np.nan_to_num(per_row, nan=0.0) <= 1e-6 * np.nanmax(np.abs(ratio))):
            f = np.nanmedian(ratio, axis=1)
            return f"a factor per row ({_fmt(float(np.nanmin(f)))} … {_fmt(float(np.nanmax(f)))})"
        cols_ok = close.all(axis=0)
        if cols_ok.any() and not cols_ok.all():
            cols = [int(i) for i in np.nonzero(~cols_ok)[0]]
            return f"column{'s' if len(cols) > 1 else ''} {', '.join(map(str, cols[:6]))} differ; the others match"
    if offset.size == 1 and w.reshape(-1)[0] != 0:
        factor = float(g.reshape(-1)[0] / w.reshape(-1)[0])
        return f"factor {_fmt(factor)} (offset {_fmt(float(offset.reshape(-1)[0]))})"
    return None


def evidence(res: CaseResult, options: LossSpec, ctx: Ctx | None = None) -> str:
    """What is wrong with a failing case, in words: quantity, where, how large, the pattern."""
    if res.error:
        return res.error
    ctx = ctx or Ctx(res, options)
    parts = []
    for comp, got, want in ((res.loss, res.got_loss, ctx.ref_loss), (res.grad, res.got_grad, ctx.ref_grad)):
        if comp is None or comp.passed:
            continue
        name = "loss" if comp.what == "loss" else "gradient"
        g = np.asarray(got, dtype=np.float64)
        if g.shape != want.shape:
            if g.size == want.size == 1:
                g = g.reshape(want.shape)
            else:
                transposed = g.shape == want.shape[::-1] and np.allclose(g.T, want, rtol=1e-6)
                parts.append(f"{name}: shape {g.shape}, expected {want.shape}"
                             + (" (the transpose of the reference)" if transposed else ""))
                continue
        nonfinite = _nonfinite_summary({comp.what: g}, ctx)
        if nonfinite:
            parts.append(nonfinite)
            continue
        b = ctx.bounds()
        tol = np.broadcast_to(b.loss if comp.what == "loss" else b.grad, want.shape)
        fin = np.isfinite(want) & np.isfinite(g)
        pattern = _pattern(np.where(fin, g, 0.0), np.where(fin, want, 0.0), tol) if fin.any() else None
        at = "" if comp.worst is None else f" at [{', '.join(map(str, comp.worst))}]"
        size = (f"largest error {comp.max_abs:.3g}{at} (got {_fmt(comp.got or 0.0)}, reference "
                f"{_fmt(comp.want or 0.0)}; relative {comp.max_rel:.3g})")
        parts.append(f"{name}: {pattern + '; ' if pattern else ''}{size}")
    other = [c.what for c in (res.loss, res.grad) if c is not None and c.passed]
    if other:
        parts.append(f"{' and '.join('gradient' if o == 'grad' else o for o in other)} match")
    return "; ".join(parts)


_INDEX_HINTS = re.compile(r"broadcast|shapes? \(|operands could not|size of tensor|must match the size", re.I)
_PROB_HINTS = re.compile(r"indices|integer|scalar type Long|only integers|0D or 1D target|expected scalar type", re.I)


def _error_rule(res: CaseResult, options: LossSpec) -> tuple[str, str] | None:
    """An exception that says the targets were read as the other kind."""
    text = res.error or ""
    if options.targets == "index" and options.family == "softmax" and _INDEX_HINTS.search(text):
        return "targets-kind", ("the implementation expects probability rows (N×C), not class indices: it "
                                "broadcasts the N indices against the logits; verify it with --targets prob")
    if options.targets == "prob" and _PROB_HINTS.search(text):
        return "targets-kind-index", ("the implementation expects class indices, not probability rows: it indexes "
                                      "with the targets; verify it with --targets index")
    return None


def _honesty_message(res: CaseResult, options: LossSpec) -> str:
    digits = {"float64": 16, "float32": 7, "float16": 3, "bfloat16": 2}
    return (f"returns {res.dtype} results for {options.dtype} inputs: about {digits[res.dtype]} significant digits "
            f"where {options.dtype} carries {digits[options.dtype]} (a float32 default somewhere: JAX without "
            f"jax_enable_x64, torch.tensor(..., dtype=float32), np.float32 buffers); compute and return "
            f"{res.bar}, or accept the lower bar explicitly with --accept-dtype {res.dtype}")


# ------------------------------------------------------------------ the report's diagnoses


def diagnose(results: list[CaseResult], options: LossSpec) -> list[str]:
    """Set each failing case's ``diagnosis`` and return the report's diagnoses, most cases explained first."""
    ctxs: dict[int, Ctx] = {}

    def ctx_of(r: CaseResult) -> Ctx | None:
        if id(r) not in ctxs:
            try:
                ctxs[id(r)] = Ctx(r, options)
            except (ValueError, TypeError):  # inputs the reference refuses (never from the battery)
                return None
        return ctxs[id(r)]

    named: dict[str, list[CaseResult]] = {}  # message -> cases
    open_cases: list[tuple[CaseResult, Ctx, dict[str, np.ndarray]]] = []
    for r in results:
        if r.passed:
            continue
        if r.fault:  # the worker crashed, timed out or ran out of memory: the verdict says so already
            continue
        if r.error:
            rule = _error_rule(r, options)
            if rule:
                named.setdefault(rule[1], []).append(r)
                r.diagnosis = rule[1]
            continue
        if r.honesty:
            message = _honesty_message(r, options)
            named.setdefault(message, []).append(r)
            r.diagnosis = message
            continue
        ctx = ctx_of(r)
        got = _returned(r, ctx) if ctx is not None else {}
        if ctx is not None and got:
            open_cases.append((r, ctx, got))

    # Which models reproduce which failing case.
    explains: dict[str, set[int]] = {}
    for i, (_, ctx, got) in enumerate(open_cases):
        for model in MODELS:
            if _reproduces(model, ctx, got, failing=True):
                explains.setdefault(model.key, set()).add(i)
    # Between models that explain as many failing cases, one that agrees with the cases the implementation
    # passed is preferred (a mistake that would have failed them too is less likely the one made).
    by_key = {m.key: m for m in MODELS}
    consistent: dict[str, bool] = {}
    for key in explains:
        consistent[key] = True
        if by_key[key].precision is not None:
            continue
        for r in results:
            if not r.passed or r.error or r.divergence is not None:  # a documented divergence is no evidence:
                continue  # its outputs differ from the reference as the frameworks do, whatever the mistake
            ctx = ctx_of(r)
            got = _returned(r, ctx) if ctx is not None else {}
            if ctx is not None and got and _reproduces(by_key[key], ctx, got, failing=False) is False:
                consistent[key] = False
                break

    remaining = set(range(len(open_cases)))
    while remaining and explains:
        best = max(explains, key=lambda k: (len(explains[k] & remaining), consistent[k], -_ORDER[k]))
        cover = sorted(explains[best] & remaining)
        if not cover:
            break
        remaining -= set(cover)
        r0, ctx0, got0 = open_cases[cover[0]]
        message = _message(by_key[best], ctx0, got0)
        numeric_failure = best.startswith(("numeric-", "bce-naive-")) or best == "overflow-in-dtype"
        for i in cover:
            r, ctx, got = open_cases[i]
            summary = _nonfinite_summary(got, ctx) if numeric_failure else ""
            r.diagnosis = message + (f" [{summary}]" if summary else "")
        named.setdefault(message, []).extend(open_cases[i][0] for i in cover)

    out = []
    for message, cases in sorted(named.items(), key=lambda kv: -len(kv[1])):
        names = ", ".join(r.case.name for r in cases[:6]) + (", …" if len(cases) > 6 else "")
        detail = ""
        first = cases[0]
        if first.diagnosis and first.diagnosis != message:  # the non-finite values of the first case
            detail = f"; {first.case.name}: {first.diagnosis[len(message):].strip(' []')}"
        out.append(f"{message} (case{'s' if len(cases) > 1 else ''} {names}{detail})")
    unknown = [open_cases[i] for i in sorted(remaining)]
    for r, ctx, _ in unknown:
        r.diagnosis = "not recognised: " + evidence(r, options, ctx)
    if unknown:
        names = ", ".join(r.case.name for r, _, _ in unknown[:6]) + (", …" if len(unknown) > 6 else "")
        first_r = unknown[0][0]
        assert first_r.diagnosis is not None
        # the line that covers the most failing cases comes first (it is the one the error line shows)
        at = sum(1 for cases in named.values() if len(cases) >= len(unknown))
        out.insert(at, f"{first_r.diagnosis} (case {first_r.case.name}; not recognised on "
                   f"{len(unknown)} case{'s' if len(unknown) > 1 else ''}: {names})")
    return out
