"""What a derivation is made of: steps of prose and equations, and checks that pass or fail.

Renderers (:mod:`xentcli.symbolic.documents`, and the CLI's rich view) only
read these objects; they never compute.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import sympy as sp


@dataclass(frozen=True)
class Tex:
    """A piece of math given directly: LaTeX for documents, plain unicode for terminals/JSON."""

    latex: str
    plain: str


MathItem = Union[sp.Basic, Tex]


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


Block = Union[Para, Equation, MatrixDisplay]


@dataclass
class Check:
    """One machine check: what it states, how it was decided, and whether it held."""

    name: str
    statement: str
    method: str
    passed: bool
    count: int = 1
    detail: str = ""

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
    ``gradient`` is the exact derivative of ``loss_expr`` with no assumption;
    ``gradient_assuming`` is the simplified form under ``assumptions``.
    """

    command: str
    title: str
    classes: int | str
    loss: str
    options: dict[str, Any]
    steps: list[Step]
    loss_expr: str
    gradient: list[str]
    gradient_assuming: list[str]
    assumptions: list[str]
    jacobian: list[list[str]] | None
    jacobian_of: str
    symbols: dict[str, str]

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
