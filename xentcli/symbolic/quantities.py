r"""Each loss, written once, over an :class:`Algebra` that each backend implements.

The concrete backend evaluates these functions in a ring of exact rational
functions of :math:`u_k = e^{z_k}` (and in plain SymPy expressions over
``z1..zC``); the symbolic-C backend evaluates them with ``IndexedBase`` and
``Sum``. Nothing about a loss is written anywhere else in the symbolic
package, so the two backends cannot disagree about what they prove.

For the softmax kinds (see :mod:`xentcli.spec`), with the effective target
:math:`a_c = m\, w_c\, ((1-\varepsilon) y_c + \varepsilon/C)`:

* ce: :math:`\ell = -\sum_c a_c \log p_c`
* nll: :math:`\ell = -\sum_c a_c o_c` with :math:`o_c = z_c - \log\sum_k e^{z_k}`
* kl: :math:`\ell = \sum_c a_c (\log a_c - \log p_c)` (kl has :math:`a = y`)

and :math:`\partial\ell/\partial z_j = p_j \sum_c a_c - a_j`. For bce,
:math:`\ell = \sum_c w_c [-q_c y_c \log\sigma_c - (1 - y_c)\log(1 - \sigma_c)]` and
:math:`\partial\ell/\partial z_j = w_j [(1 - y_j)\sigma_j - q_j y_j (1 - \sigma_j)]`.
With the options of a language model (ce), the softmax sees
:math:`x_c = \mathrm{cap}\,\tanh(z_c/\mathrm{cap})/T` instead of z, the loss adds the z-loss
:math:`m\,\lambda\,\mathrm{lse}^2` (:math:`\mathrm{lse} = \log\sum_k e^{x_k}`), and
:math:`\partial\ell/\partial z_j = (p_j \sum_c a_c - a_j + 2 m \lambda\,\mathrm{lse}\,p_j)
(1 - \tanh^2(z_j/\mathrm{cap}))/T`.
A reduction turns the per-sample :math:`\ell` into :math:`L = \ell` (none),
:math:`\ell + R` (sum) or :math:`(\ell + R)/D` (mean, batchmean), where R,
the other samples' losses, and D do not depend on z. The weighted mean over
class indices with a z-loss divides the two parts apart (as Liger-Kernel
does): :math:`L = \ell_{CE}/W + m\,\lambda\,\mathrm{lse}^2/N + R`, W the
summed class weights and N the number of counted samples, R the other
samples' terms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .problem import Problem

V = Any  # a value of some algebra: a ring element, a LogSum, or a SymPy expression


class Algebra:
    """The quantities a loss is made of, in one backend's representation.

    ``space`` says what ``p(m)`` and ``sigma(m)`` are: ``"z"`` (functions of
    the logits), ``"p"`` or ``"sigma"`` (independent variables, for the
    derivative of the loss by the softmax or sigmoid outputs).
    """

    problem: Problem
    space: str
    C: Any  # the number of classes (an int, or a symbol)
    eps: V  # label smoothing (0 without it)
    mask: V  # 1, or the mask m of a sample that may be ignored
    den: V  # what a mean divides by (N, W, or N for the N*C elements); 1 without a mean
    zden: V  # what the z-loss's part of a mean divides by: N, the counted samples, when den is W (split_mean)
    rest: V  # the other samples' losses R; 0 without a sum or mean

    def y(self, m: Any) -> V:
        raise NotImplementedError

    def w(self, m: Any) -> V:
        raise NotImplementedError

    def q(self, m: Any) -> V:
        raise NotImplementedError

    def v(self, m: Any) -> V:
        """An arbitrary real vector v (the ``"zv"`` space: quadratic forms of the Hessian)."""
        raise NotImplementedError

    def p(self, m: Any) -> V:
        raise NotImplementedError

    def logp(self, m: Any) -> V:
        raise NotImplementedError

    def o(self, m: Any) -> V:
        """Log-softmax ``z_m - log sum_k exp(z_k)`` (the z space only)."""
        raise NotImplementedError

    def sigma(self, m: Any) -> V:
        raise NotImplementedError

    def log_sigma(self, m: Any) -> V:
        raise NotImplementedError

    def log_one_minus_sigma(self, m: Any) -> V:
        raise NotImplementedError

    def log(self, v: V) -> V:
        """The logarithm of a positive quantity that does not depend on the logits."""
        raise NotImplementedError

    def sum(self, f: Callable[[Any], V]) -> V:
        """``f(k)`` summed over the classes k."""
        raise NotImplementedError

    def delta(self, a: Any, b: Any) -> V:
        raise NotImplementedError

    # The language-model options (ce): lam (z-loss), cap (soft-capping), temp (temperature), each a value of
    # the algebra (1 for an option that is off, 0 for lam).
    lam: V
    cap: V
    temp: V

    def lse(self) -> V:
        """log sum_k exp(x_k), x the capped and scaled logits (what the softmax normalises)."""
        raise NotImplementedError

    def tanh(self, m: Any) -> V:
        """tanh(z_m / cap) (the z space with soft-capping)."""
        raise NotImplementedError

    def x(self, m: Any) -> V:
        """The softmax input x_m = cap tanh(z_m / cap) / T (z_m when neither option is on)."""
        raise NotImplementedError

    def memo(self, key: tuple[Any, ...], make: Callable[[], V]) -> V:
        """``make()``, computed once per algebra and key (a loss is built once, not once per class)."""
        cache: dict[tuple[Any, ...], V] = self.__dict__.setdefault("_memo", {})
        if key not in cache:
            cache[key] = make()
        return cache[key]


# --------------------------------------------------------------------------
# The softmax kinds
# --------------------------------------------------------------------------


def smoothed(A: Algebra, m: Any) -> V:
    """(1 - eps) y_m + eps / C, or y_m without smoothing."""
    y = A.y(m)
    return (1 - A.eps) * y + A.eps / A.C if A.problem.smoothing else y


def target(A: Algebra, m: Any) -> V:
    """The effective target a_m = m w_m ((1 - eps) y_m + eps / C) (what each option leaves of it)."""
    return A.memo(("target", m), lambda: _target(A, m))


def _target(A: Algebra, m: Any) -> V:
    a = smoothed(A, m)
    if A.problem.weighted:
        a = A.w(m) * a
    if A.problem.masked:
        a = A.mask * a
    return a


def total(A: Algebra) -> V:
    """s = sum_c a_c."""
    return A.memo(("total",), lambda: A.sum(lambda k: target(A, k)))


def loss(A: Algebra) -> V:
    """The per-sample loss: the cross-entropy part, plus the z-loss m lam lse^2 when it is on."""
    return A.memo(("loss",), lambda: ce_loss(A) + zloss(A) if A.problem.spec.has_z_loss else ce_loss(A))


def ce_loss(A: Algebra) -> V:
    """The loss without the z-loss (as a function of the softmax of the capped and scaled logits)."""
    return A.memo(("ce-loss",), lambda: _loss(A))


def zloss(A: Algebra) -> V:
    """The z-loss of one sample: m lam lse^2 (m the mask of a sample that may be ignored)."""
    lse = A.lse()
    term = A.lam * lse * lse
    return A.mask * term if A.problem.masked else term


def zloss_grad(A: Algebra, j: Any) -> V:
    """Its derivative by the softmax input x_j: 2 m lam lse p_j."""
    term = 2 * A.lam * A.lse() * A.p(j)
    return A.mask * term if A.problem.masked else term


def chained(problem: Problem) -> bool:
    """Whether the softmax sees other logits than z (soft-capping or a temperature): then the derivation
    differentiates by the softmax inputs x first, and by z through the chain rule."""
    return problem.spec.softcap is not None or problem.spec.has_temperature


def chain(A: Algebra, j: Any) -> V:
    """dx_j/dz_j for x_j = cap tanh(z_j / cap) / T: (1 - tanh^2(z_j / cap)) / T (each factor only when on)."""
    spec = A.problem.spec
    f: V = 1
    if spec.softcap is not None:
        t = A.tanh(j)
        f = 1 - t * t
    if spec.has_temperature:
        f = f / A.temp
    return f


def _loss(A: Algebra) -> V:
    kind = A.problem.spec.kind
    if kind == "ce":
        return -A.sum(lambda k: target(A, k) * A.logp(k))
    if kind == "nll":
        return -A.sum(lambda k: target(A, k) * A.o(k))
    if kind == "kl":
        return A.sum(lambda k: target(A, k) * (A.log(target(A, k)) - A.logp(k)))
    return A.sum(lambda k: A.w(k) * (-A.q(k) * A.y(k) * A.log_sigma(k) - (1 - A.y(k)) * A.log_one_minus_sigma(k)))


def grad(A: Algebra, j: Any) -> V:
    """The derivative of the per-sample loss by z_j, in closed form (no assumption on the targets)."""
    return A.memo(("grad", j), lambda: _grad(A, j))


def _grad(A: Algebra, j: Any) -> V:
    if A.problem.bce:
        s = A.sigma(j)
        return A.w(j) * ((1 - A.y(j)) * s - A.q(j) * A.y(j) * (1 - s))
    if not A.problem.spec.language_model:
        return ce_grad(A, j)
    g = grad_x(A, j)
    return g * chain(A, j) if chained(A.problem) else g


def ce_grad(A: Algebra, j: Any) -> V:
    """The derivative of the cross-entropy part by the softmax input: p_j sum_c a_c - a_j."""
    return A.memo(("ce-grad", j), lambda: A.p(j) * total(A) - target(A, j))


def grad_x(A: Algebra, j: Any) -> V:
    """The derivative of the per-sample loss by the softmax input x_j (z_j without soft-capping and
    temperature): p_j sum_c a_c - a_j + 2 m lam lse p_j."""
    if not A.problem.spec.has_z_loss:
        return ce_grad(A, j)
    return A.memo(("grad-x", j), lambda: ce_grad(A, j) + zloss_grad(A, j))


def grad_normalized(A: Algebra, j: Any) -> V:
    """The closed form when sum(y) = 1 and there are no class weights: p_j - ((1 - eps) y_j + eps / C),
    times the mask m of a sample that may be ignored (with the options of a language model: plus
    2 m lam lse p_j, times (1 - tanh^2(z_j / cap)) / T)."""
    g = A.p(j) - smoothed(A, j)
    if A.problem.spec.has_z_loss:
        g = g + 2 * A.lam * A.lse() * A.p(j)
    g = A.mask * g if A.problem.masked else g
    return g * chain(A, j) if chained(A.problem) else g


def dloss_dp(A: Algebra, i: Any) -> V:
    """The derivative of the loss by the softmax output p_i, in closed form: -a_i / p_i."""
    return -target(A, i) / A.p(i)


def dloss_dsigma(A: Algebra, i: Any) -> V:
    """The derivative of the BCE loss by the sigmoid output: -w_i (q_i y_i / s_i - (1 - y_i) / (1 - s_i))."""
    s = A.sigma(i)
    return -A.w(i) * (A.q(i) * A.y(i) / s - (1 - A.y(i)) / (1 - s))


def softmax_jacobian(A: Algebra, i: Any, j: Any) -> V:
    """dp_i/dz_j = p_i (delta_ij - p_j)."""
    return A.p(i) * (A.delta(i, j) - A.p(j))  # not memoised: C*C entries would stay in memory


def log_softmax_jacobian(A: Algebra, i: Any, j: Any) -> V:
    """do_i/dz_j = delta_ij - p_j."""
    return A.delta(i, j) - A.p(j)


def sigmoid_jacobian(A: Algebra, i: Any, j: Any) -> V:
    """dsigma_i/dz_j = delta_ij sigma_i (1 - sigma_i)."""
    return A.delta(i, j) * A.sigma(i) * (1 - A.sigma(i))


def hessian(A: Algebra, i: Any, j: Any) -> V:
    """d^2 ell / dz_i dz_j in closed form: s (delta_ij p_i - p_i p_j) with s = sum_c a_c (softmax kinds);
    delta_ij w_j sigma_j (1 - sigma_j) ((1 - y_j) + q_j y_j) for bce."""
    if A.problem.bce:
        s = A.sigma(j)
        return A.delta(i, j) * A.w(j) * s * (1 - s) * ((1 - A.y(j)) + A.q(j) * A.y(j))
    return total(A) * softmax_jacobian(A, i, j)


def v_mean(A: Algebra) -> V:
    """The mean of v under p: sum_k p_k v_k."""
    return A.memo(("v-mean",), lambda: A.sum(lambda k: A.p(k) * A.v(k)))


def jacobian_times_v(A: Algebra, i: Any) -> V:
    """(J v)_i for the softmax Jacobian J = diag(p) - p p^T: p_i (v_i - mean of v under p)."""
    return A.p(i) * (A.v(i) - v_mean(A))


def pairwise_form(A: Algebra) -> V:
    """v^T J v in closed form: (1/2) sum_i sum_j p_i p_j (v_i - v_j)^2, a sum of non-negative terms."""
    def pair(i: Any, j: Any) -> V:
        d = A.v(i) - A.v(j)
        return A.p(i) * A.p(j) * d * d

    return A.sum(lambda i: A.sum(lambda j: pair(i, j))) / 2


# --------------------------------------------------------------------------
# Reductions
# --------------------------------------------------------------------------


def split_mean(problem: Problem) -> bool:
    """Whether the mean divides the z-loss by its own denominator: with class weights over class indices the
    cross-entropy is divided by W (the summed weights) and the z-loss by N (the counted samples)."""
    return problem.spec.has_z_loss and problem.spec.denominator == "weights"


def divisor(A: Algebra) -> V:
    """What the mean divides by: D = N, W or N*C (1 for none and sum)."""
    if A.problem.spec.denominator is None:
        return 1
    return A.den * A.C if A.problem.spec.denominator == "elements" else A.den


def reduced_loss(A: Algebra) -> V:
    """L: the loss with its reduction."""
    if split_mean(A.problem):  # the two parts of the loss are divided apart; R: the other samples' terms
        return A.memo(("reduced",), lambda: ce_loss(A) / A.den + zloss(A) / A.zden + A.rest)
    return A.memo(("reduced",), lambda: reduced(A, loss(A)))


def reduced(A: Algebra, ell: V) -> V:
    """L from the per-sample loss: ell, ell + R, or (ell + R) / D."""
    reduction = A.problem.spec.reduction
    if reduction == "none":
        return ell
    if reduction == "sum":
        return ell + A.rest
    return (ell + A.rest) / divisor(A)


def scaled(A: Algebra, g: V) -> V:
    """A per-sample gradient as the reduction leaves it: g, or g / D for a mean."""
    return g if A.problem.spec.denominator is None else g / divisor(A)


def scaled_grad(A: Algebra, j: Any) -> V:
    """The gradient of the reduced loss L by z_j, in closed form: the per-sample gradient as the reduction
    leaves it, or with split_mean (p_j sum_c a_c - a_j) / W + 2 m lam lse p_j / N, times dx_j/dz_j."""
    return A.memo(("scaled-grad", j), lambda: _scaled_grad(A, j))


def _scaled_grad(A: Algebra, j: Any) -> V:
    if not split_mean(A.problem):
        return scaled(A, grad(A, j))
    g = ce_grad(A, j) / A.den + zloss_grad(A, j) / A.zden
    return g * chain(A, j) if chained(A.problem) else g
