"""Numbers as text, fast: every value with its shortest round-trip digits, byte for byte as Python prints it.

The text of a float64 value is ``repr(float(x))`` and that of a float32
value ``str(numpy.float32(x))`` (NumPy's shortest float32 digits); NaN and
the infinities are ``nan``, ``inf`` and ``-inf`` (``"nan"`` ... where JSON
needs strings). :func:`token` is that definition, one value at a time.

:func:`lines` writes a whole block of rows at once. With the optional
``orjson`` (or ``polars``) installed, their shortest-digit (Ryu) writer
produces the digits and the few layout rules where they differ from
Python's are applied to the whole buffer with NumPy:

* a decimal exponent of -5 (and -6 for float32) is written positionally by
  them (``0.000012``) and in scientific notation by Python (``1.2e-05``);
* a one-digit exponent is padded by Python (``1e-07``, not ``1e-7``);
* float32 values from 1e6 up, and the float32 value nearest 1e-4 (which is
  below it), are scientific in NumPy: their rows, like rows holding a
  non-finite value, are written by :func:`token`.

Without either library every value goes through :func:`token` (the same
bytes, slower). Nothing here keeps more than the block in hand.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

__all__ = ["engine", "lines", "token"]

_ORJSON: Any = None
_F32_SCI_FROM = 1e6  # NumPy writes float32 values from here up in scientific notation
_F32_NEAR_1E4 = float(np.float32(1e-4))  # shortest digits 0.0001, but below 1e-4: NumPy writes 1e-04

COMMA, NEWLINE, DOT, ZERO, MINUS, PLUS, E = (ord(c) for c in ",\n.0-+e")


def token(x: float, dtype: Any = np.float64, *, quote: bool = False) -> str:
    """The text of one value in ``dtype`` (float64 or float32): the definition :func:`lines` follows."""
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        word = "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
        return f'"{word}"' if quote else word
    if np.dtype(dtype) == np.float32:
        return str(np.float32(x))
    return repr(x)


def _orjson() -> Any:
    global _ORJSON
    if _ORJSON is None:
        if os.environ.get("XENT_NO_ORJSON"):
            _ORJSON = False
        else:
            try:
                import orjson

                _ORJSON = orjson
            except ImportError:
                _ORJSON = False
    return _ORJSON or None


def engine() -> str:
    """Which writer produces the digits: ``"orjson"``, ``"polars"`` or ``"python"``."""
    if _orjson() is not None:
        return "orjson"
    from .sources import polars

    return "polars" if polars() is not None else "python"


def lines(block: np.ndarray, *, quote: bool = False, numbered_from: int | None = None) -> bytes:
    """The rows of a 2-D float32/float64 block as text: values joined by ``,``, each row ended by a newline.

    Every value is written as :func:`token` writes it (``quote``: non-finite
    values as JSON strings). ``numbered_from``: each row starts with its
    number (counted from there) and a comma.
    """
    return _text(block, "csv", quote, numbered_from)


def json_rows(block: np.ndarray) -> bytes:
    """The rows of a 2-D block as JSON arrays ``[a, b]``, joined by ``,\n    `` (no separator before or after)."""
    return _text(block, "rows", True, None)


def json_values(block: np.ndarray) -> bytes:
    """All values of a block (row after row) joined by ``, `` for a JSON array (no brackets)."""
    return _text(block, "values", True, None)


def json_rows_parts(block: np.ndarray) -> list[bytes]:
    """:func:`json_rows` as pieces to write one after the other (no copy of the whole text to join them)."""
    return _text_parts(block, "rows", True, None)


def json_values_parts(block: np.ndarray) -> list[bytes]:
    """:func:`json_values` as pieces to write one after the other."""
    return _text_parts(block, "values", True, None)


def lines_parts(block: np.ndarray, *, numbered_from: int | None = None) -> list[bytes]:
    """:func:`lines` as pieces to write one after the other."""
    return _text_parts(block, "csv", False, numbered_from)


def round_trip_parts(block: np.ndarray, delimiter: bytes = b",") -> list[bytes | memoryview] | None:
    """Rows of a finite 2-D block with shortest round-trip digits in the libraries' own layout (``1e-7``,
    ``0.00001``: what a file needs, not Python's layout), as pieces to write one after the other (no copy
    of the whole text to join them), or ``None`` without orjson and polars."""
    how = engine()
    if how == "python" or block.shape[0] == 0:
        return None
    c = block.shape[1]
    step = max(1, PIECE_VALUES // c)
    parts: list[bytes | memoryview] = []
    for start in range(0, block.shape[0], step):
        piece = np.ascontiguousarray(block[start : start + step])
        if how == "orjson" and c >= _ROW_BY_ROW:
            text = _orjson_rows(piece)
            parts.append(text if delimiter == b"," else text.replace(b",", delimiter))
            continue
        buf, ends = _digits(piece, how)
        if delimiter != b",":
            buf[ends] = ord(delimiter)
        buf[ends[c - 1 :: c]] = NEWLINE
        parts.append(buf.data)  # a new array for each piece: no copy to bytes
    return parts


_ROW_BY_ROW = 16  # from this many values a row, finding each row's end beats finding every separator


def _orjson_rows(piece: np.ndarray) -> bytes:
    """A 2-D block as orjson writes it (``[[a,b],[c,d]]``) turned into lines ``a,b`` ``c,d``: one search
    (memchr) per row for its ``]``, so the bytes are scanned once, in C, and copied once."""
    text = _orjson().dumps(piece, option=_orjson().OPT_SERIALIZE_NUMPY)
    find, view, last = text.find, memoryview(text), len(text) - 2  # the final "]]"
    rows: list[bytes | memoryview] = []
    pos = 2  # after "[["
    while True:
        end = find(b"]", pos)
        rows.append(view[pos:end])
        if end >= last:
            break
        pos = end + 3  # past "],["
    rows.append(b"")  # the last row's newline
    return b"\n".join(rows)


_JOIN = {"csv": b"", "rows": b",\n    ", "values": b", "}  # between two parts of a block


def _text(block: np.ndarray, style: str, quote: bool, numbered_from: int | None) -> bytes:
    return b"".join(_text_parts(block, style, quote, numbered_from))


def _text_parts(block: np.ndarray, style: str, quote: bool, numbered_from: int | None) -> list[bytes]:
    """The text of a block as pieces whose concatenation is it."""
    block = np.asarray(block)
    if block.dtype not in (np.float32, np.float64):
        block = block.astype(np.float64)
    if block.ndim == 1:
        block = block.reshape(-1, 1)
    n = block.shape[0]
    if n == 0 or block.shape[1] == 0:
        return [b"\n" * n if style == "csv" and numbered_from is None else _python_text(block, style, quote,
                                                                                         numbered_from)]
    how = engine()
    if how == "python":
        return [_python_text(block, style, quote, numbered_from)]
    special = _special_rows(block)
    if special is None:
        return _fast_parts(block, how, style, numbered_from)

    def number(i: int) -> int | None:
        return None if numbered_from is None else numbered_from + i

    runs: list[list[bytes]] = []  # the text of consecutive rows, each run joined to the next by the style's join
    start = 0
    for i in special.tolist():
        if i > start:
            runs.append(_fast_parts(block[start:i], how, style, number(start)))
        runs.append([_python_text(block[i : i + 1], style, quote, number(i))])
        start = i + 1
    if start < n:
        runs.append(_fast_parts(block[start:], how, style, number(start)))
    return _joined(runs, _JOIN[style])


def _joined(runs: list[list[bytes]], join: bytes) -> list[bytes]:
    parts = runs[0]
    for run in runs[1:]:
        if join:
            parts.append(join)
        parts += run
    return parts


def _python_text(block: np.ndarray, style: str, quote: bool, numbered_from: int | None = None) -> bytes:
    """The definition, value by value (also the writer when neither library is installed)."""
    dt = block.dtype
    rows = [[token(v, dt, quote=quote) for v in row] for row in block.tolist()]
    if style == "rows":
        return ",\n    ".join("[" + ", ".join(row) + "]" for row in rows).encode()
    if style == "values":
        return ", ".join(v for row in rows for v in row).encode()
    text = [",".join(row) + "\n" for row in rows]
    if numbered_from is not None:
        text = [f"{numbered_from + i},{line}" for i, line in enumerate(text)]
    return "".join(text).encode()


def _special_rows(block: np.ndarray) -> np.ndarray | None:
    """Rows the fast writers do not write as :func:`token` does (``None`` when there are none)."""
    with np.errstate(invalid="ignore"):
        if block.dtype == np.float32:
            mag = np.abs(block)
            odd = ~(mag < _F32_SCI_FROM) | (mag == np.float32(_F32_NEAR_1E4))  # also NaN and inf
        else:
            odd = ~np.isfinite(block)
    if not odd.any():
        return None
    rows: np.ndarray = np.flatnonzero(odd.any(axis=1))
    return rows


PIECE_VALUES = 1 << 15  # values written at a time: the text and its scratch arrays stay in the CPU's cache


def _fast_parts(block: np.ndarray, how: str, style: str, numbered_from: int | None = None) -> list[bytes]:
    c = block.shape[1]
    step = max(1, PIECE_VALUES // c)
    runs: list[list[bytes]] = []
    for start in range(0, block.shape[0], step):
        piece = np.ascontiguousarray(block[start : start + step])
        rows = piece.shape[0]
        buf, ends = _digits(piece, how)
        row_ends = ends[c - 1 :: c]
        before: list[np.ndarray] = []
        before_what: list[np.ndarray] = []
        if style == "values":
            buf[ends] = COMMA
        else:
            buf[row_ends] = NEWLINE
        if numbered_from is not None:  # "i," at the start of every row (its first value)
            widths, digits = _row_numbers(numbered_from + start, rows)
            before.append(np.repeat(np.arange(0, rows * c, c, dtype=np.int64), widths))
            before_what.append(digits)
        # Few values below 1e-4 (written with an exponent or five zeros): only those are looked at.
        mag = np.abs(piece.reshape(-1))
        below = mag < 1e-4
        small = None if np.count_nonzero(below) > buf.size >> _FEW_SHIFT else np.flatnonzero(below & (mag >= 9e-7))
        out = _python_layout(buf, ends, before, before_what, small)
        # The separators that every value gets are put in by bytes.replace (a memchr-speed pass).
        if style == "values":
            runs.append([out[:-1].replace(b",", b", ")])
        elif style == "rows":
            runs.append([b"[", out[:-1].replace(b",", b", ").replace(b"\n", b"],\n    ["), b"]"])
        else:
            runs.append([out])
    return _joined(runs, _JOIN[style])


def _row_numbers(first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The text ``"i,"`` of the numbers first .. first + count - 1: each one's length, and all their bytes."""
    numbers = np.arange(first, first + count, dtype=np.int64)
    places = len(str(first + count - 1))
    scale = 10 ** np.arange(places - 1, -1, -1, dtype=np.int64)
    table = np.empty((count, places + 1), dtype=np.uint8)
    table[:, :places] = (numbers[:, None] // scale) % 10 + ZERO
    table[:, places] = COMMA
    width = np.ones(count, dtype=np.int64)  # the comma
    for k in range(places):  # digits: at least one, and one more for each power of ten reached
        width += (numbers >= 10**k) | (k == 0)
    shown = np.arange(places + 1) >= (places + 1 - width)[:, None]
    return width, table[shown]


def _digits(block: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    """Shortest digits in the libraries' layout, and the position of the separator after each value.

    The text (uint8, writable) holds the values one after the other, each
    followed by one separator byte (which the caller sets).
    """
    n, c = block.shape
    if how == "orjson":
        flat = _orjson().dumps(block.reshape(-1), option=_orjson().OPT_SERIALIZE_NUMPY)
        buf = np.frombuffer(flat, dtype=np.uint8)[1:].copy()  # "a,b,c,...]": the "]" ends the last value
        ends = np.flatnonzero(buf == COMMA)
        ends = np.append(ends, buf.size - 1)
        return buf, ends
    from .sources import polars

    pl = polars()
    frame = pl.from_numpy(block, schema=[f"c{i}" for i in range(c)], orient="row")
    text: str = frame.write_csv(None, include_header=False, separator=",", line_terminator="\n")
    buf = np.frombuffer(text.encode(), dtype=np.uint8).copy()
    return buf, np.flatnonzero((buf == COMMA) | (buf == NEWLINE))


def _python_layout(buf: np.ndarray, ends: np.ndarray, before: list[np.ndarray],
                   before_what: list[np.ndarray], small: np.ndarray | None = None) -> bytes:
    """Rewrite Ryu-layout values (``0.00001``, ``1e-7``) into Python's (``1e-05``, ``1e-07``).

    ``ends`` holds the position of the separator after each value; ``small``
    (when given) the indices of the values that may be written positionally
    with five or six zeros (decimal exponents -5 and -6: a superset, such as
    every value from 9e-7 to 1e-4 in magnitude), so that only those are
    looked at. ``before`` are the indices of values to insert
    ``before_what`` bytes in front of (ahead of the rewrite's own insertions
    there). Values that get shorter are rewritten in place, one-digit
    exponents are found by their ``e`` alone, and the text is spliced once
    (twice when some values got shorter).
    """
    if before or small is None:
        return _python_layout_everywhere(buf, ends, before, before_what).tobytes()
    if small.size:
        end = ends[small]
        start = np.where(small > 0, ends[np.maximum(small - 1, 0)] + 1, 0)
        s0 = start + (buf[start] == MINUS)
        tiny = _five_zeros(buf, s0, end)
        if tiny.size:  # rewritten in place, then the bytes left over behind each are cut out (they are few)
            end = end[tiny]
            shrink = _rewrite_in_place(buf, end, s0[tiny])
            buf = np.frombuffer(_cut(buf, end - shrink, end, b""), dtype=np.uint8)
    # A one-digit exponent: "e", a sign, one digit and the separator.
    exps = np.flatnonzero(buf == E)
    if exps.size:
        sign = buf[exps + 1]
        after = buf[np.minimum(exps + 3, buf.size - 1)]
        one = ((sign == MINUS) | (sign == PLUS)) & ((after < ZERO) | (after > ZERO + 9)) & (exps + 3 < buf.size)
        exps = exps[one]
    if not exps.size:
        return buf.tobytes()
    if exps.size > buf.size >> _FEW_SHIFT:
        return _splice(buf, exps + 2, np.full(exps.size, ZERO, dtype=np.uint8), presorted=True).tobytes()
    return _cut(buf, exps + 2, exps + 2, b"0")


_FEW_SHIFT = 10  # up to one change per this power of two of bytes, the text is cut in pieces (else masks)


def _cut(buf: np.ndarray, cut: np.ndarray, resume: np.ndarray, put: bytes) -> bytes:
    """The text with ``buf[cut[i]:resume[i]]`` replaced by ``put`` (``cut`` sorted, ranges apart)."""
    view = memoryview(buf)  # type: ignore[arg-type]
    pieces = [view[i:j] for i, j in zip([0, *resume.tolist()], [*cut.tolist(), buf.size])]
    return put.join(pieces)


def _five_zeros(buf: np.ndarray, s0: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Which of the values whose digits run from ``s0`` to ``end`` are written ``0.0000`` and a digit or more."""
    tiny = np.flatnonzero((end - s0 >= 7) & (buf[np.minimum(s0 + 5, buf.size - 1)] == ZERO))
    if tiny.size:
        s1 = s0[tiny]
        tiny = tiny[(buf[s1] == ZERO) & (buf[s1 + 1] == DOT) & (buf[s1 + 2] == ZERO) & (buf[s1 + 3] == ZERO)
                    & (buf[s1 + 4] == ZERO)]
    return tiny


def _python_layout_everywhere(buf: np.ndarray, ends: np.ndarray, before: list[np.ndarray],
                              before_what: list[np.ndarray]) -> np.ndarray:
    """:func:`_python_layout` looking at every value (also where bytes go in front of some)."""
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    length = ends - starts
    # A one-digit exponent: the value ends "e-D" or "e+D".
    sign = buf[ends - 2]
    pad = (buf[np.maximum(ends - 3, 0)] == E) & ((sign == MINUS) | (sign == PLUS)) & (length >= 4)
    # A decimal exponent of -5 or -6 written positionally: [-]0.0000[0]d... becomes [-]d[.d...]e-0N.
    s0 = starts + (buf[starts] == MINUS)
    tiny = _five_zeros(buf, s0, ends)
    if tiny.size:
        buf, shrink = _rewrite_tiny(buf, ends[tiny], s0[tiny])
        shift = np.zeros(ends.size, dtype=np.int64)
        shift[tiny] = shrink
        ends = ends - np.cumsum(shift)
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    insert_at = [*(starts[v] for v in before), ends[pad] - 1]
    insert_what = [*before_what, np.full(int(np.count_nonzero(pad)), ZERO, dtype=np.uint8)]
    insert_at = [a for a in insert_at if a.size]
    insert_what = [w for w in insert_what if w.size]
    if not insert_at:
        return buf
    positions = insert_at[0] if len(insert_at) == 1 else np.concatenate(insert_at)
    return _splice(buf, positions, insert_what[0] if len(insert_what) == 1 else np.concatenate(insert_what),
                   presorted=len(insert_at) == 1)


def _rewrite_tiny(buf: np.ndarray, end: np.ndarray, s1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_rewrite_in_place`, then the bytes left over dropped. Returns the text and how many bytes each
    value lost."""
    shrink = _rewrite_in_place(buf, end, s1)
    keep = np.ones(buf.size, dtype=bool)
    keep[np.repeat(end - shrink, shrink) + _ramp(shrink)] = False
    return buf[keep], shrink


def _rewrite_in_place(buf: np.ndarray, end: np.ndarray, s1: np.ndarray) -> np.ndarray:
    """Values whose digits start at ``s1`` (``0.0000[0]d...``) and end before ``end``, rewritten in place as
    ``d[.d...]e-0N``, which is shorter. Returns how many bytes each left over at its end (at least 1: "0."
    and four zeros became "." and "e-0N"); those bytes hold digits and dots, never an "e"."""
    zeros = np.full(s1.size, 4, dtype=np.int64)
    more = buf[s1 + 2 + zeros] == ZERO
    while more.any():  # float32 writes 1e-06 as 0.000001
        zeros += more
        more = buf[s1 + 2 + zeros] == ZERO
    first = s1 + 2 + zeros  # the first significant digit
    count = end - first
    many = count > 1
    rest = count - 1  # the digits after the first, which move behind a "."
    digits = buf[np.repeat(first + 1, rest) + _ramp(rest)]  # taken before anything is written over them
    buf[s1] = buf[first]
    buf[s1[many] + 1] = DOT
    buf[np.repeat(s1 + 2, rest) + _ramp(rest)] = digits
    exponent = s1 + count + many  # "e-0N" goes here
    buf[exponent] = E
    buf[exponent + 1] = MINUS
    buf[exponent + 2] = ZERO
    buf[exponent + 3] = ZERO + zeros + 1
    shrink: np.ndarray = end - (exponent + 4)
    return shrink


_SPARSE = 64  # up to this many insertions, the text is copied in pieces instead of through a mask


def _splice(buf: np.ndarray, at: np.ndarray, what: np.ndarray, *, presorted: bool = False) -> np.ndarray:
    """``buf`` with ``what[i]`` inserted before ``at[i]``; equal insertion points keep the order of ``what``
    (``presorted``: ``at`` is in order already)."""
    if not presorted:
        order = np.argsort(at, kind="stable")
        at, what = at[order], what[order]
    if at.size <= _SPARSE:  # a few: the text between them is copied as it is
        bounds = [0, *at.tolist(), buf.size]
        parts = []
        for k in range(at.size):
            parts += [buf[bounds[k] : bounds[k + 1]], what[k : k + 1]]
        parts.append(buf[bounds[-2] :])
        return np.concatenate(parts)
    size = buf.size + at.size
    slots = at + np.arange(at.size)  # where the inserted bytes land
    out = np.empty(size, dtype=np.uint8)
    old = np.ones(size, dtype=bool)
    old[slots] = False
    out[old] = buf
    out[slots] = what
    return out


def _ramp(lengths: np.ndarray) -> np.ndarray:
    """0, 1, ..., k-1 for each k in ``lengths``, one after the other."""
    total = int(lengths.sum())
    if not total:
        return np.empty(0, dtype=np.int64)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    ramp: np.ndarray = np.arange(total, dtype=np.int64) - starts
    return ramp
