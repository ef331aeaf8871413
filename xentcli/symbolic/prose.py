"""Notation shared by every step: how C, the targets, the loss and the denominator are written.

Each function returns a :class:`~xentcli.symbolic.model.Tex` (LaTeX for
documents, plain unicode for terminals and JSON), written once for both
backends; only the number of classes (``3`` or ``n``) differs.
"""

from __future__ import annotations

from .model import Tex
from .problem import Problem


class Notation:
    """How one problem's quantities are written."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self.n = str(problem.classes)  # C as it is written: 3, or the letter

    # -- vectors and sums ---------------------------------------------------
    def vector(self, name: str) -> Tex:
        c = self.problem.classes
        if isinstance(c, int) and c <= 6:
            items = ", ".join(f"{name}_{{{k}}}" for k in range(1, c + 1))
            plain = ", ".join(f"{name}{_sub(k)}" for k in range(1, c + 1))
        else:
            items = rf"{name}_{{1}}, \dots, {name}_{{{self.n}}}"
            plain = f"{name}₁, …, {name}{_sub(self.n)}"
        return Tex(rf"{name} = ({items})", f"{name} = ({plain})")

    def sum(self, body_tex: str, body_plain: str, index: str = "i") -> Tex:
        return Tex(rf"\sum_{{{index}=1}}^{{{self.n}}} {body_tex}", f"Σ_{index} {body_plain}")

    # -- targets ------------------------------------------------------------
    def smoothed(self, index: str = "i") -> tuple[str, str]:
        """LaTeX and plain of the (smoothed) target of class ``index``."""
        if self.problem.smoothing:
            return rf"\tilde{{y}}_{index}", f"ỹ_{index}"
        return f"y_{index}", f"y_{index}"

    def target(self, index: str = "i") -> tuple[str, str]:
        """LaTeX and plain of the effective target a_index (mask, weight, smoothing as the options say)."""
        t, p = self.smoothed(index)
        if self.problem.weighted:
            t, p = rf"w_{index} {t}", f"w_{index} {p}"
        if self.problem.masked:
            t, p = rf"m\, {t}", f"m {p}"
        return t, p

    def grad(self, j: str = "j") -> Tex:
        """p_j sum_i a_i - a_j, written with the problem's targets."""
        at, ap = self.target("i")
        aj, apj = self.target(j)
        body = f"({at})" if " " in at else at
        body_p = f"({ap})" if " " in ap else ap
        return Tex(rf"p_{j} \sum_{{i=1}}^{{{self.n}}} {body} - {aj}", f"p_{j} Σ_i {body_p} − {apj}")

    def bce_grad(self, j: str = "j") -> Tex:
        """w_j ((1 - y_j) sigma_j - q_j y_j (1 - sigma_j)), or sigma_j - y_j without weights."""
        w_t, w_p = (rf"w_{j}\,", f"w_{j} ") if self.problem.weighted else ("", "")
        if self.problem.pos_weighted:
            inner_t = rf"(1 - y_{j})\,\sigma_{j} - q_{j}\, y_{j}\, (1 - \sigma_{j})"
            inner_p = f"(1 − y_{j}) σ_{j} − q_{j} y_{j} (1 − σ_{j})"
            return Tex(rf"{w_t}\left({inner_t}\right)", f"{w_p}((1 − y_{j}) σ_{j} − q_{j} y_{j} (1 − σ_{j}))") \
                if w_t else Tex(inner_t, inner_p)
        if w_t:
            return Tex(rf"{w_t}(\sigma_{j} - y_{j})", f"{w_p}(σ_{j} − y_{j})")
        return Tex(rf"\sigma_{j} - y_{j}", f"σ_{j} − y_{j}")

    # -- the loss and its reduction --------------------------------------------
    @property
    def ell(self) -> Tex:
        """The per-sample loss: L itself without a reduction, else ell."""
        return Tex("L", "L") if self.problem.spec.reduction == "none" else Tex(r"\ell", "ℓ")

    def denominator(self) -> Tex | None:
        d = self.problem.spec.denominator
        if d is None:
            return None
        if d == "weights":
            return Tex("W", "W")
        if d == "elements":
            return Tex(f"N\\,{self.n}", f"N·{self.n}")
        return Tex("N", "N")

    def scaled(self, g: Tex) -> Tex:
        d = self.denominator()
        if d is None:
            return g
        return Tex(rf"\frac{{{g.latex}}}{{{d.latex}}}", f"({g.plain}) / {d.plain}")


def dz(a: str, b: str, plain_a: str | None = None, plain_b: str | None = None) -> Tex:
    """The partial derivative of ``a`` by ``b``."""
    return Tex(rf"\frac{{\partial {a}}}{{\partial {b}}}", f"∂{plain_a or a}/∂{plain_b or b}")


_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def _sub(k: object) -> str:
    """A class index as a unicode subscript where it is a number (p₁), as written otherwise (p_n)."""
    text = str(k)
    return text.translate(_SUBSCRIPTS) if text.isdigit() else f"_{text}"
