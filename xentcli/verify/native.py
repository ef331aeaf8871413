"""How a target is called: the one place that turns a case's arrays into the target's outputs.

Everything that runs an implementation (in this process, or in a child process
that isolates it) goes through :func:`call_target`, so that what a target
receives and how its outputs are read is written once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..spec import LossSpec

__all__ = ["call_target", "split_output"]


def split_output(out: Any) -> tuple[Any, Any]:
    """(loss, grad) from what the implementation returned: the loss, or (loss, grad)."""
    if isinstance(out, (tuple, list)) and len(out) == 2:
        return out[0], out[1]
    return out, None


def call_target(fn: Callable[..., Any], logits: np.ndarray, targets: np.ndarray, options: LossSpec
                ) -> tuple[Any, Any]:
    """Call ``fn`` on one case's inputs (its own copies) and return its (loss, grad or None), as returned.

    ``options`` is the loss specification the case is judged under (for targets that take the options
    under their own names). Exceptions from the target propagate to the caller.
    """
    _ = options
    return split_output(fn(logits.copy(), targets.copy()))
