"""Rendering results as a rich table, JSON or CSV (the only place rich is used)."""

from __future__ import annotations

import errno
import io
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from .. import numtext

MAX_ROWS = 40  # a table shows all rows up to this many, else the first and last MAX_ROWS // 2
MAX_COLS = 8
BLOCK_ROWS = 1 << 16  # rows formatted at a time when the whole result is in memory


def stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


# --------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------


def json_number(x: float, dtype: np.dtype | None = None) -> str:
    """A JSON token for a float: shortest round-trip digits; non-finite as a string."""
    return numtext.token(x, np.float64 if dtype is None else dtype, quote=True)


@dataclass
class Outcome:
    """What is printed about a whole computation besides its rows of numbers."""

    spec: Any
    kind: str
    reduction: str
    target_type: str
    loss: float | None
    denominator: float | None
    n: int
    classes: int
    dtype: np.dtype
    z_loss: float | None = None  # the z-loss term included in ``loss`` (with a z-loss and a reduction)

    @classmethod
    def of(cls, result: Any) -> Outcome:
        """The outcome of an in-memory :class:`~xentcli.numeric.LossResult`."""
        return cls(result.spec, result.kind, result.reduction, result.target_type, result.loss,
                   result.denominator, result.n, result.classes, result.grad.dtype, result.z_loss)


def _z_loss_fields(spec: Any, z_loss: float | None, dtype: np.dtype) -> list[tuple[str, str]]:
    """The ``z_loss`` field of the JSON document (the term included in ``loss``), when the spec has a z-loss."""
    if not spec.has_z_loss:
        return []
    if z_loss is None:
        return [("z_loss", "null")]
    return [("z_loss", json_number(z_loss, dtype))]


def _z_loss_line(spec: Any, z_loss: float | None, digits: int) -> str | None:
    """The table's line about the z-loss term, when there is one."""
    if not spec.has_z_loss or z_loss is None:
        return None
    return f"of which z-loss = {_g(z_loss, max(digits, 10))}   (lambda * lse^2, reduced as the loss)"


Sink = Callable[[np.ndarray], None]
Rows = Callable[[Sink], object]  # feeds an array's row blocks, first to last, to the sink it is given


def in_blocks(values: np.ndarray) -> Rows:
    """The row blocks of an array in memory."""

    def feed(sink: Sink) -> None:
        for i in range(0, values.shape[0], BLOCK_ROWS):
            sink(values[i : i + BLOCK_ROWS])

    return feed


_Make = Callable[..., "bytes | list[bytes]"]  # what Output.put calls: bytes, or pieces to write in turn


