"""Mistakes named in issue 13, each as plausible code makes it (NumPy; torch and JAX ones are in
tests/test_verify_frameworks.py). Each is diagnosed by the model that reproduces it, or, for the last
ones, matches no model and is reported as not recognised with the evidence."""

import numpy as np

WEIGHT = np.array([1, 2, 0.5, 1, 3])
POS_WEIGHT = np.array([3, 1, 0.5, 2, 1])


def log_softmax(z):
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def onehot(t, c):
    y = np.zeros((t.shape[0], c))
    y[np.arange(t.shape[0]), t] = 1
    return y


def unshifted_logsumexp(z, t):
    """log Σ exp(z) without the max: +inf once exp overflows; the gradient uses a shifted softmax."""
    n, c = z.shape
    lse = np.log(np.exp(z).sum(axis=1))
    loss = (lse - z[np.arange(n), t]).mean()
    return loss, (np.exp(log_softmax(z)) - onehot(t, c)) / n


def mean_over_nc(z, t):
    """The mean taken over N·C (torch's BCE habit) instead of N."""
    n, c = z.shape
    logp = log_softmax(z)
    return -logp[np.arange(n), t].sum() / (n * c), (np.exp(logp) - onehot(t, c)) / (n * c)


def smoothing_target_only(z, t, eps=0.1):
    """ε/C added to the target class only."""
    n, c = z.shape
    logp = log_softmax(z)
    a = (1 - eps) * onehot(t, c) + onehot(t, c) * eps / c
    return -(a * logp).sum() / n, (np.exp(logp) * a.sum(axis=1, keepdims=True) - a) / n


def weights_in_grad_only(z, t):
    """Class weights in the gradient, forgotten in the loss."""
    n, c = z.shape
    logp = log_softmax(z)
    w = WEIGHT[t]
    loss = -logp[np.arange(n), t].mean()
    grad = w[:, None] * (np.exp(logp) - onehot(t, c)) / w.sum()
    return loss, grad


def labels_one_based(z, t):
    """Labels read as 1-based: class t is column t - 1 (class 0 wraps to the last)."""
    n, c = z.shape
    t = t - 1
    logp = log_softmax(z)
    return -logp[np.arange(n), t].mean(), (np.exp(logp) - onehot(t, c)) / n


def none_grad_of_mean(z, t):
    """reduction='none' returns the per-sample losses but the mean's gradient."""
    n, c = z.shape
    logp = log_softmax(z)
    return -logp[np.arange(n), t], (np.exp(logp) - onehot(t, c)) / n


def softmax_over_batch(z, t):
    """Softmax normalised over the batch axis (axis=0)."""
    n, c = z.shape
    m = z.max(axis=0, keepdims=True)
    logp = z - m - np.log(np.exp(z - m).sum(axis=0, keepdims=True))
    return -logp[np.arange(n), t].mean(), (np.exp(logp) - onehot(t, c)) / n


def _clipped(z, t, eps):
    n, c = z.shape
    p = np.clip(np.exp(log_softmax(z)), eps, 1 - eps)
    loss = -np.log(p[np.arange(n), t]).mean()
    return loss, (np.exp(log_softmax(z)) - onehot(t, c)) / n


def sklearn_clip_float64_eps(z, t):
    """scikit-learn's log_loss: p clipped at float64's machine epsilon (2.22e-16)."""
    return _clipped(z, t, np.finfo(np.float64).eps)


def sklearn_clip_float32_eps(z, t):
    """p clipped at float32's machine epsilon (1.19e-7)."""
    return _clipped(z, t, float(np.finfo(np.float32).eps))


def expects_prob_rows(z, y):
    """Written for probability rows: called with class indices it broadcasts them against the logits."""
    logp = log_softmax(z)
    return -(y * logp).sum(axis=1).mean(), (np.exp(logp) * y.sum(axis=1, keepdims=True) - y) / z.shape[0]


def bce_pos_weight_on_negative(x, y):
    """pos_weight multiplies the negative term."""
    sp = np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))  # softplus(x)
    spn = sp - x  # softplus(-x)
    loss = y * spn + POS_WEIGHT * (1 - y) * sp
    sig = 1 / (1 + np.exp(-x))
    grad = POS_WEIGHT * (1 - y) * sig - y * (1 - sig)
    return loss.mean(), grad / x.size


# ---- wrong, and no model reproduces them: "not recognised", with the evidence


def loss_sum_and_gradient_tripled(z, t):
    """The loss is the sum (a known model) but the gradient is 3 times the mean's (no model): the
    loss-only model must not be named, since the gradient fails too."""
    n, c = z.shape
    logp = log_softmax(z)
    return -logp[np.arange(n), t].sum(), 3 * (np.exp(logp) - onehot(t, c)) / n


def gradient_off_by_one_column(z, t):
    """The gradient's columns rolled by one: no known mistake does this."""
    n, c = z.shape
    logp = log_softmax(z)
    return -logp[np.arange(n), t].mean(), np.roll((np.exp(logp) - onehot(t, c)) / n, 1, axis=1)


def loss_scaled_by_a_tenth(z, t):
    """The loss times 0.1, the gradient right."""
    n, c = z.shape
    logp = log_softmax(z)
    return -0.1 * logp[np.arange(n), t].mean(), (np.exp(logp) - onehot(t, c)) / n
