"""Correct NumPy implementations of softmax cross-entropy (PyTorch semantics).

Written the way people write them in notebooks and course code: a stable
log-softmax, the one-hot trick for the gradient, ``/ N`` for the mean. Each
function is called as ``f(logits, targets)`` by ``xent verify`` and must pass.
"""

import numpy as np


def log_softmax(z):
    # shift by the max so exp never overflows; -inf (masked) logits stay -inf
    shifted = z - np.max(z, axis=1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


def ce_log_softmax(logits, targets):
    """Mean cross-entropy with class-index targets; returns (loss, dL/dlogits)."""
    n = logits.shape[0]
    logp = log_softmax(logits)
    rows = np.arange(n)
    loss = -np.mean(logp[rows, targets])
    grad = np.exp(logp)
    grad[rows, targets] -= 1.0
    grad /= n
    return loss, grad


def ce_float32(logits, targets):
    """Everything in float32 (e.g. to match a GPU kernel), float32 out."""
    z = np.asarray(logits, dtype=np.float32)
    n = z.shape[0]
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1, keepdims=True, dtype=np.float32))
    logp = z - lse
    rows = np.arange(n)
    loss = np.float32(-logp[rows, targets].sum(dtype=np.float32) / np.float32(n))
    p = np.exp(logp)
    p[rows, targets] -= np.float32(1.0)
    grad = (p / np.float32(n)).astype(np.float32)
    return loss, grad


def ce_same_dtype(logits, targets):
    """Computes in the dtype it is given (float32 in, float32 out) and checks it."""
    dt = logits.dtype
    n, c = logits.shape
    onehot = np.zeros((n, c), dtype=dt)
    onehot[np.arange(n), targets] = 1
    m = logits.max(axis=-1, keepdims=True)
    e = np.exp(logits - m)
    s = e.sum(axis=-1, keepdims=True)
    logp = (logits - m) - np.log(s)
    loss = -(onehot * np.where(onehot > 0, logp, 0)).sum() / dt.type(n)
    grad = (e / s - onehot) / dt.type(n)
    assert grad.dtype == dt and np.asarray(loss).dtype == dt
    return loss, grad


def ce_loss_only(logits, targets):
    """Only the loss (a NumPy scalar of the input dtype), no gradient: checked on the loss alone."""
    z = logits - logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    return np.mean(lse - z[np.arange(len(targets)), targets])


def ce_reduction_none(logits, targets):
    """reduction="none": per-sample losses, and row i of the gradient is sample i's."""
    logp = log_softmax(logits)
    rows = np.arange(logits.shape[0])
    losses = -logp[rows, targets]
    grad = np.exp(logp)
    grad[rows, targets] -= 1
    return losses, grad


def ce_reduction_sum(logits, targets):
    logp = log_softmax(logits)
    rows = np.arange(logits.shape[0])
    grad = np.exp(logp)
    grad[rows, targets] -= 1
    return -logp[rows, targets].sum(), grad


def ce_prob_targets(logits, targets):
    """Probability (soft) targets, mean over N. Rows need not sum to 1:
    d/dz of -sum_c y_c log p_c is p * sum(y) - y."""
    n = logits.shape[0]
    logp = log_softmax(logits)
    # y * logp would be 0 * -inf = nan on masked classes
    per_sample = -np.sum(np.where(targets > 0, targets * logp, 0.0), axis=1)
    grad = np.exp(logp) * targets.sum(axis=1, keepdims=True) - targets
    return per_sample.mean(), grad / n


# ---------------------------------------------------------------------------
# A general PyTorch-style loss (weight, ignore_index, label_smoothing,
# reduction) and the configurations the tests run it with.
# ---------------------------------------------------------------------------

WEIGHT = (1.0, 2.0, 0.5, 1.0, 3.0)
SMOOTHING = 0.1


