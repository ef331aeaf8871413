"""Streaming ``xent compute``: read, compute and write in row blocks, in bounded memory.

The logits (and, for probability or binary targets, the labels) are read a
block of rows at a time, the gradient of each block is written to the output
file as soon as it is computed, and the loss is accumulated exactly across
blocks (:class:`~xentcli.numeric.ExactSum`). Reading the next block overlaps
with computing and writing the current one. Each row's numbers depend only
on that row and on the whole stream's denominator, which is known before the
first block is computed, so the output is bit for bit the in-memory result.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .errors import XentInputError, XentWarning
from .numeric import GroupedSum, LossResult, ReductionPlan, evaluate
from .numeric.result import RESULT_KINDS
from .numeric.vectors import option_vector
from .sources import Chunk, NpySource, TextSource, polars
from .spec import KINDS, LossSpec
from .writers import AtomicFile

HEAD_ROWS = 40


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


class GradWriter:
    """Write row blocks of a 2-D float array to ``path`` (CSV/TSV text or .npy) atomically.

    The file is an :class:`~xentcli.writers.AtomicFile`: renamed into place by
    :meth:`commit`; :meth:`abort` (or any failure, or an interruption, however
    early) removes it and leaves an earlier file at ``path`` untouched.
    Formatting and writing run on a thread of their own, so the next block is
    computed meanwhile.
    """

    _NPY_HEADER = 128  # bytes reserved for a .npy header; rewritten with the real shape at the end
    _JOIN_SECONDS = 2.0  # how long abort waits for the writer thread to finish the block in hand

    def __init__(self, path: Path, fmt: str, dtype: np.dtype, width: int) -> None:
        self.path = path
        self.fmt = fmt
        self.dtype = np.dtype(dtype)
        self.width = width
        self.rows = 0
        self.file = AtomicFile(path)
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xent-writer", daemon=True)
        owners = getattr(_LIVE, "writers", None)
        if owners is not None:
            owners.append(self)  # before the temporary file exists: an interruption anywhere cleans it up
        try:
            fh = self.file.open()
            if fmt == "npy":
                fh.write(self._npy_header(0))
            self._thread.start()
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise self.file.error(exc) from None
            raise

    @property
    def tmp(self) -> str | None:
        """The temporary file's name while it exists."""
        return self.file.tmp

    def _npy_header(self, rows: int) -> bytes:
        descr = np.lib.format.dtype_to_descr(self.dtype)
        text = repr({"descr": descr, "fortran_order": False, "shape": (rows, self.width)})
        head = b"\x93NUMPY\x01\x00"
        size = self._NPY_HEADER - len(head) - 2
        body = text.encode("latin1").ljust(size - 1) + b"\n"
        if len(body) != size:
            raise XentInputError("the gradient is too large for a .npy header", source=str(self.path))
        return head + size.to_bytes(2, "little") + body

    def _run(self) -> None:
        fh = self.file.fh
        assert fh is not None
        while not self._stop.is_set():
            try:
                block = self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            if block is None:
                return
            if self._error is not None:
                continue  # drain after a failure
            try:
                if self.fmt == "npy":
                    fh.write(block.tobytes())
                else:
                    write_block(fh, block, "\t" if self.fmt == "tsv" else ",")
            except BaseException as exc:  # noqa: BLE001 - reported to the caller by write/commit
                self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            exc = self._error
            if isinstance(exc, OSError):
                raise self.file.error(exc) from None
            raise exc

    def write(self, block: np.ndarray) -> None:
        self._check()
        self._queue.put(np.ascontiguousarray(block, dtype=self.dtype))
        self.rows += block.shape[0]

    def commit(self) -> None:
        """Finish the file, flush it to disk and rename it into place."""
        try:
            self._queue.put(None)
            self._thread.join()
            self._check()
            if self.fmt == "npy":
                fh = self.file.fh
                assert fh is not None
                fh.seek(0)
                fh.write(self._npy_header(self.rows))
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise self.file.error(exc) from None
            raise
        self.file.commit()

    def abort(self) -> None:
        """Remove the temporary file and stop the writer thread; an earlier file at ``path`` stays as it was.

        Safe to call at any point, more than once, and after :meth:`commit`.
        """
        self.file.abort()  # first: whatever happens next, nothing is left behind
        self._error = self._error or RuntimeError("aborted")
        # No queue operation here: an interruption can leave a queue's lock held by this very thread
        # (raised just after the lock was taken), and waiting for it would hang. The thread polls _stop.
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._JOIN_SECONDS)
        self.file.abort()  # the file closed after the thread let go of it


