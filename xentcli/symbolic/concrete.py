r"""Derivations for a concrete number of classes C (2 <= C <= MAX_CLASSES).

Every entry is checked: all C*C Jacobian entries, the chain rule and the
direct derivative for every class, each by exact rational-function arithmetic
in a SymPy polynomial ring (see :mod:`xentcli.symbolic.algebra`). For small C
the derivative is also taken independently with ``sympy.diff`` on the
expression in the z's, and the two are proved equal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

from .algebra import Frac, LogSum, Space, is_zero_expr
from .model import Check, Derivation, Progress, Step, Tex, no_progress

MAX_CLASSES = 200
FULL_MATRIX = 4  # show the whole Jacobian up to this C
SYMPY_DIFF_MAX = 12  # cross-check with generic sympy.diff up to this C
RING_METHOD = "exact rational functions of u_k = exp(z_k): cross-multiplied numerators are the same polynomial"
EXPAND_METHOD = "together + expand: the numerator is the zero polynomial"
LOG_METHOD = "expand_log over positive symbols, then together + expand: 0"


@dataclass(frozen=True)
class Spec:
    classes: int
    loss: str = "ce"  # ce | bce | nll | kl
    mean: bool = False
    smoothing: bool = False
    weights: bool = False
    assume_normalized: bool = True
    claim: str | None = None

    @property
    def family(self) -> str:
        return "bce" if self.loss == "bce" else "softmax"


class Symbols:
    """All SymPy symbols of one derivation, and their names in JSON strings."""

    def __init__(self, spec: Spec):
        c = spec.classes
        rng = range(1, c + 1)
        self.z = [sp.Symbol(f"z{k}", real=True) for k in rng]
        self.y = [sp.Symbol(f"y{k}", real=True) for k in rng]
        self.u = [sp.Symbol(f"u{k}", positive=True) for k in rng]
        self.p = [sp.Symbol(f"p{k}", positive=True) for k in rng]
        self.sig = [sp.Symbol(f"sigma{k}", positive=True) for k in rng]
        self.w = [sp.Symbol(f"w{k}", positive=True) for k in rng] if spec.weights else []
        self.eps = sp.Symbol("epsilon", nonnegative=True) if spec.smoothing else None
        # Denominator of the batch mean: N samples (N*C elements for BCE), or the
        # summed target weights W of PyTorch's weighted mean.
        self.den = None
        self.rest = None
        if spec.mean:
            self.den = sp.Symbol("W", positive=True) if spec.weights and spec.family == "softmax" else sp.Symbol(
                "N", positive=True
            )
            self.rest = sp.Symbol("R", real=True)
        self.params = [*self.y, *self.w]
        if self.eps is not None:
            self.params.append(self.eps)
        if self.den is not None:
            self.params += [self.den, self.rest]
        self.json_names = {self.eps: "epsilon"} if self.eps is not None else {}
        if self.den is not None:
            self.json_names[self.den] = "w_total" if self.den.name == "W" else "n_samples"
            self.json_names[self.rest] = "rest"


def _sum_str(items: list[str]) -> str:
    return " + ".join(items)


class Concrete:
    """One concrete-C derivation under construction."""

    def __init__(self, spec: Spec, progress: Progress = no_progress):
        if not 2 <= spec.classes <= MAX_CLASSES:
            raise ValueError(f"classes must be between 2 and {MAX_CLASSES}")
        self.spec = spec
        self.C = spec.classes
        self.progress = progress
        self.sym = Symbols(spec)
        self.space = Space(self.sym.u, self.sym.params)
        sp_ = self.space
        self.U = sp_.u
        self.S_poly = sum(self.U, sp_.ring.zero)
        self.P = [Frac.over(u, self.S_poly) for u in self.U]
        self.one_plus_u = [sp_.ring.one + u for u in self.U]
        self.SIG = [Frac.over(u, f) for u, f in zip(self.U, self.one_plus_u)]
        self.J: list[list[Frac | None]] | None = None
        self.Y = [sp_.sym(s) for s in self.sym.y]
        self.W = [sp_.sym(s) for s in self.sym.w]
        self.EPS = sp_.sym(self.sym.eps) if self.sym.eps is not None else None
        self.DEN = sp_.sym(self.sym.den) if self.sym.den is not None else None
        self.REST = sp_.sym(self.sym.rest) if self.sym.rest is not None else None
        self.steps: list[Step] = []
        rng = range(self.C)
        if spec.family == "bce":
            self.A = [self.Y[c] for c in rng]
            self.G = [
                (self.W[c] if self.W else 1) * (self.SIG[c] - self.Y[c]) for c in rng
            ]
        else:
            self.A = [self.target(c) for c in rng]
            s = self.A[0]
            for a in self.A[1:]:
                s = s + a
            self.s = s
            self.G = [self.P[c] * s - self.A[c] for c in rng]

    # ----------------------------------------------------------------- helpers

    def tilde(self, c: int) -> Frac:
        """(1 - eps) y_c + eps / C, or y_c without smoothing."""
        if self.EPS is None:
            return self.Y[c]
        return (1 - self.EPS) * self.Y[c] + self.EPS * sp.Rational(1, self.C)

    def target(self, c: int) -> Frac:
        """The effective target a_c = w_c * ytilde_c."""
        t = self.tilde(c)
        return self.W[c] * t if self.W else t

    def scale(self, f: Frac) -> Frac:
        return f / self.DEN if self.DEN is not None else f

    def check_all(
        self, name: str, statement: str, method: str, total: int, ok: Callable[[int], bool], describe: Callable[[int], str]
    ) -> Check:
        failures = []
        for k in range(total):
            try:
                held = ok(k)
            except (KeyboardInterrupt, MemoryError):
                raise
            except Exception as exc:  # noqa: BLE001 - an error inside SymPy is a failed check, never a pass
                return Check(name, statement, method, False, total,
                             f"{describe(k)}: {type(exc).__name__} raised during the check ({exc})")
            if held is not True:
                failures.append(describe(k))
            if total >= 200 and k % max(1, total // 50) == 0:
                self.progress(name, k, total)
        if total >= 200:
            self.progress(name, total, total)
        detail = ""
        if failures:
            detail = "fails for " + ", ".join(failures[:5]) + (" ..." if len(failures) > 5 else "")
        return Check(name, statement, method, not failures, total, detail)

    def to_expr(self, f: Frac) -> sp.Expr:
        """A ring element as a SymPy expression in exp(z_k) (u_k replaced back)."""
        gens = [*self.sym.u, *self.sym.params]
        expr = f.as_expr(*gens)
        return expr.xreplace(dict(zip(self.sym.u, [sp.exp(z) for z in self.sym.z])))

    def z_expr_to_frac(self, expr: sp.Expr) -> Frac:
        """An expression in the z's (exp, rational operations) as a ring element: z_k -> log u_k."""
        e = expr.xreplace({z: sp.log(u) for z, u in zip(self.sym.z, self.sym.u)})
        e = sp.expand_log(sp.powsimp(sp.expand_power_exp(e)), force=False)
        return self.space.from_expr(e)

    # ------------------------------------------------------------- expressions

    @property
    def S_z(self) -> sp.Expr:
        return sp.Add(*[sp.exp(z) for z in self.sym.z])

    def p_z(self, c: int) -> sp.Expr:
        return sp.exp(self.sym.z[c]) / self.S_z

    def sigma_z(self, c: int) -> sp.Expr:
        return 1 / (1 + sp.exp(-self.sym.z[c]))

    def target_sym(self, c: int) -> sp.Expr:
        y = self.sym.y[c]
        t = (1 - self.sym.eps) * y + self.sym.eps / self.C if self.sym.eps is not None else y
        return self.sym.w[c] * t if self.sym.w else t

    # ------------------------------------------------------------ JSON strings

    def json_strings(self) -> dict:
        C = self.C
        s = self.sym
        names = s.json_names
        S = _sum_str([f"exp(z{k})" for k in range(1, C + 1)])

        def p(c: int) -> str:
            return f"exp(z{c})/({S})"

        def sig(c: int) -> str:
            return f"1/(1 + exp(-z{c}))"

        def tilde(c: int) -> str:
            return f"((1 - epsilon)*y{c} + epsilon/{C})" if s.eps is not None else f"y{c}"

        def a(c: int) -> str:
            return f"w{c}*{tilde(c)}" if s.w else tilde(c)

        den = names.get(s.den, "")
        if self.spec.family == "bce" and den:
            den = f"({den}*{C})"

        def scaled(text: str) -> str:
            return f"({text})/{den}" if den else text

        rng = range(1, C + 1)
        if self.spec.family == "bce":
            wt = (lambda c: f"w{c}*") if s.w else (lambda c: "")
            per = " + ".join(f"{wt(c)}(y{c}*log({sig(c)}) + (1 - y{c})*log(1 - {sig(c)}))" for c in rng)
            loss = f"-({per})"
            grad = [scaled(f"{wt(c)}({sig(c)} - y{c})") for c in rng]
            assuming = list(grad)
            jac = [[f"{sig(i)}*(1 - {sig(i)})" if i == j else "0" for j in rng] for i in rng]
        else:
            if self.spec.loss == "ce":
                loss = "-(" + " + ".join(f"{a(c)}*log({p(c)})" for c in rng) + ")"
            elif self.spec.loss == "nll":
                loss = "-(" + " + ".join(f"{a(c)}*(z{c} - log({S}))" for c in rng) + ")"
            else:  # kl
                loss = " + ".join(f"{a(c)}*log({a(c)}/({p(c)}))" for c in rng)
            total = "(" + " + ".join(a(c) for c in rng) + ")"
            grad = [scaled(f"{p(c)}*{total} - {a(c)}") for c in rng]
            if self.spec.assume_normalized and not s.w:
                assuming = [scaled(f"{p(c)} - {tilde(c)}") for c in rng]
            else:
                assuming = list(grad)
            jac = [[f"{p(i)}*(1 - {p(i)})" if i == j else f"-{p(i)}*{p(j)}" for j in rng] for i in rng]
        if den:
            loss = f"(({loss}) + rest)/{den}"
        return {"loss": loss, "gradient": grad, "gradient_assuming": assuming, "jacobian": jac}


