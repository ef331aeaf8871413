"""The loss options, declared once for compute, derive and verify, and turned into one LossSpec.

Every subcommand takes the same names with the same meaning; what a value
means and which combinations exist is :mod:`xentcli.spec`'s to say. derive
takes ``sym`` where a number would go, and keeps two spellings of its own
past (``--weights``, a bare ``--label-smoothing``) with a deprecation note.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..spec import DEFAULT_REDUCTION, DERIVE_REDUCTION, IGNORE_INDEX

F = TypeVar("F", bound=Callable[..., Any])

LOSSES = ("ce", "bce", "nll", "kl")
REDUCTIONS = ("none", "sum", "mean", "batchmean")
FLAG = "(flag)"  # the value of a bare --label-smoothing (derive's old spelling)
# The command-line parameters that make up the loss (the names of the decorated function's arguments).
LOSS_PARAMS = ("loss", "binary", "reduction", "weight", "ignore_index", "label_smoothing", "pos_weight", "targets",
               "softcap", "temperature", "z_loss", "dtype", "weights")
DEPRECATED = {
    "weights": "--weights is deprecated: use --weight sym",
    "label_smoothing": "a bare --label-smoothing is deprecated: use --label-smoothing sym",
}


def loss_options(command: str) -> Callable[[F], F]:
    """Decorate ``command``'s function (compute, derive or verify) with the loss options."""
    derive = command == "derive"
    number = "sym, or " if derive else ""
    reduction_default = DERIVE_REDUCTION if derive else DEFAULT_REDUCTION
    dtypes = {"compute": ("float64", "float32", "bfloat16"),
              "verify": ("float64", "float32", "float16", "bfloat16")}.get(command)
    targets_help = {
        "compute": "How to read the labels: class indices or probability rows. [default: by their shape]",
        "derive": "Class indices (y one-hot) or probability rows: sets the mean's denominator. "
                  "[default: index; prob for kl]",
        "verify": "Targets handed over: int64 class indices or float probability rows. [default: index; prob for kl]",
    }[command]
    choices = ("auto", "index", "prob") if command == "compute" else ("index", "prob")

    def decorate(fn: F) -> F:
        smoothing_flag: dict[str, Any] = {"is_flag": False, "flag_value": FLAG} if derive else {}
        opts = [
            click.option("--loss", type=click.Choice(LOSSES), default="ce", show_default=True,
                         help="ce: softmax cross-entropy; bce: sigmoid binary CE with logits; nll: LogSoftmax + "
                              "NLL; kl: KL(y || softmax(z))."),
            click.option("--binary", is_flag=True, help="The same as --loss bce."),
            click.option("--reduction", type=click.Choice(REDUCTIONS), default=reduction_default, show_default=True,
                         help="As PyTorch: mean divides as the loss does (see README); batchmean is kl's."),
            click.option("--weight", metavar="W1,...,WC" + ("|sym" if derive else ""),
                         help=f"Class weights ({number}one per class; bce: one value or one per column)."),
            click.option("--ignore-index", type=int, default=None, metavar="K",
                         help=f"Samples whose class index is K are ignored. [default: {IGNORE_INDEX}, as PyTorch]"),
            click.option("--label-smoothing", metavar="EPS" + ("|sym" if derive else ""),
                         # derive's old spelling was a bare flag: it still works there, with a note
                         **smoothing_flag,
                         help=f"Mix EPS/C into every target ({number}0 <= EPS <= 1; ce only)."),
            click.option("--pos-weight", metavar="Q[,...]" + ("|sym" if derive else ""),
                         help=f"bce: weight of the positive term ({number}one value or one per column)."),
            click.option("--targets", type=click.Choice(choices), default=None, help=targets_help),
            click.option("--softcap", metavar="C" + ("|sym" if derive else ""),
                         help=f"ce: soft-cap the logits to C tanh(z/C) before the softmax ({number}C > 0; Gemma 2)."),
            click.option("--temperature", metavar="T" + ("|sym" if derive else ""),
                         help=f"ce: divide the (capped) logits by T before the softmax ({number}T > 0)."),
            click.option("--z-loss", metavar="LAMBDA" + ("|sym" if derive else ""),
                         help=f"ce: add LAMBDA lse(z)^2 per counted sample ({number}LAMBDA >= 0; Liger-Kernel's "
                              "lse_square_scale, PaLM's z-loss)."),
        ]
        if dtypes is not None:
            opts.append(click.option("--dtype", type=click.Choice(dtypes), default="float64", show_default=True,
                                     help="dtype computed in (bfloat16: the inputs rounded to it, computed in "
                                          "float32, as PyTorch's CPU kernels do)" if command == "compute"
                                     else "dtype of the logits handed to the implementation (bfloat16: torch.bfloat16 "
                                          "or JAX's to frameworks, float32 arrays of bfloat16 values to NumPy)."))
        if derive:
            opts.append(click.option("--weights", is_flag=True, hidden=True, help="Deprecated: --weight sym."))
        for opt in reversed(opts):
            fn = opt(fn)
        return fn

    return decorate


def loss_spec(params: dict[str, Any], ctx: click.Context | None = None, notes: list[str] | None = None) -> Any:
    """The :class:`~xentcli.spec.LossSpec` of a command's parameters.

    ``ctx`` tells which options were given on the command line (they go in
    ``spec.given``); deprecation notes are appended to ``notes``.
    """
    from ..spec import LossSpec, parse_value, parse_values

    kind = "bce" if params.get("binary") else params.get("loss") or "ce"
    if params.get("binary") and params.get("loss") not in (None, "ce", "bce"):
        raise click.UsageError(f"--binary is --loss bce; it cannot go with --loss {params['loss']}")
    weight = params.get("weight")
    if params.get("weights"):
        if weight is not None:
            raise click.UsageError("--weights is the old spelling of --weight sym; give only one of them")
        weight = "sym"
        _note(notes, "weights")
    smoothing = params.get("label_smoothing")
    if smoothing == FLAG:
        smoothing = "sym"
        _note(notes, "label_smoothing")
    targets = params.get("targets")
    given = set()
    if ctx is not None:
        for name in LOSS_PARAMS:
            try:
                if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
                    given.add(name)
            except KeyError:  # pragma: no cover - a command without that parameter
                pass
    if targets == "auto":
        targets = None
        given.discard("targets")
    return LossSpec(
        kind,
        params.get("reduction") or "mean",
        weight=None if weight is None else parse_values(weight, "weight"),
        ignore_index=params.get("ignore_index"),
        label_smoothing=0 if smoothing is None else parse_value(smoothing, "label_smoothing"),
        pos_weight=None if params.get("pos_weight") is None else parse_values(params["pos_weight"], "pos_weight"),
        targets=targets,
        dtype=params.get("dtype") or "float64",
        z_loss=0 if params.get("z_loss") is None else parse_value(params["z_loss"], "z_loss"),
        softcap=None if params.get("softcap") is None else parse_value(params["softcap"], "softcap"),
        temperature=1 if params.get("temperature") is None else parse_value(params["temperature"], "temperature"),
        given=frozenset(given),
    )


def _note(notes: list[str] | None, key: str) -> None:
    if notes is not None and DEPRECATED[key] not in notes:
        notes.append(DEPRECATED[key])


def pop_loss_params(params: dict[str, Any]) -> dict[str, Any]:
    """Remove the loss options from a command's keyword arguments and return them."""
    return {name: params.pop(name) for name in LOSS_PARAMS if name in params}


__all__ = ["FLAG", "LOSS_PARAMS", "loss_options", "loss_spec", "pop_loss_params"]
