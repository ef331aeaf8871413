"""Small stable building blocks: logsumexp, softmax and log_softmax (float64, shifted by the max)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["log_softmax", "logsumexp", "softmax"]


def logsumexp(z: Any, axis: int = -1) -> np.ndarray:
    """``log(sum(exp(z)))`` along ``axis``, shifted by the max (``-inf`` entries allowed)."""
    x = np.asarray(z, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    result: np.ndarray = np.squeeze(out, axis=axis)
    return result


def softmax(z: Any, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis``, shifted by the max."""
    x = np.asarray(z, dtype=np.float64)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    p: np.ndarray = e / e.sum(axis=axis, keepdims=True)
    return p


def log_softmax(z: Any, axis: int = -1) -> np.ndarray:
    """``z - logsumexp(z)``, never ``log(softmax(z))``."""
    x = np.asarray(z, dtype=np.float64)
    out: np.ndarray = x - np.expand_dims(logsumexp(x, axis=axis), axis)
    return out
