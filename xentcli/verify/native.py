"""How a target is called: the one place that turns a case's arrays into the target's outputs.

Everything that runs an implementation (in this process, or in a child process
that isolates it) goes through :func:`call_target`, so that what a target
receives and how its outputs are read is written once.

A target is called in one of three ways (``framework``):

``numpy``
    ``fn(logits, targets)`` with NumPy arrays (copies); its outputs are returned
    as they come.
``torch``
    A PyTorch function (``torch.nn.functional.cross_entropy``), an ``nn.Module``
    class (constructed with the options) or instance, or any function that takes
    tensors: it gets tensors of the case's dtype on ``device``, the loss options
    under PyTorch's own keyword names (``weight`` and ``pos_weight`` as tensors,
    ``ignore_index``, ``label_smoothing``, ``reduction``; the language-model options
    under the fused kernels' names: ``lse_square_scale`` for the z-loss, as
    Liger-Kernel and flash-attn, ``softcap``, as Liger-Kernel and Cut
    Cross-Entropy, and ``temperature``), and when it returns only the loss the
    gradient is taken by autograd.
``jax``
    A JAX function (``optax.softmax_cross_entropy``): it gets ``jax.numpy``
    arrays (with 64-bit types switched on for float64 cases, without which JAX
    silently computes in float32), the options its signature names, and the
    gradient of a loss-only result from ``jax.vjp``.

``auto`` (the default) picks ``torch`` or ``jax`` for callables defined in those
frameworks' packages (torch, jax, optax, flax, ...) and for ``nn.Module``
classes and instances, and ``numpy`` for everything else.

A framework target without a ``reduction`` keyword (optax's losses return one
loss per sample) is reduced after the call, in the framework, as the loss
specification says: nothing for ``none``, the sum for ``sum``, and the sum
divided by :meth:`~xentcli.spec.LossSpec.denominator`'s count for ``mean`` and
``batchmean`` (so autodiff sees the reduced loss). ``nll_loss``, ``NLLLoss``,
``kl_div``, ``KLDivLoss`` and optax's ``kl_divergence`` take log-probabilities:
verified as ``--loss nll`` or ``--loss kl`` they are handed the framework's
``log_softmax`` of the logits, which is the definition of those kinds.

``--dtype bfloat16`` cases arrive as float32 arrays holding bfloat16 values (NumPy
has no bfloat16): torch and JAX targets get them as ``torch.bfloat16`` and
``jnp.bfloat16``, the same numbers. Framework outputs come back as NumPy arrays of
the dtype the framework returned (bfloat16 as float32); frameworks are imported only when a
target needs them.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..errors import XentInputError
from ..spec import LossSpec

__all__ = ["FRAMEWORKS", "call_target", "check_target", "framework_of", "is_module_class", "split_output"]

FRAMEWORKS = ("auto", "numpy", "torch", "jax")

# Packages whose callables are called natively (the root of their module name).
_TORCH_ROOTS = frozenset({"torch"})
_JAX_ROOTS = frozenset({"jax", "jaxlib", "optax", "flax", "haiku", "equinox"})

# The loss options of a LossSpec and the keyword each framework takes them under (PyTorch's names; JAX
# libraries that take such options use the same ones).
OPTION_KEYWORDS = {
    "weight": "weight",
    "ignore_index": "ignore_index",
    "label_smoothing": "label_smoothing",
    "pos_weight": "pos_weight",
    # The language-model options under the fused kernels' names: Liger-Kernel's and flash-attn's
    # lse_square_scale for the z-loss, Liger-Kernel's and Cut Cross-Entropy's softcap. The temperature has
    # no name shared by such kernels: a target takes it as ``temperature`` or not at all.
    "z_loss": "lse_square_scale",
    "softcap": "softcap",
    "temperature": "temperature",
}
# Keywords handed over as Python floats.
_SCALARS = frozenset({"label_smoothing", "lse_square_scale", "softcap", "temperature"})
# Framework callables whose first argument is log-probabilities, not logits.
_LOG_PROB_NAMES = frozenset({"nll_loss", "NLLLoss", "kl_div", "KLDivLoss", "kl_divergence"})


def split_output(out: Any) -> tuple[Any, Any]:
    """(loss, grad) from what the implementation returned: the loss, or (loss, grad)."""
    if isinstance(out, (tuple, list)) and len(out) == 2:
        return out[0], out[1]
    return out, None


# --------------------------------------------------------------------------
# Which framework a target belongs to
# --------------------------------------------------------------------------


def _unwrap(fn: Any) -> Any:
    seen = 0
    while isinstance(fn, functools.partial) and seen < 100:
        fn, seen = fn.func, seen + 1
    return fn


def _root(obj: Any) -> str:
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str) or not module:
        module = getattr(type(obj), "__module__", "") or ""
    return module.split(".")[0]


def is_module_class(obj: Any) -> bool:
    """Whether ``obj`` is a PyTorch ``nn.Module`` class (a target xent constructs with the options)."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(obj, type):
        return False
    try:
        return issubclass(obj, torch.nn.Module)
    except (AttributeError, TypeError):  # pragma: no cover - a torch stub without nn
        return False


