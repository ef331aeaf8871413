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

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from . import numtext
from .errors import XentInputError, XentWarning
from .numeric import GroupedSum, LossResult, ReductionPlan, evaluate
from .numeric.checks import CountedWarning
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
                self.file.start_writeback()
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
BLOCK_VALUES = 1 << 17  # logits computed and written at a time (a text block may hold more: it is cut)


def write_block(fh: BinaryIO, block: np.ndarray, delimiter: str) -> None:
    """Append a 2-D float block as text with round-trip precision (shortest digits through orjson or polars)."""
    if np.isfinite(block).all():
        parts = numtext.round_trip_parts(block, delimiter.encode())
        if parts is not None:
            for part in parts:
                fh.write(part)
            return
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

Source = TextSource | NpySource


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
    z_loss: float | None = None
    head_losses: np.ndarray | None = None
    head_grad: np.ndarray | None = None
    head_probs: np.ndarray | None = None
    head_targets: np.ndarray | None = None
    rows_written: int = 0


class Unstreamable(Exception):
    """This input cannot be streamed (labels laid out as one row, or a pre-pass on standard input)."""


@dataclass
class Block:
    """One block of a pass: rows ``start`` to ``start + rows - 1`` (0-based), their inputs and results."""

    start: int
    logits: Chunk
    labels: Chunk
    result: LossResult

    @property
    def rows(self) -> int:
        return self.logits.rows


@dataclass
class Pass:
    """What one read of the inputs found: the rows, the exact total of the losses, the warnings.

    ``head`` and ``tail`` hold the inputs of the first and last ``keep`` rows
    when the pass was asked to keep them (for a table of those rows).
    """

    n: int = 0
    total: GroupedSum = field(default_factory=GroupedSum)
    z_total: GroupedSum = field(default_factory=GroupedSum)  # the per-sample z-losses, with a z-loss
    notes: dict[str, tuple[str, XentWarning]] = field(default_factory=dict)  # placed prefix and warning, by kind
    head: list[tuple[Chunk, Chunk]] = field(default_factory=list)
    tail: list[tuple[Chunk, Chunk]] = field(default_factory=list)


