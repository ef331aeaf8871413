r"""The derivation, written once: definitions, Jacobian, chain rule, cancellation, direct derivative,
reduction, result, claim and numeric cross-check.

Each step states its identities with the quantities of
:mod:`xentcli.symbolic.quantities` and hands them to the backend, which
decides them for a concrete C (every index, exact arithmetic) or for a
symbolic C (once, with symbolic indices). The prose and the statements are
the same for both; only the number of classes and the range phrases differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from . import quantities as Q
from .backend import Backend, Derived, display
from .model import Block, Check, Equation, Step, Tex
from .problem import Problem
from .prose import Notation, dz
from .quantities import Algebra, V

LOG_METHOD = "expand_log over positive symbols, sums normalised, together + expand: 0"


@dataclass
class Context:
    backend: Backend
    problem: Problem
    nt: Notation
    derived: dict[str, Derived] = field(default_factory=dict)

    @property
    def concrete(self) -> bool:
        return self.problem.concrete

    def backend_method(self) -> tuple[str | Tex, ...]:
        return self.backend.method_parts()

    def backend_examples(self, name: str) -> list[Block]:
        return [_displayed(b) for b in self.backend.examples(name, self.nt)]

    def prove(self, step: Step, name: str, statement: str, lhs: Callable[..., Any], rhs: Callable[..., Any],
              **kwargs: Any) -> Derived:
        checks, derived = self.backend.prove(name, statement, lhs, rhs, **kwargs)
        step.checks += checks
        self.derived[name] = derived
        return derived


_DELEGATED = ("w", "q", "v", "p", "logp", "o", "sigma", "log_sigma", "log_one_minus_sigma", "log", "sum", "delta", "dz",
              "lse", "tanh", "x")


class Substituted(Algebra):
    """An algebra with some quantities replaced: the targets by a one-hot row, the mask by 0, ..."""

    def __init__(self, base: Algebra, *, y: Callable[[Any], V] | None = None, **values: V):
        self.problem = base.problem
        self.space = base.space
        self.C = base.C
        for attr in ("eps", "mask", "den", "zden", "rest", "lam", "cap", "temp"):
            setattr(self, attr, values.get(attr, getattr(base, attr)))
        for name in _DELEGATED:  # instance attributes: they take precedence over Algebra's methods
            setattr(self, name, getattr(base, name))
        self._y = y if y is not None else base.y

    def y(self, m: Any) -> V:
        return self._y(m)


def _displayed(block: Block) -> Block:
    """A block whose SymPy items name scalars as the documents do (m, N, W, R)."""
    if isinstance(block, Equation):
        return Equation(tuple(display(t) for t in block.terms), block.note)
    return block


def one_hot(A: Algebra, t: Any) -> Algebra:
    """The algebra with y = e_t (the one-hot row of class index t), made once per t (its quantities are memoised)."""
    out: Algebra = A.memo(("one-hot", t), lambda: Substituted(A, y=lambda m: A.delta(m, t)))
    return out


def unmasked(A: Algebra) -> Algebra:
    """The algebra with the mask m = 0 (an ignored sample), made once."""
    out: Algebra = A.memo(("mask-0",), lambda: Substituted(A, mask=0))
    return out


# --------------------------------------------------------------------------
# Definitions
# --------------------------------------------------------------------------


def definitions(ctx: Context) -> Step:
    p, nt, spec = ctx.problem, ctx.nt, ctx.problem.spec
    st = Step("Definitions")
    if ctx.concrete:
        st.say(f"One sample with C = {nt.n} classes: logits ", nt.vector("z"), " and targets ", nt.vector("y"), ".")
    else:
        size = "C" if nt.n == "C" else f"C = {nt.n}"
        st.say(f"One sample with a symbolic number of classes {size} (any positive integer): logits ", nt.vector("z"),
               " and targets ", nt.vector("y"), f", indexed by i, j, k from 1 to {nt.n}.")
    if spec.targets == "index":
        st.say("The targets are PyTorch's class indices: y is the one-hot row of the sample's class t "
               "(its entry t is 1, the others 0).")
    elif spec.targets == "prob":
        st.say("The targets are PyTorch's probability rows: y is any row of non-negative numbers.")
    ell = nt.ell
    if p.bce:
        _bce_definitions(ctx, st)
    else:
        _language_model_definitions(ctx, st)
        x = nt.x
        st.eq(Tex("p_i", "p_i"), Tex(rf"\frac{{e^{{{x}_i}}}}{{\sum_{{k=1}}^{{{nt.n}}} e^{{{x}_k}}}}",
                                     f"exp({x}_i) / Σ_k exp({x}_k)"), note="softmax, for every class i")
        _option_definitions(ctx, st)
        at, ap = nt.target("i")
        if spec.kind == "ce" and spec.has_z_loss:
            m_t, m_p = (r"m\, ", "m ") if p.masked else ("", "")
            st.say("The cross-entropy (PyTorch's cross_entropy) plus the z-loss:")
            ce = nt.sum(rf"{at} \log p_i", f"{ap} log p_i").neg()
            st.eq(Tex(ell.latex, ell.plain), Tex(rf"{ce.latex} + {m_t}\lambda\, \mathrm{{lse}}^2",
                                                 f"{ce.plain} + {m_p}λ lse²"))
        elif spec.kind == "ce":
            st.say("The cross-entropy (PyTorch's cross_entropy):")
            st.eq(Tex(ell.latex, ell.plain), nt.sum(rf"{at} \log p_i", f"{ap} log p_i").neg())
        elif spec.kind == "nll":
            st.say("LogSoftmax followed by the negative log-likelihood (PyTorch's nll_loss of log_softmax):")
            st.eq(Tex("o_i", "o_i"), Tex(rf"z_i - \log \sum_{{k=1}}^{{{nt.n}}} e^{{z_k}}", "z_i − log Σ_k exp(z_k)"),
                  note="log-softmax")
            st.eq(Tex(ell.latex, ell.plain), nt.sum(rf"{at}\, o_i", f"{ap} o_i").neg())
        else:
            st.say("The Kullback–Leibler divergence of the prediction p from the target y (PyTorch's kl_div of "
                   "log_softmax); a term with target 0 is 0:")
            st.eq(Tex(ell.latex, ell.plain), nt.sum(r"y_i \log \frac{y_i}{p_i}", "y_i log(y_i / p_i)"))
    _reduction_definition(ctx, st)
    if p.normalized and not p.bce:
        if spec.targets == "index":
            st.say("A one-hot row sums to 1: ", Tex(rf"\sum_{{i=1}}^{{{nt.n}}} y_i = 1", "Σ_i y_i = 1"),
                   ". This is used only in the last step; before it, the results hold for any targets.")
        else:
            st.say("Assumption (stated, and applied only in the last step): ",
                   Tex(rf"\sum_{{i=1}}^{{{nt.n}}} y_i = 1", "Σ_i y_i = 1"),
                   ". Without it the result is the general form.")
    st.say(*ctx.backend_method())
    return st


def _language_model_definitions(ctx: Context, st: Step) -> None:
    """What the softmax sees (soft-capping, then the temperature), lse, and the z-loss's weight."""
    p, nt, spec = ctx.problem, ctx.nt, ctx.problem.spec
    if not spec.language_model:
        return
    cap, temp = spec.softcap is not None, spec.has_temperature
    if cap:
        st.say("Soft-capping (Gemma 2) with ", _scalar_value(spec.softcap, "c", "c", "> 0"),
               " bounds each logit to (−c, c); ", Tex(r"t_i = \tanh(z_i / c)", "t_i = tanh(z_i / c)"), ".")
    if temp:
        st.say(("Then the" if cap else "The") + " temperature ", _scalar_value(spec.temperature, "T", "T", "> 0"),
               " divides the logits.")
    if cap or temp:
        body_t = r"c \tanh(z_i / c)" if cap else "z_i"
        body_p = "c tanh(z_i / c)" if cap else "z_i"
        if temp:
            body_t, body_p = rf"\frac{{{body_t}}}{{T}}", f"{body_p} / T"
        st.say("The softmax sees the capped and scaled logits x:")
        st.eq(Tex("x_i", "x_i"), Tex(body_t, body_p), note="for every class i")
    x = nt.x
    st.eq(Tex(r"\mathrm{lse}", "lse"), Tex(rf"\log \sum_{{k=1}}^{{{nt.n}}} e^{{{x}_k}}", f"log Σ_k exp({x}_k)"),
          note="the log of the softmax's normaliser")
    if spec.has_z_loss:
        ignored = "; an ignored sample (m = 0) adds nothing" if p.masked else ""
        st.say("The z-loss (PaLM; Liger-Kernel's lse_square_scale) with ",
               _scalar_value(spec.z_loss, r"\lambda", "λ", "≥ 0"), f" adds λ lse² per sample{ignored}.")


