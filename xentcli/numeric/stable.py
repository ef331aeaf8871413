"""Small stable building blocks: logsumexp, softmax and log_softmax (float64, shifted by the max)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["log_softmax", "logsumexp", "softmax"]


def logsumexp(z: Any, axis: int = -1) -> np.ndarray:
    """``log(sum(exp(z)))`` along ``axis``, shifted by the max (``-inf`` entries allowed)."""
    z = np.asarray(z, dtype=np.float64)
    m = np.max(z, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True)) + m
    return np.squeeze(out, axis=axis)


def softmax(z: Any, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis``, shifted by the max."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(z: Any, axis: int = -1) -> np.ndarray:
    """``z - logsumexp(z)``, never ``log(softmax(z))``."""
    z = np.asarray(z, dtype=np.float64)
    return z - np.expand_dims(logsumexp(z, axis=axis), axis)