def _is_module_instance(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, getattr(getattr(torch, "nn", None), "Module", ()))


def framework_of(fn: Any) -> str:
    """``"torch"``, ``"jax"`` or ``"numpy"``: how ``fn`` is called under ``framework="auto"``."""
    obj = _unwrap(fn)
    if is_module_class(obj) or _is_module_instance(obj):
        return "torch"
    root = _root(obj)
    if root in _TORCH_ROOTS:
        return "torch"
    if root in _JAX_ROOTS or type(obj).__name__ == "PjitFunction":
        return "jax"
    return "numpy"


def _name(fn: Any) -> str:
    obj = _unwrap(fn)
    module = getattr(obj, "__module__", None) or getattr(type(obj), "__module__", "")
    qual = getattr(obj, "__qualname__", None) or f"{type(obj).__qualname__} instance"
    return f"{module}.{qual}" if module else str(qual)


def _resolve(fn: Any, framework: str) -> str:
    if framework not in FRAMEWORKS:
        raise XentInputError(f"must be one of {', '.join(FRAMEWORKS)}, not {framework!r}", option="framework")
    return framework_of(fn) if framework == "auto" else framework


# --------------------------------------------------------------------------
# What a framework target takes
# --------------------------------------------------------------------------


def _parameters(obj: Any) -> tuple[set[str], bool] | None:
    """The keyword names ``obj`` (or its constructor, for a class) accepts, and whether it takes ``**kwargs``."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    names = {p.name for p in sig.parameters.values()
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    var_kw = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    return names, var_kw


def _first_parameter(obj: Any) -> str | None:
    try:
        params = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        return None
    return params[0].name if params else None


def _takes_log_probs(obj: Any) -> bool:
    target = type(obj) if _is_module_instance(obj) else obj
    name = getattr(target, "__name__", "")
    return name in _LOG_PROB_NAMES or _first_parameter(obj) in ("log_predictions", "log_probs", "log_probabilities")


class _Plan:
    """How one framework target is called with one spec: keywords, the log-softmax input, the reduction."""

    def __init__(self, fn: Any, options: LossSpec, framework: str):
        obj = _unwrap(fn)
        self.framework = framework
        self.construct = is_module_class(obj)
        self.instance = _is_module_instance(fn)
        self.log_probs = _takes_log_probs(obj)
        params = None if self.instance else _parameters(obj)
        self.keywords: dict[str, Any] = {}  # option name -> spec value to hand over
        self.reduce_after = False
        if self.log_probs and options.kind not in ("nll", "kl"):
            raise XentInputError(
                f"{_name(fn)} takes log-probabilities, not logits: verify it with --loss nll (class indices) or "
                "--loss kl (probability rows), and xent hands it log_softmax(logits)", source=_name(fn))
        if self.instance:
            return  # an nn.Module instance carries its own options
        names, var_kw = params if params is not None else (set(), True)
        for option, keyword in OPTION_KEYWORDS.items():
            value = getattr(options, option)
            if not options.is_set(option):
                continue
            if keyword not in names and not var_kw:
                flag = "--" + option.replace("_", "-")
                raise XentInputError(f"{_name(fn)} has no {keyword!r} keyword: it cannot compute {flag}",
                                     source=_name(fn))
            self.keywords[keyword] = value
        if "reduction" in names or (var_kw and params is None):
            self.keywords["reduction"] = options.reduction
        else:
            self.reduce_after = True


def check_target(fn: Callable[..., Any], options: LossSpec, *, device: str | None = None,
                 framework: str = "auto") -> str:
    """Refuse a target that cannot be called as asked (raises :class:`XentInputError`); return its framework.

    Checks, before any case runs: the framework is installed, ``device`` exists, every option that is
    on can be handed over (the target takes its keyword), and a log-probability function is verified as
    ``nll`` or ``kl``.
    """
    chosen = _resolve(fn, framework)
    if chosen == "numpy":
        if device is not None:
            raise XentInputError("applies to torch and JAX targets; this target is called with NumPy arrays "
                                 "(name a framework with --framework)", option="device")
        if is_module_class(_unwrap(fn)):
            raise XentInputError("is an nn.Module class: it is called with tensors (--framework torch or auto)",
                                 source=_name(fn))
        return chosen
    _import(chosen)
    _Plan(fn, options, chosen)
    if chosen == "torch":
        _torch_device(device)
    else:
        _jax_device(device)
    return chosen


def _import(framework: str) -> Any:
    module = "torch" if framework == "torch" else "jax"
    try:
        return __import__(module)
    except ImportError as exc:
        raise XentInputError(f"this target needs {module}, which cannot be imported ({exc})",
                             option="framework") from None


# --------------------------------------------------------------------------
# Calling
# --------------------------------------------------------------------------


def call_target(fn: Callable[..., Any], logits: np.ndarray, targets: np.ndarray, options: LossSpec, *,
                device: str | None = None, framework: str = "auto") -> tuple[Any, Any]:
    """Call ``fn`` on one case's inputs (its own copies) and return its (loss, grad or None).

    ``options`` is the loss specification the case is judged under. A NumPy target's outputs are
    returned as it gave them; a torch or JAX target's (see the module docstring) as NumPy arrays of the
    dtype the framework computed in. Exceptions from the target propagate to the caller.
    """
    chosen = _resolve(fn, framework)
    if chosen == "numpy":
        return split_output(fn(logits.copy(), targets.copy()))
    plan = _Plan(fn, options, chosen)
    if chosen == "torch":
        return _call_torch(fn, plan, logits, targets, options, device)
    return _call_jax(fn, plan, logits, targets, options, device)


def _denominator(options: LossSpec, targets: np.ndarray, shape: tuple[int, int]) -> float | None:
    """What the spec's mean divides by on these targets (None for none and sum; 0 for zero weight)."""
    from ..numeric import ReductionPlan

    n, c = shape
    counts = None
    if options.denominator in ("samples", "weights"):
        t = np.asarray(targets)
        kept = t[t != options.ignore]
        counts = np.bincount(kept.astype(np.int64), minlength=c) if kept.size else np.zeros(c, dtype=np.int64)
    weight = None if options.weight is None else np.asarray([float(w) for w in options.weight])  # type: ignore[union-attr]
    plan = ReductionPlan.for_batch(options, c, n, counts=counts, weight=weight)
    return plan.reported_denominator


