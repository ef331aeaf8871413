"""Sigmoid binary cross-entropy with logits (multi-label), PyTorch's
binary_cross_entropy_with_logits: the mean is over all N*C elements."""

import numpy as np

POS_WEIGHT = np.array([3.0, 1.0, 0.5, 2.0, 1.0])
WEIGHT = np.array([1.0, 0.5, 2.0, 1.0, 1.5])


def softplus(x):
    # log(1 + exp(x)) without overflow
    return np.logaddexp(0, x)


def sigmoid(x):
    # the two-branch stable sigmoid
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1 / (1 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1 + ex)
    return out


def bce_with_logits(x, y, weight=None, pos_weight=None, reduction="mean"):
    q = 1 if pos_weight is None else np.asarray(pos_weight, dtype=x.dtype)
    w = 1 if weight is None else np.asarray(weight, dtype=x.dtype)
    # q*y*softplus(-x) + (1-y)*softplus(x), without 0 * inf where y == 0 and x == -inf
    pos_term = np.where(y > 0, q * y * softplus(-x), 0)
    neg_term = np.where(y < 1, (1 - y) * softplus(x), 0)
    losses = w * (pos_term + neg_term)
    s = sigmoid(x)
    grad = w * ((1 - y) * s - q * y * (1 - s))
    if reduction == "none":
        return losses, grad
    if reduction == "sum":
        return losses.sum(), grad
    return losses.mean(), grad / losses.size


def bce(x, y):
    return bce_with_logits(x, y)


def bce_pos_weight(x, y):
    return bce_with_logits(x, y, pos_weight=POS_WEIGHT)


def bce_scalar_pos_weight(x, y):
    return bce_with_logits(x, y, pos_weight=2.0)


def bce_weight(x, y):
    return bce_with_logits(x, y, weight=WEIGHT)


def bce_weight_pos_weight(x, y):
    return bce_with_logits(x, y, weight=WEIGHT, pos_weight=POS_WEIGHT)


def bce_pos_weight_sum(x, y):
    return bce_with_logits(x, y, pos_weight=POS_WEIGHT, reduction="sum")


def bce_pos_weight_none(x, y):
    return bce_with_logits(x, y, pos_weight=POS_WEIGHT, reduction="none")


# ------------------------------------------------------------------ wrong ones


def bce_mean_over_n(x, y):
    """Sums over the labels of a sample, then averages over the batch only."""
    losses = np.where(y > 0, y * softplus(-x), 0) + np.where(y < 1, (1 - y) * softplus(x), 0)
    n = x.shape[0]
    return losses.sum() / n, (sigmoid(x) - y) / n


def bce_pos_weight_ignored(x, y):
    """--pos-weight given, plain BCE computed."""
    return bce_with_logits(x, y)


def bce_naive_sigmoid_log(x, y):
    """-[y log s + (1-y) log(1-s)] with s = 1/(1+exp(-x)): log(0) for confident wrong labels."""
    s = 1 / (1 + np.exp(-x))
    loss = -(y * np.log(s) + (1 - y) * np.log(1 - s))
    return loss.mean(), (s - y) / loss.size


def bce_weight_ignored(x, y):
    """--weight given (per label), plain BCE computed."""
    return bce_with_logits(x, y, pos_weight=None)


def bce_pytorch_formula(x, y):
    """A line-by-line port of PyTorch's binary_cross_entropy_with_logits kernel (no weights):
    (1 - y) x + log1p(exp(-|x|)) + max(-x, 0). Like torch, it gives NaN for x = -inf, y = 0."""
    loss = (1 - y) * x + np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0)
    return loss.mean(), (sigmoid(x) - y) / loss.size