# --------------------------------------------------------------------------
# Notation shared by the steps
# --------------------------------------------------------------------------


def _vec(name: str, c: int) -> Tex:
    if c <= 6:
        items = ", ".join(f"{name}_{{{k}}}" for k in range(1, c + 1))
        plain = ", ".join(f"{name}{k}" for k in range(1, c + 1))
    else:
        items = rf"{name}_{{1}}, \dots, {name}_{{{c}}}"
        plain = f"{name}1, …, {name}{c}"
    return Tex(rf"{name} = ({items})", f"{name} = ({plain})")


def _target_notation(dv: Concrete) -> tuple[str, str]:
    """LaTeX and plain forms of the effective target a_i."""
    base_t, base_p = (r"\tilde{y}_i", "ỹ_i") if dv.sym.eps is not None else ("y_i", "y_i")
    if dv.sym.w:
        return rf"w_i {base_t}", f"w_i {base_p}"
    return base_t, base_p


def _loss_name(dv: Concrete) -> tuple[str, str]:
    return (r"\ell", "ℓ") if dv.spec.mean else ("L", "L")


def _grad_tex(dv: Concrete, sub: str = "j") -> tuple[str, str]:
    """LaTeX/plain of the per-sample gradient p_j * sum_i a_i - a_j."""
    at, ap = _target_notation(dv)
    at_j, ap_j = at.replace("_i", f"_{sub}"), ap.replace("_i", f"_{sub}")
    return (
        rf"p_{sub} \sum_{{i=1}}^{{C}} {at} - {at_j}",
        f"p_{sub} Σ_i {ap} − {ap_j}",
    )


def _definitions(dv: Concrete) -> Step:
    C = dv.C
    spec = dv.spec
    st = Step("Definitions")
    st.say(
        f"One sample with C = {C} classes: logits ",
        _vec("z", C),
        " and targets ",
        _vec("y", C),
        ".",
    )
    ln, lp = _loss_name(dv)
    at, ap = _target_notation(dv)
    if spec.family == "bce":
        st.say("Each of the C outputs is its own binary problem (sigmoid, then binary cross-entropy).")
        st.eq(
            Tex(r"\sigma_i", "σ_i"),
            Tex(r"\frac{1}{1 + e^{-z_i}}", "1 / (1 + exp(−z_i))"),
            note="for i = 1, …, C",
        )
        wt, wp = (r"w_i\,", "w_i ") if dv.sym.w else ("", "")
        st.eq(
            Tex(ln, lp),
            Tex(
                rf"-\sum_{{i=1}}^{{C}} {wt}\left[y_i \log \sigma_i + (1 - y_i) \log(1 - \sigma_i)\right]",
                f"−Σ_i {wp}[y_i log σ_i + (1 − y_i) log(1 − σ_i)]",
            ),
        )
    else:
        st.eq(
            Tex("p_i", "p_i"),
            Tex(r"\frac{e^{z_i}}{\sum_{k=1}^{C} e^{z_k}}", "exp(z_i) / Σ_k exp(z_k)"),
            note="softmax, for i = 1, …, C",
        )
        if dv.sym.eps is not None:
            st.say("Label smoothing with ", Tex(r"0 \le \epsilon \le 1", "0 ≤ ε ≤ 1"), " replaces each target by")
            st.eq(Tex(r"\tilde{y}_i", "ỹ_i"), Tex(rf"(1 - \epsilon)\, y_i + \frac{{\epsilon}}{{{C}}}", f"(1 − ε) y_i + ε/{C}"))
        if dv.sym.w:
            st.say("Class weights ", _vec("w", C), " scale each class's term (PyTorch's weight).")
        if spec.loss == "ce":
            st.eq(Tex(ln, lp), Tex(rf"-\sum_{{i=1}}^{{C}} {at} \log p_i", f"−Σ_i {ap} log p_i"))
        elif spec.loss == "nll":
            st.say("LogSoftmax followed by the negative log-likelihood (NLLLoss):")
            st.eq(
                Tex("o_i", "o_i"),
                Tex(r"z_i - \log \sum_{k=1}^{C} e^{z_k}", "z_i − log Σ_k exp(z_k)"),
                note="LogSoftmax",
            )
            st.eq(Tex(ln, lp), Tex(rf"-\sum_{{i=1}}^{{C}} {at}\, o_i", f"−Σ_i {ap} o_i"))
        else:
            st.say("The Kullback–Leibler divergence of the prediction p from the target distribution:")
            st.eq(
                Tex(ln, lp),
                Tex(rf"\sum_{{i=1}}^{{C}} {at} \log \frac{{{at}}}{{p_i}}", f"Σ_i {ap} log({ap} / p_i)"),
                note="KL(y ‖ p); a term with target 0 is 0",
            )
    if spec.mean:
        d = dv.sym.den
        if d.name == "W":
            st.say(
                "Batch mean (PyTorch's weighted mean): the summed target weights W of the batch divide the sum of "
                "the per-sample losses. R, the losses of the other samples, and W do not depend on z."
            )
        elif spec.family == "bce":
            st.say(
                "Batch mean over N samples: PyTorch's mean divides by the number of elements, N·C. "
                "R, the losses of the other N − 1 samples, does not depend on z."
            )
        else:
            st.say(
                "Batch mean over N samples (the seed's mean loss). R, the losses of the other N − 1 samples, "
                "does not depend on z."
            )
        den_t = {"W": "W", "N": "N C" if spec.family == "bce" else "N"}[d.name]
        st.eq(Tex("L", "L"), Tex(rf"\frac{{\ell + R}}{{{den_t}}}", f"(ℓ + R) / {den_t.replace(' ', '·')}"))
    if spec.assume_normalized and spec.family == "softmax":
        st.say(
            "Assumption (stated, and applied only in the last step): ",
            Tex(r"\sum_{i=1}^{C} y_i = 1", "Σ_i y_i = 1"),
            " — one-hot or probability targets. Without it the result is the general form.",
        )
    st.say(
        "Method: with ",
        Tex(r"u_k = e^{z_k} > 0", "u_k = exp(z_k) > 0"),
        " every quantity below is a rational function of u, y and the parameters, and ",
        Tex(r"\partial/\partial z_j = u_j\, \partial/\partial u_j", "∂/∂z_j = u_j ∂/∂u_j"),
        ". SymPy differentiates and compares in the polynomial ring over the rationals; an equality holds only "
        "when the cross-multiplied numerators are the same polynomial (no simplify).",
    )
    return st