_LIVE = threading.local()  # the writers a running stream_compute has created (see GradWriter.__init__)
_POLL_SECONDS = 0.05  # how often a waiting reader or writer thread looks whether it should stop


def write_block(fh: BinaryIO, block: np.ndarray, delimiter: str) -> None:
    """Append a 2-D float block as text with round-trip precision (shortest digits through polars)."""
    pl = polars()
    if pl is not None:
        frame = pl.from_numpy(block, schema=[f"c{i}" for i in range(block.shape[1])], orient="row")
        frame.write_csv(fh, include_header=False, separator=delimiter, line_terminator="\n")
        return
    fmt = "%.9g" if block.dtype == np.float32 else "%.17g"
    np.savetxt(fh, block, fmt=fmt, delimiter=delimiter)


# --------------------------------------------------------------------------
# Rows of labels, in step with the logits
# --------------------------------------------------------------------------


class RowReader:
    """Hands out exactly ``k`` rows at a time from a chunked source."""

    def __init__(self, chunks: Iterator[Chunk]) -> None:
        self.chunks = chunks
        self.buffer: list[Chunk] = []
        self.buffered = 0
        self.exhausted = False

    def take(self, k: int) -> Chunk | None:
        while self.buffered < k and not self.exhausted:
            try:
                c = next(self.chunks)
            except StopIteration:
                self.exhausted = True
                break
            self.buffer.append(c)
            self.buffered += c.rows
        if self.buffered < k:
            return None
        parts, need = [], k
        while need:
            c = self.buffer[0]
            if c.rows <= need:
                parts.append(c)
                self.buffer.pop(0)
                need -= c.rows
            else:
                parts.append(c.part(0, need))
                self.buffer[0] = c.part(need)
                need = 0
        self.buffered -= k
        return Chunk.join(parts)

    def rest(self) -> int:
        """Rows left over (reads to the end)."""
        for c in self.chunks:
            self.buffered += c.rows
        self.exhausted = True
        return self.buffered


# --------------------------------------------------------------------------
# The computation
# --------------------------------------------------------------------------


@dataclass
class StreamResult:
    """What a streamed computation reports (the gradient itself is in the output file)."""

    spec: LossSpec
    kind: str
    reduction: str
    target_type: str
    loss: float | None
    n: int
    classes: int
    denominator: float | None
    dtype: str
    warnings: list[str] = field(default_factory=list)
    head_losses: np.ndarray | None = None
    head_grad: np.ndarray | None = None
    head_probs: np.ndarray | None = None
    head_targets: np.ndarray | None = None
    rows_written: int = 0


class Unstreamable(Exception):
    """This input cannot be streamed (labels laid out as one row, or a pre-pass on standard input)."""


def _place(exc: XentInputError, logits_chunk: Chunk, labels_chunk: Chunk | None, logits_name: str,
           labels_name: str, labels_is_column: bool) -> XentInputError:
    """Turn a library error (array position in a block) into file/row/column."""
    if exc.source is not None or exc.operand is None:
        return exc
    idx = exc.index or ()
    if exc.operand == "logits":
        row = logits_chunk.line_of(idx[0]) if idx else None
        return exc.at(logits_name, row, (idx[1] + 1) if len(idx) > 1 else None)
    if exc.operand == "target" and labels_chunk is not None:
        row = labels_chunk.line_of(idx[0]) if idx else None
        col = (idx[1] + 1) if len(idx) > 1 else (1 if labels_is_column else None)
        return exc.at(labels_name, row, col)
    if exc.operand in ("weight", "pos_weight"):
        return exc.at(f"--{exc.operand.replace('_', '-')}", None, (idx[0] + 1) if idx else None)
    return exc