def _scalar_value(value: Any, latex: str, plain: str, bound: str) -> Tex:
    from ..spec import SYM, format_value

    if value is SYM:
        tb = bound.replace("≥", r"\ge")
        return Tex(rf"{latex} {tb}", f"{plain} {bound}")
    text = format_value(value)
    return Tex(rf"{latex} = {_tex_number(text)}", f"{plain} = {text}")


def _option_definitions(ctx: Context, st: Step) -> None:
    p, nt, spec = ctx.problem, ctx.nt, ctx.problem.spec
    if p.smoothing:
        eps = _value_tex(spec.label_smoothing, r"\varepsilon", "ε")
        st.say("Label smoothing with ", eps, " replaces each target by")
        st.eq(Tex(r"\tilde{y}_i", "ỹ_i"),
              Tex(rf"(1 - \varepsilon)\, y_i + \frac{{\varepsilon}}{{{nt.n}}}", f"(1 − ε) y_i + ε/{nt.n}"))
    if p.weighted:
        st.say("Class weights ", _vector_value(ctx, "w"), " scale each class's term (PyTorch's weight).")
    if p.masked:
        st.say(f"Ignore index {spec.ignore_index}: a sample whose class index is {spec.ignore_index} is ignored. Its "
               "mask m is 0, so its targets, its loss and its gradient are 0, and it is not counted in a mean; "
               "otherwise m = 1.")


def _bce_definitions(ctx: Context, st: Step) -> None:
    p, nt = ctx.problem, ctx.nt
    st.say(f"Each of the {nt.n} outputs is its own binary problem: a sigmoid, then the binary cross-entropy "
           "(PyTorch's binary_cross_entropy_with_logits), with targets y_i between 0 and 1.")
    st.eq(Tex(r"\sigma_i", "σ_i"), Tex(r"\frac{1}{1 + e^{-z_i}}", "1 / (1 + exp(−z_i))"), note="for every i")
    if p.weighted:
        st.say("Weights ", _vector_value(ctx, "w"), " scale each output's term (PyTorch's weight).")
    if p.pos_weighted:
        st.say("Positive weights ", _vector_value(ctx, "q"), " scale the term of the positive target "
               "(PyTorch's pos_weight).")
    w_t, w_p = (r"w_i", "w_i ") if p.weighted else ("", "")
    q_t, q_p = (r"q_i\, ", "q_i ") if p.pos_weighted else ("", "")
    body = rf"{w_t}\left[{q_t}y_i \log \sigma_i + (1 - y_i) \log(1 - \sigma_i)\right]"
    st.eq(Tex(nt.ell.latex, nt.ell.plain),
          nt.sum(body, f"{w_p}[{q_p}y_i log σ_i + (1 − y_i) log(1 − σ_i)]").neg())


def _reduction_definition(ctx: Context, st: Step) -> None:
    spec, nt = ctx.problem.spec, ctx.nt
    if spec.reduction == "none":
        return
    if spec.reduction == "sum":
        st.say("Sum over the batch (PyTorch's reduction='sum'): R, the losses of the other samples, does not "
               "depend on z.")
        st.eq(Tex("L", "L"), Tex(r"\ell + R", "ℓ + R"))
        return
    d = nt.denominator()
    assert d is not None
    why = {
        "samples": "the mean over class indices divides by N, the number of samples whose class index is not "
                   "ignored",
        "weights": "the weighted mean over class indices divides by W, the summed weight w of each counted "
                   "sample's class",
        "rows": "the mean divides by N, the number of samples (probability rows: also with class weights, and "
                "also when a row is one-hot)" if spec.reduction == "mean" else
                "batchmean divides by N, the number of samples",
        "elements": f"the mean divides by the number of elements, N·{nt.n}",
    }[str(spec.denominator)]
    if nt.split:
        m_t, m_p = (r"m\, ", "m ") if ctx.problem.masked else ("", "")
        st.say(f"Batch mean (PyTorch's reduction='mean'): {why}; the z-loss is not weighted (as in Liger-Kernel): "
               "the summed z-loss is divided by N, the number of samples whose class index is not ignored. "
               "With ", Tex(r"\ell_{\mathrm{CE}}", "ℓ_CE"), " the cross-entropy part of this sample's loss and R "
               "the other samples' terms of L, R, W and N do not depend on z.")
        ce_over_w = r"\frac{\ell_{\mathrm{CE}}}{W}"
        st.eq(Tex("L", "L"), Tex(rf"{ce_over_w} + \frac{{{m_t}\lambda\, \mathrm{{lse}}^2}}{{N}} + R",
                                 f"ℓ_CE / W + {m_p}λ lse² / N + R"))
        return
    st.say(f"Batch {spec.reduction} (PyTorch's reduction='{spec.reduction}'): {why}. R, the losses of the other "
           f"samples, and {d.plain} do not depend on z.")
    st.eq(Tex("L", "L"), Tex(rf"\frac{{\ell + R}}{{{d.latex}}}", f"(ℓ + R) / {d.plain}"))


