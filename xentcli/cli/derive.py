"""``xent derive``: machine-checked derivations, and the ``--check`` regression for CI."""

from __future__ import annotations

import difflib
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import XentInputError
from . import CONTEXT_SETTINGS, EXIT_INPUT, EXIT_MATH, EXIT_OK

MAX_CLASSES = 200
EXTENSIONS = {".md": "markdown", ".tex": "latex", ".json": "json", ".txt": "text"}
LOSSES = ("ce", "bce", "nll", "kl")

EPILOG = """\b
Examples:
  xent derive --classes 3                      # steps + proof
  xent derive --classes n                      # symbolic number of classes
  xent derive --classes 4 --loss bce --format markdown
  xent derive --classes 3 --claim "p - y"      # check a hand-derived gradient
  xent derive --classes 3 --reduction mean --label-smoothing --weights
  xent derive --classes 3 --format markdown --output derivations/ce-3.md
  xent derive --check derivations/             # CI: exit 1 on any drift

\b
Claims are elementwise closed forms in p (softmax, or sigmoid for bce), y,
z, w and the scalars N, W, C, eps, with + - * / **, sum(), exp() and log().
Exit codes: 0 proved, 1 not proved / refuted / drift, 2 bad usage.
"""


class ClassesType(click.ParamType):
    name = "C"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | str:
        if isinstance(value, int):
            n = value
        else:
            text = str(value).strip()
            if re.fullmatch(r"[A-Za-z]", text):
                from ..symbolic.general import check_letter

                try:
                    return check_letter(text)
                except XentInputError as exc:
                    self.fail(exc.message, param, ctx)
            if not re.fullmatch(r"[+-]?[0-9]+", text):
                self.fail(f"{value!r} is neither a whole number nor a single letter (symbolic C)", param, ctx)
            digits = text.lstrip("+-").lstrip("0")
            if len(digits) > len(str(MAX_CLASSES)):  # never int() a 5000-digit string
                self.fail(
                    f"{text[:20] + '...' if len(text) > 20 else text} is outside 2..{MAX_CLASSES}; use a letter "
                    "(e.g. --classes n) for every C at once",
                    param,
                    ctx,
                )
            n = int(digits or "0") * (-1 if text.startswith("-") else 1)
        if not 2 <= n <= MAX_CLASSES:
            self.fail(
                f"{n} is outside 2..{MAX_CLASSES}; use a letter (e.g. --classes n) for every C at once", param, ctx
            )
        return n


@click.command(context_settings=CONTEXT_SETTINGS, epilog=EPILOG)
@click.option("--classes", "-c", type=ClassesType(), default="3", show_default=True,
              help=f"Number of classes (2..{MAX_CLASSES}) or a letter for a symbolic C.")
@click.option("--loss", type=click.Choice(LOSSES), default="ce", show_default=True,
              help="ce: softmax cross-entropy; bce: sigmoid binary CE; nll: LogSoftmax + NLL; kl: KL(y || p).")
@click.option("--reduction", type=click.Choice(["none", "mean"]), default="none", show_default=True,
              help="mean: the loss of a batch of N samples divided as PyTorch's mean.")
@click.option("--label-smoothing", "smoothing", is_flag=True, help="Targets (1 - eps) y + eps/C with a symbolic eps.")
@click.option("--weights", is_flag=True, help="Symbolic class weights w1..wC (PyTorch's weight).")
@click.option("--assume-normalized/--no-assume-normalized", default=True, show_default=True,
              help="Assume the targets sum to 1 (one-hot or probabilities) in the final step.")
@click.option("--claim", metavar="EXPR", help="Prove or refute an elementwise closed form of the gradient.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "latex", "json"]), default=None,
              help="Output format. [default: rich view on a terminal, text otherwise]")
@click.option("--output", "-o", type=click.Path(path_type=Path), metavar="FILE",
              help="Write the document to FILE (format from --format or the extension .md/.tex/.json/.txt).")
@click.option("--check", "check_path", type=click.Path(path_type=Path), metavar="DIR",
              help="Regenerate every derivation file in DIR (or one FILE) from its header and compare.")