def _dz(a: str, b: str, plain_a: str | None = None, plain_b: str | None = None) -> Tex:
    return Tex(rf"\frac{{\partial {a}}}{{\partial {b}}}", f"∂{plain_a or a}/∂{plain_b or b}")


def _pz_symbols(dv: Concrete) -> list[sp.Symbol]:
    return dv.sym.p


def _softmax_jacobian(dv: Concrete) -> Step:
    C, U, S = dv.C, dv.U, dv.S_poly
    P = dv.P
    st = Step("Softmax Jacobian")
    z, p = dv.sym.z, dv.sym.p
    if C <= 6:
        st.say("SymPy differentiates ", Tex(r"p_1 = e^{z_1} / \sum_k e^{z_k}", "p1 = exp(z1)/Σ exp(z_k)"), ":")
        st.eq(_dz("p_1", "z_1", "p1", "z1"), sp.diff(dv.p_z(0), z[0]), p[0] * (1 - p[0]))
        st.eq(_dz("p_1", "z_2", "p1", "z2"), sp.diff(dv.p_z(0), z[1]), -p[0] * p[1])
        st.say("and likewise for every entry:")
    st.eq(
        _dz("p_i", "z_j"),
        Tex(r"\delta_{ij}\, p_i - p_i p_j", "δ_ij p_i − p_i p_j"),
        note="p_i(1 − p_i) on the diagonal, −p_i p_j off it",
    )
    if C <= FULL_MATRIX:
        m = sp.Matrix(C, C, lambda i, j: p[i] * (1 - p[i]) if i == j else -p[i] * p[j])
        st.matrix(Tex("J", "J"), m, Tex(r"\operatorname{diag}(p) - p\,p^{\top}", "diag(p) − p pᵀ"))
    else:
        st.eq(Tex("J", "J"), Tex(r"\operatorname{diag}(p) - p\,p^{\top}", "diag(p) − p pᵀ"))
    zero = dv.space.ring.zero
    dv.J = [[None] * C for _ in range(C)]

    def ok(k: int) -> bool:
        i, j = divmod(k, C)
        derived = P[i].dz(j)
        dv.J[i][j] = derived
        closed = Frac.over(U[i] * ((S if i == j else zero) - U[j]), (S, 2))
        return derived.equals(closed)

    st.checks.append(
        dv.check_all(
            "jacobian",
            f"∂p_i/∂z_j = δ_ij p_i − p_i p_j for all {C * C} entries",
            RING_METHOD,
            C * C,
            ok,
            lambda k: f"(i, j) = ({k // C + 1}, {k % C + 1})",
        )
    )
    if C <= 6:
        def ok_sympy(k: int) -> bool:
            i, j = divmod(k, C)
            return dv.z_expr_to_frac(sp.diff(dv.p_z(i), z[j])).equals(dv.J[i][j])

        st.checks.append(
            dv.check_all(
                "jacobian-sympy-diff",
                f"sympy.diff of p_i(z) by z_j equals the entry above, for all {C * C} entries",
                EXPAND_METHOD.replace("together + expand", "z_k -> log u_k, then exact comparison"),
                C * C,
                ok_sympy,
                lambda k: f"(i, j) = ({k // C + 1}, {k % C + 1})",
            )
        )
    return st


CHAIN_IN_U_MAX = 30  # above this C the chain rule is closed by composing two proved identities


def _targets_in(dv: Concrete, space: Space) -> list[Frac]:
    """The effective targets a_c built in another ring that has the same parameter symbols."""
    out = []
    for c in range(dv.C):
        t = space.sym(dv.sym.y[c])
        if dv.sym.eps is not None:
            eps = space.sym(dv.sym.eps)
            t = (1 - eps) * t + eps * sp.Rational(1, dv.C)
        if dv.sym.w:
            t = space.sym(dv.sym.w[c]) * t
        out.append(t)
    return out


def _loss_logsum(dv: Concrete) -> LogSum:
    """The per-sample loss as a sum of logs of polynomials in u (before any batch mean)."""
    L = LogSum(dv.space)
    A = dv.A
    for c in range(dv.C):
        if dv.spec.loss in ("ce", "nll"):
            # ce: -a_c log p_c; nll: -a_c (z_c - log S) = -a_c (log u_c - log S): the same logs.
            L.add_log(-A[c], dv.P[c])
        elif dv.spec.loss == "kl":
            # a_c log(a_c / p_c) = a_c log a_c - a_c log p_c; the first term is constant in z.
            L.add_log(A[c], A[c])
            L.add_log(-A[c], dv.P[c])
    return L


def _loss_z(dv: Concrete) -> sp.Expr:
    """The per-sample loss as an expression in the z's, for sympy.diff."""
    terms = []
    for c in range(dv.C):
        a = dv.target_sym(c)
        if dv.spec.loss == "ce":
            terms.append(-a * sp.log(dv.p_z(c)))
        elif dv.spec.loss == "nll":
            terms.append(-a * (dv.sym.z[c] - sp.log(dv.S_z)))
        else:
            terms.append(a * (sp.log(a) - sp.log(dv.p_z(c))))
    return sp.Add(*terms)