class Output:
    """Bytes for a binary stream, in order. :meth:`put` ``(make, *args)`` writes what ``make(*args)``
    returns (bytes, or a list of pieces written one after the other): here at once; in a
    :class:`BackgroundOutput`, made and written on a thread of its own."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out

    def write(self, data: bytes) -> None:
        self.out.write(data)

    def put(self, make: _Make, *args: Any) -> None:
        _write_made(self.out, make(*args))

    def close(self) -> None:
        self.out.flush()

    def abort(self) -> None:
        pass

    def copy_file(self, src: BinaryIO, chunk: int = 1 << 20) -> None:
        """Append the rest of the file ``src``: copied by the kernel (``os.sendfile``) when both ends are
        descriptors that allow it, else read and written in chunks."""
        self.out.flush()
        try:
            out_fd, in_fd = self.out.fileno(), src.fileno()
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            out_fd = in_fd = -1
        if out_fd >= 0 and hasattr(os, "sendfile"):
            start = offset = src.tell()
            try:
                while sent := _sendfile(out_fd, in_fd, offset):
                    offset += sent
                src.seek(offset)
                return
            except OSError as exc:
                if offset != start or exc.errno not in _NO_SENDFILE:
                    raise
        while data := src.read(chunk):
            self.out.write(data)


def _write_made(out: BinaryIO, made: bytes | list[bytes]) -> None:
    if isinstance(made, list):
        for piece in made:
            out.write(piece)
    else:
        out.write(made)


_NO_SENDFILE = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSOCK, errno.EBADF}


def _sendfile(out_fd: int, in_fd: int, offset: int) -> int:
    """One ``os.sendfile`` call; on an output that is not ready (a non-blocking pipe), wait until it is."""
    import select

    while True:
        try:
            return os.sendfile(out_fd, in_fd, offset, 1 << 30)
        except BlockingIOError:
            select.select([], [out_fd], [])


class BackgroundOutput(Output):
    """An :class:`Output` that formats and writes on a thread of its own, while the caller computes the next
    block (NumPy and the write system call let go of the interpreter lock). Its failure (a closed pipe,
    say) is raised by the next call; :meth:`abort` stops it without waiting for what is queued."""

    _POLL = 0.05

    def __init__(self, out: BinaryIO, depth: int = 3) -> None:
        import queue
        import threading

        super().__init__(out)
        self._queue: queue.Queue[tuple[_Make | None, tuple[Any, ...]]] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xent-output", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import queue

        while not self._stop.is_set():
            try:
                make, args = self._queue.get(timeout=self._POLL)
            except queue.Empty:
                continue
            if make is None:
                return
            if self._error is not None:
                continue
            try:
                _write_made(self.out, make(*args))
            except BaseException as exc:  # noqa: BLE001 - raised in the caller by the next call
                self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def _send(self, item: tuple[_Make | None, tuple[Any, ...]]) -> None:
        import queue

        while True:
            self._check()
            try:
                self._queue.put(item, timeout=self._POLL)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    self._check()
                    raise RuntimeError("the output thread stopped") from None

    def write(self, data: bytes) -> None:
        self._send((bytes, (data,)))

    def put(self, make: _Make, *args: Any) -> None:
        self._send((make, args))

    def copy_file(self, src: BinaryIO, chunk: int = 1 << 20) -> None:
        while data := src.read(chunk):  # in order behind what is queued
            self.write(data)

    def close(self) -> None:
        """Wait for everything queued to be written."""
        self._send((None, ()))
        self._thread.join()
        self._check()
        self.out.flush()

    def abort(self) -> None:
        self._stop.set()  # no queue operation: an interruption may hold its lock (see stream.GradWriter.abort)
        self._thread.join(timeout=2.0)


class JsonArray:
    """A JSON array of numbers written as its row blocks arrive: ``[a, b]`` for a vector, one row a line
    (``[\n    [a, b],\n    [c, d]\n  ]``) for a matrix; non-finite values as strings."""

    def __init__(self, out: Output, dtype: np.dtype, matrix: bool) -> None:
        self.out = out
        self.dtype = dtype
        self.matrix = matrix
        self.started = False
        if not matrix:
            out.write(b"[")

    def add(self, block: np.ndarray) -> None:
        if not block.shape[0]:
            return
        if self.matrix:
            self.out.write(b",\n    " if self.started else b"[\n    ")
            self.out.put(numtext.json_rows_parts, np.asarray(block, dtype=self.dtype))
        else:
            if self.started:
                self.out.write(b", ")
            self.out.put(numtext.json_values_parts, np.asarray(block, dtype=self.dtype))
        self.started = True

    def close(self) -> None:
        if self.matrix:
            self.out.write(b"\n  ]" if self.started else b"[]")
        else:
            self.out.write(b"]")


def json_head(o: Outcome, meta: dict[str, Any]) -> list[tuple[str, str]]:
    """The JSON document's fields before the rows of numbers, in their order."""
    return [
        ("kind", json.dumps(o.kind)),
        ("reduction", json.dumps(o.reduction)),
        ("loss", "null" if o.loss is None else json_number(o.loss, o.dtype)),
        *_z_loss_fields(o.spec, o.z_loss, o.dtype),
        ("denominator", "null" if o.denominator is None else json_number(o.denominator)),
        ("n", json.dumps(o.n)),
        ("classes", json.dumps(o.classes)),
        ("targets", json.dumps(o.target_type)),
        ("dtype", json.dumps(str(o.dtype))),
        *([("inputs_rounded_to", json.dumps("bfloat16"))] if o.spec.dtype == "bfloat16" else []),
        ("options", json.dumps(options_json(o.spec))),
        ("inputs", json.dumps({"logits": meta.get("logits"), "labels": meta.get("labels")})),
        ("output", json.dumps(meta.get("output"))),
        ("warnings", json.dumps(list(meta.get("warnings", [])))),
    ]


def write_json(out: Output, o: Outcome, meta: dict[str, Any], losses: Rows, probs: Rows, grad: Rows, *,
               elementwise: bool) -> None:
    """The whole result as JSON, written as it goes: each array is read (or computed) block by block.

    ``elementwise``: the losses are an N x C matrix (bce, kl), not N values.
    """
    head = ",\n".join(f'  "{k}": {v}' for k, v in json_head(o, meta))
    out.write(("{\n" + head).encode())
    for name, feed, matrix in (("losses", losses, elementwise), ("probs", probs, True), ("grad", grad, True)):
        out.write(f',\n  "{name}": '.encode())
        array = JsonArray(out, o.dtype, matrix)
        feed(array.add)
        array.close()
    out.write(b"\n}\n")


