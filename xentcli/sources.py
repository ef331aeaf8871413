"""Reading tables of numbers in chunks: CSV/TSV/space-separated text, .npy, or standard input.

Text is read in blocks of lines. Each block is parsed by a fast engine when
it can be trusted (polars, when installed; otherwise a vectorised NumPy/Python
path with strict guards) and by the careful parser otherwise: the careful
parser is the reference for what is accepted, and the one that names the
file, row (physical line) and column of any problem. A fast engine is only
ever used on blocks it parses to exactly the same numbers.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from .errors import XentInputError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
NPZ_MESSAGE = "is a zip archive (.npz?), not a .npy array or text: save each array with np.save"
CHUNK_BYTES = 4 << 20  # read blocks: each parse has a fixed cost (2 MB blocks spent a quarter more reading)
NL, CR = 10, 13
WIDE_ROW = 512  # columns beyond which text blocks grow (up to WIDE_GROWTH x CHUNK_BYTES): parsing pays per column
WIDE_GROWTH = 2
# ASCII digits only: Python's \d (and float()) would also take other scripts' digits.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z", re.ASCII)
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


def parse_number(cell: str) -> float | None:
    """A number as the careful parser reads it (plain decimals and inf/nan words), or ``None``."""
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


_POLARS: Any = None


def _finite_floats(tokens: list[bytes], shape: tuple[int, int]) -> np.ndarray | None:
    """The tokens as a float64 array of ``shape``, or ``None`` if one is not a finite number (the careful
    reader then re-reads the block and names the bad cell)."""
    try:
        values = np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError:
        return None
    if not np.isfinite(values).all():
        return None
    return values.reshape(shape)


def polars() -> Any:
    """The polars module if it is installed (the optional ``xentcli[fast]`` extra), else ``None``."""
    global _POLARS
    if _POLARS is None:
        if os.environ.get("XENT_NO_POLARS"):
            _POLARS = False
        else:
            try:
                import polars as pl

                _POLARS = pl
            except ImportError:
                _POLARS = False
    return _POLARS or None


class TextParser:
    """Parses delimited numbers line by line, keeping delimiter, header and width across blocks."""

    def __init__(self, source: str, *, header: str = "auto", delimiter: str | None = None) -> None:
        self.source = source
        self.header = header
        self.delimiter = delimiter
        self.delimiter_known = delimiter is not None
        self.header_done = header == "no"
        self.width: int | None = None
        self.width_line: int | None = None
        self.rows = 0

    # -- careful --------------------------------------------------------------

    def parse_lines(self, lines: list[str], first_line: int) -> tuple[np.ndarray, np.ndarray]:
        """The reference parser: every accepted value, and the physical line of each row."""
        rows: list[list[float]] = []
        numbers: list[int] = []
        for offset, line in enumerate(lines):
            lineno = first_line + offset
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if "\r" in stripped:
                raise XentInputError(
                    "contains a carriage return (CR) inside the line: line ends must be LF or CRLF, not CR alone",
                    source=self.source,
                    row=lineno,
                )
            if not self.delimiter_known:
                self.delimiter = _detect_delimiter(stripped)
                self.delimiter_known = True
            try:
                cells = [_clean(c) for c in _split(stripped, self.delimiter)]
            except csv.Error as exc:
                why = str(exc)
                if "field limit" in why:
                    why = f"a quoted cell is longer than {csv.field_size_limit()} characters"
                raise XentInputError(f"cannot be split into cells ({why})", source=self.source, row=lineno) from None
            if not self.header_done:
                self.header_done = True
                filled = [c for c in cells if c != ""]
                if self.header == "yes" or (filled and all(parse_number(c) is None for c in filled)):
                    continue
            if self.width is None:
                self.width, self.width_line = len(cells), lineno
            elif len(cells) != self.width:
                raise XentInputError(
                    f"has {len(cells)} value{'s' if len(cells) != 1 else ''}, but row {self.width_line} has "
                    f"{self.width}: every row needs the same number of columns",
                    source=self.source,
                    row=lineno,
                )
            row = []
            for col, cell in enumerate(cells, start=1):
                if cell == "":
                    raise XentInputError("empty cell", source=self.source, row=lineno, column=col)
                value = parse_number(cell)
                if value is None:
                    shown = cell if len(cell) <= 40 else cell[:37] + "..."
                    raise XentInputError(f"{shown!r} is not a number", source=self.source, row=lineno, column=col)
                if value in (float("inf"), float("-inf")) and cell.lower().lstrip("+-") not in ("inf", "infinity"):
                    raise XentInputError(
                        f"{cell!r} is out of the float64 range", source=self.source, row=lineno, column=col
                    )
                row.append(value)
            rows.append(row)
            numbers.append(lineno)
        self.rows += len(rows)
        width = self.width or 0
        values = np.array(rows, dtype=np.float64).reshape(len(rows), width)
        return values, np.array(numbers, dtype=np.int64)

    # -- fast -----------------------------------------------------------------

    def parse_block(
        self, data: bytes, first_line: int, offset: int = 0, newlines: int | None = None
    ) -> Chunk:
        """Parse a block of complete lines (``data`` ends with a newline or at the end of the input).

        ``offset`` is the block's byte offset in the input (for error messages);
        ``newlines`` its number of newlines, when the caller counted them already.
        A block read by a fast engine has a data row on every line, so its rows'
        line numbers are ``first_line``, ``first_line + 1``, ...: nothing is kept per row.
        """
        if not self.header_done or self.width is None:
            # Read lines carefully until the first data row has fixed delimiter, header and width.
            head_end = 0
            line = first_line
            parts = []
            while (not self.header_done or self.width is None) and head_end < len(data):
                nl = data.find(b"\n", head_end)
                stop = len(data) if nl < 0 else nl + 1
                v, ln = self.parse_lines([_decode(data[head_end:stop], self.source, offset + head_end, line)], line)
                if v.shape[0]:
                    parts.append(Chunk.of_lines(v, ln))
                head_end = stop
                line += 1
            if head_end < len(data):
                parts.append(self.parse_block(data[head_end:], line, offset + head_end))
            if not parts:
                return Chunk(np.empty((0, self.width or 0)), first_line)
            return Chunk.join(parts)
        if not data:
            return Chunk(np.empty((0, self.width)), first_line)
        if newlines is None:
            newlines = _count_byte(data, NL)
        nlines = newlines + (0 if data.endswith(b"\n") else 1)
        fast = _int_column(data, nlines) if self.width == 1 else None
        if fast is None:
            fast = self._polars_block(data, nlines) if polars() is not None else self._numpy_block(data, nlines)
        if fast is not None:
            self.rows += fast.shape[0]
            return Chunk(fast, first_line)
        text = _decode(data, self.source, offset, first_line)
        v, ln = self.parse_lines(text.split("\n") if not text.endswith("\n") else text[:-1].split("\n"), first_line)
        return Chunk.of_lines(v, ln, first_line)

    def _polars_block(self, data: bytes, nlines: int) -> np.ndarray | None:
        pl = polars()
        if self.width is None or b"#" in data:
            return None
        separator = self.delimiter
        if separator is None:  # space-separated: only a single column, with no spaces, is read in bulk
            if self.width != 1 or _has_any(data, _SINGLE_COLUMN_REFUSED):
                return None
            separator = ","
        try:
            frame = pl.read_csv(
                data,
                has_header=False,
                separator=separator,
                schema={f"c{i}": pl.Float64 for i in range(self.width)},
                quote_char='"',
                raise_if_empty=False,
            )
        except Exception:  # noqa: BLE001 - anything polars dislikes goes to the careful parser
            return None
        if frame.height != nlines:
            return None  # blank lines or ragged rows: let the careful parser say which
        values = frame.to_numpy(order="c") if frame.width > 1 else frame.to_numpy().reshape(-1, 1)
        if values.dtype != np.float64 or not np.isfinite(values).all():
            # Empty cells (nulls, which become NaN here), nan/inf words and out-of-range numbers are told
            # apart by the careful parser.
            return None
        return np.ascontiguousarray(values)

    def _numpy_block(self, data: bytes, nlines: int) -> np.ndarray | None:
        delim = self.delimiter
        if self.width is None:
            return None
        if delim is None:
            return self._numpy_column(data, nlines) if self.width == 1 else None
        # Strict guards: only plain unquoted ASCII numbers separated by the delimiter, no spaces,
        # and no whitespace other than the line ends: the values are split on any whitespace
        # below, so a vertical tab or a lone CR inside a line could otherwise make up for an
        # empty cell elsewhere and shift every later value.
        if not data.isascii() or any(
            ch in data
            for ch in (b" ", b'"', b"'", b"_", b"#", b"\x0b", b"\x0c", b"\t" if delim != "\t" else b"\x00")
        ):
            return None
        if b"\r" in data and b"\r" in data.replace(b"\r\n", b""):
            return None
        raw = np.frombuffer(data, dtype=np.uint8)
        newlines = np.flatnonzero(raw == 10)
        delims = np.flatnonzero(raw == ord(delim))
        ends = newlines if data.endswith(b"\n") else np.append(newlines, len(data))
        per_line = np.diff(np.searchsorted(delims, ends), prepend=0)
        if per_line.size != nlines or (per_line != self.width - 1).any():
            return None
        tokens = data.replace(delim.encode(), b" ").split()
        if len(tokens) != nlines * self.width:
            return None
        return _finite_floats(tokens, (nlines, self.width))

    @staticmethod
    def _numpy_column(data: bytes, nlines: int) -> np.ndarray | None:
        """A single space-separated column: one plain number per line (no spaces, quotes or comments)."""
        if not data.isascii() or _has_any(data, _SINGLE_COLUMN_REFUSED + (b"_", b"\x0b", b"\x0c")):
            return None
        if b"\r" in data and _count_byte(data, CR) != data.count(b"\r\n"):
            return None  # a lone CR: it would split a line in two, and a blank line elsewhere would hide it
        tokens = data.split()  # on the line ends (every other space is refused above): one per line
        if len(tokens) != nlines:
            return None  # a blank line
        return _finite_floats(tokens, (nlines, 1))


# Bytes that make a line of a space-separated single column more than one plain cell.
_SINGLE_COLUMN_REFUSED = (b" ", b"\t", b",", b";", b'"', b"'", b"#")


def _has_any(data: bytes, needles: tuple[bytes, ...]) -> bool:
    return any(ch in data for ch in needles)


_INT_GROUP = 1 << 18  # lines parsed at once by _int_column (bounds its scratch memory)
_INT_DIGITS = 15  # up to 15 digits every integer is exact in float64


def _count_byte(data: bytes, byte: int) -> int:
    """How many times ``byte`` occurs in ``data`` (bytes.count makes a pass per byte that is 8x slower
    than NumPy's comparison on megabyte blocks)."""
    if len(data) < 1 << 14:
        return data.count(bytes((byte,)))
    return int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == byte))