def _chain_rule(dv: Concrete) -> list[Step]:
    C = dv.C
    at, ap = _target_notation(dv)
    ln, lp = _loss_name(dv)
    st = Step("Chain rule")
    pspace = Space(dv.sym.p, dv.sym.params)
    PA = _targets_in(dv, pspace)
    Pp = [pspace.sym(s) for s in dv.sym.p]
    s_p = sum(PA[1:], PA[0])
    if dv.spec.loss == "nll":
        st.say("Through the LogSoftmax outputs o: first ", Tex(rf"\partial {ln}/\partial o_i", f"∂{lp}/∂o_i"), ",")
        st.eq(_dz(ln, "o_i", lp), Tex(f"-{at}", f"−{ap}"))
        # log-softmax Jacobian
        st.say("then the LogSoftmax Jacobian, from ", Tex(r"o_i = z_i - \log \sum_k e^{z_k}", "o_i = z_i − log Σ exp(z_k)"), ":")
        st.eq(_dz("o_i", "z_j"), Tex(r"\delta_{ij} - p_j", "δ_ij − p_j"))
        S = dv.S_poly
        zero = dv.space.ring.zero

        o = [
            LogSum(dv.space).add_log(dv.space.const(1), Frac(dv.U[i])).add_log(dv.space.const(-1), Frac(S))
            for i in range(C)
        ]

        def ok_o(k: int) -> bool:
            i, j = divmod(k, C)
            return o[i].dz(j).equals(Frac.over((S if i == j else zero) - dv.U[j], S))

        st.checks.append(
            dv.check_all(
                "log-softmax-jacobian",
                f"∂o_i/∂z_j = δ_ij − p_j for all {C * C} entries",
                RING_METHOD,
                C * C,
                ok_o,
                lambda k: f"(i, j) = ({k // C + 1}, {k % C + 1})",
            )
        )
        st.eq(
            _dz(ln, "z_j", lp),
            Tex(r"\sum_{i=1}^{C} \frac{\partial %s}{\partial o_i} \frac{\partial o_i}{\partial z_j}" % ln, f"Σ_i ∂{lp}/∂o_i ∂o_i/∂z_j"),
            Tex(rf"\sum_{{i=1}}^{{C}} -{at} \left(\delta_{{ij}} - p_j\right)", f"Σ_i −{ap} (δ_ij − p_j)"),
            Tex(*_grad_tex(dv)),
        )

        def ok_c(j: int) -> bool:
            total = sum((-PA[i] * ((1 if i == j else 0) - Pp[j]) for i in range(C)), pspace.const(0))
            return total.equals(Pp[j] * s_p - PA[j])

        st.checks.append(
            dv.check_all(
                "chain-rule",
                f"Σ_i −{ap} (δ_ij − p_j) = {_grad_tex(dv)[1]} for all {C} j (an identity in any p)",
                RING_METHOD.replace("u_k = exp(z_k)", "p"),
                C,
                ok_c,
                lambda j: f"j = {j + 1}",
            )
        )
        return [st]

    # ce and kl: through p
    st.say("The loss depends on z only through p. Its derivative by each p_i:")
    st.eq(_dz(ln, "p_i", lp), Tex(rf"-\frac{{{at}}}{{p_i}}", f"−{ap}/p_i"))
    Lp = LogSum(pspace)
    for c in range(C):
        if dv.spec.loss == "kl":
            Lp.add_log(PA[c], PA[c])
            Lp.add_log(-PA[c], Pp[c])
        else:
            Lp.add_log(-PA[c], Pp[c])
    st.checks.append(
        dv.check_all(
            "dloss-dp",
            f"∂{lp}/∂p_i = −{ap}/p_i for all {C} i, differentiating {lp} as a function of independent p",
            RING_METHOD.replace("u_k = exp(z_k)", "p"),
            C,
            lambda i: Lp.du(i).equals(-PA[i] / Pp[i]),
            lambda i: f"i = {i + 1}",
        )
    )
    st.say("and the chain rule with the Jacobian of the previous step:")
    st.eq(
        _dz(ln, "z_j", lp),
        Tex(r"\sum_{i=1}^{C} \frac{\partial %s}{\partial p_i} \frac{\partial p_i}{\partial z_j}" % ln, f"Σ_i ∂{lp}/∂p_i ∂p_i/∂z_j"),
        Tex(
            rf"\sum_{{i=1}}^{{C}} \left(-\frac{{{at}}}{{p_i}}\right) \left(\delta_{{ij}}\, p_i - p_i p_j\right)",
            f"Σ_i (−{ap}/p_i)(δ_ij p_i − p_i p_j)",
        ),
    )
    canc = Step("Cancellation")
    canc.say("Every Jacobian entry carries the factor p_i, which cancels the 1/p_i of the logarithm's derivative:")
    canc.eq(
        Tex(
            rf"\sum_{{i=1}}^{{C}} \left(-\frac{{{at}}}{{p_i}}\right) \left(\delta_{{ij}}\, p_i - p_i p_j\right)",
            f"Σ_i (−{ap}/p_i)(δ_ij p_i − p_i p_j)",
        ),
        Tex(rf"\sum_{{i=1}}^{{C}} -{at} \left(\delta_{{ij}} - p_j\right)", f"Σ_i −{ap} (δ_ij − p_j)"),
        Tex(*_grad_tex(dv)),
    )
    if C <= FULL_MATRIX and not dv.sym.w and dv.sym.eps is None:
        p, y = dv.sym.p, dv.sym.y
        tex_terms, plain_terms = [], []
        for i in range(1, C + 1):
            jt, jp = (r"p_{1}(1 - p_{1})", "p1(1 − p1)") if i == 1 else (rf"(-p_{{{i}}} p_{{1}})", f"(−p{i} p1)")
            tex_terms.append(rf"\left(-\frac{{y_{{{i}}}}}{{p_{{{i}}}}}\right) {jt}")
            plain_terms.append(f"(−y{i}/p{i})·{jp}")
        after_tex = "-y_{1}(1 - p_{1})" + "".join(f" + y_{{{i}}} p_{{1}}" for i in range(2, C + 1))
        after_plain = "−y1(1 − p1)" + "".join(f" + y{i} p1" for i in range(2, C + 1))
        canc.say("For j = 1:")
        canc.eq(
            _dz(ln, "z_1", lp, "z1"),
            Tex(" + ".join(tex_terms), " + ".join(plain_terms)),
            Tex(after_tex, after_plain),
            p[0] * sp.Add(*y) - y[0],
        )

    neg_a_over_p = [(-PA[i]) / Pp[i] for i in range(C)]
    pring = pspace.ring

    def ok_c(j: int) -> bool:
        terms = (
            neg_a_over_p[i] * Frac(Pp[i].num * ((pring.one if i == j else pring.zero) - Pp[j].num))  # δ_ij p_i − p_i p_j
            for i in range(C)
        )
        return Frac.sum(terms, pring).equals(Pp[j] * s_p - PA[j])

    canc.checks.append(
        dv.check_all(
            "cancellation",
            f"Σ_i (−{ap}/p_i)(δ_ij p_i − p_i p_j) = {_grad_tex(dv)[1]} for all {C} j (an identity in any p)",
            RING_METHOD.replace("u_k = exp(z_k)", "p"),
            C,
            ok_c,
            lambda j: f"j = {j + 1}",
        )
    )
    if C <= CHAIN_IN_U_MAX:
        J = dv.J

        def ok_u(j: int) -> bool:
            total = sum((-dv.A[i] / dv.P[i] * J[i][j] for i in range(C)), dv.space.const(0))
            return total.equals(dv.G[j])

        canc.checks.append(
            dv.check_all(
                "chain-rule",
                f"Σ_i ∂{lp}/∂p_i · ∂p_i/∂z_j, with the derived Jacobian, = {_grad_tex(dv)[1]} for all {C} j",
                RING_METHOD,
                C,
                ok_u,
                lambda j: f"j = {j + 1}",
            )
        )
    else:
        canc.say(
            "The chain-rule sum is the cancellation identity evaluated at p = softmax(z), with the Jacobian proved "
            "entry by entry above, so it equals the same closed form."
        )
    return [st, canc]


