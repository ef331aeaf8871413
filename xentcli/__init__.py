"""xentcli: a trusted reference for softmax / cross-entropy math.

Library API (NumPy only; no click or rich):

>>> from xentcli import cross_entropy, binary_cross_entropy
>>> r = cross_entropy([[2, 1, 0.1], [0.1, 2, 1.9]], [1, 0])
>>> round(r.loss, 3)
2.019

Names are imported lazily so that ``xent --help`` does not pay for NumPy.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .errors import XentError, XentInputError, XentMathError, XentWarning

_NUMERIC = (
    "LossResult",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "log_softmax",
    "logsumexp",
    "softmax",
)

__all__ = [
    "__version__",
    "XentError",
    "XentInputError",
    "XentMathError",
    "XentWarning",
    *_NUMERIC,
]


def __getattr__(name: str) -> Any:
    if name in _NUMERIC:
        from . import numeric

        return getattr(numeric, name)
    raise AttributeError(f"module 'xentcli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