def _int_column(data: bytes, nlines: int) -> np.ndarray | None:
    """A column of plain integers (class indices), one per line, parsed without a Python object per row.

    Accepts exactly the lines ``[+-]?[0-9]{1,15}`` followed by LF or CRLF (the
    last line may lack it); anything else returns ``None`` and the block goes
    to the other engines. The values are those ``float()`` gives.
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw == 10)
    if not data.endswith(b"\n"):
        ends = np.append(ends, raw.size)
    if ends.size != nlines or not nlines:
        return None
    crs = _count_byte(data, CR)
    out = np.empty((nlines, 1), dtype=np.float64)
    start = 0
    for lo in range(0, nlines, _INT_GROUP):
        stop = ends[lo : lo + _INT_GROUP]
        starts = np.empty_like(stop)
        starts[0] = start
        starts[1:] = stop[:-1] + 1
        start = int(stop[-1]) + 1
        if crs:  # a CR is allowed only just before the LF
            cr = (stop > starts) & (raw[np.maximum(stop - 1, 0)] == 13)
            crs -= int(np.count_nonzero(cr))
            stop = stop - cr
        lead = raw[np.minimum(starts, raw.size - 1)]
        sign = (lead == 45) | (lead == 43)  # - or +
        digits_from = starts + sign
        width = stop - digits_from
        if width.size == 0 or int(width.min()) < 1 or int(width.max()) > _INT_DIGITS:
            return None
        value = np.zeros(stop.size, dtype=np.int64)
        for j in range(int(width.max()), 0, -1):  # right-aligned: the j-th digit from the end
            pos = stop - j
            present = pos >= digits_from
            digit = raw[np.where(present, pos, stop - 1)] - np.uint8(48)  # a non-digit wraps above 9
            if int(np.max(np.where(present, digit, 0))) > 9:
                return None
            value = np.where(present, value * 10 + digit, value)
        column = out[lo : lo + stop.size, 0]
        column[...] = value
        np.negative(column, out=column, where=lead == 45)  # float("-0") is -0.0
    if crs:
        return None  # a CR somewhere else than at a line end: the careful parser says where
    return out


def _decode(data: bytes, source: str, offset: int, first_line: int | None = None) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        row = None if first_line is None else first_line + data.count(b"\n", 0, exc.start)
        raise XentInputError(
            f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {offset + exc.start}); save it as UTF-8",
            source=source,
            row=row,
        ) from None


@dataclass
class Chunk:
    """Consecutive rows of a table, and where they are in their source.

    ``first`` is the 1-based physical line (text) or row (.npy) of the first
    row, and the rows after it are on the lines after it, unless ``lines``
    gives each row's line (a block that held blank or comment lines, read by
    the careful parser). Line numbers are worked out when an error is
    reported (:meth:`line_of`), not kept for every row.
    """

    values: np.ndarray
    first: int = 1
    lines: np.ndarray | None = None

    @classmethod
    def of_lines(cls, values: np.ndarray, lines: np.ndarray, first: int = 1) -> Chunk:
        """Rows with the given physical lines (kept only when they are not consecutive)."""
        if lines.size == 0:
            return cls(values, first)
        if int(lines[-1]) - int(lines[0]) == lines.size - 1:  # increasing, so consecutive
            return cls(values, int(lines[0]))
        return cls(values, int(lines[0]), lines)

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])

    def line_of(self, i: int) -> int:
        """The physical line (or .npy row) of row ``i``."""
        return int(self.lines[i]) if self.lines is not None else self.first + int(i)

    def line_numbers(self) -> np.ndarray:
        """Every row's line (for joining irregular blocks; never on the fast path)."""
        if self.lines is not None:
            return self.lines
        return np.arange(self.first, self.first + self.rows, dtype=np.int64)

    def part(self, start: int, stop: int | None = None) -> Chunk:
        stop = self.rows if stop is None else min(stop, self.rows)
        if self.lines is not None:
            return Chunk.of_lines(self.values[start:stop], self.lines[start:stop], self.first)
        return Chunk(self.values[start:stop], self.first + start)

    @staticmethod
    def join(parts: list[Chunk]) -> Chunk:
        """The rows of ``parts`` one after the other."""
        if len(parts) == 1:
            return parts[0]
        values = np.concatenate([p.values for p in parts])
        if all(p.lines is None for p in parts) and all(b.first == a.first + a.rows for a, b in zip(parts, parts[1:])):
            return Chunk(values, parts[0].first)
        return Chunk.of_lines(values, np.concatenate([p.line_numbers() for p in parts]), parts[0].first)


