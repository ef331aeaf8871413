"""What a derivation is asked to prove: the number of classes, the loss specification, the target assumption
and an optional claim. No SymPy here (the command line reads the limits before it imports SymPy)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ..errors import XentInputError
from ..spec import KINDS, SYM, LossSpec

__all__ = ["MAX_CLASSES", "Problem", "RESERVED_LETTERS", "check_letter"]

MAX_CLASSES = 200  # a concrete C is proved entry by entry; beyond this, use a letter (every C at once)

# Letters the number of classes may not be: each already names something in the
# derivation, its JSON strings or SymPy's parser.
RESERVED_LETTERS: dict[str, str] = {
    **{c: "a class index (i, j, k, t) or the slack s of the range proofs" for c in "ijkts"},
    **{c: "a per-class quantity (z, y, w, q, p, a, o, x)" for c in "zywqpaox"},
    "c": "the soft-cap c",
    "m": "the mask m of an ignored sample",
    "e": "Euler's number in exp/e^z",
    "N": "the batch size N (and sympy.N)",
    "W": "the summed target weights W",
    "R": "the other samples' losses R",
    "L": "the loss L",
    "H": "the entropy H",
    "J": "the Jacobian J",
    "T": "the temperature T",
    **{c: f"SymPy's {c} when the JSON strings are parsed" for c in "EIOQS"},
}


def check_letter(letter: str) -> str:
    """The validated letter for a symbolic number of classes; XentInputError otherwise."""
    if not isinstance(letter, str) or len(letter) != 1 or not (letter.isascii() and letter.isalpha()):
        raise XentInputError(f"{letter!r} is not a single ASCII letter (symbolic C)", source="--classes")
    if letter in RESERVED_LETTERS:
        raise XentInputError(
            f"{letter!r} clashes with {RESERVED_LETTERS[letter]}; use another letter for the number of classes "
            "(for example n or C)",
            source="--classes",
        )
    return letter


@dataclass(frozen=True)
class Problem:
    """A derivation to make: ``classes`` (an int, or a letter for a symbolic number), a loss ``spec``
    whose options may be ``SYM`` or exact fractions, whether probability targets are assumed to sum to
    1 in the last step, and a claim to prove or refute."""

    classes: int | str
    spec: LossSpec
    assume_normalized: bool = True
    claim: str | None = None

    def __post_init__(self) -> None:
        c = self.classes
        if isinstance(c, bool) or not isinstance(c, (int, str)):
            raise XentInputError(f"{c!r} is neither a whole number nor a letter", source="--classes")
        if isinstance(c, int):
            if not 2 <= c <= MAX_CLASSES:
                raise XentInputError(f"{c} is outside 2..{MAX_CLASSES}; use a letter (e.g. --classes n) for every "
                                     "C at once", source="--classes")
            self.spec.check_classes(c)
        else:
            check_letter(c)
            for option in ("weight", "pos_weight"):
                v = getattr(self.spec, option)
                if isinstance(v, tuple) and len(v) > 1:
                    raise XentInputError("values for each class need a concrete --classes; for a symbolic number "
                                         "of classes use sym (or one value for bce)", option=option)
                if isinstance(v, tuple) and self.spec.kind != "bce":
                    raise XentInputError("class weights need one value per class: give a concrete --classes, or "
                                         "use sym", option=option)
        for option in ("weight", "pos_weight"):
            v = getattr(self.spec, option)
            if isinstance(v, tuple) and not all(isinstance(x, (int, Fraction)) for x in v):
                raise XentInputError("a derivation takes exact values (decimals or ratios such as 1/10)", option=option)
        for option in ("z_loss", "softcap", "temperature"):
            v = getattr(self.spec, option)
            if isinstance(v, float):
                raise XentInputError("a derivation takes exact values (decimals or ratios such as 1/10)", option=option)

    # ----------------------------------------------------------------- facts

    @property
    def concrete(self) -> bool:
        return isinstance(self.classes, int)

    @property
    def bce(self) -> bool:
        return self.spec.kind == "bce"

    @property
    def weighted(self) -> bool:
        return self.spec.weight is not None

    @property
    def pos_weighted(self) -> bool:
        return self.spec.pos_weight is not None

    @property
    def smoothing(self) -> bool:
        return self.spec.smoothing

    @property
    def masked(self) -> bool:
        """An explicit ignore index: the sample may be ignored (its mask m is 0)."""
        return self.spec.ignore_index is not None

    @property
    def normalized(self) -> bool:
        """Whether the last step applies sum(y) = 1: always for class indices (y is one-hot), by assumption
        for probability rows."""
        if self.bce:
            return False
        return self.spec.targets == "index" or self.assume_normalized

    @property
    def onehot(self) -> bool:
        """Class-index targets: y is the one-hot row of the class index t."""
        return self.spec.targets == "index"

    def title(self) -> str:
        kind = KINDS[self.spec.kind]
        extras = []
        for on, what in ((self.spec.softcap is not None, "soft-capping"), (self.spec.has_temperature, "temperature"),
                         (self.spec.has_z_loss, "z-loss")):
            if on:
                extras.append(what)
        if self.smoothing:
            extras.append("label smoothing")
        if self.weighted:
            extras.append("class weights" if not self.bce else "weights")
        if self.pos_weighted:
            extras.append("positive weights")
        if self.masked:
            extras.append("an ignore index")
        if self.spec.reduction != "none":
            extras.append({"sum": "sum over the batch", "mean": "batch mean",
                           "batchmean": "batch mean over samples"}[self.spec.reduction])
        tail = f" with {', '.join(extras)}" if extras else ""
        targets = {"index": ", class-index targets", "prob": ", probability targets", "binary": ""}[
            str(self.spec.targets)]
        size = f"C = {self.classes}" if self.concrete else f"symbolic number of classes {self.classes}"
        return f"{kind.title.capitalize()}{tail}{targets}, {size}"

    def sym(self, option: str) -> bool:
        """Whether ``option`` is kept as a symbol."""
        return getattr(self.spec, option) is SYM
