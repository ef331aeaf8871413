"""``xent compute``: loss, per-sample losses, probabilities and gradient."""

from __future__ import annotations

import contextlib
import io
import os
import stat
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import click

from ..errors import XentInputError, XentWarning
from ..malloc import reuse_block_memory
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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            _compute(spec, **options)
    finally:
        _end_long_run()


# File inputs at least this big (both together) are streamed to standard output too: read, computed and
# printed block by block in bounded memory. Smaller ones are read into memory (one read, no second pass).
STREAM_MIN_BYTES = 8 << 20


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
    if files_only and spec.family == "softmax":
        from ..sources import npy_shape

        shape = npy_shape(logits_path)  # type: ignore[arg-type]
        if shape is not None and len(shape) > 2:
            _compute_k(spec, logits_path, labels_path, chosen, output, out_fmt, meta)  # type: ignore[arg-type]
            return
    if files_only and output is not None and out_fmt is not None:
        summary = _streamed(logits_path, labels_path, output, out_fmt, header, spec)  # type: ignore[arg-type]
        if summary is not None:
            for note in summary.warnings:
                warning_line(note)
            meta.update(logits=logits_path, labels=labels_path, warnings=summary.warnings, streamed=True)
            render.print_summary(chosen, summary, meta)
            return
    if files_only and output is None and _input_bytes(logits_path, labels_path) >= STREAM_MIN_BYTES:  # type: ignore[arg-type]
        if _streamed_to_stdout(chosen, logits_path, labels_path, header, spec, meta, digits):  # type: ignore[arg-type]
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
        notes.append(SINGLE_CLASS)
    for note in notes:
        warning_line(note)

    meta.update(logits=logits_tab.source, labels=labels_tab.source, warnings=notes, streamed=False)
    if output is not None:
        render.print_summary(chosen, render.summary_of(result, arranged.values), meta)
        return
    import numpy as np

    outcome = render.Outcome.of(result)
    if chosen == "table":
        render.print_table(outcome, render.table_rows_of(result, arranged.values), meta, digits=digits)
        return
    with _stdout() as out:
        if chosen == "json":
            losses = np.asarray(result.losses)
            render.write_json(out, outcome, meta, render.in_blocks(losses), render.in_blocks(result.probs),
                              render.in_blocks(result.grad), elementwise=losses.ndim == 2)
        else:
            render.write_csv_result(out, result)


def _compute_k(spec: Any, logits_path: str, labels_path: str, chosen: str, output: Path | None,
               out_fmt: str | None, meta: dict[str, Any]) -> None:
    """K-dimensional .npy logits (N, C, d1, ..., dk), as PyTorch takes them, in memory."""

    from .. import files
    from ..numeric import evaluate
    from ..sources import load_npy_array, npy_shape
    from . import render

    if npy_shape(labels_path) is None:
        from ..sources import load_npy

        load_npy(logits_path, logits_path)  # its own errors first; then: "has 3 dimensions ... .npy labels"
    z = load_npy_array(logits_path, logits_path)
    y = load_npy_array(labels_path, labels_path)
    from ..spec import KINDS

    if "targets" not in spec.given and len(KINDS[spec.kind].targets) > 1:
        spec = spec.with_(targets="prob" if y.shape == z.shape else "index")
    try:
        result = evaluate(spec, z, y, warn=False)
    except XentInputError as exc:
        if exc.operand is None:
            raise
        where = "" if exc.index is None else f"at [{', '.join(map(str, exc.index))}]: "
        source = logits_path if exc.operand == "logits" else labels_path
        raise XentInputError(where + exc.message, source=source) from None
    if output is not None:
        if out_fmt != "npy":  # after the inputs' own errors, as for every other input
            raise XentInputError("a K-dimensional gradient is written as .npy (it has the logits' shape)",
                                 source=str(output))
        files.write_array(output, result.grad, "npy")
    notes = [str(note) for note in result.warnings]
    for note in notes:
        warning_line(note)
    meta.update(logits=logits_path, labels=labels_path, warnings=notes, streamed=False)
    if chosen == "json":
        render.print_k_json(result, meta)
    else:
        render.print_k_summary(chosen, result, meta)