class Stream:
    """Two files (logits and labels) computed block by block, in bounded memory.

    Each :meth:`run` reads both files once, from the start: a reader thread
    reads and parses the next block while the current one is computed. The
    files are opened by ``open_logits()`` and ``open_labels()`` for every
    pass. Building a stream reads the first block of each file, which decides
    the targets' layout (by the labels' width unless ``"targets"`` is in
    ``spec.given``) and raises :class:`Unstreamable` for a layout the
    in-memory path reads instead (labels as one row).
    """

    def __init__(self, open_logits: Callable[[], Source], open_labels: Callable[[], Source], spec: LossSpec,
                 progress: Callable[[int, int | None], None] | None = None, *, rereadable: bool = True) -> None:
        if spec.dtype == "bfloat16":
            raise Unstreamable("bfloat16")  # its inputs are rounded as whole arrays, in memory
        self._open_logits = open_logits
        self._open_labels = open_labels
        self.rereadable = rereadable
        self.progress = progress
        self.passes_done = 0
        self.passes_planned = 1
        logits = open_logits()
        try:
            labels = open_labels()
        except BaseException:
            _close(logits)
            raise
        self._first: tuple[Source, Source, Iterator[Chunk], Iterator[Chunk]] | None = None
        try:
            logit_chunks = logits.chunks()
            label_chunks = labels.chunks()
            first = next(logit_chunks)
            first_label = next(label_chunks)
            self.spec = _targets_by_layout(spec, first_label.values.shape[1], first.values.shape[1])
        except BaseException:
            _close(logits)
            _close(labels)
            raise
        self.classes = int(first.values.shape[1])
        self.logits_name = logits.name
        self.labels_name = labels.name
        self.logits_npy = isinstance(logits, NpySource)
        self.labels_column = self.spec.targets == "index"
        # A 1-D .npy of class indices has rows but no columns: its values are named by row only.
        self.labels_flat = isinstance(labels, NpySource) and labels.npy_ndim == 1
        self.total_bytes = logits.total_bytes
        self._first = (logits, labels, _chain(first, logit_chunks), _chain(first_label, label_chunks))

    # -- the plan -------------------------------------------------------------

    def plan(self, *, count_rows: bool = True) -> ReductionPlan:
        """The whole stream's :class:`~xentcli.numeric.ReductionPlan`, from a pre-pass where it needs one.

        The mean over class indices needs the count of each class (a pre-pass
        over the labels). A mean over rows or elements needs the number of
        rows: without ``count_rows`` the plan is provisional (one row), which
        gives the same losses (only the gradient is divided by the count):
        :meth:`final_plan` replaces it once a pass has counted them.
        """
        spec, c = self.spec, self.classes
        need = spec.denominator
        if need is None:
            return ReductionPlan.for_batch(spec, c, 0)
        if not self.rereadable and (count_rows or need not in ("rows", "elements")):
            raise Unstreamable("pre-pass")
        if need in ("rows", "elements"):
            return ReductionPlan.for_batch(spec, c, self._count_rows() if count_rows else 1)
        counts = np.zeros(c, dtype=np.int64)
        src = self._open_labels()
        try:
            for chunk in src.chunks():
                t = chunk.values.reshape(-1)
                tv = t[t != spec.ignore]
                ok = (tv >= 0) & (tv < c) & (tv == np.floor(tv))
                if not ok.all():
                    continue  # the main pass reports the bad value with its location
                counts += np.bincount(tv.astype(np.int64), minlength=c)
        finally:
            _close(src)
        # The weights as the kernel sees them: in the compute dtype (tiny float64 weights may be 0 in float32).
        w = option_vector(spec.weight, c, "weight", np.dtype(spec.dtype))
        return ReductionPlan.for_batch(spec, c, 0, counts, w)

    def final_plan(self, plan: ReductionPlan, done: Pass) -> ReductionPlan:
        """``plan`` with the number of rows a whole pass counted (a provisional plan made final)."""
        if self.spec.denominator in ("rows", "elements"):
            return ReductionPlan.for_batch(self.spec, self.classes, done.n)
        return plan

    def _count_rows(self) -> int:
        src = self._open_logits()
        try:
            if isinstance(src, NpySource):
                return src.rows
            return sum(c.rows for c in src.chunks())
        finally:
            _close(src)

    # -- a pass ---------------------------------------------------------------

    def run(self, plan: ReductionPlan, *, with_probs: bool = False, with_losses: bool = False,
            each: Callable[[Block], None] | None = None, keep: int = 0) -> Pass:
        """Read both files once, compute every block with ``plan`` and hand it to ``each``.

        ``with_losses`` keeps the elementwise losses of bce and kl (bce needs
        them to say which element of the batch has an infinite loss).
        ``keep``: the inputs of the first and last ``keep`` rows are kept in
        the returned :class:`Pass`. Every writer created during the pass is
        aborted if the pass fails or is interrupted.
        """
        spec = self.spec
        if self._first is not None:
            logits_src, labels_src, logit_chunks, label_chunks = self._first
            self._first = None
        elif not self.rereadable:
            raise Unstreamable("a second pass")
        else:
            logits_src = self._open_logits()
            try:
                labels_src = self._open_labels()
            except BaseException:
                _close(logits_src)
                raise
            logit_chunks, label_chunks = logits_src.chunks(), labels_src.chunks()
        labels = RowReader(label_chunks)
        done = Pass()
        work: queue.Queue[tuple[Any, Any]] = queue.Queue(maxsize=2)
        stop = threading.Event()
        offset = self.passes_done * (self.total_bytes or 0)
        total_bytes = None if self.total_bytes is None else self.total_bytes * max(self.passes_planned, 1)

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
                for whole in logit_chunks:
                    # Text is parsed in big blocks (each parse has a fixed cost), computed and written in
                    # blocks of at most BLOCK_VALUES (what is formatted at once is several times its size).
                    step = max(1, BLOCK_VALUES // max(1, whole.values.shape[1]))
                    for start in range(0, whole.rows, step):
                        if stop.is_set():
                            return
                        chunk = whole if whole.rows <= step else whole.part(start, min(whole.rows, start + step))
                        lab = labels.take(chunk.rows)
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
                rows = chunk.rows
                if lab is None:
                    n_labels = done.n + labels.buffered
                    raise XentInputError(
                        f"has {n_labels + labels.rest()} label row(s) but the logits have more rows "
                        f"(at least {done.n + rows})",
                        source=self.labels_name,
                    )
                r = _compute_block(chunk, lab, spec, plan, self, with_probs=with_probs, with_losses=with_losses)
                if each is not None:
                    each(Block(done.n, chunk, lab, r))
                done.total.add(r.exact_total)
                if r.exact_z is not None and spec.reduction != "none":
                    done.z_total.add(r.exact_z)
                self._note(done, r, chunk, lab)
                if keep:
                    _keep_rows(done, chunk, lab, keep)
                done.n += rows
                if self.progress is not None:
                    self.progress(offset + logits_src.bytes_read, total_bytes)
            extra = labels.rest()
            if extra:
                raise XentInputError(
                    f"has {done.n + extra} label row(s) but the logits have {done.n} rows", source=self.labels_name
                )
            if not done.n:
                raise XentInputError("is empty", source=self.logits_name)
            self.passes_done += 1
            return done
        except BaseException:
            stop.set()  # the reader thread stops at its next block (no queue operation here: see GradWriter.abort)
            for w in created:  # also one whose creation was interrupted before it was assigned
                w.abort()
            raise
        finally:
            _LIVE.writers = outer
            _close(logits_src)
            _close(labels_src)

    def _note(self, done: Pass, r: LossResult, chunk: Chunk, lab: Chunk) -> None:
        """Add a block's warnings to the pass's: counts add up, the first occurrence names the row."""
        for note in r.warnings:
            if not isinstance(note, CountedWarning):
                continue  # the reduction's own notes: about the whole batch, made by finish()
            if note.kind in done.notes:
                prefix, earlier = done.notes[note.kind]
                assert isinstance(earlier, CountedWarning)
                done.notes[note.kind] = (prefix, earlier.plus(note))
            else:
                done.notes[note.kind] = (self.where(note.operand, note.index, chunk, lab), note)

    def finish(self, plan: ReductionPlan, done: Pass) -> tuple[float | None, list[str]]:
        """The reduced loss, exactly as the in-memory computation gives it, and the warnings in its order."""
        loss, reduce_notes = plan.finish(done.total)
        z_loss = self.z_loss(plan, done)
        if loss is not None and z_loss is not None:
            loss += z_loss
        placed = {kind: prefix + note.message for kind, (prefix, note) in done.notes.items()}
        ordered = [placed.pop("unnormalised")] if "unnormalised" in placed else []
        ordered += [note.message for note in reduce_notes]
        ordered += list(placed.values())
        return loss, ordered

    def z_loss(self, plan: ReductionPlan, done: Pass) -> float | None:
        """The reduced z-loss term of a whole pass (``None`` without a z-loss or a reduction)."""
        return plan.finish_z(done.z_total) if self.spec.has_z_loss else None

    def where(self, operand: str | None, index: tuple[int, ...] | None, chunk: Chunk, lab: Chunk) -> str:
        """``"file: row R, column C: "`` for a value of a block, as the in-memory path names it."""
        if not index or operand not in ("logits", "target"):
            return ""
        if operand == "logits":
            name, row = self.logits_name, chunk.line_of(index[0])
            col = index[1] + 1 if len(index) > 1 else None
        else:
            name, row = self.labels_name, lab.line_of(index[0])
            col = index[1] + 1 if len(index) > 1 else (1 if self.labels_column and not self.labels_flat else None)
        return place(name, row, col, "")


def place(source: str, row: int | None, column: int | None, message: str) -> str:
    """``source: row R, column C: message`` (the parts that are known)."""
    where = ", ".join(p for p in (f"row {row}" if row else "", f"column {column}" if column else "") if p)
    return f"{source}: {where}: {message}" if where else f"{source}: {message}"


def _close(src: Source) -> None:
    if isinstance(src, TextSource):
        src.close()


def _keep_rows(done: Pass, chunk: Chunk, lab: Chunk, keep: int) -> None:
    """Keep the inputs of the first and the last ``keep`` rows."""
    have = sum(c.rows for c, _ in done.head)
    if have < keep:
        take = min(keep - have, chunk.rows)
        done.head.append((chunk.part(0, take), lab.part(0, take)))
    tail = done.tail + [(chunk, lab)]
    while len(tail) > 1 and sum(c.rows for c, _ in tail[1:]) >= keep:
        tail.pop(0)
    done.tail = tail


def first_rows(parts: list[tuple[Chunk, Chunk]], keep: int) -> tuple[Chunk, Chunk]:
    """The first ``keep`` rows of the kept head."""
    logits = Chunk.join([c for c, _ in parts])
    labels = Chunk.join([lab for _, lab in parts])
    return logits.part(0, keep), labels.part(0, keep)


def last_rows(parts: list[tuple[Chunk, Chunk]], keep: int) -> tuple[Chunk, Chunk]:
    """The last ``keep`` rows of the kept tail."""
    logits = Chunk.join([c for c, _ in parts])
    labels = Chunk.join([lab for _, lab in parts])
    start = max(0, logits.rows - keep)
    return logits.part(start), labels.part(start)


def stream_compute(
    stream: Stream,
    writer_factory: Callable[[int, np.dtype], GradWriter],
) -> StreamResult:
    """Compute block by block, writing the gradient through ``writer_factory(width, dtype)``, in one pass."""
    spec = stream.spec
    plan = stream.plan(count_rows=True)
    result = StreamResult(
        spec=spec,
        kind=RESULT_KINDS[spec.kind],
        reduction=spec.reduction,
        target_type=str(spec.targets),
        loss=None,
        n=0,
        classes=stream.classes,
        denominator=plan.reported_denominator,
        dtype=spec.dtype,
    )
    writers: list[GradWriter] = []

    def each(block: Block) -> None:
        r = block.result
        if not writers:
            writers.append(writer_factory(stream.classes, r.grad.dtype))
        writers[0].write(r.grad)
        if result.head_grad is None or result.head_grad.shape[0] < HEAD_ROWS:
            _keep_head(result, r, block.labels, spec.targets == "index")

    try:
        done = stream.run(plan, with_losses=spec.kind == "bce", each=each)
        result.n = done.n
        result.loss, result.warnings = stream.finish(plan, done)
        result.z_loss = stream.z_loss(plan, done)
        writers[0].commit()
    except BaseException:
        for w in writers:
            w.abort()
        raise
    result.rows_written = writers[0].rows
    return result


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


def _compute_block(chunk: Chunk, lab: Chunk, spec: LossSpec, plan: ReductionPlan, stream: Stream, *,
                   with_probs: bool = False, with_losses: bool = False) -> LossResult:
    target = lab.values.reshape(-1) if spec.targets == "index" else lab.values
    try:
        return evaluate(spec, chunk.values, target, with_probs=with_probs, with_losses=with_losses, plan=plan,
                        warn=False)
    except XentInputError as exc:
        raise _place(exc, chunk, lab, stream) from None


def _place(exc: XentInputError, chunk: Chunk, lab: Chunk, stream: Stream) -> XentInputError:
    """Turn a library error (array position in a block) into file/row/column."""
    if exc.source is not None or exc.operand is None:
        return exc
    idx = exc.index or ()
    if exc.operand == "logits":
        return exc.at(stream.logits_name, chunk.line_of(idx[0]) if idx else None,
                      (idx[1] + 1) if len(idx) > 1 else None)
    if exc.operand == "target":
        col = (idx[1] + 1) if len(idx) > 1 else (1 if stream.labels_column and not stream.labels_flat else None)
        return exc.at(stream.labels_name, lab.line_of(idx[0]) if idx else None, col if idx else None)
    if exc.operand in ("weight", "pos_weight"):
        return exc.at(f"--{exc.operand.replace('_', '-')}", None, (idx[0] + 1) if idx else None)
    return exc


def _keep_head(result: StreamResult, r: LossResult, lab: Chunk, index: bool) -> None:
    """Keep the first rows of the results, for the summary table."""
    have = 0 if result.head_grad is None else result.head_grad.shape[0]
    need = HEAD_ROWS - have

    def cat(old: np.ndarray | None, new: np.ndarray) -> np.ndarray:
        return new.copy() if old is None else np.concatenate([old, new])

    result.head_grad = cat(result.head_grad, r.grad[:need])
    t = lab.values[:need].reshape(-1) if index else lab.values[:need]
    result.head_targets = cat(result.head_targets, t)
    if r.losses is not None and r.losses.ndim == 1:
        result.head_losses = cat(result.head_losses, np.asarray(r.losses)[:need])
