"""Implementations whose arithmetic is less precise than the dtype they return."""

import numpy as np


def ce_float32_inside(logits, targets):
    """float64 in, float64 out, but the work is done in float32 (a float32 buffer reused from a GPU path)."""
    z = logits.astype(np.float32)
    n = z.shape[0]
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    logp = z - np.log(s)
    rows = np.arange(n)
    loss = -logp[rows, targets].mean()
    grad = e / s
    grad[rows, targets] -= 1
    return np.float64(loss), (grad / n).astype(np.float64)


def ce_item(logits, targets):
    """Works in the input dtype and returns loss.item()-style Python floats (what torch's .item() gives)."""
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(n), targets].mean())
