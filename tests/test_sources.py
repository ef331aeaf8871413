"""The chunked readers: the fast engines agree with the careful parser bit for bit, or defer to it.

The careful parser (``TextParser.parse_lines``) defines what is accepted; a
fast engine (polars when installed, else the guarded NumPy path) may only
return a block when it parses it to exactly the same numbers. Every test runs
with the fast engine the machine has and with the pure-NumPy path.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from xentcli import sources
from xentcli.errors import XentInputError
from xentcli.sources import TextParser, TextSource, open_source

TOKENS = [
    "1", "-2.5", "+3", ".5", "5.", "1e5", "1E-5", "1.5e+3", "0", "-0", "00012", "1e308", "4.9e-324",
    "2.2250738585072014e-308", "0.1", "123456789012345678901234567890",
    # things the careful parser rejects or treats specially
    "1.5e", "1e5.5", "..5", "+-1", "1.2.3", "0x10", "1_000", "1d5", "inf", "-inf", "nan", "Infinity",
    "-Infinity", "1e400", "-1e400", "abc", "", " 1.5", "1.5 ", '"2"', "'3'", "٣", "1,5", "NaN", "+inf",
]


@pytest.fixture(params=["fast", "numpy"])
def engine(request, monkeypatch):
    if request.param == "numpy":
        monkeypatch.setattr(sources, "_POLARS", False)
    else:
        monkeypatch.setattr(sources, "_POLARS", None)
    return request.param


def careful(text: str):
    parser = TextParser("t", header="no", delimiter=",")
    try:
        return parser.parse_lines(text.split("\n"), 1)
    except XentInputError as exc:
        return exc


def chunked(text: str, chunk_bytes: int):
    src = TextSource(io.BytesIO(text.encode("utf-8")), "t", header="no", chunk_bytes=chunk_bytes)
    src.parser.delimiter, src.parser.delimiter_known = ",", True
    try:
        parts = list(src.chunks())
    except XentInputError as exc:
        return exc
    return np.concatenate([p.values for p in parts]), np.concatenate([p.line_numbers() for p in parts])


def same(a, b) -> bool:
    if isinstance(a, XentInputError) or isinstance(b, XentInputError):
        return isinstance(a, XentInputError) and isinstance(b, XentInputError) and str(a) == str(b)
    return a[0].shape == b[0].shape and np.array_equal(a[0].view(np.int64), b[0].view(np.int64)) and np.array_equal(
        a[1], b[1]
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.lists(st.sampled_from(TOKENS), min_size=3, max_size=3), min_size=1, max_size=12),
    blank=st.booleans(),
    chunk=st.sampled_from([8, 64, 1 << 20]),
)
def test_fast_engine_agrees_with_the_careful_parser(engine, rows, blank, chunk):
    lines = [",".join(r) for r in rows]
    if blank and len(lines) > 2:
        lines.insert(2, "")
    text = "\n".join(lines) + "\n"
    want = careful(text.rstrip("\n"))
    got = chunked(text, chunk)
    if isinstance(want, XentInputError) and str(want).endswith("no numbers found"):
        return
    assert same(want, got), (want, got)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(
        st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=6, max_size=60
    ).filter(lambda v: len(v) % 3 == 0),
    fmt=st.sampled_from(["%r", "%.17g", "%.3e", "%.1f"]),
    chunk=st.sampled_from([16, 256, 1 << 20]),
)
def test_numbers_round_trip_exactly_through_any_chunking(engine, values, fmt, chunk):
    arr = np.array(values).reshape(-1, 3)
    text = "\n".join(",".join(fmt % float(v) for v in row) for row in arr) + "\n"
    want = careful(text.rstrip("\n"))
    got = chunked(text, chunk)
    assert same(want, got)
    if fmt in ("%r", "%.17g"):
        np.testing.assert_array_equal(got[0], arr)


def test_physical_lines_survive_blank_lines_comments_and_chunks(engine, tmp_path):
    p = tmp_path / "z.csv"
    body = ["# made by hand", "a,b,c", "1,2,3", "", "4,5,6", "# note", "7,8,9"] + [f"{i},{i},{i}" for i in range(2000)]
    p.write_text("\ufeff" + "\r\n".join(body) + "\r\n", encoding="utf-8")
    src = open_source(str(p))
    src.chunk_bytes = 97
    parts = list(src.chunks())
    lines = np.concatenate([c.line_numbers() for c in parts])
    values = np.concatenate([c.values for c in parts])
    assert lines[:3].tolist() == [3, 5, 7]
    assert lines[-1] == len(body)
    assert values[:3].tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_errors_name_the_physical_line_in_later_chunks(engine, tmp_path):
    p = tmp_path / "z.csv"
    rows = [f"{i},{i}.5" for i in range(5000)]
    rows[4321] = "1,x"
    p.write_text("\n".join(rows) + "\n")
    src = open_source(str(p))
    src.chunk_bytes = 1000
    with pytest.raises(XentInputError) as err:
        list(src.chunks())
    assert "row 4322" in str(err.value) and "column 2" in str(err.value) and "'x'" in str(err.value)


COLUMN_TOKENS = [
    "0", "1", "7", "42", "-1", "-100", "+3", "-0", "+0", "007", "123456789012345", "1234567890123456",
    "9007199254740993", "1.0", "2.", ".5", "1e0", "-0.0", "0.25",
    # refused or special
    "", " 3", "3 ", "1 2", "x", "1-", "--1", "+", "-", "1e", "inf", "nan", "1_0", "'4'", '"5"', "#", "3\r4", "١",
]


def careful_column(text: str):
    parser = TextParser("t", header="no")
    try:
        return parser.parse_lines(text.split("\n"), 1)
    except XentInputError as exc:
        return exc


def chunked_column(text: str, chunk_bytes: int):
    src = TextSource(io.BytesIO(text.encode("utf-8")), "t", header="no", chunk_bytes=chunk_bytes)
    try:
        parts = list(src.chunks())
    except XentInputError as exc:
        return exc
    return np.concatenate([p.values for p in parts]), np.concatenate([p.line_numbers() for p in parts])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cells=st.lists(st.sampled_from(COLUMN_TOKENS), min_size=1, max_size=40),
    crlf=st.booleans(),
    last_newline=st.booleans(),
    chunk=st.sampled_from([8, 64, 1 << 20]),
)
# A blank line and a lone CR once made as many tokens as lines between them: NumPy's column took "3\r4" as 3, 4.
@example(cells=["0", "", "3\r4", "0"], crlf=False, last_newline=False, chunk=8)
def test_single_column_engines_agree_with_the_careful_parser(engine, cells, crlf, last_newline, chunk):
    """Class-index columns are parsed in bulk (and by polars or NumPy): the same numbers and lines, bit for bit."""
    end = "\r\n" if crlf else "\n"
    text = end.join(cells) + (end if last_newline else "")
    want = careful_column(text)
    got = chunked_column(text, chunk)
    if not isinstance(want, XentInputError) and want[0].shape[0] == 0:
        assert isinstance(got, XentInputError) and "empty" in str(got)
        return
    assert same(want, got), (text, want, got)


def test_integer_column_reader_is_used_and_exact(monkeypatch):
    """Plain integers go through the bulk reader (no per-row Python), with float()'s values, -0.0 included."""
    calls = []
    real = sources._int_column

    def spy(data, nlines):
        out = real(data, nlines)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(sources, "_int_column", spy)
    monkeypatch.setattr(sources, "_INT_GROUP", 3)  # several groups per block
    tokens = ["0", "-0", "+7", "-100", "123456789012345", "00042", "9", "31"] * 5
    src = TextSource(io.BytesIO(("\r\n".join(tokens) + "\r\n").encode()), "t", header="no")
    chunk = next(src.chunks())
    assert calls == [True]
    want = np.array([float(t) for t in tokens])
    assert np.array_equal(chunk.values[:, 0].view(np.int64), want.view(np.int64))
    assert chunk.lines is None and chunk.first == 1  # nothing kept per row
    for bad in (b"1\n2\r3\n", b"1\n\n2\n", b"1\n-\n", b"1\n1234567890123456\n", b"1\n2x\n"):
        assert real(bad, bad.count(b"\n")) is None, bad


def test_a_chunk_recovers_line_numbers_only_when_asked():
    c = sources.Chunk(np.zeros((5, 1)), first=10)
    assert [c.line_of(i) for i in range(5)] == [10, 11, 12, 13, 14]
    assert c.part(2).first == 12 and c.part(2).lines is None
    irregular = sources.Chunk.of_lines(np.zeros((3, 1)), np.array([3, 5, 6]))
    joined = sources.Chunk.join([c.part(0, 2), irregular, sources.Chunk(np.zeros((2, 1)), first=7)])
    assert joined.line_numbers().tolist() == [10, 11, 3, 5, 6, 7, 8]
    assert sources.Chunk.join([c.part(0, 2), c.part(2)]).lines is None