def _value_tex(value: Any, latex: str, plain: str) -> Tex:
    from ..spec import SYM, format_value

    if value is SYM:
        return Tex(rf"0 \le {latex} \le 1", f"0 ≤ {plain} ≤ 1")
    text = format_value(value)
    return Tex(rf"{latex} = {_tex_number(text)}", f"{plain} = {text}")


def _vector_value(ctx: Context, name: str) -> Tex:
    from ..spec import SYM, format_value

    value = ctx.problem.spec.weight if name == "w" else ctx.problem.spec.pos_weight
    if value is SYM or not isinstance(value, tuple):
        return ctx.nt.vector(name)
    if len(value) == 1:
        text = format_value(value[0])
        return Tex(rf"{name}_i = {_tex_number(text)}", f"{name}_i = {text}")
    texts = [format_value(v) for v in value]
    return Tex(rf"{name} = ({', '.join(_tex_number(t) for t in texts)})", f"{name} = ({', '.join(texts)})")


def _tex_number(text: str) -> str:
    if "/" in text:
        a, b = text.split("/")
        return rf"\tfrac{{{a}}}{{{b}}}"
    return text


# --------------------------------------------------------------------------
# Softmax: Jacobian, log-softmax, KL, chain rule, cancellation
# --------------------------------------------------------------------------


def x_space(ctx: Context) -> str:
    """Where identities in the softmax inputs are decided: "x" with soft-capping or a temperature, else "z"."""
    return "x" if Q.chained(ctx.problem) else "z"


def softmax_jacobian(ctx: Context) -> Step:
    b, x = ctx.backend, ctx.nt.x
    st = Step("Softmax Jacobian")
    if x == "x":
        st.say("The softmax as a function of its inputs x:")
    else:
        st.blocks += ctx.backend_examples("softmax-jacobian")
    st.eq(dz("p_i", f"{x}_j"), Tex(r"\delta_{ij}\, p_i - p_i p_j", "δ_ij p_i − p_i p_j"),
          note="p_i (1 - p_i) on the diagonal, -p_i p_j off it")
    st.blocks += ctx.backend_examples("softmax-matrix")
    ctx.prove(st, "jacobian", f"∂p_i/∂{x}_j = δ_ij p_i − p_i p_j {b.forall(('i', 'j'))}",
              lambda A, i, j: A.dz(A.p(i), j), Q.softmax_jacobian, over=("i", "j"), sympy_diff=True,
              keep=b.affordable("chain-rule"), space=x_space(ctx))
    return st


def nll_identities(ctx: Context) -> Step:
    nt, b = ctx.nt, ctx.backend
    st = Step("LogSoftmax + NLL is cross-entropy")
    st.say("LogSoftmax is the logarithm of softmax, computed without forming p:")
    st.eq(Tex("o_i", "o_i"), Tex(rf"z_i - \log \sum_{{k=1}}^{{{nt.n}}} e^{{z_k}}", "z_i − log Σ_k exp(z_k)"),
          Tex(r"\log p_i", "log p_i"))
    at, ap = nt.target("i")
    st.say("so the NLL of the LogSoftmax outputs is the cross-entropy, for any targets:")
    st.eq(Tex(nt.ell.latex, nt.ell.plain), Tex(rf"-\sum_i {at}\, o_i", f"−Σ_i {ap} o_i"),
          Tex(rf"-\sum_i {at} \log p_i", f"−Σ_i {ap} log p_i"))
    st.checks.append(b.prove_zero("log-softmax-is-log-p", f"o_i − log p_i = 0 {b.forall(('i',))}",
                                  lambda E, i: E.o(i) - E.logp(i), LOG_METHOD, over=("i",)))
    st.checks.append(b.prove_zero(
        "nll-equals-ce", "−Σ_i a_i o_i = −Σ_i a_i log p_i for any positive numbers a_i",
        lambda E: E.sum(lambda k: -E.arbitrary(k) * E.o(k) + E.arbitrary(k) * E.logp(k)), LOG_METHOD))
    return st


def kl_identity(ctx: Context) -> Step:
    b = ctx.backend
    st = Step("KL divergence and cross-entropy")
    st.say("Splitting the logarithm:")
    st.eq(Tex(r"\mathrm{KL}(y \,\|\, p)", "KL(y ‖ p)"),
          Tex(r"\sum_i y_i \log y_i - \sum_i y_i \log p_i", "Σ_i y_i log y_i − Σ_i y_i log p_i"),
          Tex(r"\mathrm{CE}(y, p) - H(y)", "CE(y, p) − H(y)"))
    st.say("The entropy ", Tex(r"H(y) = -\sum_i y_i \log y_i", "H(y) = −Σ_i y_i log y_i"),
           " does not depend on z, so KL and cross-entropy have the same gradient; they differ by H(y), "
           "which is 0 for one-hot targets.")

    def difference(E: Any) -> Any:
        a = E.arbitrary
        kl = E.sum(lambda k: a(k) * (E.log(a(k)) - E.logp(k)))
        ce = -E.sum(lambda k: a(k) * E.logp(k))
        h = -E.sum(lambda k: a(k) * E.log(a(k)))
        return kl - (ce - h)

    st.checks.append(b.prove_zero(
        "kl-equals-ce-minus-entropy",
        "KL(a ‖ p) − (CE(a, p) − H(a)) = 0 for any positive numbers a_i (a zero target adds 0 to all three)",
        difference, LOG_METHOD))
    return st


