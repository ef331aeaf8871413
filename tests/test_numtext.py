"""The fast number writer prints every value exactly as Python does: repr(float) and str(numpy.float32).

The oracle is Python itself, value by value; the writers under test are
orjson's and polars' shortest-digit writers with xent's layout rewrite, and
the pure-Python path used when neither library is installed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xentcli import numtext, sources


def python_text(x: float, dtype, quote: bool = False) -> str:
    """What Python prints for a value of this dtype (the JSON output's long-standing definition)."""
    if math.isnan(x) or math.isinf(x):
        word = "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
        return f'"{word}"' if quote else word
    return str(np.float32(x)) if np.dtype(dtype) == np.float32 else repr(float(x))


def python_lines(block: np.ndarray, quote: bool = False) -> bytes:
    return "".join(",".join(python_text(v, block.dtype, quote) for v in row.tolist()) + "\n" for row in block).encode()


@pytest.fixture(params=["orjson", "polars", "python"])
def writer(request, monkeypatch):
    if request.param == "orjson":
        pytest.importorskip("orjson")
        monkeypatch.setattr(numtext, "_ORJSON", None)
    else:
        monkeypatch.setattr(numtext, "_ORJSON", False)
        if request.param == "polars":
            pytest.importorskip("polars")
            monkeypatch.setattr(sources, "_POLARS", None)
        else:
            monkeypatch.setattr(sources, "_POLARS", False)
    assert numtext.engine() == request.param
    return request.param


@pytest.fixture
def small_pieces(monkeypatch):
    monkeypatch.setattr(numtext, "PIECE_VALUES", 7)  # many pieces per block


def any_float64(bits: int) -> float:
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


def any_float32(bits: int) -> float:
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])


BLOCKS = st.tuples(st.integers(1, 7), st.integers(1, 7)).flatmap(
    lambda shape: st.tuples(
        st.just(shape),
        st.lists(st.one_of(
            st.integers(0, 2**64 - 1).map(any_float64),  # any bit pattern: subnormals, NaN, inf, -0.0
            st.floats(allow_nan=False, allow_infinity=False, width=64),
            st.integers(-12, 22).flatmap(lambda k: st.floats(0.5, 9.99).map(lambda m: m * 10.0**k)),
            st.integers(-12, 22).map(lambda k: 10.0**k),
            st.integers(-12, 22).map(lambda k: -(10.0**k)),
        ), min_size=shape[0] * shape[1], max_size=shape[0] * shape[1]),
        st.lists(st.one_of(
            st.integers(0, 2**32 - 1).map(any_float32),
            st.integers(-12, 12).flatmap(lambda k: st.floats(0.5, 9.99).map(lambda m: m * 10.0**k)),
            st.integers(-12, 12).map(lambda k: 10.0**k),
        ), min_size=shape[0] * shape[1], max_size=shape[0] * shape[1]),
    )
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=BLOCKS, quote=st.booleans())
def test_every_value_is_written_as_python_writes_it(writer, small_pieces, case, quote):
    (n, c), wide, narrow = case
    for block in (np.array(wide, dtype=np.float64).reshape(n, c), np.array(narrow, dtype=np.float32).reshape(n, c)):
        assert numtext.lines(block, quote=quote) == python_lines(block, quote)


def boundary_values(dtype) -> np.ndarray:
    """Powers of ten and their neighbours, where the layout switches between positional and scientific."""
    finfo = np.finfo(dtype)
    tens = [dtype(10.0**k) for k in range(-45 if dtype == np.float32 else -320, 39 if dtype == np.float32 else 309)]
    tens = [t for t in tens if np.isfinite(t) and t != 0]
    near = []
    with np.errstate(over="ignore"):
        for t in tens:
            near += [t, np.nextafter(t, dtype(0)), np.nextafter(t, dtype(np.inf)), t * dtype(1.5),
                     t * dtype(9.999999)]
    near += [finfo.max, finfo.tiny, finfo.smallest_subnormal, dtype(0.0), dtype(-0.0), dtype(1e-4), dtype(1e6),
             dtype(1e16), dtype(9999999999999998.0)]
    values = np.array([v for v in near if np.isfinite(v)], dtype=dtype)
    return np.concatenate([values, -values])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("width", [1, 3, 10])
def test_layout_switches_exactly_where_python_switches(writer, dtype, width):
    values = boundary_values(dtype)
    values = values[: values.size // width * width].reshape(-1, width)
    assert numtext.lines(values) == python_lines(values)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_typical_results_and_big_blocks(writer, dtype):
    """Probabilities, tiny gradients of a mean, losses: a whole block at once, as the streams write them."""
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(10) * 0.3, size=4000)
    block = np.concatenate([probs, probs / 1e5, -probs / 3e7, rng.exponential(3.0, size=(4000, 1))], axis=1)
    block = block.astype(dtype)
    block[17, 3] = np.nan if writer != "python" else block[17, 3]
    block[2000, 0] = np.inf
    assert numtext.lines(block, quote=True) == python_lines(block, quote=True)