def _direct(dv: Concrete, L: LogSum) -> Step:
    C = dv.C
    ln, lp = _loss_name(dv)
    st = Step("Direct differentiation")
    st.say("Differentiating the loss as a function of z, without the chain rule:")
    if C <= 4:
        st.eq(_dz(ln, "z_1", lp, "z1"), sp.diff(_loss_z(dv), dv.sym.z[0]), _grad_sym(dv, 0))
    st.eq(_dz(ln, "z_j", lp), Tex(*_grad_tex(dv)))
    st.checks.append(
        dv.check_all(
            "direct",
            f"∂{lp}/∂z_j = {_grad_tex(dv)[1]} for all {C} j",
            RING_METHOD,
            C,
            lambda j: L.dz(j).equals(dv.G[j]),
            lambda j: f"j = {j + 1}",
        )
    )
    if C <= SYMPY_DIFF_MAX:
        Lz = _loss_z(dv)
        st.checks.append(
            dv.check_all(
                "direct-sympy-diff",
                f"sympy.diff of {lp}(z) by z_j equals {_grad_tex(dv)[1]} for all {C} j",
                "z_k -> log u_k, expand_log over positive symbols, then exact comparison",
                C,
                lambda j: dv.z_expr_to_frac(sp.diff(Lz, dv.sym.z[j])).equals(dv.G[j]),
                lambda j: f"j = {j + 1}",
            )
        )
    return st


def _grad_sym(dv: Concrete, j: int) -> sp.Expr:
    """p_j * sum(a) - a_j with display symbols (p, y, w, epsilon)."""
    a = [dv.target_sym(c) for c in range(dv.C)]
    return dv.sym.p[j] * sp.Add(*a) - a[j]


def _batch_mean(dv: Concrete, L: LogSum) -> Step:
    C = dv.C
    d = dv.sym.den
    den_t = {"W": "W", "N": "N C" if dv.spec.family == "bce" else "N"}[d.name]
    den_p = den_t.replace(" ", "·")
    st = Step("Batch mean")
    st.say("R and ", Tex(den_t, den_p), " do not depend on z, so the mean only rescales the per-sample gradient:")
    gt, gp = _grad_tex(dv) if dv.spec.family == "softmax" else (r"w_j(\sigma_j - y_j)" if dv.sym.w else r"\sigma_j - y_j",
                                                                   "w_j(σ_j − y_j)" if dv.sym.w else "σ_j − y_j")
    st.eq(
        _dz("L", "z_j"),
        Tex(rf"\frac{{1}}{{{den_t}}} \frac{{\partial \ell}}{{\partial z_j}}", f"(1/{den_p}) ∂ℓ/∂z_j"),
        Tex(rf"\frac{{{gt}}}{{{den_t}}}", f"({gp}) / {den_p}"),
    )
    factor = dv.DEN * C if dv.spec.family == "bce" else dv.DEN
    full = L.scaled(1 / factor).add(dv.REST / factor)
    st.checks.append(
        dv.check_all(
            "batch-mean",
            f"∂L/∂z_j = (per-sample gradient)/{den_p} for all {C} j, differentiating (ℓ + R)/{den_p}",
            RING_METHOD,
            C,
            lambda j: full.dz(j).equals(dv.G[j] / factor),
            lambda j: f"j = {j + 1}",
        )
    )
    return st


def _last_target(C: int) -> str:
    if C == 2:
        return "y_2 = 1 − y_1"
    if C == 3:
        return "y_3 = 1 − y_1 − y_2"
    return f"y_{C} = 1 − (y_1 + … + y_{C - 1})"


def _result(dv: Concrete) -> Step:
    C = dv.C
    st = Step("Result")
    den = None
    if dv.spec.mean:
        den = dv.DEN * C if dv.spec.family == "bce" else dv.DEN
    den_t = "" if den is None else {"W": "W", "N": "N C" if dv.spec.family == "bce" else "N"}[dv.sym.den.name]
    lhs = _dz("L", "z_j")

    def scaled_tex(t: str, p: str) -> Tex:
        if not den_t:
            return Tex(t, p)
        return Tex(rf"\frac{{{t}}}{{{den_t}}}", f"({p}) / {den_t.replace(' ', '·')}")

    if dv.spec.family == "bce":
        gt, gp = (r"w_j(\sigma_j - y_j)", "w_j(σ_j − y_j)") if dv.sym.w else (r"\sigma_j - y_j", "σ_j − y_j")
        st.eq(lhs, scaled_tex(gt, gp), note="for every j: the gradient is p − c of 001_*.txt")
        vt, vp = (r"w \odot (\sigma(z) - y)", "w ⊙ (σ(z) − y)") if dv.sym.w else (r"\sigma(z) - y", "σ(z) − y")
        st.eq(Tex(r"\nabla_z L", "∇_z L"), scaled_tex(vt, vp))
        return st
    gt, gp = _grad_tex(dv)
    st.eq(lhs, scaled_tex(gt, gp), note="for every j, with no assumption on the targets")
    if dv.spec.assume_normalized and not dv.sym.w:
        yC = dv.space.gen[dv.sym.y[-1]]
        others = sum((dv.space.gen[v] for v in dv.sym.y[:-1]), dv.space.ring.zero)
        subs = {dv.space.symbols.index(dv.sym.y[-1]): dv.space.ring.one - others}
        del yC
        tt, tp = (r"\tilde{y}_j", "ỹ_j") if dv.sym.eps is not None else ("y_j", "y_j")
        if dv.sym.eps is not None:
            st.say(
                "With ",
                Tex(r"\sum_i y_i = 1", "Σ_i y_i = 1"),
                " the smoothed targets also sum to 1: ",
                Tex(r"\sum_i \tilde{y}_i = (1 - \epsilon) + C \cdot \frac{\epsilon}{C} = 1", "Σ_i ỹ_i = (1 − ε) + C·ε/C = 1"),
                ", so",
            )
        else:
            st.say("With ", Tex(r"\sum_i y_i = 1", "Σ_i y_i = 1"), " the sum drops out:")
        st.eq(lhs, scaled_tex(f"p_j - {tt}", f"p_j − {tp}"))
        if dv.sym.eps is not None:
            st.eq(lhs, scaled_tex(rf"p_j - \left((1 - \epsilon)\, y_j + \frac{{\epsilon}}{{{C}}}\right)", f"p_j − ((1 − ε) y_j + ε/{C})"))
        vt, vp = (r"p - \tilde{y}", "p − ỹ") if dv.sym.eps is not None else ("p - y", "p − y")
        st.eq(Tex(r"\nabla_z L", "∇_z L"), scaled_tex(vt, vp))

        # Substitution is a ring homomorphism, so (p_j s - a_j) o subs = p_j (s o subs) - (a_j o subs).
        s_sub = dv.s.compose(subs)

        def ok(j: int) -> bool:
            g = dv.P[j] * s_sub - dv.A[j].compose(subs)
            closed = dv.P[j] - dv.tilde(j).compose(subs)
            if den is not None:
                g, closed = g / den, closed / den
            return g.equals(closed)

        st.checks.append(
            dv.check_all(
                "normalized-targets",
                f"with {_last_target(C)}: the gradient equals "
                + ("p_j − ((1 − ε) y_j + ε/C)" if dv.sym.eps is not None else "p_j − y_j")
                + (f" over {den_t.replace(' ', '·')}" if den_t else "")
                + f" for all {C} j",
                RING_METHOD,
                C,
                ok,
                lambda j: f"j = {j + 1}",
            )
        )
    if dv.sym.w:
        st.say(
            "For a class-index target t (y = e_t), as PyTorch's weight applies it:",
        )
        if dv.sym.eps is None:
            st.eq(_dz(r"\ell", "z_j", "ℓ"), Tex(r"w_t \left(p_j - \delta_{jt}\right)", "w_t (p_j − δ_jt)"))
        else:
            st.eq(
                _dz(r"\ell", "z_j", "ℓ"),
                Tex(
                    rf"p_j \left((1-\epsilon) w_t + \frac{{\epsilon}}{{{C}}} \sum_c w_c\right) - w_j \left((1-\epsilon)\delta_{{jt}} + \frac{{\epsilon}}{{{C}}}\right)",
                    f"p_j ((1−ε) w_t + (ε/{C}) Σ_c w_c) − w_j ((1−ε) δ_jt + ε/{C})",
                ),
            )
        ring = dv.space.ring
        ys = [dv.space.symbols.index(v) for v in dv.sym.y]
        wsum = dv.W[0]
        for wc in dv.W[1:]:
            wsum = wsum + wc
        eps = dv.EPS
        third = sp.Rational(1, C)
        cache: dict[int, tuple[Frac, Frac, list[Frac]]] = {}
        a_cache: dict[tuple[int, bool], Frac] = {}
        a_wants = {}

        def a_sub(j: int, on: bool) -> Frac:
            if (j, on) not in a_cache:
                a_cache[(j, on)] = dv.A[j].compose({ys[j]: ring.one if on else ring.zero})
                delta = 1 if on else 0
                a_wants[(j, on)] = dv.W[j] * delta if eps is None else dv.W[j] * ((1 - eps) * delta + eps * third)
            return a_cache[(j, on)]

        def for_target(t: int):
            # Substitution is a ring homomorphism: (p_j s - a_j) o e_t = p_j (s o e_t) - (a_j o e_t).
            if t not in cache:
                subs = {idx: (ring.one if c == t else ring.zero) for c, idx in enumerate(ys)}
                s_t = dv.s.compose(subs)
                # a_j contains y_j only, so a_j o e_t is a_j o (y_j = δ_jt): two values per j, cached.
                a_t = [a_sub(j, j == t) for j in range(C)]
                want = dv.W[t] if eps is None else (1 - eps) * dv.W[t] + eps * third * wsum
                cache.clear()
                cache[t] = (s_t, want, a_t)
            return cache[t]

        def ok_t(k: int) -> bool:
            # The gradient is p_j * sum(a) - a_j, so with y = e_t it is the closed form exactly when
            # sum(a) o e_t and each a_j o e_t are the closed form's; p_j does not depend on the target.
            t, j = divmod(k, C)
            s_t, want, a_t = for_target(t)
            if j == 0 and not s_t.equals(want):
                return False
            return a_t[j].equals(a_wants[(j, j == t)])

        st.checks.append(
            dv.check_all(
                "one-hot-targets",
                f"for every class-index target t and every j ({C * C} cases): with y = e_t, Σ_c a_c and a_j take "
                "the values that give the weighted gradient above",
                RING_METHOD,
                C * C,
                ok_t,
                lambda k: f"(t, j) = ({k // C + 1}, {k % C + 1})",
            )
        )
    return st