def chain_rule(ctx: Context) -> list[Step]:
    nt, b = ctx.nt, ctx.backend
    at, ap = nt.target("i")
    ell = nt.ell
    st = Step("Chain rule")
    if ctx.problem.spec.kind == "nll":
        st.say("Through the LogSoftmax outputs o: first ", Tex(rf"\partial {ell.latex}/\partial o_i",
                                                             f"∂{ell.plain}/∂o_i"), ",")
        st.eq(dz(ell.latex, "o_i", ell.plain), Tex(f"-{at}", f"−{ap}"))
        st.say("then the Jacobian of LogSoftmax:")
        st.eq(dz("o_i", "z_j"), Tex(r"\delta_{ij} - p_j", "δ_ij − p_j"))
        Jo = ctx.prove(st, "log-softmax-jacobian", f"∂o_i/∂z_j = δ_ij − p_j {b.forall(('i', 'j'))}",
                       lambda A, i, j: A.dz(A.o(i), j), Q.log_softmax_jacobian, over=("i", "j"), keep=True)
        st.eq(dz(ell.latex, "z_j", ell.plain),
              nt.sum(rf"\frac{{\partial {ell.latex}}}{{\partial o_i}} \frac{{\partial o_i}}{{\partial z_j}}",
                     f"∂{ell.plain}/∂o_i ∂o_i/∂z_j"),
              nt.sum(rf"\left(-{at}\right) \left(\delta_{{ij}} - p_j\right)", f"(−{ap})(δ_ij − p_j)"),
              nt.grad())
        ctx.prove(st, "chain-rule", f"Σ_i (−{ap}) ∂o_i/∂z_j, with the Jacobian above, = {nt.grad().plain} "
                                    f"{b.forall(('j',))}",
                  lambda A, j: A.sum(lambda i: -Q.target(A, i) * Jo.at(i, j)), Q.grad)
        return [st]
    x, X = nt.x, x_space(ctx)
    if nt.lm:  # the cross-entropy part first; the z-loss and the chain rule to z follow
        ell = Tex(r"\ell_{\mathrm{CE}}", "ℓ_CE")
        st.say("Write ", ell, " for the cross-entropy part of the loss (the loss without the z-loss).")
        st.say(f"It depends on {x} only through p. Its derivative by each p_i, with the p_i as free variables:")
    else:
        st.say("The loss depends on z only through p. Its derivative by each p_i, with the p_i as free variables:")
    st.eq(dz(ell.latex, "p_i", ell.plain), Tex(rf"-\frac{{{at}}}{{p_i}}", f"−{ap}/p_i"))
    ctx.prove(st, "dloss-dp", f"∂{ell.plain}/∂p_i = −{ap}/p_i {b.forall(('i',))}, differentiating {ell.plain} as "
                              "a function of independent p",
              lambda A, i: A.dz(Q.ce_loss(A), i), Q.dloss_dp, over=("i",), space="p")
    st.say("and the chain rule with the Jacobian of the previous step:")
    products = nt.sum(rf"\left(-\frac{{{at}}}{{p_i}}\right) \left(\delta_{{ij}}\, p_i - p_i p_j\right)",
                      f"(−{ap}/p_i)(δ_ij p_i − p_i p_j)")
    st.eq(dz(ell.latex, f"{x}_j", ell.plain),
          nt.sum(rf"\frac{{\partial {ell.latex}}}{{\partial p_i}} \frac{{\partial p_i}}{{\partial {x}_j}}",
                 f"∂{ell.plain}/∂p_i ∂p_i/∂{x}_j"), products)
    canc = Step("Cancellation")
    canc.say("Every Jacobian entry carries the factor p_i, which cancels the 1/p_i of the logarithm's derivative:")
    g = nt.grad(part="ce")
    # the closed form it is compared with: the gradient itself (the derivative by x of the cross-entropy part
    # with the options of a language model)
    closed = Q.ce_grad if nt.lm else Q.grad
    canc.eq(products, nt.sum(rf"\left(-{at}\right) \left(\delta_{{ij}} - p_j\right)", f"(−{ap})(δ_ij − p_j)"),
            g)
    if not nt.lm:
        canc.blocks += ctx.backend_examples("cancellation")
    ctx.prove(canc, "cancellation", f"Σ_i (−{ap}/p_i)(δ_ij p_i − p_i p_j) = {g.plain} "
                                    f"{b.forall(('j',))} (an identity in any p)",
              lambda A, j: A.sum(lambda i: Q.dloss_dp(A, i) * Q.softmax_jacobian(A, i, j)), closed, space="p")
    if b.affordable("chain-rule"):
        J = ctx.derived["jacobian"]
        ctx.prove(canc, "chain-rule", f"Σ_i ∂{ell.plain}/∂p_i · ∂p_i/∂{x}_j, with the Jacobian derived above, = "
                                      f"{g.plain} {b.forall(('j',))}",
                  lambda A, j: A.sum(lambda i: Q.dloss_dp(A, i) * J.at(i, j)), closed, space=X)
    else:
        canc.say("The chain-rule sum is the cancellation identity evaluated at p = softmax(z), with the Jacobian "
                 "proved entry by entry above, so it equals the same closed form.")
    return [st, canc]


# --------------------------------------------------------------------------
# The options of a language model: z-loss, soft-capping, temperature
# --------------------------------------------------------------------------


def z_loss(ctx: Context) -> Step:
    """The z-loss's derivative by the softmax inputs, and the whole loss's."""
    nt, b, p = ctx.nt, ctx.backend, ctx.problem
    x, X = nt.x, x_space(ctx)
    ell = nt.ell
    st = Step("z-loss")
    st.say(f"The derivative of lse by {x}_j is the softmax itself:")
    st.eq(Tex(rf"\frac{{\partial\, \mathrm{{lse}}}}{{\partial {x}_j}}", f"∂lse/∂{x}_j"),
          Tex(rf"\frac{{e^{{{x}_j}}}}{{\sum_k e^{{{x}_k}}}}", f"exp({x}_j) / Σ_k exp({x}_k)"), Tex("p_j", "p_j"))
    ctx.prove(st, "dlse", f"∂lse/∂{x}_j = p_j {b.forall(('j',))}", lambda A, j: A.dz(A.lse(), j),
              lambda A, j: A.p(j), space=X)
    m_t, m_p = (r"m\, ", "m ") if p.masked else ("", "")
    st.say("so, by the chain rule for the square,")
    zg = nt.zloss_grad()
    st.eq(Tex(rf"\frac{{\partial\, ({m_t}\lambda\, \mathrm{{lse}}^2)}}{{\partial {x}_j}}", f"∂({m_p}λ lse²)/∂{x}_j"),
          Tex(rf"2 {m_t}\lambda\, \mathrm{{lse}}\, \frac{{\partial\, \mathrm{{lse}}}}{{\partial {x}_j}}",
              f"2 {m_p}λ lse ∂lse/∂{x}_j"), zg)
    ctx.prove(st, "z-loss-gradient", f"∂({m_p}λ lse²)/∂{x}_j = {zg.plain} {b.forall(('j',))}",
              lambda A, j: A.dz(Q.zloss(A), j), Q.zloss_grad, space=X)
    g = nt.grad(part="x")
    st.say("With the cross-entropy part of the previous step, the loss's derivative by ", Tex(f"{x}_j", f"{x}_j"),
           " is")
    st.eq(dz(ell.latex, f"{x}_j", ell.plain), g)
    ctx.prove(st, "loss-by-softmax-inputs", f"∂{ell.plain}/∂{x}_j = {g.plain} {b.forall(('j',))}, differentiating "
                                            f"{ell.plain} (the cross-entropy and the z-loss) by {x}_j",
              lambda A, j: A.dz(Q.loss(A), j), Q.grad_x, space=X)
    return st


