"""Notation shared by every step: how C, the targets, the loss and the denominator are written.

Each function returns a :class:`~xentcli.symbolic.model.Tex` (LaTeX for
documents, plain unicode for terminals and JSON), written once for both
backends; only the number of classes (``3`` or ``n``) differs.
"""

from __future__ import annotations

from .model import Tex
from .problem import Problem
from .quantities import split_mean


class Notation:
    """How one problem's quantities are written."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self.n = str(problem.classes)  # C as it is written: 3, or the letter
        spec = problem.spec
        self.lm = spec.language_model
        self.chained = spec.softcap is not None or spec.has_temperature
        # the softmax's inputs: x (the capped and scaled logits) with soft-capping or a temperature, else z
        self.x = "x" if self.chained else "z"

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

    def grad(self, j: str = "j", part: str = "full") -> Tex:
        """p_j sum_i a_i - a_j, written with the problem's targets (``part="ce"``); with the z-loss plus
        2 m lam lse p_j (``"x"``: the derivative by the softmax input); with soft-capping or a temperature
        times (1 - t_j^2) / T (``"full"``: by the logit z_j)."""
        at, ap = self.target("i")
        aj, apj = self.target(j)
        body = f"({at})" if " " in at else at
        body_p = f"({ap})" if " " in ap else ap
        g = Tex(rf"p_{j} \sum_{{i=1}}^{{{self.n}}} {body} - {aj}", f"p_{j} Σ_i {body_p} − {apj}")
        if part != "ce" and self.problem.spec.has_z_loss:
            g = Tex(g.latex + rf" + {self.zloss_grad(j).latex}", g.plain + f" + {self.zloss_grad(j).plain}")
        return self.chain(g, j) if part == "full" else g

    def zloss_grad(self, j: str = "j") -> Tex:
        m_t, m_p = (r"m\,", "m ") if self.problem.masked else ("", "")
        return Tex(rf"2 {m_t}\lambda\, \mathrm{{lse}}\, p_{j}", f"2 {m_p}λ lse p_{j}")

    def chain_factor(self, j: str = "j") -> Tex | None:
        """dx_j/dz_j: (1 - t_j^2) / T, or the part of it that is on; None without soft-capping and temperature."""
        spec = self.problem.spec
        if not self.chained:
            return None
        if spec.softcap is not None and spec.has_temperature:
            return Tex(rf"\frac{{1 - t_{j}^2}}{{T}}", f"(1 − t_{j}²)/T")
        if spec.softcap is not None:
            return Tex(rf"(1 - t_{j}^2)", f"(1 − t_{j}²)")
        return Tex(r"\frac{1}{T}", "(1/T)")

    def chain(self, g: Tex, j: str = "j") -> Tex:
        """A derivative by the softmax input x_j times dx_j/dz_j."""
        f = self.chain_factor(j)
        if f is None:
            return g
        return Tex(rf"\left({g.latex}\right) {f.latex}", f"({g.plain}) {f.plain}")

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

    @property
    def split(self) -> bool:
        """Whether the mean divides the z-loss apart: by N, the counted samples, while the cross-entropy is
        divided by W (class weights over class indices, as Liger-Kernel)."""
        return split_mean(self.problem)

    def mean_grad(self, j: str = "j") -> Tex:
        """The gradient of L by z_j: the per-sample gradient over the denominator, or with split the
        cross-entropy's part over W plus the z-loss's over N, times dx_j/dz_j."""
        if not self.split:
            return self.scaled(self.grad(j))
        ce, zl = self.grad(j, part="ce"), self.zloss_grad(j)
        return self.chain(Tex(rf"\frac{{{ce.latex}}}{{W}} + \frac{{{zl.latex}}}{{N}}",
                              f"({ce.plain}) / W + ({zl.plain}) / N"), j)


def dz(a: str, b: str, plain_a: str | None = None, plain_b: str | None = None) -> Tex:
    """The partial derivative of ``a`` by ``b``."""
    return Tex(rf"\frac{{\partial {a}}}{{\partial {b}}}", f"∂{plain_a or a}/∂{plain_b or b}")


_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def _sub(k: object) -> str:
    """A class index as a unicode subscript where it is a number (p₁), as written otherwise (p_n)."""
    text = str(k)
    return text.translate(_SUBSCRIPTS) if text.isdigit() else f"_{text}"
