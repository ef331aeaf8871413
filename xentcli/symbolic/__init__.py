"""Symbolic derivations (SymPy): softmax Jacobian and cross-entropy gradients, proved exactly.

Only ``xent derive`` imports the SymPy parts of this package; ``xent compute``
never does. Importing the package itself is cheap (the command line reads
:mod:`xentcli.symbolic.problem` before it decides to derive anything).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import Derivation

__all__ = ["derive"]


def derive(classes: int | str, spec: Any = None, *, assume_normalized: bool = True, claim: str | None = None,
           command: str = "", progress: Any = None) -> Derivation:
    """Derive and prove the gradient of ``spec`` (a :class:`~xentcli.spec.LossSpec`, default cross-entropy
    per sample) for ``classes`` classes: an int, or a letter for a symbolic number of classes."""
    from ..spec import DERIVE_REDUCTION, LossSpec
    from .derivation import derive_problem
    from .problem import Problem

    problem = Problem(classes, spec if spec is not None else LossSpec(reduction=DERIVE_REDUCTION),
                      assume_normalized, claim)
    return derive_problem(problem, command=command, progress=progress)