def capped_logits(ctx: Context) -> Step:
    """The chain rule from the softmax inputs x back to the logits z."""
    nt, b, spec = ctx.nt, ctx.backend, ctx.problem.spec
    ell = nt.ell
    st = Step("Soft-capping and temperature")
    f = nt.chain_factor("i")
    assert f is not None
    if spec.softcap is not None:
        st.say("Each x_i depends on its own logit z_i alone, and ",
               Tex(r"\frac{d}{dz} \tanh(z/c) = \frac{1 - \tanh^2(z/c)}{c}", "d tanh(z/c)/dz = (1 − tanh²(z/c))/c"),
               ", so the factor c cancels:")
    else:
        st.say("Each x_i depends on its own logit z_i alone:")
    st.eq(dz("x_i", "z_j"), Tex(rf"\delta_{{ij}}\, {f.latex}", f"δ_ij {f.plain}"), note="a diagonal Jacobian")
    ctx.prove(st, "capped-logits-jacobian", f"∂x_i/∂z_j = δ_ij {f.plain} {b.forall(('i', 'j'))}",
              lambda A, i, j: A.dz(A.x(i), j), lambda A, i, j: A.delta(i, j) * Q.chain(A, i), over=("i", "j"),
              cases=("i", "j"))
    g = nt.grad()
    st.say("The chain rule keeps only the term i = j:")
    st.eq(dz(ell.latex, "z_j", ell.plain),
          nt.sum(rf"\frac{{\partial {ell.latex}}}{{\partial x_i}} \frac{{\partial x_i}}{{\partial z_j}}",
                 f"∂{ell.plain}/∂x_i ∂x_i/∂z_j"), g)
    ctx.prove(st, "chain-rule-to-logits", f"Σ_i ∂{ell.plain}/∂x_i · δ_ij {f.plain} = {g.plain} {b.forall(('j',))}",
              lambda A, j: A.sum(lambda i: Q.grad_x(A, i) * A.delta(i, j) * Q.chain(A, i)), Q.grad)
    return st


# --------------------------------------------------------------------------
# Sigmoid (bce)
# --------------------------------------------------------------------------


def bce_steps(ctx: Context) -> list[Step]:
    nt, b, p = ctx.nt, ctx.backend, ctx.problem
    ell = nt.ell
    w_t, w_p = (r"w_i", "w_i ") if p.weighted else ("", "")
    q_t, q_p = (r"q_i ", "q_i ") if p.pos_weighted else ("", "")
    st1 = Step("Derivative by the sigmoid outputs")
    st1.say("As a function of independent σ_i:")
    dsig_t = rf"-{w_t}\left(\frac{{{q_t}y_i}}{{\sigma_i}} - \frac{{1 - y_i}}{{1 - \sigma_i}}\right)"
    dsig_p = f"−{w_p}({q_p}y_i/σ_i − (1 − y_i)/(1 − σ_i))"
    st1.eq(dz(ell.latex, r"\sigma_i", ell.plain, "σ_i"), Tex(dsig_t, dsig_p))
    ctx.prove(st1, "dloss-dsigma", f"∂{ell.plain}/∂σ_i = {dsig_p} {b.forall(('i',))}",
              lambda A, i: A.dz(Q.loss(A), i), Q.dloss_dsigma, over=("i",), space="sigma")

    st2 = Step("Sigmoid derivative")
    st2.blocks += ctx.backend_examples("sigmoid-jacobian")
    st2.eq(dz(r"\sigma_i", "z_j", "σ_i", "z_j"), Tex(r"\delta_{ij}\, \sigma_i (1 - \sigma_i)", "δ_ij σ_i (1 − σ_i)"),
           note="a diagonal Jacobian: each output depends on its own logit only")
    ctx.prove(st2, "sigmoid-jacobian", f"∂σ_i/∂z_j = δ_ij σ_i(1 − σ_i) {b.forall(('i', 'j'))}",
              lambda A, i, j: A.dz(A.sigma(i), j), Q.sigmoid_jacobian, over=("i", "j"), sympy_diff=True,
              keep=b.affordable("chain-rule"))

    st3 = Step("Chain rule and cancellation")
    st3.say("Only the term i = j survives, and σ_i(1 − σ_i) cancels both denominators:")
    g = nt.bce_grad("i")
    st3.eq(dz(ell.latex, "z_i", ell.plain), Tex(rf"{dsig_t}\, \sigma_i (1 - \sigma_i)", f"{dsig_p} σ_i (1 − σ_i)"),
           g)
    ctx.prove(st3, "cancellation", f"∂{ell.plain}/∂σ_i · σ_i(1 − σ_i) = {g.plain} {b.forall(('i',))} "
                                   "(an identity in any σ)",
              lambda A, i: Q.dloss_dsigma(A, i) * A.sigma(i) * (1 - A.sigma(i)), Q.grad, over=("i",),
              space="sigma")
    if b.affordable("chain-rule"):
        Js = ctx.derived["sigmoid-jacobian"]
        ctx.prove(st3, "chain-rule", f"Σ_i ∂{ell.plain}/∂σ_i · ∂σ_i/∂z_j, with the sigmoid Jacobian derived above, "
                                     f"= {nt.bce_grad().plain} {b.forall(('j',))}",
                  lambda A, j: A.sum(lambda i: Q.dloss_dsigma(A, i) * Js.at(i, j)), Q.grad)
    return [st1, st2, st3]


# --------------------------------------------------------------------------
# Direct derivative, ignored samples, reduction
# --------------------------------------------------------------------------