class Spool:
    """A streamed result's arrays formatted block by block into temporary files, on threads of their own,
    and copied to the output once the whole input has been read: the loss and the warnings, which come
    first, are then known, and nothing is printed for an input that turns out to be bad. One pass over
    the input instead of one for each array (memory stays bounded; the disk holds the formatted arrays).

    ``fmt`` is ``"json"`` (three arrays: losses, probabilities, gradient) or ``"csv"`` (the rows).
    """

    def __init__(self, fmt: str, dtype: np.dtype, elementwise: bool) -> None:
        import tempfile

        self.fmt = fmt
        self.dtype = dtype
        self.files: list[BinaryIO] = []
        self.outs: list[BackgroundOutput] = []
        try:
            for _ in range(3 if fmt == "json" else 1):
                self.files.append(tempfile.TemporaryFile())  # noqa: SIM115 - closed by close()/abort()
                self.outs.append(BackgroundOutput(self.files[-1]))
        except BaseException:
            self.abort()
            raise
        self.arrays = [JsonArray(out, dtype, matrix) for out, matrix in zip(self.outs, (elementwise, True, True))] \
            if fmt == "json" else []

    def add(self, start: int, losses: np.ndarray, probs: np.ndarray, grad: np.ndarray) -> None:
        """The next block of rows (samples ``start``, ``start + 1``, ...)."""
        if self.fmt == "json":
            for array, values in zip(self.arrays, (losses, probs, grad)):
                array.add(values)
        else:
            self.outs[0].put(csv_rows, start, losses, probs, grad, self.dtype)

    def finish(self) -> None:
        """Wait for everything to be formatted and written; the files are then read from their start."""
        for array in self.arrays:
            array.close()
        for out in self.outs:
            out.close()
        for f in self.files:
            f.seek(0)

    def copy(self, i: int, out: Output) -> None:
        """Copy the ``i``-th spooled array to ``out``, then empty its file: what is copied is not needed again,
        and its pages need never reach the disk (a big JSON would otherwise be written to it twice)."""
        out.copy_file(self.files[i])
        self.files[i].truncate(0)

    def abort(self) -> None:
        for o in self.outs:
            o.abort()
        self.close()

    def close(self) -> None:
        for f in self.files:
            f.close()


def write_json_spooled(out: Output, o: Outcome, meta: dict[str, Any], spool: Spool) -> None:
    """The whole result as JSON, its arrays copied from ``spool`` (the same bytes as :func:`write_json`)."""
    head = ",\n".join(f'  "{k}": {v}' for k, v in json_head(o, meta))
    out.write(("{\n" + head).encode())
    for i, name in enumerate(("losses", "probs", "grad")):
        out.write(f',\n  "{name}": '.encode())
        spool.copy(i, out)
    out.write(b"\n}\n")


def csv_header(o: Outcome, elementwise: bool) -> bytes:
    c = o.classes
    loss_cols = [f"loss_{j}" for j in range(c)] if elementwise else ["loss"]
    cols = ["sample", *loss_cols, *(f"p_{j}" for j in range(c)), *(f"grad_{j}" for j in range(c))]
    return (",".join(cols) + "\n").encode()


def csv_rows(start: int, losses: np.ndarray, probs: np.ndarray, grad: np.ndarray,
             dtype: np.dtype) -> list[bytes]:
    """Rows ``sample,loss...,p...,grad...`` of samples ``start``, ``start + 1``, ..."""
    n = grad.shape[0]
    block = np.concatenate([np.asarray(losses).reshape(n, -1).astype(dtype), probs, grad], axis=1, dtype=dtype)
    return numtext.lines_parts(block, numbered_from=start)


def csv_footer(o: Outcome, elementwise: bool) -> bytes:
    """The last row: the reduced loss (nothing for reduction none)."""
    if o.loss is None:
        return b""
    width = 1 + (o.classes if elementwise else 1) + 2 * o.classes
    return (f"{o.reduction},{numtext.token(o.loss, o.dtype)}" + "," * (width - 2) + "\n").encode()