def _bce_steps(dv: Concrete) -> tuple[list[Step], LogSum]:
    C = dv.C
    ln, lp = _loss_name(dv)
    wt, wp = (r"w_i", "w_i ") if dv.sym.w else ("", "")
    sspace = Space(dv.sym.sig, dv.sym.params)
    Sg = [sspace.sym(s) for s in dv.sym.sig]
    Yg = [sspace.sym(s) for s in dv.sym.y]
    Wg = [sspace.sym(s) for s in dv.sym.w]
    one = sspace.ring.one

    st1 = Step("Derivative by the sigmoid outputs")
    st1.say("As a function of independent σ_i (001_*.txt, step 1):")
    st1.eq(
        _dz(ln, r"\sigma_i", lp, "σ_i"),
        Tex(rf"-{wt}\left(\frac{{y_i}}{{\sigma_i}} - \frac{{1 - y_i}}{{1 - \sigma_i}}\right)", f"−{wp}(y_i/σ_i − (1 − y_i)/(1 − σ_i))"),
    )
    Es = LogSum(sspace)
    for c in range(C):
        w = Wg[c] if Wg else sspace.const(1)
        Es.add_log(-w * Yg[c], Sg[c])
        Es.add_log(-w * (1 - Yg[c]), Frac(one - Sg[c].num))
    dEds = [
        -(Wg[c] if Wg else sspace.const(1)) * (Yg[c] / Sg[c] - (1 - Yg[c]) / Frac(one - Sg[c].num)) for c in range(C)
    ]
    st1.checks.append(
        dv.check_all(
            "dloss-dsigma",
            f"∂{lp}/∂σ_i = −w_i (y_i/σ_i − (1 − y_i)/(1 − σ_i)) for all {C} i".replace("w_i ", "w_i " if dv.sym.w else ""),
            RING_METHOD.replace("u_k = exp(z_k)", "σ"),
            C,
            lambda i: Es.du(i).equals(dEds[i]),
            lambda i: f"i = {i + 1}",
        )
    )

    st2 = Step("Sigmoid derivative")
    z, sig = dv.sym.z, dv.sym.sig
    if C <= 6:
        st2.say("SymPy differentiates σ_1 = 1/(1 + e^{−z_1}):")
        st2.eq(_dz(r"\sigma_1", "z_1", "σ1", "z1"), sp.diff(dv.sigma_z(0), z[0]), sig[0] * (1 - sig[0]))
    st2.eq(
        _dz(r"\sigma_i", "z_j", "σ_i", "z_j"),
        Tex(r"\delta_{ij}\, \sigma_i (1 - \sigma_i)", "δ_ij σ_i (1 − σ_i)"),
        note="a diagonal Jacobian: each output depends on its own logit only",
    )
    zero = dv.space.ring.zero

    def ok_sig(k: int) -> bool:
        i, j = divmod(k, C)
        derived = dv.SIG[i].dz(j)
        if i != j:
            return derived.is_zero()
        return derived.equals(Frac.over(dv.U[i], (dv.one_plus_u[i], 2)))

    dv.J = None
    st2.checks.append(
        dv.check_all(
            "sigmoid-jacobian",
            f"∂σ_i/∂z_j = δ_ij σ_i(1 − σ_i) for all {C * C} entries",
            RING_METHOD,
            C * C,
            ok_sig,
            lambda k: f"(i, j) = ({k // C + 1}, {k % C + 1})",
        )
    )
    del zero

    st3 = Step("Chain rule and cancellation")
    st3.say("Only the i = j term survives; σ_i(1 − σ_i) cancels both denominators (001_*.txt, step 3):")
    st3.eq(
        _dz(ln, "z_i", lp),
        Tex(
            rf"-{wt}\left(\frac{{y_i}}{{\sigma_i}} - \frac{{1 - y_i}}{{1 - \sigma_i}}\right) \sigma_i (1 - \sigma_i)",
            f"−{wp}(y_i/σ_i − (1 − y_i)/(1 − σ_i)) σ_i (1 − σ_i)",
        ),
        Tex(rf"-{wt}\left(y_i (1 - \sigma_i) - (1 - y_i)\sigma_i\right)", f"−{wp}(y_i (1 − σ_i) − (1 − y_i) σ_i)"),
        Tex(rf"{wt}(\sigma_i - y_i)" if dv.sym.w else r"\sigma_i - y_i", f"{wp}(σ_i − y_i)" if dv.sym.w else "σ_i − y_i"),
    )

    def ok_chain(i: int) -> bool:
        w = Wg[i] if Wg else sspace.const(1)
        return (dEds[i] * Sg[i] * Frac(one - Sg[i].num)).equals(w * (Sg[i] - Yg[i]))

    st3.checks.append(
        dv.check_all(
            "cancellation",
            f"∂{lp}/∂σ_i · σ_i(1 − σ_i) = " + ("w_i(σ_i − y_i)" if dv.sym.w else "σ_i − y_i") + f" for all {C} i (an identity in any σ)",
            RING_METHOD.replace("u_k = exp(z_k)", "σ"),
            C,
            ok_chain,
            lambda i: f"i = {i + 1}",
        )
    )

    st4 = Step("Direct differentiation")
    L = LogSum(dv.space)
    for c in range(C):
        w = dv.W[c] if dv.W else dv.space.const(1)
        L.add_log(-w * dv.Y[c], dv.SIG[c])  # log sigma = log u - log(1 + u)
        L.add_log(-w * (1 - dv.Y[c]), Frac.over(dv.space.ring.one, dv.one_plus_u[c]))  # log(1 - sigma)
    st4.say("Differentiating the loss as a function of z:")
    st4.eq(_dz(ln, "z_j", lp), Tex(r"w_j(\sigma_j - y_j)" if dv.sym.w else r"\sigma_j - y_j", "w_j(σ_j − y_j)" if dv.sym.w else "σ_j − y_j"))
    st4.checks.append(
        dv.check_all(
            "direct",
            f"∂{lp}/∂z_j = " + ("w_j(σ_j − y_j)" if dv.sym.w else "σ_j − y_j") + f" for all {C} j",
            RING_METHOD,
            C,
            lambda j: L.dz(j).equals(dv.G[j]),
            lambda j: f"j = {j + 1}",
        )
    )
    if C <= SYMPY_DIFF_MAX:
        terms = []
        for c in range(C):
            w = dv.sym.w[c] if dv.sym.w else 1
            s_ = dv.sigma_z(c)
            terms.append(-w * (dv.sym.y[c] * sp.log(s_) + (1 - dv.sym.y[c]) * sp.log(1 - s_)))
        Ez = sp.Add(*terms)
        st4.checks.append(
            dv.check_all(
                "direct-sympy-diff",
                f"sympy.diff of {lp}(z) by z_j equals the same for all {C} j",
                "z_k -> log u_k, expand_log over positive symbols, then exact comparison",
                C,
                lambda j: dv.z_expr_to_frac(sp.diff(Ez, z[j])).equals(dv.G[j]),
                lambda j: f"j = {j + 1}",
            )
        )
    return [st1, st2, st3, st4], L


