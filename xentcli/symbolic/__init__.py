"""Symbolic derivations (SymPy): softmax Jacobian and cross-entropy gradients, proved exactly.

Only ``xent derive`` imports this package; ``xent compute`` never does.
"""

from __future__ import annotations

from .model import Check, Derivation, Step

__all__ = ["Check", "Derivation", "Step", "derive"]


def derive(
    classes: int | str,
    *,
    loss: str = "ce",
    mean: bool = False,
    smoothing: bool = False,
    weights: bool = False,
    assume_normalized: bool = True,
    claim: str | None = None,
    command: str = "",
    progress=None,
) -> Derivation:
    """Derive and prove the gradient of ``loss`` for ``classes`` classes (an int, or a letter for symbolic C)."""
    from .model import no_progress

    progress = progress or no_progress
    if isinstance(classes, int):
        from .concrete import Spec, derive_concrete

        spec = Spec(classes, loss, mean, smoothing, weights, assume_normalized, claim)
        return derive_concrete(spec, command, progress)
    from .general import derive_general

    return derive_general(
        classes,
        loss=loss,
        mean=mean,
        smoothing=smoothing,
        weights=weights,
        assume_normalized=assume_normalized,
        claim=claim,
        command=command,
    )