def cross_entropy(logits, targets, weight=None, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    dt = logits.dtype
    n, c = logits.shape
    logp = log_softmax(logits)
    valid = targets != ignore_index
    t = np.where(valid, targets, 0)
    w = np.ones(c, dtype=dt) if weight is None else np.asarray(weight, dtype=dt)
    onehot = np.zeros((n, c), dtype=dt)
    onehot[np.arange(n), t] = 1
    # effective target row: w_c * ((1 - eps) y_c + eps / C), zero for ignored samples
    a = w * ((1 - label_smoothing) * onehot + label_smoothing / c)
    a[~valid] = 0
    losses = -np.sum(np.where(a > 0, a * logp, 0), axis=1)
    grad = np.exp(logp) * a.sum(axis=1, keepdims=True) - a
    if reduction == "none":
        return losses, grad
    if reduction == "sum":
        return losses.sum(), grad
    denom = np.sum(w[t] * valid)  # PyTorch: sum of the target weights of the kept samples
    if denom == 0:  # every sample ignored: PyTorch returns nan and a zero gradient
        return np.array(np.nan, dtype=dt), np.zeros_like(grad)
    return losses.sum() / denom, grad / denom


def ce_weighted(logits, targets):
    return cross_entropy(logits, targets, weight=WEIGHT)


def ce_ignore(logits, targets):
    return cross_entropy(logits, targets, ignore_index=-100)


def ce_ignore_class0(logits, targets):
    return cross_entropy(logits, targets, ignore_index=0)


def ce_smoothing(logits, targets):
    return cross_entropy(logits, targets, label_smoothing=SMOOTHING)


def ce_weighted_ignore(logits, targets):
    return cross_entropy(logits, targets, weight=WEIGHT, ignore_index=-100)


def ce_weighted_smoothing(logits, targets):
    return cross_entropy(logits, targets, weight=WEIGHT, label_smoothing=SMOOTHING)


def ce_weighted_ignore_smoothing(logits, targets):
    return cross_entropy(logits, targets, weight=WEIGHT, ignore_index=-100, label_smoothing=SMOOTHING)


def ce_weighted_ignore_smoothing_sum(logits, targets):
    return cross_entropy(logits, targets, weight=WEIGHT, ignore_index=-100, label_smoothing=SMOOTHING,
                         reduction="sum")


def ce_weighted_ignore_smoothing_none(logits, targets):
    return cross_entropy(logits, targets, weight=WEIGHT, ignore_index=-100, label_smoothing=SMOOTHING,
                         reduction="none")


def ce_prob_smoothing(logits, targets):
    """Soft targets with label smoothing: (1 - eps) y + eps / C, mean over N."""
    n, c = logits.shape
    a = (1 - SMOOTHING) * targets + SMOOTHING / c
    logp = log_softmax(logits)
    losses = -np.sum(np.where(a > 0, a * logp, 0), axis=1)
    grad = np.exp(logp) * a.sum(axis=1, keepdims=True) - a
    return losses.mean(), grad / n


def ce_prob_weighted(logits, targets):
    """Soft targets with class weights: PyTorch still divides by N (not by the weights)."""
    n = logits.shape[0]
    a = targets * np.asarray(WEIGHT, dtype=logits.dtype)
    logp = log_softmax(logits)
    losses = -np.sum(np.where(a > 0, a * logp, 0), axis=1)
    grad = np.exp(logp) * a.sum(axis=1, keepdims=True) - a
    return losses.mean(), grad / n


class CrossEntropyLoss:
    """An nn.Module-like object: instances are callables too."""

    def __init__(self, reduction="mean"):
        self.reduction = reduction

    def __call__(self, logits, targets):
        return cross_entropy(logits, targets, reduction=self.reduction)


ce_module_instance = CrossEntropyLoss()


# ---------------------------------------------------------------------------
# Correct, but they work in place on the arrays they are given (common to save
# memory or to "clean" the targets). The caller's copy is theirs to scribble on.
# ---------------------------------------------------------------------------


def ce_ignore_inplace(logits, targets, ignore_index=-100):
    """ignore_index handled by overwriting the ignored targets with 0 in place."""
    n = logits.shape[0]
    keep = targets != ignore_index
    targets[~keep] = 0  # so that fancy indexing works
    logp = log_softmax(logits)
    rows = np.arange(n)
    nll = -logp[rows, targets] * keep
    grad = np.exp(logp)
    grad[rows, targets] -= 1
    grad[~keep] = 0
    count = keep.sum()
    return nll.sum() / count, grad / count


def ce_softmax_inplace(logits, targets):
    """Softmax computed in the logits buffer (no N x C temporary)."""
    n = logits.shape[0]
    rows = np.arange(n)
    logits -= logits.max(axis=1, keepdims=True)
    z_t = logits[rows, targets].copy()
    np.exp(logits, out=logits)
    s = logits.sum(axis=1)
    loss = np.mean(np.log(s) - z_t)
    logits /= s[:, None]  # now the probabilities
    logits[rows, targets] -= 1
    logits /= n
    return loss, logits