NUMERIC_POINTS = 5
NUMERIC_RTOL = 1e-12


def _numeric(dv: Concrete) -> Step:
    """lambdify the proved gradient and compare it with the NumPy kernel of xent compute.

    An exception on the way (SymPy, lambdify, NumPy) is a failed check, never a pass.
    """
    try:
        return _numeric_unguarded(dv)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001
        st = Step("Numeric cross-check")
        st.checks.append(
            Check(
                "numeric",
                f"lambdify(gradient) agrees with xent compute's kernel at {NUMERIC_POINTS} random points "
                f"(relative difference below {NUMERIC_RTOL:g})",
                "sympy.lambdify vs xentcli.numeric, float64",
                False,
                NUMERIC_POINTS,
                _raised(exc),
            )
        )
        return st


def _raised(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__} raised during the check" + (f" ({text})" if text else "")


def _guarded(ok: Callable[[], bool]) -> tuple[bool, str]:
    """Run a one-shot zero test; an exception inside SymPy is a failed check with the error as detail."""
    try:
        return ok() is True, ""
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - an error inside SymPy is a failed check, never a pass
        return False, _raised(exc)


def _numeric_unguarded(dv: Concrete) -> Step:
    import numpy as np

    from .. import numeric

    C = dv.C
    s = dv.sym
    st = Step("Numeric cross-check")
    args = [*s.z, *s.y, *s.w]
    if s.eps is not None:
        args.append(s.eps)
    if s.den is not None:
        args.append(s.den)
    den = None
    if dv.spec.mean:
        den = s.den * C if dv.spec.family == "bce" else s.den
    exprs = []
    for j in range(C):
        if dv.spec.family == "bce":
            g = (s.w[j] if s.w else 1) * (dv.sigma_z(j) - s.y[j])
        else:
            a = [dv.target_sym(c) for c in range(C)]
            g = dv.p_z(j) * sp.Add(*a) - a[j]
        exprs.append(g if den is None else g / den)
    f = sp.lambdify(args, exprs, modules="numpy", cse=True)
    rng = np.random.default_rng(0)
    import warnings

    from ..errors import XentWarning

    warnings.simplefilter("ignore", XentWarning)
    worst = 0.0
    batch = 3
    for k in range(NUMERIC_POINTS):
        z = rng.normal(0.0, 2.0, size=(batch, C))
        w = rng.uniform(0.5, 2.0, size=C) if s.w else None
        eps = float(rng.uniform(0.0, 1.0)) if s.eps is not None else None
        weighted_mean = dv.spec.mean and s.den is not None and s.den.name == "W"
        if dv.spec.family == "bce":
            y = rng.uniform(0.0, 1.0, size=(batch, C))
        elif weighted_mean:
            t = rng.integers(0, C, size=batch)
            y = np.eye(C)[t]
        elif k % 2 == 0:
            y = rng.dirichlet(np.ones(C), size=batch)
        else:
            y = rng.uniform(0.0, 1.0, size=(batch, C))  # not normalised: p*sum(a) - a still holds
        values = [*z[0], *y[0], *([] if w is None else w)]
        if eps is not None:
            values.append(eps)
        red = "mean" if dv.spec.mean else "sum"
        zz, yy = (z, y) if dv.spec.mean else (z[:1], y[:1])
        if dv.spec.family == "bce":
            ref = numeric.binary_cross_entropy(zz, yy, weight=w, reduction=red).grad[0]
            if dv.spec.mean:
                values.append(float(batch))
        elif weighted_mean:
            r = numeric.cross_entropy(zz, t, weight=w, label_smoothing=eps or 0.0, reduction=red)
            ref = r.grad[0]
            values.append(float(r.denominator))
        else:
            ref = numeric.cross_entropy(
                zz, yy, weight=w, label_smoothing=eps or 0.0, reduction=red, target_type="prob"
            ).grad[0]
            if dv.spec.mean:
                values.append(float(batch))
        got = np.array(f(*values), dtype=np.float64)
        scale = max(float(np.max(np.abs(ref))), 1e-300)
        worst = max(worst, float(np.max(np.abs(got - ref))) / scale)
    passed = worst <= NUMERIC_RTOL
    st.say(
        "The proved gradient, turned into a NumPy function with sympy.lambdify, is compared with the NumPy kernel "
        f"of xent compute at {NUMERIC_POINTS} random points (seeded; targets normalised and not)."
    )
    st.checks.append(
        Check(
            "numeric",
            f"lambdify(gradient) agrees with xent compute's kernel at {NUMERIC_POINTS} random points "
            f"(relative difference below {NUMERIC_RTOL:g})",
            "sympy.lambdify vs xentcli.numeric, float64",
            passed,
            NUMERIC_POINTS,
            "" if passed else f"largest relative difference {worst:.3g}",
        )
    )
    return st


