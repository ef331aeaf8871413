"""Reading logits and labels from CSV/TSV text, .npy files, stdin or inline strings,
and writing arrays atomically.

NumPy only. Every problem is a :class:`~xentcli.errors.XentInputError` that
names the source, and the 1-based row (physical line) and column where it can.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .errors import XentInputError

NPY_MAGIC = b"\x93NUMPY"
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")
_SPECIAL = {
    "nan": float("nan"),
    "+nan": float("nan"),
    "-nan": float("nan"),
    "inf": float("inf"),
    "+inf": float("inf"),
    "-inf": float("-inf"),
    "infinity": float("inf"),
    "+infinity": float("inf"),
    "-infinity": float("-inf"),
}
TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
ARRAY_SUFFIXES = TEXT_SUFFIXES + (".npy",)


@dataclass
class Table:
    """A 2-D array read from one source, with what is needed to point back into it.

    ``lines[i]`` is the 1-based physical line of data row ``i`` (text sources);
    for .npy and inline sources rows are counted from 1 as they are.
    """

    values: np.ndarray
    source: str
    lines: np.ndarray | None = None
    npy_ndim: int | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape  # type: ignore[return-value]

    def row_of(self, i: int) -> int:
        if self.lines is not None:
            return int(self.lines[i])
        return i + 1

    def describe_shape(self) -> str:
        r, k = self.shape
        return f"{r} row{'s' if r != 1 else ''} x {k} column{'s' if k != 1 else ''}"


# --------------------------------------------------------------------------
# Parsing text
# --------------------------------------------------------------------------


def _parse_number(cell: str) -> float | None:
    if _NUMBER.match(cell):
        return float(cell)
    return _SPECIAL.get(cell.lower())


def _detect_delimiter(line: str) -> str | None:
    for d in ("\t", ",", ";"):
        if d in line:
            return d
    return None  # whitespace-separated or a single column


def _split(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        return line.split()
    if '"' in line or "'" in line:
        return next(csv.reader([line], delimiter=delimiter, quotechar='"', skipinitialspace=True))
    return line.split(delimiter)


def _clean(cell: str) -> str:
    cell = cell.strip()
    if len(cell) >= 2 and cell[0] == cell[-1] and cell[0] in "\"'":
        cell = cell[1:-1].strip()
    return cell


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
        raw_lines: Iterable[str] = text.splitlines()
    else:
        raw_lines = re.split(r"[\n" + re.escape(row_separator) + "]", text)
    rows: list[list[float]] = []
    lines: list[int] = []
    width = None
    width_line = None
    seen_header = header == "no"
    for lineno, line in enumerate(raw_lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if delimiter is None and width is None and not rows:
            delimiter = _detect_delimiter(stripped)
        cells = [_clean(c) for c in _split(stripped, delimiter)]
        if not seen_header:
            seen_header = True
            filled = [c for c in cells if c != ""]
            if header == "yes" or (filled and all(_parse_number(c) is None for c in filled)):
                continue
        if width is None:
            width, width_line = len(cells), lineno
        elif len(cells) != width:
            raise XentInputError(
                f"has {len(cells)} value{'s' if len(cells) != 1 else ''}, but row {width_line} has "
                f"{width}: every row needs the same number of columns",
                source=source,
                row=lineno,
            )
        row = []
        for col, cell in enumerate(cells, start=1):
            if cell == "":
                raise XentInputError("empty cell", source=source, row=lineno, column=col)
            value = _parse_number(cell)
            if value is None:
                shown = cell if len(cell) <= 40 else cell[:37] + "..."
                raise XentInputError(f"{shown!r} is not a number", source=source, row=lineno, column=col)
            if value in (float("inf"), float("-inf")) and cell.lower().lstrip("+-") not in (
                "inf",
                "infinity",
            ):
                raise XentInputError(
                    f"{cell!r} is out of the float64 range", source=source, row=lineno, column=col
                )
            row.append(value)
        rows.append(row)
        lines.append(lineno)
    if not rows:
        raise XentInputError("is empty: no numbers found", source=source)
    return Table(np.array(rows, dtype=np.float64), source, np.array(lines, dtype=np.int64))


def parse_inline(text: str, option: str) -> Table:
    """Parse ``--logits "2,1,0.1;0.1,2,1.9"``: rows split by ``;``, values by ``,``."""
    if not text.strip():
        raise XentInputError("is empty", source=option)
    return parse_text(text, option, header="no", row_separator=";", delimiter="," if "," in text else None)


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------


def _load_npy(data: bytes, source: str) -> Table:
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        msg = str(exc)
        if "allow_pickle" in msg or "Object arrays" in msg:
            msg = "holds Python objects (pickled data is never loaded)"
        raise XentInputError(f"is not a usable .npy file: {msg}", source=source) from None
    except (OSError, EOFError, TypeError, SyntaxError) as exc:
        raise XentInputError(f"is not a valid .npy file: {exc}", source=source) from None
    if not isinstance(arr, np.ndarray):
        raise XentInputError("is not a single .npy array", source=source)
    if arr.dtype.kind not in "biuf":
        raise XentInputError(f"holds {arr.dtype} data; only real numbers can be read", source=source)
    ndim = arr.ndim
    if ndim == 0:
        arr = arr.reshape(1, 1)
    elif ndim == 1:
        arr = arr.reshape(-1, 1) if arr.size else arr.reshape(0, 0)
    elif ndim > 2:
        raise XentInputError(f"has {ndim} dimensions {arr.shape}; expected 1 or 2", source=source)
    if arr.size == 0:
        raise XentInputError(f"is empty (shape {arr.shape})", source=source)
    if arr.dtype.kind in "biu":
        values = arr.astype(np.float64)
        if arr.dtype.kind != "b" and arr.dtype.itemsize == 8:
            big = np.abs(arr.astype(np.float64)) >= 2**53
            if big.any():
                i, j = (int(v) for v in np.argwhere(big)[0])
                raise XentInputError(
                    "integer too large to use", source=source, row=i + 1, column=j + 1
                )
    else:
        values = arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float64)
    return Table(values, source, None, npy_ndim=ndim)


def _read_bytes(path: str, stdin: io.BufferedIOBase | None) -> tuple[bytes, str]:
    if path == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        return stream.read(), "<stdin>"
    p = Path(path)
    try:
        if p.is_dir():
            raise XentInputError("is a directory, not a file", source=path)
        return p.read_bytes(), path
    except FileNotFoundError:
        raise XentInputError("no such file", source=path) from None
    except PermissionError:
        raise XentInputError("permission denied", source=path) from None
    except IsADirectoryError:
        raise XentInputError("is a directory, not a file", source=path) from None
    except OSError as exc:
        raise XentInputError(f"cannot be read: {exc.strerror or exc}", source=path) from None


def read_table(path: str, *, header: str = "auto", stdin: io.BufferedIOBase | None = None) -> Table:
    """Read a CSV/TSV/whitespace text file, a .npy file, or ``-`` (standard input)."""
    data, source = _read_bytes(path, stdin)
    if data.startswith(NPY_MAGIC):
        return _load_npy(data, source)
    if path.lower().endswith(".npy"):
        raise XentInputError("is not a .npy file (it does not start with the .npy magic bytes)", source=source)
    if not data.strip():
        raise XentInputError("is empty", source=source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise XentInputError(
            f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})", source=source
        ) from None
    if "\x00" in text:
        raise XentInputError("is binary, not text (it contains NUL bytes)", source=source)
    return parse_text(text, source, header=header)


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


def _vector_locator(tab: Table) -> Locator:
    r, _k = tab.shape
    as_row = r == 1 and tab.npy_ndim != 1

    def locate(index: tuple[int, ...]) -> tuple[int | None, int | None]:
        if not index:
            return None, None
        i = index[0]
        if as_row:
            return tab.row_of(0), i + 1
        return tab.row_of(i), (1 if tab.npy_ndim != 1 else None)

    return locate


def logits_locator(tab: Table) -> Locator:
    return _grid_locator(tab)


def arrange_targets(tab: Table, n: int, c: int, mode: str = "auto", *, binary: bool = False) -> Targets:
    """Decide how to read the labels from their shape (see the README).

    * ``binary``: the labels have the logits' shape (a single row or column of
      N*C values is accepted when the logits are a single row or column).
    * an (N, C) table is a row of targets (one-hot or probabilities) per sample;
    * N values, as a column or as a single row, are class indices.

    ``mode`` (``auto``, ``index`` or ``prob``) forces the reading.
    """
    r, k = tab.shape
    vals = tab.values
    want = f"{n} row{'s' if n != 1 else ''} x {c} column{'s' if c != 1 else ''}"
    if binary:
        if (r, k) == (n, c):
            return Targets(vals, "binary", _grid_locator(tab), tab.source)
        if (n == 1 or c == 1) and r * k == n * c and (r == 1 or k == 1):
            return Targets(vals.reshape(n, c), "binary", _vector_locator(tab), tab.source)
        raise XentInputError(
            f"has {tab.describe_shape()}; --binary needs labels with the logits' shape ({want})",
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


def parse_vector(text: str, option: str) -> np.ndarray:
    """Parse ``--weight 1,2,3`` into a float64 vector."""
    cells = [c.strip() for c in re.split(r"[,\s;]+", text.strip()) if c.strip()]
    if not cells:
        raise XentInputError("needs at least one number", source=option)
    out = []
    for i, cell in enumerate(cells, start=1):
        value = _parse_number(cell)
        if value is None:
            raise XentInputError(f"{cell!r} is not a number", source=option, column=i)
        out.append(value)
    return np.array(out, dtype=np.float64)


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(path: Path, inputs: Sequence[str]) -> str:
    """Validate an output path before any work is done. Returns the format (csv/tsv/npy)."""
    suffix = path.suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise XentInputError(
            f"unknown extension {suffix or '(none)'!r}; use .csv, .tsv, .txt or .npy", source=str(path)
        )
    if path.is_dir():
        raise XentInputError("is a directory", source=str(path))
    for name in inputs:
        if name != "-" and (_same_file(path, Path(name)) or path.resolve() == Path(name).resolve()):
            raise XentInputError("is one of the input files; refusing to overwrite it", source=str(path))
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise XentInputError(f"directory {str(parent)!r} does not exist", source=str(path))
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


def write_atomic(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write through a temporary file in the same directory, then rename into place.

    An error or interruption leaves any earlier file at ``path`` untouched and
    no partial file behind.
    """
    parent = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            try:
                os.chmod(tmp, path.stat().st_mode & 0o777)
            except OSError:
                pass
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_array(path: Path, values: np.ndarray, fmt: str) -> None:
    """Write a 2-D array as CSV/TSV text or .npy, atomically."""
    if fmt == "npy":
        write_atomic(path, lambda fh: np.save(fh, values, allow_pickle=False))
    else:
        text = format_rows(values, "\t" if fmt == "tsv" else ",")
        write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))