def _reduce(loss: Any, options: LossSpec, denominator: float | None) -> Any:
    """The spec's reduction of per-sample (or elementwise) losses, in the framework's arithmetic."""
    if options.reduction == "none" or getattr(loss, "ndim", 1) == 0:  # a scalar is reduced already
        return loss
    total = loss.sum()
    if options.reduction == "sum":
        return total
    return total / denominator


def _torch_device(device: str | None) -> Any:
    torch = _import("torch")
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise XentInputError(f"{device!r} is not a torch device ({exc})", option="device") from None
    available: dict[str, Callable[[], bool]] = {"cuda": lambda: torch.cuda.is_available(),
                 "mps": lambda: bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()}
    check = available.get(dev.type)
    if check is not None and not check():
        raise XentInputError(f"{device} is not available to torch here", option="device")
    try:
        torch.zeros(1, device=dev)
    except (RuntimeError, AssertionError) as exc:
        raise XentInputError(f"{device} cannot be used by torch ({' '.join(str(exc).split())[:200]})",
                             option="device") from None
    return dev


def _torch_numpy(value: Any) -> Any:
    """A tensor as a NumPy array of its dtype (bfloat16 as float32); anything else unchanged."""
    torch = sys.modules["torch"]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        return value.numpy()
    return value