def direct(ctx: Context) -> Step:
    nt, b, p = ctx.nt, ctx.backend, ctx.problem
    ell = nt.ell
    st = Step("Direct differentiation")
    if ctx.nt.lm:
        st.say("Differentiating the loss as a function of z, without the chain rule of the steps above (the "
               "derivatives of exp, tanh and log applied directly):")
    else:
        st.say("Differentiating the loss as a function of z, without the chain rule:")
        st.blocks += ctx.backend_examples("direct")
    g = nt.bce_grad() if p.bce else nt.grad()
    st.eq(dz(ell.latex, "z_j", ell.plain), g)
    ctx.prove(st, "direct", f"∂{ell.plain}/∂z_j = {g.plain} {b.forall(('j',))}",
              lambda A, j: A.dz(Q.loss(A), j), Q.grad, sympy_diff=True)
    return st


def ignored(ctx: Context) -> Step:
    b = ctx.backend
    st = Step("Ignored samples")
    st.say("An ignored sample has m = 0: every term of its loss carries the factor m, and so does its gradient:")
    st.eq(dz(ctx.nt.ell.latex, "z_j", ctx.nt.ell.plain), Tex("0", "0"), note="when m = 0")
    ctx.prove(st, "ignored", f"with m = 0 the gradient {ctx.nt.grad().plain} is 0 {b.forall(('j',))}",
              lambda A, j: Q.grad(unmasked(A), j), lambda A, j: 0)
    return st


def reduction(ctx: Context) -> Step:
    nt, b, spec = ctx.nt, ctx.backend, ctx.problem.spec
    g = nt.bce_grad() if ctx.problem.bce else nt.grad()
    if spec.reduction == "sum":
        st = Step("Sum over the batch")
        st.say("R does not depend on z, so the sum leaves the per-sample gradient as it is:")
        st.eq(dz("L", "z_j"), dz(r"\ell", "z_j", "ℓ"), g)
        statement = f"∂L/∂z_j = (the per-sample gradient) {b.forall(('j',))}, differentiating ℓ + R"
    elif nt.split:
        st = Step("Batch mean")
        x, m_t, m_p = nt.x, *((r"m\, ", "m ") if ctx.problem.masked else ("", ""))
        st.say("R, W and N do not depend on z, so the mean rescales the two parts of the per-sample gradient "
               "apart: the cross-entropy's by 1/W, the z-loss's by 1/N.")
        parts = Tex(rf"\frac{{1}}{{W}} \frac{{\partial \ell_{{\mathrm{{CE}}}}}}{{\partial {x}_j}} + \frac{{1}}{{N}} "
                    rf"\frac{{\partial ({m_t}\lambda\, \mathrm{{lse}}^2)}}{{\partial {x}_j}}",
                    f"(1/W) ∂ℓ_CE/∂{x}_j + (1/N) ∂({m_p}λ lse²)/∂{x}_j")
        st.eq(dz("L", "z_j"), nt.chain(parts), nt.mean_grad())
        statement = (f"∂L/∂z_j = {nt.mean_grad().plain} {b.forall(('j',))}, differentiating "
                     f"ℓ_CE/W + {m_p}λ lse²/N + R")
    else:
        d = nt.denominator()
        assert d is not None
        st = Step("Batch mean")
        st.say("R and ", d, " do not depend on z, so the mean only rescales the per-sample gradient:")
        st.eq(dz("L", "z_j"), Tex(rf"\frac{{1}}{{{d.latex}}} \frac{{\partial \ell}}{{\partial z_j}}",
                                  f"(1/{d.plain}) ∂ℓ/∂z_j"), nt.scaled(g))
        statement = (f"∂L/∂z_j = (the per-sample gradient)/{d.plain} {b.forall(('j',))}, differentiating "
                     f"(ℓ + R)/{d.plain}")
    ctx.prove(st, "reduction", statement, lambda A, j: A.dz(Q.reduced_loss(A), j),
              lambda A, j: Q.scaled_grad(A, j))
    return st


# --------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------


def result(ctx: Context) -> Step:
    nt, p = ctx.nt, ctx.problem
    st = Step("Result")
    lhs = dz("L", "z_j")
    if p.bce:
        st.eq(lhs, nt.scaled(nt.bce_grad()), note="for every j")
        if not p.weighted and not p.pos_weighted:
            st.eq(Tex(r"\nabla_z L", "∇_z L"), nt.scaled(Tex(r"\sigma(z) - y", "σ(z) − y")))
        return st
    st.eq(lhs, nt.mean_grad(), note="for every j, with no assumption on the targets")
    if p.normalized and not p.weighted:
        _normalized_result(ctx, st)
    if p.weighted and p.onehot:
        _one_hot_result(ctx, st)
    return st


def _normalized_result(ctx: Context, st: Step) -> None:
    nt, b, p = ctx.nt, ctx.backend, ctx.problem
    lhs = dz("L", "z_j")
    sum_y = Tex(rf"\sum_{{i=1}}^{{{nt.n}}} y_i = 1", "Σ_i y_i = 1")
    if p.smoothing:
        st.say("With ", sum_y, " the smoothed targets sum to 1 as well: ",
               Tex(rf"\sum_i \tilde{{y}}_i = (1 - \varepsilon) + {nt.n} \cdot \frac{{\varepsilon}}{{{nt.n}}} = 1",
                   f"Σ_i ỹ_i = (1 − ε) + {nt.n}·ε/{nt.n} = 1"), ", so")
    else:
        st.say("With ", sum_y, " the sum drops out:")
    yt, yp = nt.smoothed("j")
    mt, mp = (r"m\,", "m ") if p.masked else ("", "")
    zt, zp = (r" + 2 \lambda\, \mathrm{lse}\, p_j", " + 2 λ lse p_j") if p.spec.has_z_loss else ("", "")
    closed = Tex(rf"{mt}(p_j - {yt}{zt})" if mt else rf"p_j - {yt}{zt}",
                 f"{mp}(p_j − {yp}{zp})" if mp else f"p_j − {yp}{zp}")
    closed = nt.chain(closed)
    st.eq(lhs, nt.scaled(closed))
    if p.smoothing:
        st.eq(lhs, nt.scaled(nt.chain(Tex(
            rf"{mt}\left(p_j - (1 - \varepsilon)\, y_j - \frac{{\varepsilon}}{{{nt.n}}}{zt}\right)",
            f"{mp}(p_j − (1 − ε) y_j − ε/{nt.n}{zp})"))))
    vec = Tex(r"p - \tilde{y}", "p − ỹ") if p.smoothing else Tex("p - y", "p − y")
    if p.spec.has_z_loss:
        vec = Tex(vec.latex + r" + 2 \lambda\, \mathrm{lse}\, p", vec.plain + " + 2 λ lse p")
    if not p.masked and not nt.chained:
        st.eq(Tex(r"\nabla_z L", "∇_z L"), nt.scaled(vec))
    d = nt.denominator()
    over = f" over {d.plain}" if d is not None else ""
    ctx.prove(st, "normalized-targets", f"with {sum_y.plain} substituted, the gradient equals {closed.plain}{over} "
                                        f"{b.forall(('j',))}",
              lambda A, j: Q.scaled_grad(A, j), lambda A, j: Q.scaled(A, Q.grad_normalized(A, j)),
              given="normalized", method=_normalized_method(ctx))


