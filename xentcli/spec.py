r"""One definition of each loss: what it computes, its options, their defaults, and which combinations exist.

Every part of xent reads a :class:`LossSpec`: the command line of ``compute``,
``derive`` and ``verify``, the NumPy kernels and their streamed form,
verify's battery and diagnoses, and the symbolic derivations (which hold
``SYM``, a symbol, or exact fractions in the same fields). A rule about an
option is written here and nowhere else.

The four kinds, as functions of the logits :math:`z` (N samples x C classes),
follow PyTorch exactly:

=======  ==============================================================  ========================
kind     PyTorch                                                         options
=======  ==============================================================  ========================
``ce``   ``F.cross_entropy(z, t, weight, ignore_index, reduction,        weight, ignore_index,
         label_smoothing)``                                              label_smoothing;
                                                                         index or prob targets
``nll``  ``F.nll_loss(F.log_softmax(z, 1), t, weight, ignore_index,      weight, ignore_index;
         reduction)``                                                    index targets
``kl``   ``F.kl_div(F.log_softmax(z, 1), y, reduction)``                 prob targets;
                                                                         reduction batchmean too
``bce``  ``F.binary_cross_entropy_with_logits(z, y, weight, pos_weight,  weight, pos_weight;
         reduction)``                                                    targets of z's shape
=======  ==============================================================  ========================

For the softmax kinds the loss of sample n is :math:`-\sum_c a_{nc} \log p_{nc}`
(plus :math:`\sum_c y_{nc}\log y_{nc}` for ``kl``) with the effective target

.. math::  a_{nc} = m_n\, w_c \bigl((1-\varepsilon)\, y_{nc} + \varepsilon / C\bigr)

where :math:`y_n` is the one-hot row of a class index or the given probability
row, :math:`m_n` is 0 for a sample whose class index is ``ignore_index`` and 1
otherwise, :math:`w_c = 1` without weights. ``reduction="mean"`` divides the
summed loss by :meth:`LossSpec.denominator` (see :data:`DENOMINATORS`).

Language-model training adds three options to ``ce`` (in this order):

* ``softcap`` c (Gemma 2, Liger-Kernel, Cut Cross-Entropy): the logits become
  :math:`c \tanh(z/c)` before the softmax;
* ``temperature`` T (distillation): then they are divided by T;
* ``z_loss`` λ (PaLM; Liger-Kernel's ``lse_square_scale``, flash-attn's): each
  counted sample adds :math:`\lambda\, \mathrm{lse}^2`, with lse the
  log-sum-exp of the capped and scaled logits. Ignored samples add nothing;
  ``mean`` divides the summed z-loss by the number of counted samples (N for
  probability rows) -- also with class weights, as Liger-Kernel does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Final, Literal

from .errors import XentInputError, option_flag

__all__ = [
    "DEFAULT_REDUCTION",
    "DERIVE_REDUCTION",
    "DENOMINATORS",
    "DTYPES",
    "IGNORE_INDEX",
    "KINDS",
    "Kind",
    "LossSpec",
    "REDUCTIONS",
    "SYM",
    "Symbolic",
    "TARGETS",
    "parse_value",
    "parse_values",
]


class Symbolic:
    """The value ``sym``: an option that a derivation keeps as a symbol (w_1..w_C, epsilon, q_1..q_C)."""

    _instance: Symbolic | None = None

    def __new__(cls) -> Symbolic:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "SYM"

    def __str__(self) -> str:
        return "sym"

    def __reduce__(self) -> str:
        return "SYM"


SYM: Final = Symbolic()

Number = int | float | Fraction
Vector = tuple[Number, ...] | Symbolic


@dataclass(frozen=True)
class Kind:
    """What one kind of loss is, in words and in PyTorch."""

    name: str
    title: str
    torch: str
    family: Literal["softmax", "sigmoid"]
    targets: tuple[str, ...]  # the target kinds it takes; the first is the default
    reductions: tuple[str, ...]
    options: frozenset[str]  # which of weight, ignore_index, label_smoothing, pos_weight, z_loss, ... apply


KINDS: Final[dict[str, Kind]] = {
    "ce": Kind("ce", "softmax cross-entropy", "torch.nn.functional.cross_entropy", "softmax",
               ("index", "prob"), ("none", "sum", "mean"),
               frozenset({"weight", "ignore_index", "label_smoothing", "z_loss", "softcap", "temperature"})),
    "nll": Kind("nll", "LogSoftmax + NLL", "torch.nn.functional.nll_loss of log_softmax", "softmax",
                ("index",), ("none", "sum", "mean"), frozenset({"weight", "ignore_index"})),
    "kl": Kind("kl", "KL divergence", "torch.nn.functional.kl_div of log_softmax", "softmax",
               ("prob",), ("none", "sum", "mean", "batchmean"), frozenset()),
    "bce": Kind("bce", "binary cross-entropy with logits", "torch.nn.functional.binary_cross_entropy_with_logits",
                "sigmoid", ("binary",), ("none", "sum", "mean"), frozenset({"weight", "pos_weight"})),
}
REDUCTIONS: Final = ("none", "sum", "mean", "batchmean")
TARGETS: Final = ("index", "prob", "binary")
DTYPES: Final = ("float64", "float32", "float16", "bfloat16")
IGNORE_INDEX: Final = -100  # PyTorch's default ignore_index
DEFAULT_REDUCTION: Final = "mean"  # PyTorch's default
DERIVE_REDUCTION: Final = "none"  # xent derive's: the gradient of one sample's loss

# What reduction="mean" (and kl's "batchmean") divides the summed loss by, by name.
DENOMINATORS: Final[dict[str, str]] = {
    "samples": "the number of samples whose class index is not ignore_index",
    "weights": "the summed weight w[t_n] of the samples whose class index is not ignore_index",
    "rows": "the number of samples N",
    "elements": "the number of elements N*C",
}

_OPTION_NAMES = {
    "weight": "class weights",
    "ignore_index": "ignore index",
    "label_smoothing": "label smoothing",
    "pos_weight": "positive-class weight",
}
# The language-model options are not PyTorch's: where they apply, and who defines them.
_LM_OPTIONS = {
    "z_loss": "the z-loss (Liger-Kernel's lse_square_scale)",
    "softcap": "logit soft-capping (Gemma 2)",
    "temperature": "the temperature",
}


def _fail(option: str, message: str) -> XentInputError:
    return XentInputError(message, option=option)


@dataclass(frozen=True)
class LossSpec:
    """A loss and its options, validated once (see the module docstring for the semantics).

    Attributes:
        kind: ``"ce"``, ``"nll"``, ``"kl"`` or ``"bce"``.
        reduction: ``"none"``, ``"sum"``, ``"mean"``, or ``"batchmean"`` (kl only).
        weight: class weights (ce, nll; one per class) or element weights (bce;
            one value or one per column); ``SYM`` in a derivation; ``None``.
        ignore_index: a class index whose samples are ignored; ``None`` means
            PyTorch's default (-100) was not changed.
        label_smoothing: epsilon in [0, 1] (ce); ``SYM`` in a derivation.
        pos_weight: weight of the positive term (bce); one value or one per column.
        z_loss: lambda >= 0 of the z-loss lambda * lse^2 (ce); 0 is off; ``SYM`` in a derivation.
        softcap: c > 0: the logits become c tanh(z / c) (ce); ``None`` is off; ``SYM``.
        temperature: T > 0: the (capped) logits are divided by T (ce); 1 is off; ``SYM``.
        targets: ``"index"`` or ``"prob"`` (ce), ``"index"`` (nll), ``"prob"``
            (kl), ``"binary"`` (bce); ``None`` picks the kind's default.
        dtype: ``"float64"``, ``"float32"``, ``"bfloat16"`` (inputs rounded to bfloat16,
            computed in float32, as PyTorch's CPU path) or ``"float16"`` (for the
            inputs verify hands to an implementation).
    """

    kind: str = "ce"
    reduction: str = DEFAULT_REDUCTION
    weight: Vector | None = None
    ignore_index: int | None = None
    label_smoothing: Number | Symbolic = 0
    pos_weight: Vector | None = None
    targets: str | None = None
    dtype: str = "float64"
    z_loss: Number | Symbolic = 0
    softcap: Number | Symbolic | None = None
    temperature: Number | Symbolic = 1
    # Which options the caller set explicitly (for messages that should name them); not part of equality.
    given: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise _fail("loss", f"unknown loss {self.kind!r}; use one of {', '.join(KINDS)}")
        kind = KINDS[self.kind]
        set_ = object.__setattr__
        if self.reduction not in REDUCTIONS:
            raise _fail("reduction", f"must be one of {', '.join(REDUCTIONS)}, not {self.reduction!r}")
        if self.reduction not in kind.reductions:
            raise _fail("reduction", f"{self.reduction} applies only to the KL divergence (PyTorch's kl_div)")
        if self.dtype not in DTYPES:
            raise _fail("dtype", f"must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        set_(self, "targets", self._checked_targets(kind))
        set_(self, "weight", _vector(self.weight, "weight"))
        set_(self, "pos_weight", _vector(self.pos_weight, "pos_weight"))
        set_(self, "label_smoothing", _smoothing(self.label_smoothing))
        set_(self, "ignore_index", _ignore(self.ignore_index))
        set_(self, "z_loss", _scalar(self.z_loss, "z_loss", allow_zero=True))
        set_(self, "softcap", None if self.softcap is None else _scalar(self.softcap, "softcap"))
        set_(self, "temperature", _scalar(self.temperature, "temperature"))
        used = {
            "weight": self.weight is not None,
            "ignore_index": self.ignore_index is not None,
            "label_smoothing": self.label_smoothing is SYM or self.label_smoothing != 0,
            "pos_weight": self.pos_weight is not None,
            "z_loss": self.has_z_loss,
            "softcap": self.softcap is not None,
            "temperature": self.has_temperature,
        }
        for option, on in used.items():
            if on and option not in kind.options:
                if option in _LM_OPTIONS:
                    raise _fail(option, f"{_LM_OPTIONS[option]} applies to the softmax cross-entropy (--loss ce) "
                                        f"only, not to the {kind.title}")
                raise _fail(option, f"does not apply to the {kind.title} (PyTorch's {kind.torch} has no "
                                    f"{_OPTION_NAMES[option]})")
        if self.ignore_index is not None and self.targets != "index":
            raise _fail("ignore_index", "applies to class-index targets only (PyTorch ignores no probability row)")

    def _checked_targets(self, kind: Kind) -> str:
        if self.targets is None:
            return kind.targets[0]
        if self.targets not in TARGETS:
            raise _fail("targets", f"must be one of {', '.join(TARGETS)}, not {self.targets!r}")
        if self.targets not in kind.targets:
            takes = " or ".join(kind.targets)
            raise _fail("targets", f"{self.targets} targets do not apply to the {kind.title} (PyTorch's "
                                   f"{kind.torch} takes {takes} targets)")
        return self.targets

    # ------------------------------------------------------------------ derived facts

    @property
    def family(self) -> str:
        """``"softmax"`` (ce, nll, kl) or ``"sigmoid"`` (bce)."""
        return KINDS[self.kind].family

    @property
    def title(self) -> str:
        return KINDS[self.kind].title

    @property
    def ignore(self) -> int:
        """The ignore index in effect (PyTorch's default -100 when none was given)."""
        return IGNORE_INDEX if self.ignore_index is None else self.ignore_index

    @property
    def smoothing(self) -> bool:
        return self.label_smoothing is SYM or self.label_smoothing != 0

    @property
    def has_z_loss(self) -> bool:
        return self.z_loss is SYM or self.z_loss != 0

    @property
    def has_temperature(self) -> bool:
        return self.temperature is SYM or self.temperature != 1

    @property
    def language_model(self) -> bool:
        """Whether any of the language-model options (z-loss, soft-capping, temperature) is on."""
        return self.has_z_loss or self.softcap is not None or self.has_temperature

    @property
    def symbolic(self) -> bool:
        """Whether any option is ``SYM`` (only a derivation can use such a spec)."""
        return any(v is SYM for v in (self.weight, self.pos_weight, self.label_smoothing, self.z_loss, self.softcap,
                                      self.temperature))

    @property
    def denominator(self) -> str | None:
        """What the reduction divides the summed loss by (a key of :data:`DENOMINATORS`), or ``None``.

        PyTorch: ``batchmean`` divides by N; ``mean`` of kl and bce by the N*C
        elements; ``mean`` with probability targets by N (also for one-hot rows,
        also with class weights); ``mean`` with class indices by the number of
        counted samples, or with class weights by their summed ``weight[t_n]``.
        """
        if self.reduction == "batchmean":
            return "rows"
        if self.reduction != "mean":
            return None
        if self.kind in ("kl", "bce"):
            return "elements"
        if self.targets == "prob":
            return "rows"
        return "weights" if self.weight is not None else "samples"

    def check_classes(self, classes: int) -> None:
        """Refuse weights whose length does not fit ``classes`` columns."""
        for option in ("weight", "pos_weight"):
            v = getattr(self, option)
            if isinstance(v, tuple) and len(v) != classes and not (self.kind == "bce" and len(v) == 1):
                one = " (or one value)" if self.kind == "bce" else ""
                raise _fail(option, f"has {len(v)} value{'s' if len(v) != 1 else ''}; it needs one per class "
                                    f"({classes}){one}")

    @classmethod
    def from_dict(cls, d: Any) -> LossSpec:
        """The spec :meth:`as_dict` wrote (also the older form with ``binary: true`` instead of ``loss``)."""
        if not isinstance(d, dict):
            raise XentInputError("options are not a JSON object")
        if "reduction" not in d:
            raise _fail("reduction", "is missing")
        binary = d.get("binary", False)
        if not isinstance(binary, bool):
            raise _fail("binary", "is not true or false")
        kind = d.get("loss") or ("bce" if binary else "ce")
        targets = d.get("targets")
        if targets == "binary" and kind != "bce":
            targets = None
        for key, value in (("loss", kind), ("reduction", d["reduction"]), ("targets", targets),
                           ("dtype", d.get("dtype") or "float64")):
            if value is not None and not isinstance(value, str):
                raise _fail(key, "is not text")
        smoothing = d.get("label_smoothing")
        if isinstance(smoothing, str):
            smoothing = parse_value(smoothing, "label_smoothing")
        lm: dict[str, Any] = {}
        for key, default in (("z_loss", 0), ("softcap", None), ("temperature", 1)):
            value = d.get(key, default)
            lm[key] = parse_value(value, key) if isinstance(value, str) else (default if value is None else value)
        return cls(
            kind,
            d["reduction"],
            weight=d.get("weight"),
            ignore_index=d.get("ignore_index"),
            label_smoothing=0 if smoothing is None else smoothing,
            pos_weight=d.get("pos_weight"),
            targets=targets,
            dtype=d.get("dtype") or "float64",
            **lm,
        )

    def with_(self, **changes: Any) -> LossSpec:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready options (numbers as floats, as the kernels use them; ``SYM`` as ``"sym"``)."""

        def out(v: Any) -> Any:
            if v is None:
                return None
            if v is SYM:
                return "sym"
            if isinstance(v, tuple):
                return [out(x) for x in v]
            return float(v)

        d = {
            "loss": self.kind,
            "reduction": self.reduction,
            "targets": self.targets,
            "weight": out(self.weight),
            "ignore_index": self.ignore_index,
            "label_smoothing": out(self.label_smoothing),
            "pos_weight": out(self.pos_weight),
        }
        if "z_loss" in KINDS[self.kind].options:  # the language-model options, where they apply
            d.update(z_loss=out(self.z_loss), softcap=out(self.softcap), temperature=out(self.temperature))
        d["dtype"] = self.dtype
        return d

    def to_args(self, command: str) -> list[str]:
        """The command-line options of ``command`` (compute, derive, verify) that give this spec back.

        What a derivation's header or a verify manifest records. Options at
        their default are left out; values are written exactly (``1/10``, ``sym``).
        """
        kind = KINDS[self.kind]
        args: list[str] = []
        if self.kind != "ce":
            args += ["--loss", self.kind]
        if self.reduction != (DERIVE_REDUCTION if command == "derive" else DEFAULT_REDUCTION):
            args += ["--reduction", self.reduction]
        if len(kind.targets) > 1 and (self.targets != kind.targets[0] or "targets" in self.given):
            args += ["--targets", str(self.targets)]
        for option in OPTION_ORDER:
            value = getattr(self, option)
            if not self.is_set(option):
                continue
            args += [option_flag(option), format_value(value)]
        if command != "derive" and self.dtype != "float64":
            args += ["--dtype", self.dtype]
        return args

    def describe(self) -> str:
        """One line: ``ce, reduction=mean, targets=index, weight=1,2,3, ...``."""
        parts = [self.kind, f"reduction={self.reduction}", f"targets={self.targets}"]
        for option in OPTION_ORDER:
            if self.is_set(option):
                parts.append(f"{option}={format_value(getattr(self, option))}")
        return ", ".join(parts)

    def is_set(self, option: str) -> bool:
        """Whether ``option`` differs from its default (what a command line or a title names, and what is
        handed to an implementation under test)."""
        value = getattr(self, option)
        if option == "label_smoothing":
            return self.smoothing
        if option == "z_loss":
            return self.has_z_loss
        if option == "temperature":
            return self.has_temperature
        return value is not None


# The order in which options are written (command lines, titles).
OPTION_ORDER: Final = ("weight", "ignore_index", "label_smoothing", "pos_weight", "softcap", "temperature", "z_loss")


def format_value(v: Any) -> str:
    """An option value as the command line takes it back: ``sym``, ``1/10``, ``0.5``, ``1,2,3``."""
    if v is SYM:
        return "sym"
    if isinstance(v, tuple):
        return ",".join(format_value(x) for x in v)
    if isinstance(v, Fraction):
        return str(v.numerator) if v.denominator == 1 else str(v)
    if isinstance(v, float):
        return f"{v:g}" if float(f"{v:g}") == v else repr(v)
    return str(v)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, Fraction)) and not isinstance(x, bool)


def _vector(v: Any, option: str) -> Vector | None:
    if v is None or v is SYM:
        return v
    if isinstance(v, str):
        return parse_values(v, option)
    if _is_number(v):
        v = (v,)
    try:
        values = tuple(v)
    except TypeError:
        raise _fail(option, f"must be numbers, not {type(v).__name__}") from None
    if not values:
        raise _fail(option, "needs at least one value")
    out: list[Number] = []
    for i, x in enumerate(values):
        if hasattr(x, "item") and not _is_number(x):  # a NumPy scalar
            x = x.item()
        if not _is_number(x):
            raise _fail(option, f"value {i + 1} ({x!r}) is not a number")
        if not (x >= 0) or x == float("inf"):
            raise _fail(option, f"value {i + 1} must be finite and not negative, got {format_value(x)}")
        out.append(x)
    return tuple(out)


def _smoothing(v: Any) -> Number | Symbolic:
    if v is SYM:
        return v
    if isinstance(v, str):
        return _smoothing(parse_value(v, "label_smoothing"))
    if hasattr(v, "item") and not _is_number(v):
        v = v.item()
    if not _is_number(v):
        raise _fail("label_smoothing", f"must be a number, not {v!r}")
    if not 0 <= v <= 1:
        raise _fail("label_smoothing", f"must be between 0 and 1, got {format_value(v)}")
    value: Number = v
    return value


def _scalar(v: Any, option: str, allow_zero: bool = False) -> Number | Symbolic:
    """A finite number > 0 (>= 0 with ``allow_zero``), ``SYM``, or its text (``1/10``, ``sym``)."""
    if v is SYM:
        return v
    if isinstance(v, str):
        return _scalar(parse_value(v, option), option, allow_zero)
    if hasattr(v, "item") and not _is_number(v):
        v = v.item()
    if not _is_number(v):
        raise _fail(option, f"must be a number, not {v!r}")
    if not (v >= 0 if allow_zero else v > 0) or v == float("inf"):
        bound = "not negative" if allow_zero else "greater than 0"
        raise _fail(option, f"must be finite and {bound}, got {format_value(v)}")
    value: Number = v
    return value


def _ignore(v: Any) -> int | None:
    if v is None:
        return None
    if hasattr(v, "item") and not isinstance(v, int):
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, int):
        raise _fail("ignore_index", f"must be a whole number, not {v!r}")
    if not -(2**63) <= v < 2**63:
        raise _fail("ignore_index", f"{v} does not fit in int64 (the class indices' dtype)")
    return v


# --------------------------------------------------------------------------
# Values as the command line writes them
# --------------------------------------------------------------------------

_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
_RATIO = re.compile(r"([+-]?\d+)/(\d+)\Z")
MAX_EXPONENT = 400  # |exponent| of a decimal value: beyond float64 either way, and keeps Fractions small


def parse_value(text: str, option: str, column: int | None = None) -> Fraction | Symbolic:
    """``sym``, a decimal (``0.1``, ``2e-3``) or a ratio (``1/10``) as an exact Fraction.

    Decimals are taken exactly (``0.1`` is 1/10); a float is made of them only
    where a number is computed.
    """
    cell = text.strip()
    where = f"value {column}: " if column is not None else ""
    if cell.lower() == "sym":
        return SYM
    m = _RATIO.match(cell)
    if m:
        num, den = int(m.group(1)), int(m.group(2))
        if den == 0:
            raise _fail(option, f"{where}{cell!r} divides by zero")
        return Fraction(num, den)
    m = _DECIMAL.match(cell)
    if not m or len(cell) > 64:
        raise _fail(option, f"{where}{cell!r} is not a number (write a decimal such as 0.1, a ratio such as "
                            "1/10, or sym)")
    if m.group(2) and abs(int(m.group(2)[1:])) > MAX_EXPONENT:
        raise _fail(option, f"{where}{cell!r} is out of range")
    return Fraction(cell.lstrip("+"))


def parse_values(text: str, option: str) -> tuple[Fraction, ...] | Symbolic:
    """``sym``, or values separated by commas, semicolons or spaces (``1,2,3``, ``1/2 1/3``)."""
    cells = [c for c in re.split(r"[,;\s]+", text.strip()) if c]
    if not cells:
        raise _fail(option, "needs at least one number (or sym)")
    if len(cells) == 1 and cells[0].lower() == "sym":
        return SYM
    values = []
    for i, cell in enumerate(cells, start=1):
        v = parse_value(cell, option, column=i if len(cells) > 1 else None)
        if v is SYM:
            raise _fail(option, "sym stands alone: write sym, or numbers")
        values.append(v)
    return tuple(values)  # type: ignore[arg-type]
