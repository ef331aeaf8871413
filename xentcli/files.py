"""Reading logits and labels from CSV/TSV text, .npy files, stdin or inline strings,
and writing arrays (atomically, through :mod:`xentcli.writers`).

NumPy only. Every problem is a :class:`~xentcli.errors.XentInputError` that
names the source, and the 1-based row (physical line) and column where it can.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import XentInputError
from .sources import Chunk, NpySource, TextParser, open_source
from .spec import KINDS, LossSpec
from .writers import write_atomic

TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
ARRAY_SUFFIXES = TEXT_SUFFIXES + (".npy",)


@dataclass
class Table:
    """A 2-D array read from one source, with what is needed to point back into it.

    ``lines[i]`` is the 1-based physical line of data row ``i`` when the rows
    are not on consecutive lines; otherwise row ``i`` is on line ``first + i``
    (for .npy and inline sources rows are counted from 1 as they are).
    """

    values: np.ndarray
    source: str
    lines: np.ndarray | None = None
    npy_ndim: int | None = None
    first: int = 1

    @property
    def shape(self) -> tuple[int, int]:
        r, k = self.values.shape
        return int(r), int(k)

    def row_of(self, i: int) -> int:
        if self.lines is not None:
            return int(self.lines[i])
        return self.first + i

    def describe_shape(self) -> str:
        r, k = self.shape
        return f"{r} row{'s' if r != 1 else ''} x {k} column{'s' if k != 1 else ''}"


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def parse_text(
    text: str,
    source: str,
    *,
    header: str = "auto",
    row_separator: str | None = None,
    delimiter: str | None = None,
) -> Table:
    """Parse delimited numbers. ``header`` is ``auto``, ``yes`` or ``no``.

    Accepts a UTF-8 BOM, CRLF line ends, blank lines, ``#`` comment lines,
    spaces around values and quoted cells. The delimiter is a tab, comma or
    semicolon (the first found on the first data line) or runs of spaces.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    if row_separator is None:
        lines = text.splitlines()
    else:
        lines = re.split(r"[\n" + re.escape(row_separator) + "]", text)
    parser = TextParser(source, header=header, delimiter=delimiter)
    values, numbers = parser.parse_lines(lines, 1)
    if not values.shape[0]:
        raise XentInputError("is empty: no numbers found", source=source)
    return Table(values, source, numbers)


def parse_inline(text: str, option: str) -> Table:
    """Parse ``--logits "2,1,0.1;0.1,2,1.9"``: rows split by ``;``, values by ``,``."""
    if not text.strip():
        raise XentInputError("is empty", source=option)
    return parse_text(text, option, header="no", row_separator=";", delimiter="," if "," in text else None)


def read_table(path: str, *, header: str = "auto", stdin: BinaryIO | None = None) -> Table:
    """Read a CSV/TSV/whitespace text file, a .npy file, or ``-`` (standard input) into memory."""
    src = open_source(path, header=header, stdin=stdin)
    if isinstance(src, NpySource):
        arr = np.asarray(src.array)
        values = arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float64)
        return Table(values, src.name, None, npy_ndim=src.npy_ndim)
    try:
        parts = list(src.chunks())
    finally:
        src.close()
    rows = Chunk.join(parts)
    return Table(rows.values, src.name, rows.lines, first=rows.first)


# --------------------------------------------------------------------------
# Arranging targets
# --------------------------------------------------------------------------

Locator = Callable[[tuple[int, ...]], tuple[int | None, int | None]]


@dataclass
class Targets:
    """Labels arranged for the library, and how to map array positions back to the source."""

    values: np.ndarray
    target_type: str  # "index", "prob" or "binary"
    locate: Locator
    source: str


def _grid_locator(tab: Table) -> Locator:
    def locate(index: tuple[int, ...]) -> tuple[int | None, int | None]:
        if not index:
            return None, None
        row = tab.row_of(index[0])
        if len(index) > 1:
            return row, index[1] + 1
        return row, None

    return locate


def _vector_locator(tab: Table, width: int = 1) -> Locator:
    """Positions in the labels' N-vector (or, with ``width``, in their (N, width) reshape) to the file."""
    r, _k = tab.shape
    as_row = r == 1 and tab.npy_ndim != 1

    def locate(index: tuple[int, ...]) -> tuple[int | None, int | None]:
        if not index:
            return None, None
        i = index[0] * width + (index[1] if len(index) > 1 else 0)
        if as_row:
            return tab.row_of(0), i + 1
        return tab.row_of(i), (1 if tab.npy_ndim != 1 else None)

    return locate


def logits_locator(tab: Table) -> Locator:
    return _grid_locator(tab)