def _nll_identities(dv: Concrete) -> Step:
    C = dv.C
    st = Step("LogSoftmax + NLL is cross-entropy")
    st.say("LogSoftmax is the logarithm of softmax, computed without forming p (003_*.txt):")
    st.eq(Tex("o_i", "o_i"), Tex(r"z_i - \log \sum_k e^{z_k}", "z_i − log Σ_k exp(z_k)"), Tex(r"\log p_i", "log p_i"))
    at, ap = _target_notation(dv)
    ln, lp = _loss_name(dv)
    st.say("so the NLL of the LogSoftmax outputs is the cross-entropy:")
    st.eq(Tex(ln, lp), Tex(rf"-\sum_i {at}\, o_i", f"−Σ_i {ap} o_i"), Tex(rf"-\sum_i {at} \log p_i", f"−Σ_i {ap} log p_i"))
    u = dv.sym.u
    S = sp.Add(*u)
    o = [sp.log(u[i]) - sp.log(S) for i in range(C)]  # z_i = log u_i
    st.checks.append(
        dv.check_all(
            "log-softmax-is-log-p",
            f"o_i − log p_i = 0 for all {C} i",
            LOG_METHOD,
            C,
            lambda i: is_zero_expr(sp.expand_log(o[i] - sp.log(u[i] / S), force=False)),
            lambda i: f"i = {i + 1}",
        )
    )
    A = [sp.Symbol(f"a{i + 1}", positive=True) for i in range(C)]
    diff = sp.Add(*[-A[i] * o[i] + A[i] * sp.log(u[i] / S) for i in range(C)])
    ok, detail = _guarded(lambda: is_zero_expr(sp.expand_log(diff, force=False)))
    st.checks.append(
        Check(
            "nll-equals-ce",
            "−Σ_i a_i o_i − (−Σ_i a_i log p_i) = 0 for any targets a",
            LOG_METHOD,
            ok,
            1,
            detail,
        )
    )
    return st


def _kl_identity(dv: Concrete) -> Step:
    C = dv.C
    st = Step("KL divergence and cross-entropy")
    at, ap = _target_notation(dv)
    st.say("Splitting the logarithm (003_*.txt):")
    st.eq(
        Tex(r"\mathrm{KL}(y \,\|\, p)", "KL(y ‖ p)"),
        Tex(rf"\sum_i {at} \log {at} - \sum_i {at} \log p_i", f"Σ_i {ap} log {ap} − Σ_i {ap} log p_i"),
        Tex(r"\mathrm{CE}(y, p) - H(y)", "CE(y, p) − H(y)"),
    )
    st.say(
        "The entropy ",
        Tex(rf"H(y) = -\sum_i {at} \log {at}", f"H(y) = −Σ_i {ap} log {ap}"),
        " does not depend on z, so KL and cross-entropy have the same gradient; they differ by H(y) "
        "(0 for one-hot targets).",
    )
    u = dv.sym.u
    S = sp.Add(*u)
    A = [sp.Symbol(f"a{i + 1}", positive=True) for i in range(C)]
    kl = sp.Add(*[A[i] * sp.log(A[i] / (u[i] / S)) for i in range(C)])
    ce = sp.Add(*[-A[i] * sp.log(u[i] / S) for i in range(C)])
    h = sp.Add(*[-A[i] * sp.log(A[i]) for i in range(C)])
    ok, detail = _guarded(lambda: is_zero_expr(sp.expand_log(kl - (ce - h), force=False)))
    st.checks.append(
        Check(
            "kl-equals-ce-minus-entropy",
            "KL(a ‖ p) − (CE(a, p) − H(a)) = 0 for any positive targets a (a zero target contributes 0 to all three)",
            LOG_METHOD,
            ok,
            1,
            detail,
        )
    )
    return st


TITLES = {
    "ce": "Softmax cross-entropy",
    "nll": "LogSoftmax + NLL",
    "kl": "KL divergence KL(y ‖ softmax(z))",
    "bce": "Sigmoid binary cross-entropy",
}


def title(spec_loss: str, classes: int | str, *, mean: bool, smoothing: bool, weights: bool) -> str:
    extras = []
    if smoothing:
        extras.append("label smoothing")
    if weights:
        extras.append("class weights" if spec_loss != "bce" else "weights")
    if mean:
        extras.append("batch mean")
    tail = f" with {', '.join(extras)}" if extras else ""
    if isinstance(classes, str):
        return f"{TITLES[spec_loss]}{tail}, symbolic number of classes {classes}"
    return f"{TITLES[spec_loss]}{tail}, C = {classes}"


def derive_concrete(spec: Spec, command: str, progress: Progress = no_progress) -> Derivation:
    from .claim_steps import concrete_claim_step

    dv = Concrete(spec, progress)
    steps = [_definitions(dv)]
    if spec.family == "bce":
        bsteps, L = _bce_steps(dv)
        steps += bsteps
    else:
        steps.append(_softmax_jacobian(dv))
        if spec.loss == "nll":
            steps.append(_nll_identities(dv))
        if spec.loss == "kl":
            steps.append(_kl_identity(dv))
        steps += _chain_rule(dv)
        L = _loss_logsum(dv)
        steps.append(_direct(dv, L))
    if spec.mean:
        steps.append(_batch_mean(dv, L))
    steps.append(_result(dv))
    if spec.claim is not None:
        steps.append(concrete_claim_step(dv, spec.claim))
    steps.append(_numeric(dv))
    strings = dv.json_strings()
    s = dv.sym
    symbols = {f"z1..z{dv.C}": "logits", f"y1..y{dv.C}": "targets"}
    if s.w:
        symbols[f"w1..w{dv.C}"] = "class weights" if spec.family == "softmax" else "weights"
    for sym_, name in s.json_names.items():
        symbols[name] = {
            "epsilon": "label smoothing ε",
            "n_samples": "batch size N",
            "w_total": "summed target weights W of the batch (PyTorch's weighted mean)",
            "rest": "sum of the other samples' losses R (independent of z)",
        }[name]
    assumptions = []
    if spec.assume_normalized and spec.family == "softmax":
        assumptions.append(" + ".join(f"y{k}" for k in range(1, dv.C + 1)) + " = 1")
    return Derivation(
        command=command,
        title=title(spec.loss, dv.C, mean=spec.mean, smoothing=spec.smoothing, weights=spec.weights),
        classes=dv.C,
        loss=spec.loss,
        options={
            "reduction": "mean" if spec.mean else "none",
            "label_smoothing": spec.smoothing,
            "weights": spec.weights,
            "assume_normalized": spec.assume_normalized and spec.family == "softmax",
            "claim": spec.claim,
        },
        steps=steps,
        loss_expr=strings["loss"],
        gradient=strings["gradient"],
        gradient_assuming=strings["gradient_assuming"] if assumptions else strings["gradient"],
        assumptions=assumptions,
        jacobian=strings["jacobian"],
        jacobian_of="sigmoid" if spec.family == "bce" else "softmax",
        symbols=symbols,
    )
