"""Issue 14: a language-model cross-entropy in torch, written as Liger-Kernel defines it, and the mistakes
the issue names, each as plausible code makes it.

Each function takes Liger-Kernel's keywords (``lse_square_scale`` for the z-loss, ``softcap``) and
``temperature``; xent verify hands the options over under these names (``--framework torch``).
"""

import torch
import torch.nn.functional as F


def _counted(target, ignore_index):
    """1 for a sample that counts, 0 for an ignored one (probability rows always count)."""
    if target.dtype == torch.long:
        return (target != ignore_index).to(torch.float64)
    return torch.ones(target.shape[0], dtype=torch.float64, device=target.device)


def _logits(z, softcap, temperature):
    """Soft-capping, then the temperature (Liger-Kernel's order)."""
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    if temperature != 1.0:
        z = z / temperature
    return z


def _reduce(ce, zl, counted, reduction):
    """Liger-Kernel's reduction: the z-loss summed over counted samples, its mean over their number."""
    zl = zl * counted.to(zl.dtype)
    if reduction == "none":
        return ce + zl
    if reduction == "sum":
        return ce + zl.sum()
    return ce + zl.sum() / counted.sum().to(zl.dtype)


def liger_cross_entropy(input, target, weight=None, ignore_index=-100, label_smoothing=0.0, reduction="mean",
                        lse_square_scale=0.0, softcap=None, temperature=1.0):
    """Correct: softcap -> temperature -> cross_entropy (weight, ignore_index, smoothing) + lambda lse^2."""
    u = _logits(input, softcap, temperature)
    ce = F.cross_entropy(u, target, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing,
                         reduction=reduction)
    if not lse_square_scale:
        return ce
    lse = torch.logsumexp(u, dim=1)
    return _reduce(ce, lse_square_scale * lse * lse, _counted(target, ignore_index), reduction)


def z_loss_gradient_without_2(input, target, weight=None, ignore_index=-100, label_smoothing=0.0,
                              reduction="mean", lse_square_scale=0.0, softcap=None, temperature=1.0):
    """One factor of lse^2 detached: the value is right, the gradient lambda lse p misses the factor 2."""
    u = _logits(input, softcap, temperature)
    ce = F.cross_entropy(u, target, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing,
                         reduction=reduction)
    lse = torch.logsumexp(u, dim=1)
    return _reduce(ce, lse_square_scale * lse.detach() * lse, _counted(target, ignore_index), reduction)


def z_loss_on_lse(input, target, weight=None, ignore_index=-100, label_smoothing=0.0, reduction="mean",
                  lse_square_scale=0.0, softcap=None, temperature=1.0):
    """lambda applied to lse instead of lse^2: the loss lambda lse, the gradient lambda p."""
    u = _logits(input, softcap, temperature)
    ce = F.cross_entropy(u, target, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing,
                         reduction=reduction)
    lse = torch.logsumexp(u, dim=1)
    return _reduce(ce, lse_square_scale * lse, _counted(target, ignore_index), reduction)


def z_loss_counts_ignored(input, target, weight=None, ignore_index=-100, label_smoothing=0.0, reduction="mean",
                          lse_square_scale=0.0, softcap=None, temperature=1.0):
    """The z-loss added for every sample, ignored ones too, and its mean taken over all N."""
    u = _logits(input, softcap, temperature)
    ce = F.cross_entropy(u, target, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing,
                         reduction=reduction)
    lse = torch.logsumexp(u, dim=1)
    return _reduce(ce, lse_square_scale * lse * lse, torch.ones_like(lse, dtype=torch.float64), reduction)


def softcap_after_softmax(input, target, weight=None, ignore_index=-100, reduction="mean", lse_square_scale=0.0,
                          softcap=None, temperature=1.0):
    """The cap applied to the probabilities: q = c tanh(softmax(z / T) / c), the loss -log q of the target."""
    u = input / temperature if temperature != 1.0 else input
    p = torch.softmax(u, dim=1)
    q = softcap * torch.tanh(p / softcap)
    ce = F.nll_loss(torch.log(q), target, weight=weight, ignore_index=ignore_index, reduction=reduction)
    if not lse_square_scale:
        return ce
    lse = torch.logsumexp(u, dim=1)
    return _reduce(ce, lse_square_scale * lse * lse, _counted(target, ignore_index), reduction)


def softcap_without_tanh_prime(input, target, weight=None, ignore_index=-100, label_smoothing=0.0,
                               reduction="mean", lse_square_scale=0.0, softcap=None, temperature=1.0):
    """The cap's value is used but its derivative is not (a straight-through cap): no tanh' in the gradient."""
    capped = input + (softcap * torch.tanh(input / softcap) - input).detach()
    u = capped / temperature if temperature != 1.0 else capped
    ce = F.cross_entropy(u, target, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing,
                         reduction=reduction)
    if not lse_square_scale:
        return ce
    lse = torch.logsumexp(u, dim=1)
    return _reduce(ce, lse_square_scale * lse * lse, _counted(target, ignore_index), reduction)


def temperature_missing_from_gradient(input, target, weight=None, ignore_index=-100, label_smoothing=0.0,
                                      reduction="mean", lse_square_scale=0.0, softcap=None, temperature=1.0):
    """Divided by T in value only (the division detached): the gradient lacks the factor 1/T."""
    capped = softcap * torch.tanh(input / softcap) if softcap is not None else input
    u = capped + (capped / temperature - capped).detach()
    ce = F.cross_entropy(u, target, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing,
                         reduction=reduction)
    if not lse_square_scale:
        return ce
    lse = torch.logsumexp(u, dim=1)
    return _reduce(ce, lse_square_scale * lse * lse, _counted(target, ignore_index), reduction)
