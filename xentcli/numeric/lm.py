r"""The language-model options of the softmax cross-entropy: soft-capping, temperature and the z-loss.

With the logits :math:`z` of one sample, soft-capping :math:`c` (Gemma 2) and
temperature :math:`T`, the softmax is taken over

.. math::

    u_j = \frac{c \tanh(z_j / c)}{T}, \qquad
    \frac{\partial u_j}{\partial z_j} = \frac{\operatorname{sech}^2(z_j / c)}{T}

(:math:`u = z / T` without a cap). The z-loss adds
:math:`\lambda \operatorname{lse}(u)^2` to each counted sample, whose gradient
with respect to :math:`u` is :math:`2 \lambda \operatorname{lse}(u)\, p`. The
gradient with respect to :math:`z` is the one with respect to :math:`u` times
:math:`\partial u_j / \partial z_j`, element by element.

``sech²(x)`` is evaluated as :math:`4 e^{-2|x|} / (1 + e^{-2|x|})^2`: it is
accurate to a few ulps everywhere, with no overflow and no cancellation in
the saturation region (where ``1 - tanh²`` would lose every digit).
"""

from __future__ import annotations

import numpy as np

from ..spec import LossSpec
from .blocks import scratch


class LogitMap:
    """The map z -> u of a spec (soft-capping, then temperature) and its derivative."""

    __slots__ = ("cap", "temperature", "dt")

    def __init__(self, spec: LossSpec, dt: np.dtype) -> None:
        self.cap = None if spec.softcap is None else float(spec.softcap)  # type: ignore[arg-type]
        self.temperature = float(spec.temperature)  # type: ignore[arg-type]
        self.dt = dt

    @property
    def identity(self) -> bool:
        return self.cap is None and self.temperature == 1.0

    def apply(self, z: np.ndarray) -> np.ndarray:
        """u for a block of logits, in a per-thread scratch buffer of the compute dtype."""
        u = scratch("lm_u", (z.shape[0], z.shape[1]), self.dt)
        if self.cap is not None:
            np.divide(z, self.cap, out=u)
            np.tanh(u, out=u)
            u *= self.dt.type(self.cap)
        else:
            np.copyto(u, z)
        if self.temperature != 1.0:
            u /= self.dt.type(self.temperature)
        return u

    def chain(self, z: np.ndarray, grad: np.ndarray) -> None:
        """Multiply the gradient with respect to u by du/dz, in place."""
        if self.cap is not None:
            x = scratch("lm_x", (z.shape[0], z.shape[1]), self.dt)
            np.divide(z, self.cap, out=x)
            np.abs(x, out=x)
            x *= -2
            np.exp(x, out=x)  # e = exp(-2|z/c|) in (0, 1]
            d = scratch("lm_d", (z.shape[0], z.shape[1]), self.dt)
            np.add(x, 1, out=d)
            np.square(d, out=d)
            x *= 4
            np.divide(x, d, out=x)  # sech^2 = 4e / (1 + e)^2
            grad *= x
        if self.temperature != 1.0:
            grad /= self.dt.type(self.temperature)