def _call_torch(fn: Any, plan: _Plan, logits: np.ndarray, targets: np.ndarray, options: LossSpec,
                device: str | None) -> tuple[Any, Any]:
    torch = _import("torch")
    dev = _torch_device(device)
    # bfloat16 arrives as float32 arrays of bfloat16 values (NumPy has none): the tensor is bfloat16, exactly
    z = torch.tensor(np.array(logits), device=dev, requires_grad=True,
                     dtype=torch.bfloat16 if options.dtype == "bfloat16" else None)
    index = targets.dtype.kind in "iu"
    t = torch.tensor(np.array(targets), device=dev, dtype=torch.long if index else z.dtype)
    kwargs: dict[str, Any] = {}
    for key, value in plan.keywords.items():
        if key in ("weight", "pos_weight"):
            kwargs[key] = torch.tensor([float(v) for v in value], dtype=z.dtype, device=dev)
        elif key in _SCALARS:
            kwargs[key] = float(value)
        else:
            kwargs[key] = value
    target: Any = _unwrap(fn) if plan.construct else fn
    if plan.construct:
        target = target(**kwargs).to(dev)
        kwargs = {}
    elif plan.instance and device is not None:
        target = target.to(dev)
    x = torch.log_softmax(z, dim=1) if plan.log_probs else z
    out = target(x, t, **kwargs)
    loss, grad = split_output(out)
    if grad is None and plan.reduce_after and isinstance(loss, torch.Tensor):
        loss = _reduce(loss, options, _denominator(options, targets, logits.shape))
    if grad is None and isinstance(loss, torch.Tensor) and loss.requires_grad:
        (grad,) = torch.autograd.grad(loss.sum(), z, allow_unused=True)
        if grad is None:  # the loss does not depend on the logits
            grad = torch.zeros_like(z)
    return _torch_numpy(loss), _torch_numpy(grad)


def _jax_device(device: str | None) -> Any:
    jax = _import("jax")
    if device is None:
        return None
    platform = {"cuda": "gpu", "rocm": "gpu"}.get(device.split(":")[0], device.split(":")[0])
    index = device.split(":")[1] if ":" in device else "0"
    try:
        devices = jax.devices(platform)
        return devices[int(index)]
    except (RuntimeError, ValueError, IndexError) as exc:
        raise XentInputError(f"{device} is not available to JAX here ({' '.join(str(exc).split())[:200]})",
                             option="device") from None


@contextlib.contextmanager
def _jax_precision(jax: Any, x64: bool) -> Iterator[None]:
    """64-bit types on (float64 cases) or as they are, for the duration of one call."""
    if not x64 or jax.config.jax_enable_x64:
        yield
        return
    enable = getattr(jax, "enable_x64", None)
    if enable is not None:
        with enable(True):
            yield
        return
    import jax.experimental as older  # JAX before enable_x64 moved to the top level

    with older.enable_x64():  # type: ignore[attr-defined]
        yield


def _call_jax(fn: Any, plan: _Plan, logits: np.ndarray, targets: np.ndarray, options: LossSpec,
              device: str | None) -> tuple[Any, Any]:
    jax = _import("jax")
    import jax.numpy as jnp

    dev = _jax_device(device)
    with _jax_precision(jax, logits.dtype == np.float64 or targets.dtype == np.float64):
        bf16 = jnp.bfloat16 if options.dtype == "bfloat16" else None
        z = jnp.asarray(logits, dtype=bf16)
        t = jnp.asarray(targets, dtype=bf16 if targets.dtype.kind == "f" else None)
        kwargs: dict[str, Any] = {}
        for key, value in plan.keywords.items():
            if key in ("weight", "pos_weight"):
                kwargs[key] = jnp.asarray([float(v) for v in value], dtype=z.dtype)
            elif key in _SCALARS:
                kwargs[key] = float(value)
            else:
                kwargs[key] = value
        if dev is not None:
            z, t = jax.device_put(z, dev), jax.device_put(t, dev)
        denominator = _denominator(options, targets, logits.shape) if plan.reduce_after else None

        def forward(zz: Any) -> Any:
            x = jax.nn.log_softmax(zz, axis=-1) if plan.log_probs else zz
            out = fn(x, t, **kwargs)
            loss, grad = split_output(out)
            if grad is None and plan.reduce_after:
                loss = _reduce(jnp.asarray(loss), options, denominator)
            return out if grad is not None else loss

        try:
            out, pullback = jax.vjp(forward, z)
        except TypeError:  # not traceable (it converts to NumPy inside, say): called plainly, no autodiff
            out, pullback = forward(z), None
        loss, grad = split_output(out)
        if grad is None and pullback is not None:
            loss_arr = jnp.asarray(loss)
            if jnp.issubdtype(loss_arr.dtype, jnp.floating):
                (grad,) = pullback(jnp.ones_like(loss_arr))
        return _jax_numpy(loss), _jax_numpy(grad)


def _jax_numpy(value: Any) -> Any:
    if value is None or isinstance(value, (int, float, np.ndarray, np.generic)):
        return value
    arr = np.asarray(value)
    if arr.dtype.name == "bfloat16":
        arr = arr.astype(np.float32)
    return arr