def _normalized_method(ctx: Context) -> str:
    if ctx.concrete:
        return ("y_C = 1 − (y_1 + … + y_(C−1)) substituted into both sides; exact rational functions of u_k = "
                "exp(z_k)")
    return (f"Σ_k y_k (k = 1..{ctx.nt.n}) replaced by 1 after the factors free of k are pulled out of each "
            "sum; together + expand: 0")


def _one_hot_form(ctx: Context, st: Step, ce: Tex) -> None:
    """The per-sample gradient for a class index, from its cross-entropy part ``ce``: with the z-loss's term and
    the chain factor where they are on, and with the z-loss divided apart, the mean's form too. A long ``ce``
    (label smoothing) is named ∂ℓ_CE/∂x_j first, so that the forms after it fit a line."""
    nt, spec = ctx.nt, ctx.problem.spec
    if not spec.has_z_loss and not nt.chained:
        st.eq(dz(r"\ell", "z_j", "ℓ"), ce)
        return
    if ctx.problem.smoothing:
        part = dz(r"\ell_{\mathrm{CE}}", f"{nt.x}_j", "ℓ_CE")
        st.eq(part, ce)
        ce_t, ce_p = part.latex, part.plain
        over_w = Tex(rf"\frac{{1}}{{W}} {ce_t}", f"(1/W) {ce_p}")
    else:
        ce_t, ce_p = ce.latex, ce.plain
        over_w = Tex(rf"\frac{{{ce_t}}}{{W}}", f"({ce_p}) / W")
    if not spec.has_z_loss:
        st.eq(dz(r"\ell", "z_j", "ℓ"), nt.chain(Tex(ce_t, ce_p)))
        return
    zl = nt.zloss_grad()
    st.eq(dz(r"\ell", "z_j", "ℓ"), nt.chain(Tex(f"{ce_t} + {zl.latex}", f"{ce_p} + {zl.plain}")))
    if nt.split:
        st.say("so the batch mean's gradient is")
        st.eq(dz("L", "z_j"), nt.chain(Tex(rf"{over_w.latex} + \frac{{{zl.latex}}}{{N}}",
                                           f"{over_w.plain} + ({zl.plain}) / N")))


def _one_hot_result(ctx: Context, st: Step) -> None:
    nt, b, p = ctx.nt, ctx.backend, ctx.problem
    n = nt.n
    mt, mp = (r"m\, ", "m ") if p.masked else ("", "")
    st.say("For a class index t (y = e_t), as PyTorch applies its weight:")
    if p.smoothing:
        _one_hot_form(ctx, st, Tex(
            rf"{mt}\left[p_j \left((1-\varepsilon)\, w_t + \frac{{\varepsilon}}{{{n}}} \sum_{{c=1}}^{{{n}}} w_c\right)"
            rf" - w_j \left((1-\varepsilon)\, \delta_{{jt}} + \frac{{\varepsilon}}{{{n}}}\right)\right]",
            f"{mp}[p_j ((1 − ε) w_t + (ε/{n}) Σ_c w_c) − w_j ((1 − ε) δ_jt + ε/{n})]"))
        want_s = f"{mp}((1 − ε) w_t + (ε/{n}) Σ_c w_c)"
        want_a = f"{mp}w_j ((1 − ε) δ_jt + ε/{n})"
    else:
        _one_hot_form(ctx, st, Tex(rf"{mt}w_t \left(p_j - \delta_{{jt}}\right)", f"{mp}w_t (p_j − δ_jt)"))
        want_s, want_a = f"{mp}w_t", f"{mp}w_j δ_jt"

    def closed_total(A: Algebra, t: Any) -> V:
        eps = A.eps if p.smoothing else 0
        s = (1 - eps) * A.w(t) + (eps / A.C * A.memo(("sum-w",), lambda: A.sum(A.w)) if p.smoothing else 0)
        return A.mask * s if p.masked else s

    def closed_target(A: Algebra, j: Any, t: Any) -> V:
        eps = A.eps if p.smoothing else 0
        a = A.w(j) * ((1 - eps) * A.delta(j, t) + (eps / A.C if p.smoothing else 0))
        return A.mask * a if p.masked else a

    _, ap = nt.target("i")
    ctx.prove(st, "one-hot-total", f"with y = e_t, Σ_i {ap} = {want_s} {b.forall(('t',))}",
              lambda A, t: Q.total(one_hot(A, t)), closed_total, over=("t",))
    ta, tp = nt.target("j")
    ctx.prove(st, "one-hot-targets", f"with y = e_t, {tp} = {want_a} {b.forall(('j', 't'))}; with the "
                                     f"previous check, the gradient {nt.grad().plain} is the form above",
              lambda A, j, t: Q.target(one_hot(A, t), j), closed_target, over=("j", "t"), cases=("j", "t"))


# --------------------------------------------------------------------------
# Hessian
# --------------------------------------------------------------------------