def arrange_targets(tab: Table, n: int, c: int, spec: LossSpec) -> Targets:
    """Arrange the labels for ``spec`` (an ``(n, c)`` problem), reading them by shape where it may.

    * ``bce``: the labels have the logits' shape (a single row or column of
      N*C values is accepted when the logits are a single row or column).
    * an (N, C) table is a row of targets (one-hot or probabilities) per sample;
    * N values, as a column or as a single row, are class indices.

    For ``ce`` without an explicit ``--targets`` the shape decides; otherwise
    the spec's targets do, and labels of another shape are refused.
    """
    binary = spec.targets == "binary"
    mode = "auto" if "targets" not in spec.given and len(KINDS[spec.kind].targets) > 1 else spec.targets
    r, k = tab.shape
    vals = tab.values
    want = f"{n} row{'s' if n != 1 else ''} x {c} column{'s' if c != 1 else ''}"
    if binary:
        if (r, k) == (n, c):
            return Targets(vals, "binary", _grid_locator(tab), tab.source)
        if (n == 1 or c == 1) and r * k == n * c and (r == 1 or k == 1):
            return Targets(vals.reshape(n, c), "binary", _vector_locator(tab, c), tab.source)
        raise XentInputError(
            f"has {tab.describe_shape()}; binary cross-entropy needs labels with the logits' shape ({want})",
            source=tab.source,
        )
    is_grid = (r, k) == (n, c)
    is_vector = (k == 1 and r == n) or (r == 1 and k == n)
    if mode == "prob" or (mode == "auto" and is_grid and (c > 1 or not is_vector)):
        if not is_grid:
            raise XentInputError(
                f"has {tab.describe_shape()}; probability targets need one row of {c} "
                f"values per sample ({want})",
                source=tab.source,
            )
        return Targets(vals, "prob", _grid_locator(tab), tab.source)
    if is_vector:
        return Targets(vals.reshape(n), "index", _vector_locator(tab), tab.source)
    if mode == "index":
        raise XentInputError(
            f"has {tab.describe_shape()}; class-index targets need {n} value{'s' if n != 1 else ''} "
            "(one per sample), as a column or a single row",
            source=tab.source,
        )
    raise XentInputError(
        f"has {tab.describe_shape()}, which fits neither {n} class indices (one per sample) nor "
        f"{n} rows of {c} probabilities (logits are {want})",
        source=tab.source,
    )


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(path: Path, inputs: Sequence[str], *, suffixes: Sequence[str] | None = ARRAY_SUFFIXES) -> str:
    """Validate an output path before any work is done. Returns the array format (csv/tsv/npy).

    Refuses: an extension not in ``suffixes`` (``None``: any), a directory, a
    path that is one of ``inputs`` (by name, ``./x`` or absolute, through a
    symbolic or hard link, or the file on standard input for ``-``), a
    directory that does not exist or cannot be written.
    """
    suffix = path.suffix.lower()
    if suffixes is not None and suffix not in suffixes:
        raise XentInputError(
            f"unknown extension {suffix or '(none)'!r}; use {', '.join(suffixes[:-1])} or {suffixes[-1]}",
            source=str(path),
        )
    if path.is_dir():
        raise XentInputError("is a directory", source=str(path))
    refuse = XentInputError("is one of the input files; refusing to overwrite it", source=str(path))
    for name in inputs:
        if name == "-":
            import stat
            import sys

            try:  # standard input redirected from the output file
                st = os.fstat(sys.stdin.fileno())
                same = stat.S_ISREG(st.st_mode) and path.exists() and os.path.samestat(st, path.stat())
            except (OSError, ValueError, AttributeError):  # no file behind standard input
                same = False
            if same:
                raise XentInputError("is the file on standard input; refusing to overwrite it", source=str(path))
            continue
        if _same_file(path, Path(name)) or os.path.realpath(path) == os.path.realpath(name):
            raise refuse
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise XentInputError(f"directory {str(parent)!r} does not exist", source=str(path))
    if not parent.is_dir():
        raise XentInputError(f"{str(parent)!r} is not a directory", source=str(path))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise XentInputError(f"directory {str(parent)!r} is not writable", source=str(path))
    return {"npy": "npy", "tsv": "tsv"}.get(suffix[1:], "csv")


def format_rows(values: np.ndarray, delimiter: str = ",") -> str:
    """Text of a 2-D float array, one row per line, with round-trip precision."""
    if values.dtype == np.float32:
        fmt = "%.9g"
    else:
        fmt = "%.17g"
    buf = io.StringIO()
    np.savetxt(buf, values, fmt=fmt, delimiter=delimiter)
    return buf.getvalue()


def write_array(path: Path, values: np.ndarray, fmt: str) -> None:
    """Write a 2-D array as CSV/TSV text or .npy, atomically (see :func:`write_atomic`)."""
    if fmt == "npy":
        write_atomic(path, lambda fh: np.save(fh, values, allow_pickle=False))
    else:
        text = format_rows(values, "\t" if fmt == "tsv" else ",")
        write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))
