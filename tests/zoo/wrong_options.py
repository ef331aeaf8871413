"""Implementations that get one of PyTorch's options wrong (weight, ignore_index,
label smoothing, probability targets). The tests run each with the option it
mishandles; each must fail with the matching diagnosis."""

import numpy as np

WEIGHT = np.array([1.0, 2.0, 0.5, 1.0, 3.0])
SMOOTHING = 0.1


def log_softmax(x):
    s = x - np.max(x, axis=1, keepdims=True)
    return s - np.log(np.sum(np.exp(s), axis=1, keepdims=True))


def softmax(x):
    return np.exp(log_softmax(x))


def prob_grad_p_minus_y(logits, targets):
    """--targets prob: the textbook p - y, which assumes every row sums to 1 (004_*.txt)."""
    n = logits.shape[0]
    p = softmax(logits)
    loss = -np.sum(np.where(targets > 0, targets * log_softmax(logits), 0)) / n
    return loss, (p - targets) / n


def weighted_mean_over_n(logits, targets):
    """--weight: sum(w[y_i] * nll_i) / N instead of / sum(w[y_i])."""
    n = logits.shape[0]
    w = WEIGHT.astype(logits.dtype)
    logp = log_softmax(logits)
    rows = np.arange(n)
    wy = w[targets]
    loss = np.sum(-logp[rows, targets] * wy) / n
    grad = softmax(logits)
    grad[rows, targets] -= 1
    grad *= wy[:, None]
    return loss, grad / n


def weights_ignored(logits, targets):
    """--weight given, but the implementation never looks at it."""
    n = logits.shape[0]
    logp = log_softmax(logits)
    rows = np.arange(n)
    grad = np.exp(logp)
    grad[rows, targets] -= 1
    return -np.mean(logp[rows, targets]), grad / n


def smoothing_c_minus_1(logits, targets):
    """--label-smoothing 0.1: 1 - eps on the target and eps / (C - 1) on the others
    (the 'Rethinking the Inception architecture' variant, not PyTorch's)."""
    n, c = logits.shape
    y = np.full((n, c), SMOOTHING / (c - 1), dtype=logits.dtype)
    y[np.arange(n), targets] = 1 - SMOOTHING
    logp = log_softmax(logits)
    loss = -np.sum(y * logp) / n
    grad = (np.exp(logp) - y) / n
    return loss, grad


def smoothing_ignored(logits, targets):
    """--label-smoothing 0.1 given, plain cross-entropy computed."""
    n = logits.shape[0]
    logp = log_softmax(logits)
    rows = np.arange(n)
    grad = np.exp(logp)
    grad[rows, targets] -= 1
    return -np.mean(logp[rows, targets]), grad / n


def ignored_counted(logits, targets, ignore_index=-100):
    """--ignore-index -100: ignored rows are zeroed, but the mean still divides by N."""
    n = logits.shape[0]
    keep = targets != ignore_index
    t = np.where(keep, targets, 0)
    logp = log_softmax(logits)
    rows = np.arange(n)
    nll = -logp[rows, t] * keep
    grad = np.exp(logp)
    grad[rows, t] -= 1
    grad[~keep] = 0
    return nll.sum() / n, grad / n


def ignore_not_honoured(logits, targets):
    """--ignore-index 0 given, but class 0 is treated as an ordinary class."""
    n = logits.shape[0]
    logp = log_softmax(logits)
    rows = np.arange(n)
    grad = np.exp(logp)
    grad[rows, targets] -= 1
    return -np.mean(logp[rows, targets]), grad / n