def options_json(spec: Any) -> dict[str, Any]:
    """The options of a result, as the JSON output reports them (the loss's own options only)."""

    def vec(v: Any) -> list[float] | None:
        return None if v is None else [float(x) for x in v]

    return {
        "loss": spec.kind,
        "weight": vec(spec.weight),
        "ignore_index": spec.ignore if spec.kind in ("ce", "nll") else None,
        "label_smoothing": float(spec.label_smoothing) if spec.kind == "ce" else None,
        "pos_weight": vec(spec.pos_weight),
        "z_loss": float(spec.z_loss) if spec.kind == "ce" else None,
        "softcap": None if spec.softcap is None else float(spec.softcap),
        "temperature": float(spec.temperature) if spec.kind == "ce" else None,
    }


def to_json(result: Any, meta: dict[str, Any], targets: np.ndarray) -> str:
    """The whole result as JSON (non-finite numbers appear as "inf"/"-inf"/"nan")."""
    buf = io.BytesIO()
    losses = np.asarray(result.losses)
    write_json(Output(buf), Outcome.of(result), meta, in_blocks(losses), in_blocks(result.probs),
               in_blocks(result.grad), elementwise=losses.ndim == 2)
    return buf.getvalue().decode()[:-1]


def to_csv(result: Any) -> str:
    """One row per sample: losses, probabilities, gradient; then the reduced loss."""
    buf = io.BytesIO()
    write_csv_result(Output(buf), result)
    return buf.getvalue().decode()


def write_csv_result(out: Output, result: Any) -> None:
    o = Outcome.of(result)
    losses = np.asarray(result.losses).reshape(result.n, -1)
    elementwise = np.asarray(result.losses).ndim == 2
    out.write(csv_header(o, elementwise))
    for i in range(0, result.n, BLOCK_ROWS):
        sl = slice(i, i + BLOCK_ROWS)
        out.put(csv_rows, i, losses[sl], result.probs[sl], result.grad[sl], o.dtype)
    out.write(csv_footer(o, elementwise))


# --------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------


def _g(x: float, digits: int, *, keep_zeros: bool = True) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:#.{digits}g}" if keep_zeros else f"{x:.{digits}g}"


def _vector(values: Sequence[float], digits: int) -> str:
    vals = list(values)
    if len(vals) > MAX_COLS:
        shown = [_g(v, digits) for v in vals[:5]] + ["…"] + [_g(v, digits) for v in vals[-2:]]
    else:
        shown = [_g(v, digits) for v in vals]
    return "[" + ", ".join(shown) + "]"


def _target_cell(target: np.ndarray, i: int, result: Any, ignore_index: Any, digits: int) -> str:
    if result.target_type == "index":
        t = int(target[i])
        if ignore_index is not None and t == ignore_index:
            return f"{t} (ignored)"
        return str(t)
    return _vector(target[i].tolist(), digits)


@dataclass
class TableRows:
    """Consecutive rows shown in a table: sample ``start`` and the ones after it."""

    start: int
    targets: np.ndarray
    losses: np.ndarray
    probs: np.ndarray
    grad: np.ndarray


def shown_rows(n: int) -> list[tuple[int, int]]:
    """The row ranges a table shows of ``n`` rows: all of them, or the first and the last ``MAX_ROWS // 2``."""
    if n <= MAX_ROWS:
        return [(0, n)]
    half = MAX_ROWS // 2
    return [(0, half), (n - half, n)]


def table_rows_of(result: Any, targets: np.ndarray) -> list[TableRows]:
    losses = np.asarray(result.losses).reshape(result.n, -1)
    targets = np.asarray(targets)
    return [TableRows(a, targets[a:b], losses[a:b], result.probs[a:b], result.grad[a:b])
            for a, b in shown_rows(result.n)]