class TextSource:
    """A text table read in blocks of whole lines."""

    kind = "text"

    def __init__(self, stream: BinaryIO, name: str, *, header: str = "auto", first: bytes = b"",
                 total_bytes: int | None = None, chunk_bytes: int | None = None) -> None:
        self.stream = stream
        self.name = name
        self.parser = TextParser(name, header=header)
        self.pending = first
        self.total_bytes = total_bytes
        self.chunk_bytes = chunk_bytes or CHUNK_BYTES
        self.bytes_read = 0
        self.offset = 0
        self.line = 1
        self.started = False
        self.done = False

    @property
    def width(self) -> int | None:
        return self.parser.width

    def close(self) -> None:
        """Close the stream (not standard input's)."""
        if self.name != "<stdin>":
            self.stream.close()

    def _blocks(self) -> Iterator[tuple[bytes, int, int, int]]:
        """Blocks of whole lines: (bytes, first line number, byte offset, number of newlines)."""
        tail = self.pending
        self.pending = b""
        while True:
            more = self.stream.read(self.chunk_bytes)
            if not more:
                if tail:
                    yield tail, self.line, self.offset, _count_byte(tail, NL)
                return
            self.bytes_read += len(more)
            cut = more.rfind(b"\n")
            if cut < 0:  # a line longer than a chunk
                tail += more
                continue
            view = memoryview(more)
            block = b"".join((tail, view[: cut + 1])) if tail else bytes(view[: cut + 1])
            tail = bytes(view[cut + 1 :])
            newlines = _count_byte(block, NL)
            yield block, self.line, self.offset, newlines
            self.line += newlines
            self.offset += len(block)

    def chunks(self) -> Iterator[Chunk]:
        seen_numbers = False
        for block, line, offset, newlines in self._blocks():
            if not self.started:
                self.started = True
                if block.startswith(b"\xef\xbb\xbf"):
                    block = block[3:]
                    self.offset += 3
                    offset += 3
                if block.startswith((b"\xff\xfe", b"\xfe\xff")):
                    raise XentInputError(
                        "is UTF-16 text (it starts with a UTF-16 byte-order mark); save it as UTF-8",
                        source=self.name,
                    )
            nul = block.find(b"\x00")
            if nul >= 0:
                raise XentInputError(
                    "contains NUL bytes: it is binary (or UTF-16) data, not UTF-8 text",
                    source=self.name,
                    row=line + block.count(b"\n", 0, nul),
                )
            chunk = self.parser.parse_block(block, line, offset, newlines)
            if self.parser.width and self.parser.width > WIDE_ROW:
                # Each parse pays per column: wide rows are read in bigger blocks (the same rows per call).
                self.chunk_bytes = max(self.chunk_bytes, min(WIDE_GROWTH * CHUNK_BYTES, self.parser.width * 4096))
            if chunk.rows:
                seen_numbers = True
                yield chunk
        self.done = True
        if not seen_numbers:
            raise XentInputError("is empty: no numbers found" if self.started else "is empty", source=self.name)


