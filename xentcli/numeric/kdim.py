"""K-dimensional inputs, as PyTorch takes them: logits (N, C, d1, ..., dk).

Segmentation and sequence models give one class distribution per position:
class-index targets have the shape (N, d1, ..., dk), probability targets the
logits' shape. Every position is a sample of its own: the computation runs
on the (N * d1 * ... * dk, C) rows and the results are put back in the
inputs' layout (the gradient and probabilities have the logits' shape,
per-position losses the targets' shape), so ``mean`` counts every position,
as PyTorch does. Error positions are given in the K-dimensional layout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import XentInputError
from .result import LossResult


def to_rows(z: np.ndarray) -> np.ndarray:
    """(N, C, d1, ..., dk) -> (N * d1 * ... * dk, C)."""
    return np.ascontiguousarray(np.moveaxis(z, 1, -1)).reshape(-1, z.shape[1])


def from_rows(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(N * d1 * ... * dk, C) -> (N, C, d1, ..., dk)."""
    n, c, rest = shape[0], shape[1], shape[2:]
    return np.ascontiguousarray(np.moveaxis(a.reshape((n, *rest, c)), -1, 1))


def evaluate_k(run: Callable[[Any, Any], LossResult], z: np.ndarray, target: Any, targets: str) -> LossResult:
    """Run ``run(rows, row_targets)`` on K-dimensional ``z`` and put the results back in its layout."""
    shape = z.shape
    n, rest = shape[0], shape[2:]
    y = np.asarray(target)
    if targets == "index":
        want = (n, *rest)
        if y.shape != want:
            raise XentInputError(f"class-index targets of logits {shape} must have the shape {want} "
                                 f"(N, d1, ..., dk), got {y.shape}", operand="target")
        rows_y = y.reshape(-1)
    else:
        if y.shape != shape:
            raise XentInputError(f"probability targets must have the logits' shape {shape}, got {y.shape}",
                                 operand="target")
        rows_y = to_rows(y)
    try:
        r = run(to_rows(z), rows_y)
    except XentInputError as exc:
        raise _placed(exc, shape, targets) from None
    per_position = (n, *rest)
    losses = r.losses
    if losses is not None:
        losses = from_rows(losses, shape) if losses.ndim == 2 else losses.reshape(per_position)
    return dataclasses.replace(
        r,
        losses=losses,
        grad=from_rows(r.grad, shape),
        probs=None if r.probs is None else from_rows(r.probs, shape),
        z_losses=None if r.z_losses is None else r.z_losses.reshape(per_position),
    )


def _placed(exc: XentInputError, shape: tuple[int, ...], targets: str) -> XentInputError:
    """The error with its row (and column) index turned into a position of the K-dimensional input."""
    if exc.index is None or exc.operand not in ("logits", "target"):
        return exc
    n, rest = shape[0], shape[2:]
    position = tuple(int(i) for i in np.unravel_index(exc.index[0], (n, *rest)))
    if len(exc.index) > 1 and (exc.operand == "logits" or targets != "index"):
        index = (position[0], exc.index[1], *position[1:])
    else:
        index = position
    return XentInputError(exc.message, operand=exc.operand, index=index, option=exc.option)