def print_table(o: Outcome, parts: list[TableRows], meta: dict[str, Any], *, digits: int = 4,
                file: Any = None) -> None:
    """A table of the rows in ``parts`` (the first and the last of a big result) and the loss."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, highlight=False, soft_wrap=False)
    spec = o.spec
    binary = spec.kind == "bce"
    elementwise = spec.kind in ("bce", "kl")
    title = spec.title
    extras = []
    if spec.weight is not None:
        extras.append("weighted")
    if spec.smoothing:
        extras.append(f"label smoothing {float(spec.label_smoothing):g}")
    if spec.pos_weight is not None:
        extras.append("pos_weight")
    caption = (
        f"{o.n} sample{'s' if o.n != 1 else ''} × {o.classes} "
        f"{'columns' if binary else 'classes'} · {o.target_type} targets · {o.dtype}"
        + (" · " + ", ".join(extras) if extras else "")
    )
    table = Table(title=title, caption=caption, show_lines=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("target")
    table.add_column("loss" + (" (elementwise)" if elementwise else ""), justify="right")
    table.add_column("sigmoid(z)" if binary else "p = softmax(z)")
    grad_name = "∂L/∂z" + (" (of the sum)" if o.reduction == "none" else "")
    table.add_column(grad_name)
    shown = 0
    for k, part in enumerate(parts):
        if k and part.start > parts[k - 1].start + parts[k - 1].grad.shape[0]:
            table.add_row("…", "…", "…", "…", "…")
        for i in range(part.grad.shape[0]):
            losses = part.losses[i]
            loss_cell = _vector(losses.tolist(), digits) if elementwise else _g(float(losses[0]), digits)
            table.add_row(
                str(part.start + i),
                _target_cell(part.targets, i, o, spec.ignore, digits),
                loss_cell,
                _vector(part.probs[i].tolist(), digits),
                _vector(part.grad[i].tolist(), digits),
            )
        shown += part.grad.shape[0]
    console.print(table)
    if o.n > shown:
        left = o.n - shown
        first = parts[0].grad.shape[0]
        console.print(f"… {left} more samples not shown (rows {first} to {first + left - 1}; "
                      "use --format json or csv, or --output, for all of them)")
    if o.loss is None:
        console.print("loss: none (reduction='none'; per-sample losses above)")
    else:
        if o.denominator is not None:
            how = f"{o.reduction}: sum of the losses / {_g(o.denominator, 12, keep_zeros=False)}"
        else:
            how = "sum of the losses"
        console.print(f"loss = [bold]{_g(o.loss, max(digits, 10))}[/bold]   ({how})")
        z_line = _z_loss_line(o.spec, o.z_loss, digits)
        if z_line:
            console.print(z_line)
    if meta.get("output"):
        console.print(f"gradient written to {meta['output']}")


# --------------------------------------------------------------------------
# Summaries (with --output the gradient is in the file; stdout says what was computed)
# --------------------------------------------------------------------------


def summary_of(result: Any, targets: np.ndarray) -> Any:
    """A :class:`~xentcli.stream.StreamResult` view of an in-memory result."""
    from ..stream import HEAD_ROWS, StreamResult

    losses = None if result.losses is None else np.asarray(result.losses)[:HEAD_ROWS]
    return StreamResult(
        spec=result.spec,
        kind=result.kind,
        reduction=result.reduction,
        target_type=result.target_type,
        loss=result.loss,
        n=result.n,
        classes=result.classes,
        denominator=result.denominator,
        z_loss=result.z_loss,
        dtype=str(result.grad.dtype),
        head_losses=losses,
        head_grad=result.grad[:HEAD_ROWS],
        head_targets=np.asarray(targets)[:HEAD_ROWS],
        rows_written=result.n,
    )


def _json_nested(a: np.ndarray, dtype: np.dtype) -> str:
    """An array of any number of dimensions as nested JSON lists (each value's shortest digits)."""
    if a.ndim == 0:
        return json_number(float(a), dtype)
    if a.ndim == 1:
        return "[" + ", ".join(json_number(float(v), dtype) for v in a) + "]"
    return "[" + ", ".join(_json_nested(part, dtype) for part in a) + "]"


def print_k_json(result: Any, meta: dict[str, Any]) -> None:
    """The JSON document of a K-dimensional computation: the arrays nested in the inputs' layout."""
    import click

    dt = result.grad.dtype
    o = Outcome.of(result)
    head = [(k, v) for k, v in json_head(o, meta) if k not in ("n", "classes")]
    head[3:3] = [("shape", json.dumps(list(result.grad.shape))), ("n", json.dumps(int(result.grad.shape[0]))),
                 ("classes", json.dumps(int(result.grad.shape[1])))]
    arrays = [("losses", result.losses), ("probs", result.probs), ("grad", result.grad)]
    if result.z_losses is not None and result.loss is None:
        arrays.insert(1, ("z_losses", result.z_losses))
    body = [(k, "null" if a is None else _json_nested(np.asarray(a), dt)) for k, a in arrays]
    click.echo("{\n" + ",\n".join(f'  "{k}": {v}' for k, v in head + body) + "\n}")


def print_k_summary(fmt: str, result: Any, meta: dict[str, Any]) -> None:
    """A K-dimensional computation as a table or CSV: the loss and the shapes (the arrays are in JSON or
    the --output file)."""
    import click

    dt = result.grad.dtype
    shape = " x ".join(map(str, result.grad.shape))
    loss = "" if result.loss is None else json_number(result.loss, dt).strip('"')
    if fmt == "csv":
        click.echo("reduction,loss,shape,output")
        click.echo(f"{result.reduction},{loss},{shape},{meta.get('output') or ''}")
        return
    click.echo(f"{result.spec.title}: logits {shape} (N, C, d1, ..., dk) · {result.target_type} targets · {dt}")
    if result.loss is None:
        click.echo("loss: none (reduction='none'; per-position losses in --format json)")
    else:
        how = f"{result.reduction}: sum / {_g(result.denominator, 12, keep_zeros=False)}" \
            if result.denominator is not None else "sum"
        click.echo(f"loss = {_g(result.loss, 10)}   ({how})")
        z_line = _z_loss_line(result.spec, result.z_loss, 10)
        if z_line:
            click.echo(z_line)
    if meta.get("output"):
        click.echo(f"gradient ({shape}) written to {meta['output']}")
    else:
        click.echo("the per-position losses, probabilities and gradient: --format json, or --output grad.npy")


def print_summary(fmt: str, s: Any, meta: dict[str, Any]) -> None:
    import click

    dt = np.dtype(s.dtype)
    if fmt == "json":
        doc = [
            ("kind", json.dumps(s.kind)),
            ("reduction", json.dumps(s.reduction)),
            ("loss", "null" if s.loss is None else json_number(s.loss, dt)),
            *_z_loss_fields(s.spec, s.z_loss, dt),
            ("denominator", "null" if s.denominator is None else json_number(s.denominator)),
            ("n", str(s.n)),
            ("classes", str(s.classes)),
            ("targets", json.dumps(s.target_type)),
            ("dtype", json.dumps(str(dt))),
            *([("inputs_rounded_to", json.dumps("bfloat16"))] if s.spec.dtype == "bfloat16" else []),
            ("options", json.dumps(options_json(s.spec))),
            ("inputs", json.dumps({"logits": meta.get("logits"), "labels": meta.get("labels")})),
            ("output", json.dumps(meta.get("output"))),
            ("rows_written", str(s.rows_written)),
            ("streamed", "true" if meta.get("streamed") else "false"),
            ("warnings", json.dumps(list(meta.get("warnings", [])))),
            ("losses", "null"),
            ("probs", "null"),
            ("grad", "null"),
        ]
        click.echo("{\n" + ",\n".join(f'  "{k}": {v}' for k, v in doc) + "\n}")
        return
    if fmt == "csv":
        click.echo("reduction,loss,n,classes,output")
        loss = "" if s.loss is None else json_number(s.loss, dt).strip('"')
        click.echo(f"{s.reduction},{loss},{s.n},{s.classes},{meta.get('output')}")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=False)
    binary = s.spec.kind == "bce"
    title = s.spec.title
    shown = 0 if s.head_grad is None else s.head_grad.shape[0]
    table = Table(title=title, caption=f"{s.n} samples × {s.classes} {'columns' if binary else 'classes'} · "
                  f"{s.target_type} targets · {dt} · first {shown} rows")
    table.add_column("#", justify="right", style="dim")
    table.add_column("target")
    if s.head_losses is not None and s.head_losses.ndim == 1:
        table.add_column("loss", justify="right")
    table.add_column("∂L/∂z" + (" (of the sum)" if s.reduction == "none" else ""))
    for i in range(shown):
        t = s.head_targets[i]
        cells = [str(i), str(int(t)) if np.ndim(t) == 0 else _vector(np.ravel(t).tolist(), 4)]
        if s.head_losses is not None and s.head_losses.ndim == 1:
            cells.append(_g(float(s.head_losses[i]), 4))
        cells.append(_vector(s.head_grad[i].tolist(), 4))
        table.add_row(*cells)
    console.print(table)
    if s.loss is None:
        console.print("loss: none (reduction='none'; per-sample losses are not printed with --output)")
    else:
        how = f"{s.reduction}: sum / {_g(s.denominator, 12, keep_zeros=False)}" if s.denominator is not None else "sum"
        console.print(f"loss = [bold]{_g(s.loss, 10)}[/bold]   ({how})")
        z_line = _z_loss_line(s.spec, s.z_loss, 10)
        if z_line:
            console.print(z_line)
    console.print(f"gradient of {s.rows_written} rows written to {meta.get('output')}")