SINGLE_CLASS = "the logits have a single class: softmax is 1 and the loss is 0 (did you mean --binary?)"


@contextlib.contextmanager
def _stdout(background: bool = False) -> Iterator[Any]:
    """Standard output for bytes (a :class:`~xentcli.cli.render.Output`; ``background``: formatted and
    written on a thread of its own). If its reader goes away (``xent ... | head``), nothing more is written
    to it, not even at exit, and the program ends quietly with 0: not an error of ours (click would turn
    the BrokenPipeError into exit status 1 before xent's own handler saw it)."""
    import sys

    from . import render

    sys.stdout.flush()
    raw: BinaryIO = sys.stdout.buffer
    out = render.BackgroundOutput(raw) if background else render.Output(raw)
    try:
        yield out
        out.close()
    except BrokenPipeError:
        out.abort()
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, raw.fileno())
            os.close(devnull)
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
        raise click.exceptions.Exit(0) from None
    except BaseException:
        out.abort()
        raise


_frozen: tuple[int, ...] | None = None  # the collector's thresholds while a long run has changed them


def _long_run() -> None:
    """Settings for a run over a big input: freed block buffers stay in the heap for the next block, the
    objects alive now (modules, mostly) leave the garbage collector's full passes until the command ends
    (``gc.freeze``), and its young passes come less often (the writers make an object per row of text,
    none of them in a cycle: a pass every 700 allocations found nothing to free). :func:`_end_long_run`
    undoes both, for a caller that runs more commands."""
    import gc

    global _frozen
    reuse_block_memory()
    gc.freeze()
    _frozen = gc.get_threshold()
    gc.set_threshold(max(_frozen[0], YOUNG_OBJECTS), *_frozen[1:])


def _end_long_run() -> None:
    global _frozen
    if _frozen:
        import gc

        gc.unfreeze()
        gc.set_threshold(*_frozen)
        _frozen = None


YOUNG_OBJECTS = 50_000  # allocations between two young collections during a long run (Python's default: 700)


def _input_bytes(*paths: str) -> int:
    total = 0
    for path in paths:
        try:
            total += os.stat(path).st_size
        except OSError:
            return 0  # the in-memory reader says what is wrong with it
    return total


def _rereadable(*paths: str) -> bool:
    """Whether the inputs can be read more than once (regular files; not a pipe or a terminal)."""
    try:
        return all(stat.S_ISREG(os.stat(path).st_mode) for path in paths)
    except OSError:
        return False


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
    from .. import stream

    if not _rereadable(logits_path, labels_path):
        return None  # a pipe: what a stream reads of it could not be read again by the in-memory path
    _long_run()
    progress = _progress_bar()
    try:
        flow = stream.Stream(_opener(logits_path, header), _opener(labels_path, header, labels=True), spec,
                             progress)
        return stream.stream_compute(flow, lambda width, dtype: stream.GradWriter(output, out_fmt, dtype, width))
    except stream.Unstreamable:
        return None
    finally:
        if progress is not None:
            progress(-1, None)


def _opener(path: str, header: str, *, labels: bool = False) -> Callable[[], Any]:
    """Opens ``path`` for every pass of a stream. Labels are read in smaller blocks: a block of class
    indices holds many more rows than a block of logits, and it lives until they have all been used."""
    from .. import sources

    chunk = sources.CHUNK_BYTES // 4 if labels else None
    return lambda: sources.open_source(path, header=header, chunk_bytes=chunk)