@click.pass_context
def derive(
    ctx: click.Context,
    classes: int | str,
    loss: str,
    reduction: str,
    smoothing: bool,
    weights: bool,
    assume_normalized: bool,
    claim: str | None,
    fmt: str | None,
    output: Path | None,
    check_path: Path | None,
) -> int:
    """Derive the softmax Jacobian and a cross-entropy gradient with SymPy, and prove the closed form.

    Every step is checked exactly (no simplify): the Jacobian entry by entry,
    the chain rule, the cancellation and the direct derivative; a claim is
    proved or refuted with a counterexample. Exit code 1 if anything fails.
    """
    if check_path is not None:
        given = [name for name in ("classes", "loss", "reduction", "smoothing", "weights", "claim", "fmt", "output")
                 if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError("--check takes no other options: each file's header says how to regenerate it")
        return run_check(check_path)

    if output is not None and fmt is None:
        fmt = EXTENSIONS.get(output.suffix.lower())
        if fmt is None:
            raise click.UsageError(f"cannot tell the format of {str(output)!r}: use --format or .md/.tex/.json/.txt")
    if output is not None and output.is_dir():
        raise XentInputError("is a directory", source=str(output))
    options = {
        "classes": classes,
        "loss": loss,
        "mean": reduction == "mean",
        "smoothing": smoothing,
        "weights": weights,
        "assume_normalized": assume_normalized,
        "claim": claim,
    }
    if claim is not None:  # refuse a malformed claim before any derivation work
        _validate_claim(options, None)
    from .render import stdout_is_terminal

    rich_view = fmt is None and output is None and stdout_is_terminal()
    derivation, text = generate(options, fmt or "text", progress=_progress_bar(classes))
    if output is not None:
        from ..files import write_atomic

        write_atomic(output, lambda fh: fh.write(text.encode("utf-8")))
        click.echo(f"{'proved' if derivation.verified else 'NOT proved'}: wrote {output}", err=True)
    elif rich_view:
        from .derive_view import print_derivation

        print_derivation(derivation)
    else:
        click.echo(text, nl=False)
    if not derivation.verified:
        from . import error_line

        failed = derivation.failed
        detail = next((c.detail for c in failed if c.detail), "")
        error_line(
            f"not proved: {', '.join(c.name for c in failed)} failed" + (f" ({detail})" if detail else "")
        )
        return EXIT_MATH
    return EXIT_OK


def generate(options: dict[str, Any], fmt: str, progress: Any = None) -> tuple[Any, str]:
    """Derive with ``options`` and render in ``fmt``; returns (derivation, text)."""
    from ..symbolic import derive as derive_fn
    from ..symbolic.documents import command_line, render

    command = command_line(options["classes"], **{k: v for k, v in options.items() if k != "classes"}, fmt=fmt)
    derivation = derive_fn(options["classes"], command=command, progress=progress, **{
        k: v for k, v in options.items() if k != "classes"
    })
    return derivation, render(derivation, fmt)


def _progress_bar(classes: int | str):
    """A rich progress bar on stderr for long runs when stderr is a terminal; otherwise nothing."""
    if not isinstance(classes, int) or classes < 30:
        return None
    try:
        if not sys.stderr.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    from rich.console import Console
    from rich.progress import Progress

    progress = Progress(console=Console(stderr=True), transient=True)
    tasks: dict[str, Any] = {}

    def report(name: str, done: int, total: int) -> None:
        if not progress.live.is_started:
            progress.start()
        if name not in tasks:
            tasks[name] = progress.add_task(f"checking {name}", total=total)
        progress.update(tasks[name], completed=done)
        if done >= total and all(t.finished for t in progress.tasks):
            progress.stop()

    return report


# --------------------------------------------------------------------------
# --check: regenerate from headers and compare
# --------------------------------------------------------------------------


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        try:
            return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)
        except OSError as exc:
            raise XentInputError(f"cannot be listed: {exc}", source=str(path)) from None
    if path.exists():
        raise XentInputError("is neither a regular file nor a directory", source=str(path))
    raise XentInputError("no such file or directory", source=str(path))


HELP_FLAGS = ("-h", "--help")
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024