def hessian(ctx: Context) -> Step:
    """The second derivative: its closed form, and (softmax kinds) that it is positive semidefinite with
    the null space spanned by the vector of ones."""
    nt, b, p = ctx.nt, ctx.backend, ctx.problem
    st = Step("Hessian")
    d2 = Tex(r"\frac{\partial^2 L}{\partial z_i\, \partial z_j}", "∂²L/∂z_i∂z_j")
    if p.bce:
        w_t, w_p = (r"w_j\, ", "w_j ") if p.weighted else ("", "")
        q_t, q_p = (r" \left((1 - y_j) + q_j\, y_j\right)", " ((1 − y_j) + q_j y_j)") if p.pos_weighted else ("", "")
        h = Tex(rf"\delta_{{ij}}\, {w_t}\sigma_j (1 - \sigma_j){q_t}", f"δ_ij {w_p}σ_j (1 − σ_j){q_p}")
        st.say("Differentiating the gradient once more: class j's term depends on z_j alone, so the Hessian is "
               "diagonal:")
        st.eq(d2, nt.scaled(h))
        ctx.prove(st, "hessian", f"∂²L/∂z_i∂z_j = {nt.scaled(h).plain} {b.forall(('i', 'j'))}",
                  lambda A, i, j: A.dz(Q.scaled_grad(A, j), i), lambda A, i, j: Q.scaled(A, Q.hessian(A, i, j)),
                  over=("i", "j"), cases=("i", "j"))
        st.say("Its diagonal entries are ≥ 0 (σ_j (1 − σ_j) > 0, and (1 − y_j) + q_j y_j ≥ 0 for targets in [0, 1] "
               "and weights ≥ 0), so the Hessian is positive semidefinite.")
        return st
    at, ap = nt.target("k")
    s_def = Tex(rf"s = \sum_{{k=1}}^{{{nt.n}}} {at}", f"s = Σ_k {ap}")
    h = Tex(r"s\,(\delta_{ij}\, p_i - p_i p_j)", "s (δ_ij p_i − p_i p_j)")
    st.say("Differentiating the gradient once more, by z_i. The summed effective targets ", s_def,
           " do not depend on z,")
    st.eq(Tex(r"\frac{\partial s}{\partial z_j}", "∂s/∂z_j"), Tex("0", "0"))
    ctx.prove(st, "hessian-s-constant", f"∂s/∂z_j = 0 {b.forall(('j',))}", lambda A, j: A.dz(Q.total(A), j),
              lambda A, j: 0)
    st.say("so, with s as one name, only the Jacobian of p remains:")
    st.eq(d2, nt.scaled(h))
    st.eq(Tex(r"H = \nabla^2_z \ell", "H = ∇²_z ℓ"),
          Tex(r"s\,\left(\operatorname{diag}(p) - p\,p^{\top}\right) = s\, J",
              "s (diag(p) − p pᵀ) = s J"))
    ctx.prove(st, "hessian", f"∂²L/∂z_i∂z_j = {nt.scaled(h).plain} {b.forall(('i', 'j'))}, s a name free of z",
              lambda A, i, j: A.dz(Q.scaled_grad(A, j), i), lambda A, i, j: Q.scaled(A, Q.hessian(A, i, j)),
              over=("i", "j"), space="zs", cases=("i", "j"))
    if p.normalized and not p.weighted:
        one = "m" if p.masked else "1"
        st.say(f"With Σ_i y_i = 1, s = {one}, so H = {'m J' if p.masked else 'J'} = "
               f"{'m (diag(p) − p pᵀ)' if p.masked else 'diag(p) − p pᵀ'}:")
        ctx.prove(st, "hessian-normalized", f"with Σ_i y_i = 1 substituted, s = {one}",
                  lambda A: Q.total(A), lambda A: A.mask, over=(), given="normalized",
                  method=_normalized_method(ctx))
    vbar = Tex(r"\bar v = \sum_k p_k v_k", "v̄ = Σ_k p_k v_k")
    st.say("For any real vector v, with ", vbar, " (the mean of v under p):")
    st.eq(Tex(r"(J v)_i", "(J v)_i"), Tex(r"p_i\, (v_i - \bar v)", "p_i (v_i − v̄)"))
    ctx.prove(st, "jacobian-times-v", f"Σ_j (δ_ij p_i − p_i p_j) v_j = p_i (v_i − v̄) {b.forall(('i',))}",
              lambda A, i: A.sum(lambda j: Q.softmax_jacobian(A, i, j) * A.v(j)), Q.jacobian_times_v,
              over=("i",), space="zv")
    pairs = Tex(r"\frac{1}{2} \sum_i \sum_j p_i\, p_j\, (v_i - v_j)^2", "½ Σ_i Σ_j p_i p_j (v_i − v_j)²")
    st.eq(Tex(r"v^{\top} J v", "vᵀ J v"), Tex(r"\sum_i v_i\, p_i\, (v_i - \bar v)", "Σ_i v_i p_i (v_i − v̄)"), pairs)
    ctx.prove(st, "jacobian-quadratic-form", f"Σ_i v_i p_i (v_i − v̄) = {pairs.plain}",
              lambda A: A.sum(lambda i: A.v(i) * Q.jacobian_times_v(A, i)), Q.pairwise_form, over=(), space="zv")
    st.say("Every term of the double sum is ≥ 0, and s ≥ 0 (targets and weights are ≥ 0, 0 ≤ ε ≤ 1), so "
           "vᵀ H v = s vᵀ J v ≥ 0: H is positive semidefinite. When s > 0, H v = 0 makes the double sum 0, so "
           "v_i = v_j for every pair (p_i > 0): v is a multiple of 𝟙 = (1, …, 1), and the null space of H is "
           "spanned by 𝟙, since")
    st.eq(Tex(r"J\,\mathbf{1}", "J 𝟙"), Tex("0", "0"))
    ctx.prove(st, "jacobian-null-space", f"Σ_j (δ_ij p_i − p_i p_j) = 0 {b.forall(('i',))}",
              lambda A, i: A.sum(lambda j: Q.softmax_jacobian(A, i, j)), lambda A, i: 0, over=("i",))
    return st


# --------------------------------------------------------------------------
# The whole derivation
# --------------------------------------------------------------------------


def steps(ctx: Context) -> list[Step]:
    """Every step but the claim and the numeric cross-check, in order."""
    p = ctx.problem
    out = [definitions(ctx)]
    if p.bce:
        out += bce_steps(ctx)
    else:
        out.append(softmax_jacobian(ctx))
        if p.spec.kind == "nll":
            out.append(nll_identities(ctx))
        if p.spec.kind == "kl":
            out.append(kl_identity(ctx))
        out += chain_rule(ctx)
        if p.spec.has_z_loss:
            out.append(z_loss(ctx))
        if Q.chained(p):
            out.append(capped_logits(ctx))
    out.append(direct(ctx))
    if p.masked:
        out.append(ignored(ctx))
    if p.spec.reduction != "none":
        out.append(reduction(ctx))
    out.append(result(ctx))
    if not p.spec.language_model:  # (the Hessian with the options of a language model is not derived)
        out.append(hessian(ctx))
    return out


def expression(ctx: Context, f: Callable[..., Any], *idx: Any) -> sp.Expr:
    """``f(expressions, *idx)`` as a SymPy expression."""
    return sp.sympify(f(ctx.backend.expressions, *idx))


def check_count(steps_: list[Step]) -> int:
    return sum(len(s.checks) for s in steps_)


__all__ = ["Context", "Substituted", "check_count", "expression", "steps"]
_ = Check  # re-exported name used in type positions by callers