def _streamed_to_stdout(chosen: str, logits_path: str, labels_path: str, header: str, spec: Any,
                        meta: dict[str, Any], digits: int) -> bool:
    """Print the whole result of two big files block by block, in bounded memory; ``False`` when the input
    has to be read into memory instead.

    Nothing is printed before every row has been read and checked, and the
    loss and the warnings (which come first in JSON) are known. JSON and CSV
    are formatted into temporary files as the input is read (see
    :class:`~xentcli.cli.render.Spool`), in the first pass when the plan needs
    no count of the rows, else in a second one, and copied to standard
    output at the end. A table shows the first and last rows, kept by the
    first pass and computed again on their own (each row's numbers depend
    only on that row and the whole batch's denominator).
    """
    import numpy as np

    from .. import stream
    from ..numeric import evaluate
    from ..numeric.result import RESULT_KINDS
    from . import render

    if not _rereadable(logits_path, labels_path):
        return False  # a pipe: what a stream reads of it could not be read again by the in-memory path
    _long_run()
    progress = _progress_bar()
    try:
        try:
            flow = stream.Stream(_opener(logits_path, header), _opener(labels_path, header, labels=True), spec,
                                 progress)
            spec = flow.spec
            plan = flow.plan(count_rows=False)
        except stream.Unstreamable:
            return False
        elementwise = spec.kind in ("bce", "kl")
        keep = render.MAX_ROWS if chosen == "table" else 0
        # JSON and CSV are formatted into temporary files as the input is read, and copied to standard output
        # at the end: in the first pass when the plan is already final (no mean over a count of rows), else
        # in a second one.
        spool = render.Spool(chosen, np.dtype(spec.dtype), elementwise) if chosen in ("json", "csv") else None
        one_pass = spool is not None and spec.denominator not in ("rows", "elements")
        flow.passes_planned = 1 if spool is None or one_pass else 2
        try:
            def spooled(b: Any) -> None:
                assert spool is not None
                spool.add(b.start, b.result.losses, b.result.probs, b.result.grad)

            first = flow.run(plan, with_losses=spec.kind == "bce" or (one_pass and elementwise),
                             with_probs=one_pass, keep=keep, each=spooled if one_pass else None)
            plan = flow.final_plan(plan, first)
            loss, notes = flow.finish(plan, first)
            if flow.classes == 1 and spec.family == "softmax":
                notes.append(SINGLE_CLASS)
            outcome = render.Outcome(spec, RESULT_KINDS[spec.kind], spec.reduction, str(spec.targets), loss,
                                     plan.reported_denominator, first.n, flow.classes, np.dtype(spec.dtype),
                                     flow.z_loss(plan, first))
            meta.update(logits=flow.logits_name, labels=flow.labels_name, warnings=notes, streamed=True)
            index = spec.targets == "index"
            if spool is not None and not one_pass:
                done = flow.run(plan, each=spooled, with_probs=True, with_losses=elementwise)
                if done.n != first.n:  # the files must not have changed since the first pass
                    raise XentInputError(f"changed while it was read ({first.n} rows, then {done.n})",
                                         source=flow.logits_name)
            if spool is not None:
                spool.finish()
        except BaseException:
            if spool is not None:
                spool.abort()
            raise

        if chosen == "table":
            parts = []
            for a, b in render.shown_rows(first.n):
                kept = first.head if a == 0 else first.tail
                rows, labels = (stream.first_rows if a == 0 else stream.last_rows)(kept, b - a)
                target = labels.values.reshape(-1) if index else labels.values
                r = evaluate(spec, rows.values, target, plan=plan, warn=False)
                assert r.probs is not None
                parts.append(render.TableRows(a, target, np.asarray(r.losses).reshape(b - a, -1), r.probs, r.grad))
        else:
            assert spool is not None
            try:
                with _stdout() as out:
                    if chosen == "json":
                        render.write_json_spooled(out, outcome, meta, spool)
                    else:
                        out.write(render.csv_header(outcome, elementwise))
                        spool.copy(0, out)
                        out.write(render.csv_footer(outcome, elementwise))
            finally:
                spool.close()
    finally:
        if progress is not None:
            progress(-1, None)
    for note in notes:
        warning_line(note)
    if chosen == "table":
        render.print_table(outcome, parts, meta, digits=digits)
    return True


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