def _options_from_header(command: Any, source: str) -> tuple[dict[str, Any], str]:
    """The options of a header's command, parsed by xent's own option parser (never by a shell).

    Everything that can be checked without deriving is checked here, so that a
    bad header is reported (exit 2, naming the file) before any work is done.
    """
    if not isinstance(command, str):
        raise XentInputError(f"header command is not text: {command!r}"[:200], source=source)
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise XentInputError(f"header command cannot be parsed: {exc}", source=source) from None
    if argv[:2] != ["xent", "derive"]:
        raise XentInputError(f"header does not name an 'xent derive' command: {command[:200]!r}", source=source)
    if any(a in HELP_FLAGS for a in argv[2:]):
        raise XentInputError("header command asks for --help instead of a derivation", source=source)
    try:
        sub = derive.make_context("derive", argv[2:], resilient_parsing=False)
    except click.ClickException as exc:
        raise XentInputError(f"header command is not valid: {exc.format_message()}", source=source) from None
    except click.exceptions.Exit:  # an eager option that exits (help); refused above, kept as a guard
        raise XentInputError("header command does not describe a derivation", source=source) from None
    p = sub.params
    if p.get("check_path") is not None or p.get("output") is not None:
        raise XentInputError("header command must not use --check or --output", source=source)
    options = {
        "classes": p["classes"],
        "loss": p["loss"],
        "mean": p["reduction"] == "mean",
        "smoothing": p["smoothing"],
        "weights": p["weights"],
        "assume_normalized": p["assume_normalized"],
        "claim": p["claim"],
    }
    if options["claim"] is not None:
        _validate_claim(options, source)
    return options, p["fmt"] or "text"


def _validate_claim(options: dict[str, Any], source: str | None) -> None:
    """The claim's grammar, limits and names, checked before any derivation (errors name the header's file)."""
    from ..symbolic import claims
    from ..symbolic.claim_steps import check_names

    weighted_mean = options["mean"] and options["weights"] and options["loss"] != "bce"
    try:
        tree = claims.parse(options["claim"])
        check_names(claims.names(tree), smoothing=options["smoothing"], weights=options["weights"],
                    mean=options["mean"], weighted_mean=weighted_mean)
    except XentInputError as exc:
        if source is None:
            raise
        raise XentInputError(f"header command: {exc}", source=source) from None


def _read_document(f: Path) -> str:
    try:
        size = f.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise XentInputError(f"is {size:,} bytes, too large for a derivation document", source=str(f))
        return f.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise XentInputError(f"cannot be read: {exc}", source=str(f)) from None


def run_check(path: Path) -> int:
    from ..symbolic.documents import read_header

    files = _files(path)
    if not files:
        raise XentInputError("holds no derivation files (.md, .tex, .json, .txt)", source=str(path))
    jobs = []
    for f in files:  # read every header first: a file that cannot be regenerated is a usage error (exit 2)
        current = _read_document(f)
        command = read_header(current)
        if command is None:
            raise XentInputError(
                "has no 'Generated by: xent derive ...' header in its first lines, so it cannot be regenerated",
                source=str(f),
            )
        jobs.append((f, current, command, *_options_from_header(command, str(f))))
    drift = []
    for f, current, command, options, fmt in jobs:
        try:
            derivation, fresh = generate(options, fmt)
        except XentInputError as exc:  # e.g. a claim too large for its C: name the file
            raise XentInputError(f"header command: {exc}", source=str(f)) from None
        if fresh == current and derivation.verified:
            click.echo(f"ok      {f}")
            continue
        drift.append(f)
        status = "differs" if fresh != current else "fails"
        click.echo(f"{status} {f}")
        if fresh != current:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                fresh.splitlines(keepends=True),
                fromfile=f"{f} (committed)",
                tofile=f"{f} (regenerated: {command})",
                n=2,
            )
            sys.stdout.writelines(diff)
        if not derivation.verified:
            click.echo(f"        not proved: {', '.join(c.name for c in derivation.failed)}")
    total = len(files)
    if drift:
        click.echo(f"{len(drift)} of {total} derivation files differ from a fresh run or do not prove", err=True)
        return EXIT_MATH
    click.echo(f"all {total} derivation files match a fresh run and prove", err=True)
    return EXIT_OK


__all__ = ["derive", "generate", "run_check", "EXIT_INPUT"]