def plan_stream(
    spec: LossSpec,
    c: int,
    labels: Callable[[], Iterator[Chunk]] | None,
    rows: Callable[[], int] | None,
) -> ReductionPlan:
    """The whole stream's :class:`~xentcli.numeric.ReductionPlan`, from a pre-pass where it needs one.

    ``labels()`` reads the class-index labels again (their counts per class
    give the mean's denominator); ``rows()`` counts the rows. ``None`` for
    an input that cannot be read twice raises :class:`Unstreamable`.
    """
    need = spec.denominator
    if need is None:
        return ReductionPlan.for_batch(spec, c, 0)
    if need in ("rows", "elements"):
        if rows is None:
            raise Unstreamable("pre-pass")
        return ReductionPlan.for_batch(spec, c, rows())
    if labels is None:
        raise Unstreamable("pre-pass")
    counts = np.zeros(c, dtype=np.int64)
    for chunk in labels():
        t = chunk.values.reshape(-1)
        tv = t[t != spec.ignore]
        ok = (tv >= 0) & (tv < c) & (tv == np.floor(tv))
        if not ok.all():
            continue  # the main pass reports the bad value with its location
        counts += np.bincount(tv.astype(np.int64), minlength=c)
    # The weights as the kernel sees them: in the compute dtype (tiny float64 weights may be 0 in float32).
    w = option_vector(spec.weight, c, "weight", np.dtype(spec.dtype))
    return ReductionPlan.for_batch(spec, c, 0, counts, w)


def count_rows(chunks: Iterator[Chunk]) -> int:
    return sum(c.values.shape[0] for c in chunks)