def test_the_token_definition_is_pythons():
    for x, dtype, text in [(1e-05, np.float64, "1e-05"), (0.0001, np.float64, "0.0001"), (1e16, np.float64, "1e+16"),
                           (1e15, np.float64, "1000000000000000.0"), (1e-4, np.float32, "1e-04"),
                           (1e6, np.float32, "1e+06"), (999999.94, np.float32, "999999.94"),
                           (float("nan"), np.float64, "nan"), (float("-inf"), np.float32, "-inf")]:
        assert numtext.token(x, dtype) == text
    assert numtext.token(float("inf"), np.float64, quote=True) == '"inf"'


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=BLOCKS, first=st.sampled_from([0, 1, 7, 9, 95, 999, 123456789]))
def test_numbered_rows(writer, small_pieces, case, first):
    (n, c), wide, narrow = case
    for block in (np.array(wide, dtype=np.float64).reshape(n, c), np.array(narrow, dtype=np.float32).reshape(n, c)):
        want = b"".join(f"{first + i},".encode() + line + b"\n"
                        for i, line in enumerate(python_lines(block).split(b"\n")[:-1]))
        assert numtext.lines(block, numbered_from=first) == want


def python_json_rows(block: np.ndarray) -> bytes:
    return ",\n    ".join("[" + ", ".join(python_text(v, block.dtype, True) for v in row.tolist()) + "]"
                          for row in block).encode()


def python_json_values(block: np.ndarray) -> bytes:
    return ", ".join(python_text(v, block.dtype, True) for v in block.ravel().tolist()).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=BLOCKS)
def test_json_rows_and_values(writer, small_pieces, case):
    """The JSON layouts: rows ``[a, b]`` joined by ``,\\n    ``, and values joined by ``, ``."""
    (n, c), wide, narrow = case
    for block in (np.array(wide, dtype=np.float64).reshape(n, c), np.array(narrow, dtype=np.float32).reshape(n, c)):
        assert numtext.json_rows(block) == python_json_rows(block)
        assert numtext.json_values(block) == python_json_values(block)
        assert numtext.json_values(block.ravel()) == python_json_values(block)


def significand(text: str) -> tuple[str, str, int]:
    """A number's sign, significant digits and decimal exponent, whatever its layout (``0.00001``, ``1e-5``)."""
    sign = "-" if text.startswith("-") else ""
    text = text.lstrip("-")
    mantissa, _, exp = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    point = len(whole) - (len(whole + frac) - len((whole + frac).lstrip("0")))
    return sign, digits.rstrip("0") or "0", (int(exp) if exp else 0) + point if digits else 0


ROUND_TRIP_BLOCKS = st.tuples(st.integers(1, 40), st.integers(1, 9)).flatmap(  # widths on both sides of _ROW_BY_ROW
    lambda shape: st.tuples(st.just(shape), st.lists(
        st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=64),
                  st.integers(-12, 22).flatmap(lambda k: st.floats(0.5, 9.99).map(lambda m: m * 10.0**k))),
        min_size=shape[0] * shape[1], max_size=shape[0] * shape[1])))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=ROUND_TRIP_BLOCKS, delimiter=st.sampled_from([",", "\t"]), float32=st.booleans())
def test_files_get_the_shortest_round_trip_digits(writer, monkeypatch, case, delimiter, float32):
    """What --output writes: each value's shortest digits (Python's) in the library's layout, and back exactly."""
    monkeypatch.setattr(numtext, "PIECE_VALUES", 100)  # pieces of several rows, and several pieces a block
    (c, n), values = case
    dtype = np.float32 if float32 else np.float64
    with np.errstate(over="ignore"):
        block = np.array(values, dtype=np.float64).astype(dtype).reshape(n, c)
    block[~np.isfinite(block)] = 1.0
    parts = numtext.round_trip_parts(block, delimiter.encode())
    if writer == "python":
        assert parts is None
        return
    text = b"".join(parts)
    lines = text.decode().split("\n")
    assert lines[-1] == "" and len(lines) == n + 1
    for row, line in zip(block, lines[:-1], strict=True):
        tokens = line.split(delimiter)
        assert [dtype(t) for t in tokens] == row.tolist()
        assert [significand(t) for t in tokens] == [significand(python_text(v, dtype)) for v in row.tolist()]
