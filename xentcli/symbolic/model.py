"""What a derivation is made of: steps of prose and equations, and checks that pass or fail.

Renderers (:mod:`xentcli.symbolic.documents`, and the CLI's rich view) only
read these objects; they never compute.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import sympy as sp

if TYPE_CHECKING:
    from .problem import Problem


@dataclass(frozen=True)
class Tex:
    """A piece of math given directly: LaTeX for documents, plain unicode for terminals/JSON."""

    latex: str
    plain: str

    def neg(self) -> Tex:
        """The negative: a leading minus sign."""
        return Tex(f"-{self.latex}", f"−{self.plain}")


MathItem: TypeAlias = "sp.Basic | Tex"


@dataclass(frozen=True)
class Equation:
    """``terms[0] = terms[1] = ...``, optionally with a note (``for all i``)."""

    terms: tuple[MathItem, ...]
    note: str = ""


@dataclass(frozen=True)
class Para:
    """Prose with inline math: a sequence of strings and :class:`Tex`/SymPy pieces."""

    parts: tuple[str | MathItem, ...]


@dataclass(frozen=True)
class MatrixDisplay:
    """A named matrix (a Jacobian) shown in full."""

    name: MathItem
    matrix: sp.Matrix
    equals: tuple[MathItem, ...] = ()


Block: TypeAlias = "Para | Equation | MatrixDisplay"


@dataclass
class Check:
    """One machine check: what it states, how it was decided, and whether it held."""

    name: str
    statement: str
    method: str
    passed: bool
    count: int = 1
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)  # structured results (a claim's counterexample)

    def as_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "statement": self.statement,
            "method": self.method,
            "passed": self.passed,
            "count": self.count,
        }
        if self.detail:
            out["detail"] = self.detail
        out.update(self.data)
        return out


@dataclass
class Step:
    title: str
    blocks: list[Block] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def say(self, *parts: str | MathItem) -> Step:
        self.blocks.append(Para(tuple(parts)))
        return self

    def eq(self, *terms: MathItem, note: str = "") -> Step:
        self.blocks.append(Equation(tuple(terms), note))
        return self

    def matrix(self, name: MathItem, matrix: sp.Matrix, *equals: MathItem) -> Step:
        self.blocks.append(MatrixDisplay(name, matrix, tuple(equals)))
        return self


@dataclass
class Derivation:
    """A finished derivation.

    ``loss_expr``, ``gradient`` and ``jacobian`` are SymPy-parsable strings
    over ``z1..zC`` and ``y1..yC`` (softmax written out with ``exp``); for a
    symbolic number of classes they use ``z[j]``, ``y[j]`` and ``Sum``.
    ``gradient`` is the exact derivative of the loss with no assumption on the
    targets; ``gradient_assuming`` is the closed form under ``assumptions``.
    """

    command: str
    problem: Problem
    steps: list[Step]
    loss_expr: str
    gradient: list[str]
    gradient_assuming: list[str]
    assumptions: list[str]
    jacobian: list[list[str]] | None
    jacobian_of: str
    symbols: dict[str, str]
    definitions: dict[str, str] = field(default_factory=dict)  # names the Jacobian's entries use (p1 = ...)

    @property
    def title(self) -> str:
        return self.problem.title()

    @property
    def classes(self) -> int | str:
        return self.problem.classes

    @property
    def loss(self) -> str:
        return self.problem.spec.kind

    @property
    def options(self) -> dict[str, Any]:
        """The loss options (exact values as text, ``sym`` for symbols) and the derivation's own."""
        from ..spec import format_value

        spec = self.problem.spec

        def value(v: Any) -> Any:
            return None if v is None else format_value(v)

        out = {
            "loss": spec.kind,
            "reduction": spec.reduction,
            "targets": spec.targets,
            "weight": value(spec.weight),
            "ignore_index": spec.ignore_index,
            "label_smoothing": format_value(spec.label_smoothing) if spec.smoothing else None,
            "pos_weight": value(spec.pos_weight),
        }
        if spec.language_model:  # (left out otherwise, so that the documents without them stay as they were)
            out["z_loss"] = format_value(spec.z_loss) if spec.has_z_loss else None
            out["softcap"] = value(spec.softcap)
            out["temperature"] = format_value(spec.temperature) if spec.has_temperature else None
        out["assume_normalized"] = self.problem.normalized and spec.targets == "prob"
        out["claim"] = self.problem.claim
        return out

    @property
    def checks(self) -> list[Check]:
        return [c for s in self.steps for c in s.checks]

    @property
    def verified(self) -> bool:
        checks = self.checks
        return bool(checks) and all(c.passed for c in checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]


Progress = Callable[[str, int, int], None]


def no_progress(task: str, done: int, total: int) -> None:
    """Default progress callback: does nothing."""


def join_plain(items: Sequence[str]) -> str:
    return ", ".join(items)