class NpySource:
    """A .npy array read in row blocks: from the file block by block (memory stays bounded; a memory
    map would count every page read in the resident set), or from memory (standard input)."""

    kind = "npy"

    def __init__(self, array: np.ndarray, name: str, ndim: int, rows_per_chunk: int | None = None, *,
                 path: str | None = None, data_start: int = 0) -> None:
        self._raw = array  # 2-D, booleans as uint8; values not checked yet (see _checked)
        self._checked_array: np.ndarray | None = None
        self.path = path  # read block by block from here (a C-order array in a file)
        self.data_start = data_start
        self.name = name
        self.npy_ndim = ndim
        self.total_bytes = int(array.nbytes)
        self.bytes_read = 0
        c = array.shape[1] if array.ndim == 2 else 1
        self.rows_per_chunk = rows_per_chunk or max(1, (CHUNK_BYTES // 8) // max(1, c))

    @property
    def array(self) -> np.ndarray:
        """The whole array, its values checked (read into memory or mapped)."""
        if self._checked_array is None:
            self._checked_array = _checked(self._raw, 0, self.name, self.npy_ndim)
        return self._checked_array

    @property
    def width(self) -> int:
        return int(self._raw.shape[1])

    @property
    def rows(self) -> int:
        return int(self._raw.shape[0])

    def chunks(self) -> Iterator[Chunk]:
        n, c = self._raw.shape
        step = self.rows_per_chunk
        if self.path is None:
            for start in range(0, n, step):
                block = np.asarray(self._raw[start : start + step])
                self.bytes_read = min(self.total_bytes, (start + step) * c * self._raw.itemsize)
                yield Chunk(_checked(block, start, self.name, self.npy_ndim), start + 1)
            return
        dtype = self._raw.dtype
        with open(self.path, "rb") as fh:
            fh.seek(self.data_start)
            for start in range(0, n, step):
                rows = min(step, n - start)
                block = np.fromfile(fh, dtype=dtype, count=rows * c)
                if block.size != rows * c:
                    raise XentInputError("is a truncated .npy file (it changed while it was read)", source=self.name)
                self.bytes_read = min(self.total_bytes, (start + rows) * c * dtype.itemsize)
                yield Chunk(_checked(block.reshape(rows, c), start, self.name, self.npy_ndim), start + 1)


def _checked(arr: np.ndarray, first_row: int, name: str, ndim: int) -> np.ndarray:
    """Rows of a .npy array as numbers xent computes with: 64-bit integers only up to 2**53 (beyond it
    they have no exact float64 value), long doubles read into float64 (refused beyond its range).
    ``first_row`` is the 0-based row of ``arr``'s first row in the file, for the error message."""
    if arr.dtype.kind == "b":
        arr = arr.view(np.uint8)  # False/True are the numbers 0/1 (also as class indices)
    if arr.dtype.kind in "iu" and arr.dtype.itemsize == 8:
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if max(abs(lo), abs(hi)) >= 2**53:
            big = np.abs(arr.astype(np.float64)) >= 2**53
            i, j = (int(v) for v in np.argwhere(big)[0])
            raise XentInputError(
                f"integer {int(arr[i, j])} is out of range: beyond 2**53 it has no exact float64 value",
                source=name,
                row=first_row + i + 1,
                column=j + 1 if ndim != 1 else None,
            )
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 8:  # long double: read into float64 now
        with np.errstate(over="ignore", under="ignore"):
            wide = arr.astype(np.float64)
        over = np.isinf(wide) & np.isfinite(arr)
        if over.any():
            i, j = (int(v) for v in np.argwhere(over)[0])
            raise XentInputError(f"{arr[i, j]!s} is out of the float64 range", source=name, row=first_row + i + 1,
                                 column=j + 1 if ndim != 1 else None)
        arr = wide
    return arr


def _npy_header(fp: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    """The shape, order and dtype a .npy header declares (NumPy's reader; nothing is unpickled)."""
    fmt = np.lib.format
    version = fmt.read_magic(fp)
    if version == (1, 0):
        return fmt.read_array_header_1_0(fp)
    if version in ((2, 0), (3, 0)):
        # 3.0 differs from 2.0 only in the header's encoding (UTF-8, for structured field
        # names); read as Latin-1, an ASCII header is the same, and field names are refused anyway.
        return fmt.read_array_header_2_0(fp)
    raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")


def npy_shape(path: str) -> tuple[int, ...] | None:
    """The shape a .npy file's header declares, or ``None`` for anything else (text, a pipe, a bad header).

    Only a regular file is looked at: reading the start of a pipe would take it from its reader.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as fp:
            if fp.read(len(NPY_MAGIC)) != NPY_MAGIC:
                return None
            fp.seek(0)
            return tuple(_npy_header(fp)[0])
    except Exception:  # noqa: BLE001 - not a readable .npy: the usual reader reports it
        return None


def load_npy_array(path: str, name: str) -> np.ndarray:
    """A whole .npy array of any number of dimensions, checked as :func:`load_npy` checks (never unpickled)."""
    src = load_npy(path, name, max_ndim=None)
    return np.asarray(src._raw)  # the values are checked by the computation, which names K-dimensional positions


def load_npy(data_or_path: bytes | str, name: str, *, max_ndim: int | None = 2) -> NpySource:
    """Validate and open a .npy (never unpickling); 1-D arrays become one column.

    The header is read and checked first: an object dtype (pickled data) is refused
    without loading anything, and a header that promises more data than the file
    holds is reported as truncated (instead of NumPy trying to allocate or map it).
    """
    try:
        if isinstance(data_or_path, bytes):
            fp: Any = io.BytesIO(data_or_path)
            size = len(data_or_path)
        else:
            fp = open(data_or_path, "rb")  # noqa: SIM115 - closed below
            size = os.fstat(fp.fileno()).st_size
        try:
            shape, _fortran, dtype = _npy_header(fp)
            data_start = fp.tell()
        finally:
            if not isinstance(data_or_path, bytes):
                fp.close()
    except OSError as exc:
        raise XentInputError(f"cannot be read: {exc.strerror or exc}", source=name) from None
    except Exception as exc:  # noqa: BLE001 - whatever NumPy's header parser raises: not a valid header
        why = str(exc) if isinstance(exc, ValueError) or not exc.args else f"{type(exc).__name__}: {exc.args[0]}"
        why = " ".join(why.split())
        why = why if len(why) <= 120 else why[:117] + "..."
        raise XentInputError(f"is not a valid .npy file (bad header: {why or type(exc).__name__})",
                             source=name) from None
    if dtype.hasobject:
        raise XentInputError("is not a usable .npy file: it holds Python objects (pickled data is never loaded)",
                             source=name)
    if dtype.kind not in "biuf" or dtype.subdtype is not None:
        raise XentInputError(f"holds {dtype} data; only real numbers can be read", source=name)
    ndim = len(shape)
    if max_ndim is not None and ndim > max_ndim:
        raise XentInputError(f"has {ndim} dimensions {shape}; expected 1 or 2 (K-dimensional logits "
                             "(N, C, d1, ..., dk) need .npy labels)", source=name)
    if any(d < 0 for d in shape):
        raise XentInputError(f"is not a valid .npy file (bad header: negative shape {shape})", source=name)
    count = math.prod(shape)
    if count == 0:
        raise XentInputError(f"is empty (shape {shape})", source=name)
    need = count * dtype.itemsize
    if need > size - data_start:
        raise XentInputError(
            f"is a truncated .npy file: its header describes a {' x '.join(map(str, shape)) or 'scalar'} {dtype} array "
            f"({need} bytes of data) but only {max(0, size - data_start)} bytes follow the header",
            source=name,
        )
    try:
        if isinstance(data_or_path, bytes):
            arr = np.load(io.BytesIO(data_or_path), allow_pickle=False)
        else:
            arr = np.load(data_or_path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError, TypeError, SyntaxError, OverflowError) as exc:
        raise XentInputError(f"is not a valid .npy file: {' '.join(str(exc).split())}", source=name) from None
    if not isinstance(arr, np.ndarray):
        raise XentInputError("is not a single .npy array", source=name)
    if ndim == 0:
        arr = arr.reshape(1, 1)
    elif ndim == 1:
        arr = arr.reshape(-1, 1)
    # A C-order array in a file is read block by block from it; anything else from the array.
    by_file = not isinstance(data_or_path, bytes) and not _fortran and ndim > 0 and arr.dtype.kind != "O"
    return NpySource(arr, name, ndim, path=data_or_path if by_file else None,  # type: ignore[arg-type]
                     data_start=data_start)


def open_source(path: str, *, header: str = "auto", stdin: BinaryIO | None = None,
                chunk_bytes: int | None = None) -> TextSource | NpySource:
    """A chunked source for a path, or ``-`` for standard input (text or .npy, by content).

    ``chunk_bytes``: the size of a text block (default :data:`CHUNK_BYTES`).
    """
    if path == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        first = stream.read(len(NPY_MAGIC))
        if first.startswith(NPY_MAGIC):
            return load_npy(first + stream.read(), "<stdin>")
        if first.startswith(ZIP_MAGIC):
            raise XentInputError(NPZ_MESSAGE, source="<stdin>")
        return TextSource(stream, "<stdin>", header=header, first=first)
    try:
        if os.path.isdir(path):
            raise XentInputError("is a directory, not a file", source=path)
        stream = open(path, "rb")  # noqa: SIM115 - the source owns it until the program ends
    except FileNotFoundError:
        raise XentInputError("no such file", source=path) from None
    except PermissionError:
        raise XentInputError("permission denied", source=path) from None
    except IsADirectoryError:
        raise XentInputError("is a directory, not a file", source=path) from None
    except OSError as exc:
        raise XentInputError(f"cannot be read: {exc.strerror or exc}", source=path) from None
    first = stream.read(len(NPY_MAGIC))
    if first.startswith(NPY_MAGIC):
        stream.close()
        return load_npy(path, path)
    if first.startswith(ZIP_MAGIC):
        stream.close()
        raise XentInputError(NPZ_MESSAGE, source=path)
    if path.lower().endswith(".npy"):
        stream.close()
        raise XentInputError("is not a .npy file (it does not start with the .npy magic bytes)", source=path)
    size = os.fstat(stream.fileno()).st_size
    if not first.strip() and size <= len(first):
        stream.close()
        raise XentInputError("is empty", source=path)
    return TextSource(stream, path, header=header, first=first, total_bytes=size, chunk_bytes=chunk_bytes)
