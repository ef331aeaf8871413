"""Cross-entropy implementations with one classic mistake each (class-index targets, mean).

Every function here must FAIL ``xent verify``; WRONG in tests/test_verify.py
lists the options each is run with and the diagnosis that must name its mistake
(sum_instead_of_mean has no dedicated diagnosis: see test_bug_a_model_of_one_output_...).
"""

import numpy as np


def softmax(x):
    e = np.exp(x - np.max(x, axis=1, keepdims=True))
    return e / np.sum(e, axis=1, keepdims=True)


def one_hot(targets, c, dtype=np.float64):
    y = np.zeros((len(targets), c), dtype=dtype)  # pass logits.dtype to stay in float32
    y[np.arange(len(targets)), targets] = 1
    return y


def log_softmax(x):
    s = x - np.max(x, axis=1, keepdims=True)
    return s - np.log(np.sum(np.exp(s), axis=1, keepdims=True))


def grad_of_sum(logits, targets):
    """Mean loss, but the gradient of the sum (forgot the / N in backward)."""
    logp = log_softmax(logits)
    y = one_hot(targets, logits.shape[1], logits.dtype)
    loss = -np.sum(y * np.where(y > 0, logp, 0)) / logits.shape[0]
    grad = np.exp(logp) - y
    return loss, grad


def grad_divided_twice(logits, targets):
    """The backward divides by N, and so does the caller's 'average' of the batch."""
    n = logits.shape[0]
    logp = log_softmax(logits)
    y = one_hot(targets, logits.shape[1], logits.dtype)
    loss = -np.sum(np.where(y > 0, y * logp, 0)) / n
    grad = (np.exp(logp) - y) / n
    return loss, grad / n


def sign_flipped(logits, targets):
    """grad = y - p (the direction of steepest *ascent* of log-likelihood)."""
    n = logits.shape[0]
    p = softmax(logits)
    y = one_hot(targets, logits.shape[1], logits.dtype)
    loss = -np.mean(log_softmax(logits)[np.arange(n), targets])
    return loss, (y - p) / n


def loss_as_sum(logits, targets):
    """Reports the summed loss, with the gradient of the mean."""
    n = logits.shape[0]
    logp = log_softmax(logits)
    loss = -np.sum(logp[np.arange(n), targets])
    grad = np.exp(logp)
    grad[np.arange(n), targets] -= 1
    return loss, grad / n


def unshifted_softmax(logits, targets):
    """The first snippet of 002_*.txt: exp(X) / sum(exp(X)), no max subtracted."""
    n = logits.shape[0]
    exps = np.exp(logits)
    p = exps / np.sum(exps, axis=1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(n), targets]))
    grad = p.copy()
    grad[np.arange(n), targets] -= 1
    return loss, grad / n


def log_of_softmax(logits, targets):
    """A stable softmax, but then log(softmax): log(0) = -inf for a confident wrong prediction."""
    n = logits.shape[0]
    p = softmax(logits)
    loss = -np.mean(np.log(p[np.arange(n), targets]))
    grad = p.copy()
    grad[np.arange(n), targets] -= 1
    return loss, grad / n


def clipped(logits, targets):
    """000_*.txt: np.clip(prob, 1e-9, 1 - 1e-9) 'so that log never sees 0'."""
    batch_size = logits.shape[0]
    target = one_hot(targets, logits.shape[1], logits.dtype)
    prob = softmax(logits)
    eps = 1e-9
    prob_clamp = np.clip(prob, eps, 1 - eps)
    output = np.sum(-np.log(prob_clamp) * target) / batch_size
    grad_output = (prob_clamp - target) / batch_size
    return output, grad_output


def clipped_loss_only(logits, targets):
    """The same clipping with eps = 1e-7 (Keras' epsilon), loss only."""
    prob = np.clip(softmax(logits), 1e-7, 1 - 1e-7)
    return -np.mean(np.log(prob[np.arange(len(targets)), targets]))


def wrong_axis(logits, targets):
    """Softmax over axis 0 (the samples) instead of the classes."""
    n = logits.shape[0]
    e = np.exp(logits - np.max(logits, axis=0, keepdims=True))
    p = e / np.sum(e, axis=0, keepdims=True)
    logp = np.log(p)
    loss = -np.mean(logp[np.arange(n), targets])
    grad = p.copy()
    grad[np.arange(n), targets] -= 1
    return loss, grad / n


def mean_returned_for_sum(logits, targets):
    """Asked for reduction="sum" (see the tests) but returns the mean loss; gradient of the sum."""
    n = logits.shape[0]
    logp = log_softmax(logits)
    grad = np.exp(logp)
    grad[np.arange(n), targets] -= 1
    return -np.mean(logp[np.arange(n), targets]), grad


def sum_grad_divided_by_n(logits, targets):
    """reduction="sum": the loss is the sum, but the gradient still has the / N."""
    n = logits.shape[0]
    logp = log_softmax(logits)
    grad = np.exp(logp)
    grad[np.arange(n), targets] -= 1
    return -np.sum(logp[np.arange(n), targets]), grad / n


def sum_instead_of_mean(logits, targets):
    """Asked for the mean, computes reduction="sum" throughout (loss and gradient of the sum)."""
    n = logits.shape[0]
    logp = log_softmax(logits)
    grad = np.exp(logp)
    grad[np.arange(n), targets] -= 1
    return -np.sum(logp[np.arange(n), targets]), grad
