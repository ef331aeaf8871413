"""``xent compute``: loss, per-sample losses, probabilities and gradient."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import XentInputError, XentWarning
from . import CONTEXT_SETTINGS, warning_line
from .options import loss_options, loss_spec, pop_loss_params

EPILOG = """\b
Examples:
  xent compute --logits "2,1,0.1;0.1,2,1.9" --labels "1,0"
  xent compute logits.csv labels.csv --reduction sum --format json
  xent compute logits.npy labels.csv --output grad.csv
  xent compute logits.csv probs.csv --targets prob --label-smoothing 0.1
  xent compute --binary logits.csv multilabel.csv --pos-weight 3
  cat logits.csv | xent compute - labels.csv

\b
LOGITS and LABELS are CSV/TSV/space-separated text (optional header row) or
.npy files; '-' reads standard input. Labels are read by shape: N values (a
column or one row) are class indices, an N x C table is a row of target
probabilities per sample (--targets forces either).
"""


@click.command(context_settings=CONTEXT_SETTINGS, epilog=EPILOG)
@click.argument("inputs", nargs=-1, metavar="[LOGITS] [LABELS]")
@click.option("--logits", "logits_text", metavar="ROWS", help="Logits inline: values split by ',', rows by ';'.")
@click.option(
    "--labels",
    "labels_text",
    metavar="ROWS",
    help="Labels inline: class indices '1,0' or target rows '0,1,0;1,0,0'.",
)
@loss_options("compute")
@click.option(
    "--header",
    type=click.Choice(["auto", "yes", "no"]),
    default="auto",
    show_default=True,
    help="Whether text files start with a header row (auto: when no cell of the first row is a number).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default=None,
    help="Output format. [default: table on a terminal, json otherwise]",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    metavar="PATH",
    help="Also write the gradient to PATH (.csv, .tsv, .txt or .npy), atomically.",
)
@click.option("--digits", type=click.IntRange(1, 17), default=4, show_default=True,
              help="Significant digits in the table.")
@click.pass_context
def compute(ctx: click.Context, /, **options: Any) -> None:
    """Compute softmax cross-entropy, NLL, KL or sigmoid BCE exactly as PyTorch defines them.

    Prints the loss, per-sample losses, probabilities and the gradient with
    respect to the logits. For --reduction none the gradient is that of the
    sum, so each row is its own sample's gradient.
    """
    spec = loss_spec(pop_loss_params(options), ctx)
    # NumPy's RuntimeWarnings (an overflow in an intermediate that the result accounts
    # for) would print several lines on stderr: errors and notes about the result are
    # reported as one line each, by the code below.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _compute(spec, **options)


def _compute(
    spec: Any,
    inputs: tuple[str, ...],
    logits_text: str | None,
    labels_text: str | None,
    header: str,
    fmt: str | None,
    output: Path | None,
    digits: int,
) -> None:
    from .. import files

    logits_path, labels_path = _sources(inputs, logits_text, labels_text)
    out_fmt = files.check_output_path(output, [p for p in (logits_path, labels_path) if p]) if output else None
    from . import render

    meta: dict[str, Any] = {"output": None if output is None else str(output)}
    chosen = fmt or ("table" if render.stdout_is_terminal() else "json")
    files_only = logits_text is None and labels_text is None and "-" not in (logits_path, labels_path)
    if output is not None and out_fmt is not None and files_only:
        summary = _streamed(logits_path, labels_path, output, out_fmt, header, spec)  # type: ignore[arg-type]
        if summary is not None:
            for note in summary.warnings:
                warning_line(note)
            meta.update(logits=logits_path, labels=labels_path, warnings=summary.warnings, streamed=True)
            render.print_summary(chosen, summary, meta)
            return

    logits_tab = files.parse_inline(logits_text, "--logits") if logits_text is not None else files.read_table(
        logits_path, header=header  # type: ignore[arg-type]
    )
    labels_tab = files.parse_inline(labels_text, "--labels") if labels_text is not None else files.read_table(
        labels_path, header=header  # type: ignore[arg-type]
    )
    n, c = logits_tab.shape
    arranged = files.arrange_targets(labels_tab, n, c, spec)
    if arranged.target_type != spec.targets:
        spec = spec.with_(targets=arranged.target_type)
    result = _run(spec, logits_tab, arranged)

    if output is not None and out_fmt is not None:
        files.write_array(output, result.grad, out_fmt)

    notes = [_place_warning(note, logits_tab, arranged) for note in result.warnings]
    if c == 1 and spec.family == "softmax":
        notes.append("the logits have a single class: softmax is 1 and the loss is 0 (did you mean --binary?)")
    for note in notes:
        warning_line(note)

    meta.update(logits=logits_tab.source, labels=labels_tab.source, warnings=notes, streamed=False)
    if output is not None:
        render.print_summary(chosen, render.summary_of(result, arranged.values), meta)
        return
    if chosen == "json":
        click.echo(render.to_json(result, meta, arranged.values))
    elif chosen == "csv":
        click.echo(render.to_csv(result), nl=False)
    else:
        render.print_table(result, meta, arranged.values, digits=digits)


def _sources(
    inputs: tuple[str, ...], logits_text: str | None, labels_text: str | None
) -> tuple[str | None, str | None]:
    free = list(inputs)
    need = [name for name, text in (("LOGITS", logits_text), ("LABELS", labels_text)) if text is None]
    if len(free) > len(need):
        extra = free[len(need)]
        inline = (("LOGITS", logits_text), ("LABELS", labels_text))
        given = " and ".join(f"--{n.lower()}" for n, t in inline if t is not None)
        why = f" ({given} given inline)" if given else ""
        raise click.UsageError(f"unexpected extra argument {extra!r}{why}")
    if len(free) < len(need):
        missing = need[len(free)]
        raise click.UsageError(f"missing {missing}: give a file, '-' for standard input, or --{missing.lower()} ROWS")
    paths: dict[str, str | None] = {"LOGITS": None, "LABELS": None}
    for name, path in zip(need, free):
        paths[name] = path
    if paths["LOGITS"] == "-" and paths["LABELS"] == "-":
        raise click.UsageError("only one of LOGITS and LABELS can be read from standard input ('-')")
    return paths["LOGITS"], paths["LABELS"]


def _run(spec: Any, logits_tab: Any, arranged: Any) -> Any:
    from .. import numeric

    try:
        return numeric.evaluate(spec, logits_tab.values, arranged.values, warn=False)
    except XentInputError as exc:
        raise _place_error(exc, logits_tab, arranged) from None


def _locate(
    operand: str | None, index: tuple[int, ...] | None, logits_tab: Any, arranged: Any
) -> tuple[str | None, int | None, int | None]:
    from .. import files

    if operand == "logits":
        row, col = files.logits_locator(logits_tab)(index or ())
        return logits_tab.source, row, col
    if operand == "target":
        row, col = arranged.locate(index or ())
        return arranged.source, row, col
    if operand in ("weight", "pos_weight"):
        return f"--{operand.replace('_', '-')}", None, (index[0] + 1 if index else None)
    return None, None, None


def _place_error(exc: XentInputError, logits_tab: Any, arranged: Any) -> XentInputError:
    if exc.source is not None or exc.operand is None:
        return exc
    source, row, col = _locate(exc.operand, exc.index, logits_tab, arranged)
    if source is None:
        return exc
    return exc.at(source, row, col)


def _place_warning(note: XentWarning, logits_tab: Any, arranged: Any) -> str:
    source, row, col = _locate(note.operand, note.index, logits_tab, arranged)
    if source is None:
        return note.message
    where = ", ".join(p for p in (f"row {row}" if row else "", f"column {col}" if col else "") if p)
    return f"{source}: {where}: {note.message}" if where else f"{source}: {note.message}"


def _streamed(logits_path: str, labels_path: str, output: Path, out_fmt: str, header: str, spec: Any) -> Any:
    """Stream the computation to ``output``; ``None`` when the input has to be read into memory."""
    from .. import sources, stream

    def opener(path: str) -> Any:
        return lambda: sources.open_source(path, header=header)

    progress = _progress_bar()
    try:
        return stream.stream_compute(
            sources.open_source(logits_path, header=header),
            sources.open_source(labels_path, header=header),
            opener(labels_path),
            opener(logits_path),
            spec,
            lambda width, dtype: stream.GradWriter(output, out_fmt, dtype, width),
            progress,
        )
    except stream.Unstreamable:
        return None
    finally:
        if progress is not None:
            progress(-1, None)


def _progress_bar() -> Callable[[int, int | None], None] | None:
    """A rich progress bar on stderr when it is a terminal (long runs only); else ``None``."""
    import sys
    import time

    try:
        if not sys.stderr.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    state: dict[str, Any] = {"bar": None, "task": None, "start": time.monotonic()}

    def report(done: int, total: int | None) -> None:
        bar = state["bar"]
        if done < 0:
            if bar is not None:
                bar.stop()
            return
        if bar is None:
            if time.monotonic() - state["start"] < 0.5:
                return  # short runs stay silent
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

            bar = Progress("reading", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                           console=Console(stderr=True), transient=True)
            bar.start()
            state["bar"] = bar
            state["task"] = bar.add_task("xent", total=total)
        bar.update(state["task"], completed=done, total=total)

    return report
