"""Option vectors (class weights, pos_weight) as arrays in the kernel's dtype.

Their values were validated by :class:`~xentcli.spec.LossSpec` (finite, not
negative, one per class or one value); what is left is whether they fit the
dtype the kernel computes in.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import XentInputError
from ..spec import SYM


def option_vector(values: Any, classes: int, option: str, dt: np.dtype) -> np.ndarray | None:
    """``values`` (a tuple from the spec, or ``None``) as a ``(classes,)`` array of dtype ``dt``."""
    if values is None:
        return None
    if values is SYM:
        raise XentInputError("sym is for xent derive; a computation needs numbers", option=option)
    floats = []
    for i, v in enumerate(values):
        try:
            floats.append(float(v))
        except OverflowError:
            raise XentInputError(f"value {i + 1} does not fit in float64", option=option) from None
    arr = np.array(floats, dtype=np.float64)
    if arr.shape[0] == 1 and classes != 1:
        arr = np.repeat(arr, classes)
    with np.errstate(over="ignore"):
        out = arr.astype(dt)
    big = np.isinf(out) & np.isfinite(arr)
    if big.any():
        i = int(np.argmax(big))
        largest = float(np.finfo(dt).max)
        raise XentInputError(f"value {i + 1} ({floats[i]!r}) does not fit in {dt} (largest {largest:.4g}); "
                             "use --dtype float64", option=option)
    return out
