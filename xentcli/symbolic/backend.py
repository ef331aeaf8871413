"""What the derivation pipeline asks of a backend, and what both backends share.

The pipeline (:mod:`xentcli.symbolic.pipeline`) states each identity once, as
two functions of an :class:`~xentcli.symbolic.quantities.Algebra` and class
indices; a backend decides it: the concrete backend for every index in
``1..C`` by exact arithmetic, the symbolic-C backend once for symbolic
indices. Results are :class:`~xentcli.symbolic.model.Check` objects (a check
that raises inside SymPy fails, it never passes), never text to be parsed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sympy as sp

from .model import Block, Check, Progress, Tex, no_progress
from .problem import Problem
from .prose import Notation
from .quantities import Algebra

Side = Callable[..., Any]  # f(A, *indices) -> a value of A


def raised(exc: BaseException) -> str:
    """An exception inside a check, as a one-line detail."""
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__} raised during the check" + (f" ({text})" if text else "")


def short(expr: Any, limit: int = 160) -> str:
    text = str(expr)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Derived:
    """The left-hand sides a proof computed (e.g. the Jacobian entries), for later steps to reuse."""

    at: Callable[..., Any]  # at(*indices) -> value


class Backend:
    """Answers the pipeline's questions for one :class:`Problem`."""

    problem: Problem
    progress: Progress = no_progress

    # -- notation ---------------------------------------------------------
    @property
    def n(self) -> str:
        """How C is written: ``3`` or the letter."""
        return str(self.problem.classes)

    def forall(self, over: Sequence[str]) -> str:
        """``for all 3 j`` / ``for all 9 (i, j)`` or ``for every 1 ≤ j ≤ n``."""
        raise NotImplementedError

    # -- the algebras -----------------------------------------------------
    def algebra(self, space: str = "z") -> Algebra:
        """Where identities are decided (``z``, ``p`` or ``sigma`` space)."""
        raise NotImplementedError

    @property
    def expressions(self) -> Algebra:
        """SymPy expressions over the logits (for documents, JSON, the numeric cross-check)."""
        raise NotImplementedError

    # -- deciding ---------------------------------------------------------
    def prove(
        self,
        name: str,
        statement: str,
        lhs: Side,
        rhs: Side,
        *,
        over: Sequence[str] = ("j",),
        space: str = "z",
        method: str | None = None,
        given: str | None = None,
        cases: tuple[str, str] | None = None,
        sympy_diff: bool = False,
        keep: bool = False,
    ) -> tuple[list[Check], Derived]:
        """Decide ``lhs(A, *idx) == rhs(A, *idx)`` for every index tuple ``idx`` over the classes.

        ``given="normalized"`` decides it given sum(y) = 1; ``cases=(a, b)``
        decides the cases a = b and a != b separately (for delta_ab);
        ``sympy_diff`` adds an independent check with ``sympy.diff`` where
        the backend can afford it. Returns the checks and (with ``keep``)
        the derived left-hand sides.
        """
        raise NotImplementedError

    def prove_zero(self, name: str, statement: str, f: Callable[..., Any], method: str,
                   over: Sequence[str] = ()) -> Check:
        """Decide that ``f(expressions, *idx)`` (an identity of logarithms) is 0 for every index tuple."""
        raise NotImplementedError

    # -- what the documents show ------------------------------------------
    def method_parts(self) -> tuple[str | Tex, ...]:
        """The paragraph that says how this backend decides an identity."""
        raise NotImplementedError

    def examples(self, name: str, nt: Notation) -> list[Block]:
        """Worked SymPy output to show in step ``name`` (what the backend can show at its size)."""
        return []

    def affordable(self, check: str) -> bool:
        """Whether an optional check fits the backend's budget (e.g. an O(C^3) chain rule)."""
        return True


def guarded(name: str, statement: str, method: str, count: int, decide: Callable[[], tuple[bool, str]]) -> Check:
    """A check whose decision may raise: an exception is a failed check with the error as its detail."""
    try:
        ok, detail = decide()
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - an error inside SymPy is a failed check, never a pass
        ok, detail = False, raised(exc)
    return Check(name, statement, method, ok, count, detail)


# The JSON strings' names of scalars (parseable, and clear of SymPy's own N, S, E) and how documents show them.
DISPLAY_NAMES = {"mask": "m", "n_samples": "N", "w_total": "W", "rest": "R"}


def display(expr: Any) -> Any:
    """A SymPy expression with the JSON names of scalars replaced by the documents' (mask -> m, ...)."""
    if not isinstance(expr, sp.Basic):
        return expr
    swap = {s: sp.Symbol(DISPLAY_NAMES[s.name], **s.assumptions0) for s in expr.free_symbols
            if isinstance(s, sp.Symbol) and s.name in DISPLAY_NAMES}
    return expr.xreplace(swap) if swap else expr