def stream_compute(
    logits_src: TextSource | NpySource,
    labels_src: TextSource | NpySource,
    reopen_labels: Callable[[], TextSource | NpySource] | None,
    reopen_logits: Callable[[], TextSource | NpySource] | None,
    spec: LossSpec,
    writer_factory: Callable[[int, np.dtype], GradWriter],
    progress: Callable[[int, int | None], None] | None = None,
) -> StreamResult:
    """Compute block by block, writing the gradient through ``writer_factory(width, dtype)``.

    ``spec.targets`` is read from the labels' shape unless ``"targets"`` is in
    ``spec.given``. ``reopen_*`` give a fresh source for a pre-pass (counting
    rows, or the weighted mean's denominator) when the mean needs one;
    standard input cannot be read twice, so its caller reads it into memory
    instead.
    """
    logit_chunks = logits_src.chunks()
    first = next(logit_chunks)
    c = first.values.shape[1]
    label_iter = labels_src.chunks()
    first_label = next(label_iter)
    spec = _targets_by_layout(spec, first_label.values.shape[1], c)
    labels = RowReader(_chain(first_label, label_iter))

    def count_all_rows() -> int:
        if isinstance(logits_src, NpySource):
            return logits_src.rows
        assert reopen_logits is not None
        return count_rows(reopen_logits().chunks())

    plan = plan_stream(
        spec, c,
        None if reopen_labels is None else (lambda: reopen_labels().chunks()),
        None if reopen_logits is None and not isinstance(logits_src, NpySource) else count_all_rows,
    )
    result = StreamResult(
        spec=spec,
        kind=RESULT_KINDS[spec.kind],
        reduction=spec.reduction,
        target_type=str(spec.targets),
        loss=None,
        n=0,
        classes=c,
        denominator=plan.reported_denominator,
        dtype=spec.dtype,
    )
    total = GroupedSum()  # per-sample losses (BCE: row sums), in row order
    notes: dict[str, tuple[int, str]] = {}
    writer = None
    work: queue.Queue[tuple[Any, Any]] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def hand_over(item: tuple[Any, Any]) -> bool:
        while not stop.is_set():  # a consumer that gave up never takes it: look at ``stop`` meanwhile
            try:
                work.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        try:
            for chunk in _chain(first, logit_chunks):
                if stop.is_set():
                    return
                lab = labels.take(chunk.values.shape[0])
                if not hand_over((chunk, lab)):
                    return
            hand_over(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            hand_over(("error", exc))

    reader = threading.Thread(target=produce, name="xent-reader", daemon=True)
    created: list[GradWriter] = []  # every writer made here, known before its temporary file exists
    outer = getattr(_LIVE, "writers", None)
    _LIVE.writers = created
    try:
        reader.start()
        while True:
            item, lab = work.get()
            if isinstance(item, str):
                if item == "error":
                    raise lab
                break
            chunk = item
            rows = chunk.values.shape[0]
            if lab is None:
                n_labels = result.n + labels.buffered
                raise XentInputError(
                    f"has {n_labels + labels.rest()} label row(s) but the logits have more rows "
                    f"(at least {result.n + rows})",
                    source=labels_src.name,
                )
            r = _compute_block(chunk, lab, spec, plan, logits_src.name, labels_src.name)
            if writer is None:
                writer = writer_factory(c, r.grad.dtype)
            writer.write(r.grad)
            total.add(r.exact_total)
            for note in r.warnings:
                key = note.message.split(" (")[0]
                if key not in notes:
                    notes[key] = (0, _place_note(note, chunk, lab, logits_src.name, labels_src.name))
                notes[key] = (notes[key][0] + 1, notes[key][1])
            if result.head_grad is None or result.head_grad.shape[0] < HEAD_ROWS:
                _keep_head(result, r, lab, spec.targets == "index")
            result.n += rows
            if progress is not None:
                progress(logits_src.bytes_read, logits_src.total_bytes)
        extra = labels.rest()
        if extra:
            raise XentInputError(
                f"has {result.n + extra} label row(s) but the logits have {result.n} rows", source=labels_src.name
            )
        result.loss, reduce_notes = plan.finish(total)  # as in memory
        for note in reduce_notes:
            notes.setdefault(note.message.split(" (")[0], (1, note.message))
        if spec.kind == "bce" and result.loss is not None and not math.isfinite(result.loss) and not total.all_finite:
            notes.setdefault("inf", (1, "the loss is infinite: a positive target on a logit of -inf"))
        result.warnings = [text for _count, text in notes.values()]
        if writer is None:
            raise XentInputError("is empty", source=logits_src.name)
        writer.commit()
        result.rows_written = writer.rows
        return result
    except BaseException:
        stop.set()  # the reader thread stops at its next block (no queue operation here: see GradWriter.abort)
        for w in created:  # also one whose creation was interrupted before it was assigned to ``writer``
            w.abort()
        raise
    finally:
        _LIVE.writers = outer


def _chain(first: Chunk, rest: Iterator[Chunk]) -> Iterator[Chunk]:
    yield first
    yield from rest


def _targets_by_layout(spec: LossSpec, k: int, c: int) -> LossSpec:
    """The spec with its targets read from the labels' width ``k`` (logits have ``c`` columns).

    Raises :class:`Unstreamable` for a layout the in-memory path reads (or
    refuses with a message naming the shapes): labels as one row, say.
    """
    by_shape = "targets" not in spec.given and len(KINDS[spec.kind].targets) > 1
    if spec.targets in ("binary", "prob") and not by_shape:  # rows as wide as the logits
        if k != c:
            raise Unstreamable("layout")
        return spec
    if by_shape and k == c and c > 1:
        return spec.with_(targets="prob")
    if k == 1:
        return spec
    raise Unstreamable("layout")  # a single row of indices, or a shape error: the in-memory path says which


def _compute_block(chunk: Chunk, lab: Chunk, spec: LossSpec, plan: ReductionPlan, logits_name: str,
                   labels_name: str) -> LossResult:
    target = lab.values.reshape(-1) if spec.targets == "index" else lab.values
    try:
        return evaluate(spec, chunk.values, target, with_probs=False, with_losses=False, plan=plan, warn=False)
    except XentInputError as exc:
        raise _place(exc, chunk, lab, logits_name, labels_name, spec.targets == "index") from None


def _place_note(note: XentWarning, chunk: Chunk, lab: Chunk, logits_name: str, labels_name: str) -> str:
    idx = note.index or ()
    if note.operand == "logits" and idx:
        return f"{logits_name}: row {chunk.line_of(idx[0])}: {note.message}"
    if note.operand == "target" and idx:
        return f"{labels_name}: row {lab.line_of(idx[0])}: {note.message}"
    return note.message


def _keep_head(result: StreamResult, r: LossResult, lab: Chunk, index: bool) -> None:
    """Keep the first rows of the results, for the summary table."""
    have = 0 if result.head_grad is None else result.head_grad.shape[0]
    need = HEAD_ROWS - have

    def cat(old: np.ndarray | None, new: np.ndarray) -> np.ndarray:
        return new.copy() if old is None else np.concatenate([old, new])

    result.head_grad = cat(result.head_grad, r.grad[:need])
    t = lab.values[:need].reshape(-1) if index else lab.values[:need]
    result.head_targets = cat(result.head_targets, t)
    if r.losses is not None:
        result.head_losses = cat(result.head_losses, np.asarray(r.losses)[:need])
