"""Property-based fuzzing of every input path of ``xent compute``.

The contract (from the hardening issue): every run either succeeds (exit 0)
with the *correct* result, or exits 2 with exactly one line on stderr that
starts with ``xent: error:``; never a traceback, never exit 1 for bad input,
never a hang.

How it is checked:

* The command runs in-process (click's ``CliRunner``) with ``XENT_DEBUG=1``, so
  an unexpected exception inside xent propagates and fails the test with its
  traceback, instead of being folded into an "unexpected failure" line (which
  would also count as a failure). A run longer than ``HANG_SECONDS`` fails as a
  hang (SIGALRM, where the platform has it).
* Expected results are computed here, never taken from xent: text by a small
  reference parser written from the README's rules (UTF-8 with an optional
  BOM, LF or CRLF, blank and ``#`` lines skipped, the delimiter taken from the
  first data line, an optional header row, cells stripped and unquoted,
  numbers as Python's ``float`` reads plain ASCII decimals and the inf/nan
  words), ``.npy`` files by NumPy's own header reader and
  ``np.load(allow_pickle=False)``, and losses, probabilities and gradients by
  NumPy formulas (log-sum-exp through ``log1p``; the target class's gradient as
  ``-sum_{j != t} p_j``), compared with the JSON output to 1e-12 relative.
* When the reference says an input is invalid, xent must exit 2 naming the
  file (or option), and the row and column where the reference can tell.
* Text is read with both engines (polars, and the plain one that
  ``XENT_NO_POLARS=1`` selects) and with the default and with tiny read blocks,
  so block boundaries fall everywhere; all must agree with the reference.

Scale: ``XENT_FUZZ_SCALE=N`` runs N times as many examples, for a longer soak:
``XENT_FUZZ_SCALE=20 python -m pytest -q tests/test_fuzz_compute.py``.
Failures print a ``@reproduce_failure`` blob to replay the exact example.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import signal
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, note, settings
from hypothesis import event as _event
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra import numpy as hnp

from xentcli import sources
from xentcli.cli import cli

SCALE = float(os.environ.get("XENT_FUZZ_SCALE", "1"))


def examples(k: int) -> int:
    return max(1, int(k * SCALE))


SETTINGS: dict[str, Any] = dict(
    deadline=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

HANG_SECONDS = 30
# Warnings Python does not print by default.
SILENT_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)
RTOL = 1e-12
TINY = 1e-300  # absolute allowance for results at the bottom of the float64 range (subnormals)

try:
    import polars  # noqa: F401

    HAVE_POLARS = True
except ImportError:  # pragma: no cover - polars is an optional extra
    HAVE_POLARS = False

ENGINES = [
    pytest.param("polars", marks=pytest.mark.skipif(not HAVE_POLARS, reason="polars is not installed")),
    "plain",
]
CHUNKS = st.sampled_from([None, None, 7, 64])  # None: the default read block (the whole test file)


# --------------------------------------------------------------------------
# Running xent
# --------------------------------------------------------------------------


class Hang(BaseException):
    """Raised by the alarm: not an Exception, so nothing inside xent can swallow it."""


@contextlib.contextmanager
def reading(engine: str = "polars", chunk: int | None = None):
    """Select the text engine (``XENT_NO_POLARS``) and the read block size for one run."""
    saved_env = os.environ.get("XENT_NO_POLARS")
    saved_chunk = sources.CHUNK_BYTES
    if engine == "plain":
        os.environ["XENT_NO_POLARS"] = "1"
    else:
        os.environ.pop("XENT_NO_POLARS", None)
    sources._POLARS = None  # the engine is chosen (and cached) on first use
    if chunk:
        sources.CHUNK_BYTES = chunk
    try:
        yield
    finally:
        sources.CHUNK_BYTES = saved_chunk
        if saved_env is None:
            os.environ.pop("XENT_NO_POLARS", None)
        else:
            os.environ["XENT_NO_POLARS"] = saved_env
        sources._POLARS = None


@contextlib.contextmanager
def time_limit(seconds: int, what: str):
    if not hasattr(signal, "SIGALRM"):  # pragma: no cover - Windows
        yield
        return

    def on_alarm(signum, frame):
        raise Hang(f"{what} ran longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Run:
    argv: list[str]
    code: int
    stdout: str
    stderr: str

    @property
    def line(self) -> str:
        return self.stderr.strip("\n")

    def json(self) -> dict:
        return json.loads(self.stdout)

    def __repr__(self) -> str:
        return (f"<Run {self.argv!r}\n code={self.code}\n stdout={self.stdout[:600]!r}\n"
                f" stderr={self.stderr[:600]!r}>")


def check_contract(run: Run) -> None:
    """Exit 0 (stderr: warnings only) or exit 2 with one ``xent: error:`` line; nothing else."""
    assert "Traceback" not in run.stderr, run
    assert "unexpected failure" not in run.stderr, run
    assert run.code in (0, 2), run
    lines = run.stderr.splitlines()
    if run.code == 2:
        assert run.stdout == "", run
        assert len(lines) == 1, run
        assert lines[0].startswith("xent: error: ") and lines[0][len("xent: error: "):].strip(), run
        assert len(lines[0]) < 2000, run  # a bad cell is shown shortened, not echoed whole
    else:
        assert all(line.startswith("xent: warning: ") for line in lines), run


def xent(*args: Any, stdin: bytes | None = None, engine: str = "polars", chunk: int | None = None) -> Run:
    """Run ``xent compute ARGS`` in-process and check the contract."""
    argv = ["compute", *(str(a) for a in args)]
    env = {"XENT_DEBUG": "1", "COLUMNS": "120", "NO_COLOR": "1", "TERM": "dumb"}
    with time_limit(HANG_SECONDS, f"xent {argv!r}"), reading(engine, chunk), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # what a real run shows on stderr (pytest would swallow them)
        result = CliRunner().invoke(cli, argv, input=stdin, env=env, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # with xent's own traceback
    run = Run(argv, result.exit_code, result.stdout, result.stderr)
    # Python prints these on stderr in a real run: more lines than the contract allows.
    shown = [w for w in caught if not issubclass(w.category, SILENT_WARNINGS)]
    assert not shown, (run, [f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in shown])
    with contextlib.suppress(InvalidArgument):  # outside a hypothesis test there is nothing to note
        note(repr(run))
    check_contract(run)
    return run


def event(what: str) -> None:
    """hypothesis.event (shown by --hypothesis-show-statistics); nothing outside a hypothesis test."""
    with contextlib.suppress(InvalidArgument):
        _event(what)


def write(directory: str, name: str, data: bytes) -> str:
    path = os.path.join(directory, name)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


# --------------------------------------------------------------------------
# The reference reader (README rules, written independently of xentcli)
# --------------------------------------------------------------------------


class RefError(Exception):
    """What the reference expects xent to refuse: a kind and, where known, row and column."""

    FRAGMENTS = {
        "empty": "empty",
        "ragged": None,  # the count is checked instead
        "empty-cell": "empty",
        "not-a-number": "not a number",
        "range": "range",
        "utf8": "UTF-8",
        "utf16": "UTF-16",
        "nul": "NUL",
        "cr": "carriage return",
        "nan-logit": "NaN",
        "inf-logit": "+inf",
        "dead-row": "-inf",
        "npy": ".npy",
        "zip": "zip",
        "shape": None,
        "target": None,
    }
    NPY_DETAILS = {"pickle": "pickle", "dtype": "only real numbers", "ndim": "dimensions", "truncated": "truncated"}
    ENCODING = ("utf8", "utf16", "nul")

    def __init__(self, kind: str, row: int | None = None, column: int | None = None, detail: str | None = None):
        super().__init__(kind, row, column, detail)
        self.kind = kind
        self.row = row
        self.column = column
        self.detail = detail
        self.source: str | None = None  # "logits" or "labels", where it matters


def ref_number(cell: str) -> float | None:
    """Plain ASCII decimal numbers and the inf/nan words, as Python's float reads them (no '_')."""
    if not cell.isascii() or "_" in cell:
        return None
    try:
        return float(cell)
    except ValueError:
        return None


def ref_clean(cell: str) -> str:
    cell = cell.strip()
    if len(cell) >= 2 and cell[0] == cell[-1] and cell[0] in "\"'":
        cell = cell[1:-1].strip()
    return cell


@dataclass
class RefTable:
    values: np.ndarray  # float64, (rows, columns)
    rows: list[int]  # the row number xent should report for each row (physical line or index + 1)
    one_d: bool = False  # a 1-D .npy: rows have no column

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape  # type: ignore[return-value]


def ref_parse_lines(lines: list[str], header: str = "auto", delimiter: str | None | bool = False) -> RefTable:
    """Blank and '#' lines skipped; delimiter tab/comma/semicolon/whitespace from the first data line."""
    detected = delimiter is not False
    d = delimiter if detected else None
    header_done = header == "no"
    width = None
    rows: list[list[float]] = []
    numbers: list[int] = []
    for lineno, line in enumerate(lines, start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if "\r" in s:
            raise RefError("cr", lineno)
        if not detected:
            d = next((c for c in "\t,;" if c in s), None)
            detected = True
        cells = [ref_clean(c) for c in (s.split() if d is None else s.split(d))]
        if not header_done:
            header_done = True
            filled = [c for c in cells if c]
            if header == "yes" or (filled and all(ref_number(c) is None for c in filled)):
                continue
        if width is None:
            width = len(cells)
        elif len(cells) != width:
            raise RefError("ragged", lineno, detail=f"has {len(cells)} value")
        row = []
        for col, cell in enumerate(cells, start=1):
            if cell == "":
                raise RefError("empty-cell", lineno, col)
            v = ref_number(cell)
            if v is None:
                raise RefError("not-a-number", lineno, col)
            if math.isinf(v) and cell.lower().lstrip("+-") not in ("inf", "infinity"):
                raise RefError("range", lineno, col)
            row.append(v)
        rows.append(row)
        numbers.append(lineno)
    if not rows:
        raise RefError("empty")
    return RefTable(np.array(rows, dtype=np.float64).reshape(len(rows), width or 0), numbers)


def ref_read_text(data: bytes, header: str = "auto") -> RefTable:
    """A text file's bytes as xent must read them (README: UTF-8, optional BOM, LF or CRLF)."""
    if data.startswith(b"PK\x03\x04"):
        raise RefError("zip")  # a zip archive (.npz) is never a table of numbers: say what it is
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise RefError("utf16", 1)
    if b"\x00" in data:
        raise RefError("nul", data[: data.index(b"\x00")].count(b"\n") + 1)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RefError("utf8", data[: exc.start].count(b"\n") + 1) from None
    return ref_parse_lines(text.split("\n"), header)


def ref_read_inline(text: str) -> RefTable:
    """``--logits "r1;r2"``: rows split by ';' (or newlines), values by ',' (if any) else whitespace."""
    if not text.strip():
        raise RefError("empty")
    if text.startswith("\ufeff"):
        text = text[1:]
    return ref_parse_lines(re.split(r"[\n;]", text), "no", "," if "," in text else None)


def ref_read_npy(data: bytes) -> RefTable:
    """A .npy file by NumPy's own reader (never unpickling); 1-D is a column, 0-D one value."""
    if data.startswith(b"PK\x03\x04"):
        raise RefError("zip")
    if not data.startswith(b"\x93NUMPY"):
        raise RefError("npy")
    fp = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version in ((2, 0), (3, 0)):  # 3.0: a UTF-8 header, the same for ASCII ones
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"version {version}")
    except Exception:  # noqa: BLE001 - any header NumPy cannot read is invalid
        raise RefError("npy") from None
    if dtype.hasobject:
        raise RefError("npy", detail="pickle")
    if dtype.kind not in "biuf":
        raise RefError("npy", detail="dtype")
    if len(shape) > 2:
        raise RefError("npy", detail="ndim")
    if math.prod(shape) == 0:
        raise RefError("empty")
    if math.prod(shape) * dtype.itemsize > len(data) - fp.tell():
        raise RefError("npy", detail="truncated")
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception:  # noqa: BLE001
        raise RefError("npy") from None
    if arr.ndim > 2:
        raise RefError("npy", detail="ndim")
    if arr.size == 0:
        raise RefError("empty")
    one_d = arr.ndim == 1
    arr = arr.reshape(-1, 1) if arr.ndim < 2 else arr
    if arr.dtype.kind in "iu" and arr.dtype.itemsize == 8:
        big = [(i, j) for (i, j), v in np.ndenumerate(arr) if abs(int(v)) >= 2**53]
        if big:
            raise RefError("range", big[0][0] + 1, None if one_d else big[0][1] + 1)
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 8:
        with np.errstate(over="ignore"):
            wide = arr.astype(np.float64)
        over = np.isinf(wide) & np.isfinite(arr)
        if over.any():
            i, j = (int(v) for v in np.argwhere(over)[0])
            raise RefError("range", i + 1, None if one_d else j + 1)
    values = arr.astype(np.float64)
    return RefTable(values, list(range(1, values.shape[0] + 1)), one_d=one_d)


def ref_logits(tab: RefTable, binary: bool = False) -> np.ndarray:
    """Logits may be finite or -inf; NaN and +inf are errors, and a row of only -inf (not --binary)."""
    z = tab.values
    for kind, mask in (("nan-logit", np.isnan(z)), ("inf-logit", np.isposinf(z))):
        if mask.any():
            i, j = (int(v) for v in np.argwhere(mask)[0])
            raise RefError(kind, tab.rows[i], None if tab.one_d else j + 1)
    if not binary:
        dead = np.isneginf(z).all(axis=1)
        if dead.any():
            raise RefError("dead-row", tab.rows[int(np.argmax(dead))])
    return z


@dataclass
class RefTargets:
    kind: str  # index, prob, binary
    values: np.ndarray
    pending: RefError | None = None  # a bad value: reported after the logits' values are checked


def ref_targets(tab: RefTable, n: int, c: int, mode: str = "auto", *, binary: bool = False,
                ignore_index: int = -100) -> RefTargets:
    """README: N values (a column or a single row) are class indices, an N x C table is target rows."""
    r, k = tab.shape
    vals = tab.values

    def where_grid(i: int, j: int) -> tuple[int, int | None]:
        return tab.rows[i], j + 1

    def where_flat(p: int) -> tuple[int, int | None]:
        if r == 1 and not tab.one_d:
            return tab.rows[0], p + 1
        return tab.rows[p], None if tab.one_d else 1

    if binary:
        if (r, k) == (n, c):
            y, flat = vals, False
        elif (n == 1 or c == 1) and r * k == n * c and (r == 1 or k == 1):
            y, flat = vals.reshape(n, c), True
        else:
            raise RefError("shape")
        bad = ~((y >= 0) & (y <= 1))
        if bad.any():
            i, j = (int(v) for v in np.argwhere(bad)[0])
            return RefTargets("binary", y, RefError("target", *(where_flat(i * c + j) if flat else where_grid(i, j)),
                                                    detail="outside [0, 1]"))
        return RefTargets("binary", y)
    is_grid = (r, k) == (n, c)
    is_vector = (k == 1 and r == n) or (r == 1 and k == n)
    if mode == "prob" or (mode == "auto" and is_grid and (c > 1 or not is_vector)):
        if not is_grid:
            raise RefError("shape")
        for mask in (~np.isfinite(vals), vals < 0):
            if mask.any():
                i, j = (int(v) for v in np.argwhere(mask)[0])
                return RefTargets("prob", vals, RefError("target", *where_grid(i, j)))
        return RefTargets("prob", vals)
    if not is_vector:
        raise RefError("shape")
    t = vals.reshape(n)
    for mask, what in ((~np.isfinite(t), "not a class index"),
                       (np.isfinite(t) & (t != np.floor(t)), "not a whole number"),
                       ((t != ignore_index) & ((t < 0) | (t >= c)), "class index")):
        if mask.any():
            return RefTargets("index", t, RefError("target", *where_flat(int(np.argmax(mask))), detail=what))
    return RefTargets("index", t)


def ref_pair(z_tab: RefTable, y_tab: RefTable, mode: str = "auto", *, binary: bool = False,
             ignore_index: int = -100) -> tuple[np.ndarray, RefTargets]:
    """Logits and targets, refused in xent's order: the labels' shape, the logits' values, the labels' values.

    A refusal is a RefError whose ``source`` is "logits" or "labels".
    """
    n, c = z_tab.shape
    try:
        targets = ref_targets(y_tab, n, c, mode, binary=binary, ignore_index=ignore_index)
    except RefError as err:
        err.source = "labels"
        raise
    try:
        z = ref_logits(z_tab, binary)
    except RefError as err:
        err.source = "logits"
        raise
    if targets.pending is not None:
        targets.pending.source = "labels"
        raise targets.pending
    return z, targets


# --------------------------------------------------------------------------
# The reference numbers (NumPy, from the README's formulas)
# --------------------------------------------------------------------------


@dataclass
class RefResult:
    loss: float | None
    losses: np.ndarray
    probs: np.ndarray
    grad: np.ndarray
    denominator: float | None
    grad_atol: np.ndarray | float = 0.0
    loss_rtol: float = RTOL
    rtol: float = RTOL
    tiny: float = 0.0  # absolute allowance for results rounded to a narrower dtype's subnormals
    warnings_expected: list[str] = field(default_factory=list)


def exact_total(values: Any, denom: float | None = None) -> float:
    """The correctly rounded sum (divided by ``denom``); math.fsum raises where it overflows."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(v).all():
        total = float(np.sum(v))
        return total if denom is None else total / denom
    try:
        total = math.fsum(v)
        return total if denom is None else total / denom
    except OverflowError:  # beyond the float64 range: scale by 2**-64 (exact) and back
        scaled = math.fsum(np.ldexp(v, -64))
        if denom is not None:
            scaled = scaled / denom
        try:
            return math.ldexp(scaled, 64)
        except OverflowError:
            return math.copysign(math.inf, scaled)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def ref_cross_entropy(z: np.ndarray, targets: RefTargets, *, weight=None, ignore_index: int = -100,
                      eps: float = 0.0, reduction: str = "mean") -> RefResult:
    """l = sum_c a_c (m - z_c) + s log S, p = e/S, grad = p s - a (README, Formulas)."""
    n, c = z.shape
    w = np.ones(c) if weight is None else np.asarray(weight, dtype=np.float64)
    if reduction == "mean" and weight is not None and targets.kind == "index":
        # Scaling every weight by 2**-k is exact and scales the weighted sum the same way:
        # evaluate the mean at weights near 1, so tiny (subnormal) or huge weights lose nothing.
        # (Probability rows are divided by N: there the scaling would only push w*y into subnormals.)
        if targets.kind == "index" and eps == 0.0:
            t = targets.values.astype(np.int64)
            used = w[t[t != ignore_index]]
        else:
            used = w  # smoothing and probability rows use every class's weight
        top = float(used.max(initial=0.0))
        k = math.frexp(top)[1] if 0 < top < math.inf else 0
        def plain_denominator() -> float:
            if targets.kind != "index":
                return float(n)
            t = targets.values.astype(np.int64)
            return exact_total(w[t[t != ignore_index]])

        if abs(k) > 60:
            plain = ref_cross_entropy(z, targets, weight=w, ignore_index=ignore_index, eps=eps, reduction="sum")
            with np.errstate(over="ignore"):
                scaled = ref_cross_entropy(z, targets, weight=np.ldexp(w, -k), ignore_index=ignore_index, eps=eps,
                                           reduction="mean")
            back = 0 if targets.kind == "index" else k  # the index mean divides by the weights as well
            with np.errstate(over="ignore"):
                return RefResult(math.ldexp(scaled.loss, back) if math.isfinite(scaled.loss) else scaled.loss,
                                 plain.losses, scaled.probs, np.ldexp(scaled.grad, back),
                                 plain_denominator(),
                                 np.ldexp(np.asarray(scaled.grad_atol, dtype=np.float64), back))
    m = z.max(axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        d = z - m[:, None]
        e = np.exp(d)
    k = z.argmax(axis=1)
    rest = e.copy()
    rest[np.arange(n), k] = 0.0
    r = rest.sum(axis=1)
    log_s = np.log1p(r)
    p = e / (1.0 + r)[:, None]
    if targets.kind == "index":
        t = targets.values.astype(np.int64)
        valid = t != ignore_index
        y = np.zeros((n, c))
        y[np.nonzero(valid)[0], t[valid]] = 1.0
    else:
        y = targets.values
        valid = np.ones(n, dtype=bool)
    with np.errstate(invalid="ignore", over="ignore"):
        a = np.where((y > 0) | (eps > 0), w * ((1.0 - eps) * y + eps / c), 0.0)  # an unused weight may be inf
    a[~valid] = 0.0
    s = a.sum(axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        terms = np.where(a > 0, a * -d, 0.0)
    losses = np.array([exact_total(row) for row in terms]) + s * log_s
    if targets.kind == "index" and eps == 0.0:
        grad = p * s[:, None]
        for i in np.nonzero(valid)[0]:
            grad[i, t[i]] = -s[i] * math.fsum(np.delete(p[i], t[i]))
        atol = 0.0
    else:
        grad = p * s[:, None] - a
        atol = 8 * 2.0**-52 * (c + 4) * (np.abs(p * s[:, None]) + np.abs(a))
    if reduction == "mean":
        denom = float(math.fsum(w[t[valid]])) if targets.kind == "index" else float(n)
    else:
        denom = None
    if reduction == "none":
        loss = None
    elif reduction == "sum":
        loss = exact_total(losses)
    elif denom == 0:
        loss = math.nan
        grad = np.zeros_like(grad)
    else:
        loss = exact_total(losses, denom)
        with np.errstate(over="ignore"):  # a tiny (subnormal) total weight
            grad = grad / denom
            atol = atol / denom
    return RefResult(loss, losses, p, grad, denom, atol)


def ref_binary_cross_entropy(x: np.ndarray, y: np.ndarray, *, weight=None, pos_weight=None,
                             reduction: str = "mean") -> RefResult:
    """l = w [q y softplus(-x) + (1 - y) softplus(x)], grad = w [(1 - y) sig(x) - q y sig(-x)]."""
    n, c = x.shape
    w = np.broadcast_to(np.ones(1) if weight is None else np.asarray(weight, dtype=np.float64), (c,))
    q = np.broadcast_to(np.ones(1) if pos_weight is None else np.asarray(pos_weight, dtype=np.float64), (c,))
    with np.errstate(over="ignore", invalid="ignore"):
        sp_pos = np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))  # softplus(x)
        sp_neg = np.maximum(-x, 0) + np.log1p(np.exp(-np.abs(x)))  # softplus(-x)
        pos = w * (q * y)
        neg = w * (1.0 - y)
        losses = np.where(pos > 0, pos * sp_neg, 0.0) + np.where(neg > 0, neg * sp_pos, 0.0)
        sig, sig_neg = _sigmoid(x), _sigmoid(-x)
        grad = neg * sig - pos * sig_neg
    frac = (y != 0) & (y != 1)
    atol = np.where(frac, 8 * 2.0**-52 * (np.abs(neg * sig) + np.abs(pos * sig_neg)), 0.0)
    denom = float(n * c) if reduction == "mean" else None
    loss = None if reduction == "none" else exact_total(losses, denom)
    if denom:
        grad, atol = grad / denom, atol / denom
    return RefResult(loss, losses, sig, grad, denom, atol)


def numbers(v: Any) -> np.ndarray:
    """JSON numbers (non-finite ones are the strings "inf", "-inf", "nan") as a float array."""
    return np.asarray(v if not isinstance(v, str) else float(v), dtype=object).astype(np.float64)


def assert_close(name: str, got: Any, ref: Any, rtol: float = RTOL, atol: Any = 0.0) -> None:
    g = numbers(got)
    r = np.asarray(ref, dtype=np.float64)
    assert g.shape == r.shape, f"{name}: shape {g.shape}, expected {r.shape}"
    with np.errstate(invalid="ignore", over="ignore"):
        ok = (g == r) | (np.isnan(g) & np.isnan(r)) | (np.abs(g - r) <= rtol * np.abs(r) + atol + TINY)
    if not ok.all():
        idx = tuple(int(i) for i in np.argwhere(~ok)[0]) if g.ndim else ()
        raise AssertionError(f"{name}{list(idx)}: got {g[idx]!r}, expected {r[idx]!r} (rtol {rtol:g})")


def check_result(run: Run, ref: RefResult, *, n: int, c: int, kind: str) -> dict:
    """xent's JSON against the reference numbers."""
    assert run.code == 0, run
    event(f"computed ({kind} targets)")
    out = run.json()
    assert (out["n"], out["classes"], out["targets"]) == (n, c, kind), out
    if ref.loss is None:
        assert out["loss"] is None
    elif (ref.denominator and math.isfinite(ref.loss) and np.isfinite(ref.losses).all()
          and math.isinf(exact_total(ref.losses))):
        event("skipped: a finite mean of finite losses whose sum overflows (test_mean_of_huge_losses)")
    else:
        assert_close("loss", out["loss"], ref.loss, ref.loss_rtol, ref.tiny)
    assert_close("losses", out["losses"], ref.losses, ref.loss_rtol, ref.tiny)
    assert_close("probs", out["probs"], ref.probs, ref.rtol, ref.tiny)
    assert_close("grad", out["grad"], ref.grad, ref.rtol, ref.grad_atol + ref.tiny)
    if ref.denominator is None:
        assert out["denominator"] is None
    else:
        assert_close("denominator", out["denominator"], ref.denominator)
    # README: a non-finite number in the output comes with a warning that explains it.
    # (Only per-sample values here: a sum that overflows gets no warning; see the report.)
    flat = [*np.ravel(out["losses"]).tolist(), *np.ravel(out["grad"]).tolist()]
    if any(isinstance(v, str) for v in flat):
        assert out["warnings"] and "xent: warning:" in run.stderr, run
    return out


def expect_error(run: Run, source: str, err: RefError) -> str:
    """Exit 2 with one line naming ``source``, and the row/column/kind the reference found."""
    assert run.code == 2, (run, err)
    event(f"refused ({err.kind}{': ' + err.detail if err.detail and err.kind == 'npy' else ''})")
    line = run.line
    assert f"{source}:" in line, (line, err)
    if err.kind in RefError.ENCODING:
        # Text is decoded in blocks of lines: a row above the bad bytes may be reported first.
        assert any(w in line for w in ("UTF-8", "UTF-16", "NUL")) or re.search(r"\brow \d+\b", line), (line, err)
        return line
    if err.row is not None:
        assert re.search(rf"\brow {err.row}\b", line), (line, err)
    if err.column is not None:
        assert re.search(rf"\bcolumn {err.column}\b", line), (line, err)
    fragment = RefError.FRAGMENTS.get(err.kind)
    if err.kind == "npy" and err.detail:
        fragment = RefError.NPY_DETAILS[err.detail]
    if fragment:
        assert fragment in line, (line, err)
    if err.detail and err.kind in ("ragged", "target"):
        assert err.detail in line, (line, err)
    return line


# --------------------------------------------------------------------------
# Strategies: tokens, cells, lines, files
# --------------------------------------------------------------------------

NUMBER_WORDS = [
    "0", "-0", "+0", "1", "-1", "+1", "007", ".5", "5.", "-.5", "+.5e-3", "1e3", "1E-3", "1e+05", "2.5E+2",
    "1e308", "-1e308", "1.7976931348623157e308", "-1.7976931348623157e308", "1e-320", "4.9e-324", "1e-400",
    "123456789012345678901234567890", "0.1", "-2.5", "3.0000000000000004",
]
SPECIAL_WORDS = ["inf", "-inf", "+inf", "Inf", "-INF", "infinity", "-Infinity", "nan", "NaN", "-nan", "+NAN",
                 "1e309", "-1e309", "1e999"]
NOT_NUMBERS = [
    "1_000", "0x10", "0b1", "0o7", "1e", "e5", ".", "-", "+", "--1", "+-1", "1.2.3", "abc", "x", "1e5.5",
    "\u0661\u0662", "\uff11", "\u00bd", "\u221e", "nan(1)", "infinit", "inff", "True", "1j", "1d3", "1f", "$1",
    "1%", "e", "E", "0..1", "1e--2", "\u2167", "\U0001d7d9", "1\u00a02", "\u20131", "2\u00b3",
]
FORBIDDEN_IN_TOKENS = set(",;\t\"'\n\r#\x00")
JUNK_TOKENS = st.text(
    st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"),
                  blacklist_characters="".join(FORBIDDEN_IN_TOKENS)),
    min_size=1, max_size=4,
)


def _float_text(x: float, style: int) -> str:
    return (repr(x), f"{x:.6e}", f"{x:.3f}", f"{x:g}", f"{x:E}")[style]


FINITE_NUMBER = st.one_of(
    st.sampled_from(NUMBER_WORDS),
    st.integers(-(10**6), 10**6).map(str),
    st.builds(_float_text, st.floats(allow_nan=False, allow_infinity=False), st.integers(0, 4)),
    st.builds(_float_text, st.floats(-50, 50), st.integers(0, 4)),
)
LOGIT_CELL = st.one_of(*([FINITE_NUMBER] * 6), st.sampled_from(SPECIAL_WORDS), st.just("-inf"),
                       st.sampled_from(NOT_NUMBERS), JUNK_TOKENS, st.just(""))
PAD = st.sampled_from(["", "", "", "", " ", "  ", "\u00a0", "\t"])  # a tab can change the detected delimiter
BLANK = st.sampled_from(["", " ", "\t", "  \t", "\u00a0", "\u3000"])
EOL = st.sampled_from(["\n", "\n", "\r\n"])
COMMENT = st.builds(
    lambda pad, text: pad + "#" + text,
    st.sampled_from(["", " "]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x00"), max_size=10),
)
CLEAN_WORD = st.text(st.sampled_from("abxyz\u00e9\u03bb_"), min_size=1, max_size=6)
LOGIT_CLEAN = st.one_of(*([FINITE_NUMBER] * 12), st.just("-inf"))
HEADER_WORD = st.text(st.sampled_from("abxyz\u00e9\u00df\u03bb\u65e5_-0123456789."), min_size=1, max_size=6)


@st.composite
def cell_text(draw, token: st.SearchStrategy[str], spaced: bool) -> str:
    tok = draw(token)
    q = draw(st.sampled_from(["", "", "", '"', "'"]))
    if not spaced:
        return q + tok + q
    return draw(PAD) + q + tok + q + draw(PAD)


@st.composite
def text_file(draw, cell: st.SearchStrategy[str], rows: int | None = None, width: int | None = None,
              header: bool | None = None, clean: st.SearchStrategy[str] | None = None) -> bytes:
    """A delimited text table with all the README's allowances and some mistakes.

    With ``clean`` (a strategy of good cells), about half the files use only those
    cells and none of the structural mistakes, so that results get checked often.
    """
    tidy = clean is not None and draw(st.booleans())
    if tidy:
        cell = clean  # type: ignore[assignment]
    rows = draw(st.integers(1, 6)) if rows is None else rows
    width = draw(st.integers(1, 5)) if width is None else width
    delim = draw(st.sampled_from([",", ",", "\t", ";", " "]))

    def join(cells: list[str], d: str) -> str:
        if d == " ":
            return "".join(c + draw(st.sampled_from([" ", "  ", " \u00a0"])) for c in cells[:-1]) + cells[-1]
        return d.join(cells)

    lines: list[str] = []

    def filler() -> None:
        for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 3)) == 0 else 0):
            lines.append(draw(st.one_of(BLANK, COMMENT)))

    filler()
    if header if header is not None else draw(st.integers(0, 3)) == 0:
        words = [draw(cell_text(HEADER_WORD if not tidy else CLEAN_WORD, delim != " ")) for _ in range(width)]
        lines.append(join(words, delim))
    for _ in range(rows):
        filler()
        w = width
        if not tidy and draw(st.integers(0, 14)) == 0:  # ragged
            w = max(1, width + draw(st.sampled_from([-1, 1])))
        d = delim
        if not tidy and draw(st.integers(0, 14)) == 0:  # a row with a different delimiter
            d = draw(st.sampled_from([",", "\t", ";", " "]))
        lines.append(join([draw(cell_text(cell, d != " ")) for _ in range(w)], d))
    filler()
    text = "".join(line + draw(EOL) for line in lines)
    if draw(st.booleans()) and text.endswith("\n"):
        text = text.rstrip("\r\n") if draw(st.booleans()) else text + draw(st.one_of(BLANK, EOL))
    encodings = ["utf-8"] * 6 + ["utf-8-sig", "utf-8-sig"] + ([] if tidy else ["utf-16", "latin-1"])
    encoding = draw(st.sampled_from(encodings))
    try:
        return text.encode(encoding)
    except UnicodeEncodeError:
        return text.encode("utf-8")


# Random bytes that are often almost a table: tokens glued with separators, quotes, BOMs, control bytes.
SOUP_PIECES = st.one_of(
    FINITE_NUMBER.map(str.encode),
    st.sampled_from(SPECIAL_WORDS + NOT_NUMBERS).map(lambda s: s.encode("utf-8")),
    st.sampled_from([b",", b",", b";", b"\t", b" ", b"\n", b"\n", b"\r\n", b"\r", b'"', b"'", b"#", b"",
                     b"\xef\xbb\xbf", b"\xff\xfe", b"\x00", b"\x0b", b"\x0c", b"\x1c", b"\xc2\x85",
                     b"\xe2\x80\xa8", b"\xff", b"\xe9", b"\xc3", b"a,b,c\n", b"\"1,2\"", b'""', b"\\"]),
    st.binary(max_size=3),
)
SOUP = st.one_of(
    st.lists(SOUP_PIECES, max_size=40).map(b"".join),
    st.binary(max_size=60),
)


def csv_of(values: np.ndarray) -> bytes:
    """Floats as text with repr (round-trip digits), independent of xent's writers."""
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in values).encode()


LOGIT_VALUES = st.floats(-30, 30, allow_subnormal=False)


@st.composite
def logit_matrix(draw, rows: int | None = None, classes: int | None = None) -> np.ndarray:
    n = draw(st.integers(1, 5)) if rows is None else rows
    c = draw(st.integers(1, 5)) if classes is None else classes
    return np.array(draw(st.lists(st.lists(LOGIT_VALUES, min_size=c, max_size=c), min_size=n, max_size=n)))


def expected_outcome(run: Run, logits_name: str, labels_name: str, z_of, y_of, compute) -> None:
    """Drive the reference in xent's order: logits read, labels read, targets arranged, then numbers."""
    try:
        z_tab = z_of()
    except RefError as err:
        expect_error(run, logits_name, err)
        return
    try:
        y_tab = y_of()
    except RefError as err:
        expect_error(run, labels_name, err)
        return
    compute(z_tab, y_tab)


# --------------------------------------------------------------------------
# 1. Text files: logits
# --------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=examples(100), **SETTINGS)
@given(data=st.data())
def test_text_logits_file(engine, data):
    blob = data.draw(text_file(LOGIT_CELL, clean=LOGIT_CLEAN), label="logits bytes")
    header = data.draw(st.sampled_from(["auto", "auto", "auto", "yes", "no"]), label="--header")
    chunk = data.draw(CHUNKS, label="read block")
    try:
        n, c = ref_read_text(blob, header).shape
        t = data.draw(st.lists(st.one_of(st.integers(0, c - 1), st.just(-100)), min_size=n, max_size=n), label="t")
    except RefError:
        t = [0]
    labels = ("target\n" if header != "no" else "") + "".join(f"{v}\n" for v in t)
    with tempfile.TemporaryDirectory() as d:
        zp = write(d, "logits.csv", blob)
        yp = write(d, "labels.csv", labels.encode())
        run = xent(zp, yp, "--format", "json", "--header", header, engine=engine, chunk=chunk)

        def compute(z_tab, y_tab):
            try:
                z, targets = ref_pair(z_tab, y_tab)
            except RefError as err:
                expect_error(run, zp if err.source == "logits" else yp, err)
                return
            check_result(run, ref_cross_entropy(z, targets), n=z.shape[0], c=z.shape[1], kind="index")

        expected_outcome(run, zp, yp, lambda: ref_read_text(blob, header),
                         lambda: ref_read_text(labels.encode(), header), compute)


# --------------------------------------------------------------------------
# 1b. Text files: labels (class indices as a column or a row, probability rows, wrong shapes)
# --------------------------------------------------------------------------

INDEX_WORDS = st.one_of(st.integers(-3, 7).map(str), st.sampled_from(["-100", "1.0", "1e0", "2.", "+1", "-0", "0.5",
                                                                        "1e-320", "9007199254740993"]))
PROB_WORDS = st.one_of(st.sampled_from(["0", "1", "0.5", "0.25", ".75", "1e-300", "0.0", "1.0", "2"]),
                       st.floats(0, 1).map(repr))
LABEL_CELL = st.one_of(*([INDEX_WORDS] * 4), *([PROB_WORDS] * 3), st.sampled_from(SPECIAL_WORDS),
                       st.sampled_from(NOT_NUMBERS), st.just(""), st.just("-0.5"))


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=examples(80), **SETTINGS)
@given(data=st.data())
def test_text_labels_file(engine, data):
    z = data.draw(logit_matrix(), label="logits")
    n, c = z.shape
    shape = data.draw(st.sampled_from([(n, 1), (1, n), (n, c), (n, c), None]), label="labels shape")
    rows, width = shape if shape else (None, None)
    if shape == (n, c) and (c > 1 or data.draw(st.booleans())):
        clean = PROB_WORDS
    else:
        clean = st.one_of(*([st.integers(0, c - 1).map(str)] * 6), st.sampled_from(["-100", "0.0", "0e5", "+0"]))
    blob = data.draw(text_file(LABEL_CELL, rows, width, clean=clean), label="labels bytes")
    mode = data.draw(st.sampled_from(["auto", "auto", "index", "prob"]), label="--targets")
    chunk = data.draw(CHUNKS, label="read block")
    with tempfile.TemporaryDirectory() as d:
        zp = write(d, "logits.csv", csv_of(z))
        yp = write(d, "labels.csv", blob)
        run = xent(zp, yp, "--format", "json", "--targets", mode, engine=engine, chunk=chunk)

        def compute(z_tab, y_tab):
            try:
                _, targets = ref_pair(z_tab, y_tab, mode)
            except RefError as err:
                expect_error(run, zp if err.source == "logits" else yp, err)
                return
            check_result(run, ref_cross_entropy(z, targets), n=n, c=c, kind=targets.kind)
            if targets.kind == "prob":
                sums = targets.values.sum(axis=1)
                if (np.abs(sums - 1) > 1e-6).any():
                    assert "sum to 1" in run.stderr, run

        expected_outcome(run, zp, yp, lambda: ref_read_text(csv_of(z)), lambda: ref_read_text(blob), compute)


# --------------------------------------------------------------------------
# 1c. Random bytes and token soup: the contract, the reference, and both engines agree
# --------------------------------------------------------------------------


@settings(max_examples=examples(120), **SETTINGS)
@given(blob=SOUP, as_labels=st.booleans())
def test_text_random_bytes(blob, as_labels):
    with tempfile.TemporaryDirectory() as d:
        good_z = b"2,1,0.1\n0.1,2,1.9\n"
        good_y = b"1\n0\n"
        zp = write(d, "logits.csv", good_z if as_labels else blob)
        yp = write(d, "labels.csv", blob if as_labels else good_y)
        runs = {(engine, chunk): xent(zp, yp, "--format", "json", engine=engine, chunk=chunk)
                for engine in (["polars", "plain"] if HAVE_POLARS else ["plain"]) for chunk in (None, 5)}
        first = runs["plain", None]
        for (engine, chunk), other in runs.items():
            assert (other.code, other.stdout) == (first.code, first.stdout), (first, other)
            if first.code == 2:
                # The same message from either engine; with other read blocks the same input is named
                # (bytes are decoded a block at a time, so an encoding problem further down may come first).
                assert other.line == runs["plain", chunk].line, (runs["plain", chunk], other)
                assert other.line.split(": ")[1] == first.line.split(": ")[1], (first, other)
        if b'"' in blob:
            return  # quoted cells: csv quoting rules; the contract and engine agreement are what we check

        def compute(z_tab, y_tab):
            try:
                z, targets = ref_pair(z_tab, y_tab)
            except RefError as err:
                expect_error(first, zp if err.source == "logits" else yp, err)
                return
            check_result(first, ref_cross_entropy(z, targets), n=z.shape[0], c=z.shape[1], kind=targets.kind)

        def read(data: bytes) -> RefTable:
            return ref_read_npy(data) if data.startswith(b"\x93NUMPY") else ref_read_text(data)

        expected_outcome(first, zp, yp, lambda: read(good_z if as_labels else blob),
                         lambda: read(blob if as_labels else good_y), compute)


# --------------------------------------------------------------------------
# 2. .npy files
# --------------------------------------------------------------------------

REAL_DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
               np.float16, np.float32, np.float64, np.longdouble]
OTHER_DTYPES = [np.complex64, np.complex128, "U3", "S3", "M8[D]", "m8[s]",
                np.dtype([("a", "<i4"), ("b", "<f8")]), np.dtype([("a", "<f8", (2,))])]


def npy_bytes(arr: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buf = io.BytesIO()
    if version is None:
        np.save(buf, arr, allow_pickle=True)
    else:
        np.lib.format.write_array(buf, arr, version=version, allow_pickle=True)
    return buf.getvalue()


@st.composite
def npy_array(draw) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(REAL_DTYPES * 3 + OTHER_DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
    if dtype.kind == "f" and draw(st.booleans()):
        elements = st.floats(-40, 40, width=min(64, dtype.itemsize * 8)) if dtype.itemsize <= 8 else st.floats(-40, 40)
        arr = draw(hnp.arrays(dtype, shape, elements=elements))
    elif dtype.kind in "iu" and draw(st.booleans()):
        arr = draw(hnp.arrays(dtype, shape, elements=st.integers(0, 3)))
    else:
        arr = draw(hnp.arrays(dtype, shape))
    if draw(st.booleans()) and arr.ndim >= 2:
        arr = np.asfortranarray(arr)
    if draw(st.booleans()) and arr.dtype.itemsize > 1 and arr.dtype.kind in "iufc":
        arr = arr.astype(arr.dtype.newbyteorder(">"))
    return arr


@st.composite
def npy_mutation(draw, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["none", "none", "truncate", "header", "header", "junk", "append", "magic", "npz"]))
    if kind == "npz":  # the array inside a .npz archive (a zip file), as np.savez writes it
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("arr_0.npy", data)
        return buf.getvalue()
    if kind == "truncate":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if kind == "header":
        head = 10 + int.from_bytes(data[8:10], "little") if len(data) >= 10 else len(data)
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(6, max(6, min(head, len(out)) - 1)))
            if i < len(out):
                out[i] = draw(st.sampled_from([0, 0x7B, 0x7D, 0x28, 0x29, 0x27, 0x2C, 0x3A, 0x20, 0x39, 0x0A]
                                              + list(range(256))))
        return bytes(out)
    if kind == "junk":
        return b"\x93NUMPY" + draw(st.binary(max_size=80))
    if kind == "append":
        return data + draw(st.binary(min_size=1, max_size=20))
    if kind == "magic":
        return b"\x93NUMPY" + draw(st.sampled_from([b"\x01\x00", b"\x02\x00", b"\x03\x00", b"\x09\x09"])) + data[8:]
    return data


@settings(max_examples=examples(150), **SETTINGS)
@given(data=st.data())
def test_npy_logits(data):
    arr = data.draw(npy_array(), label="array")
    version = data.draw(st.sampled_from([None, (1, 0), (2, 0), (3, 0)]), label="npy version")
    blob = data.draw(npy_mutation(npy_bytes(arr, version)), label="npy bytes")
    name = data.draw(st.sampled_from(["logits.npy", "logits.npy", "logits.csv", "logits"]), label="name")
    try:
        tab = ref_read_npy(blob)
        n = tab.shape[0]
        c = tab.shape[1]
        t = data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n), label="t")
    except RefError:
        t = [0]
    with tempfile.TemporaryDirectory() as d:
        zp = write(d, name, blob)
        yp = write(d, "labels.csv", "".join(f"{v}\n" for v in t).encode())
        run = xent(zp, yp, "--format", "json")

        def compute(z_tab, y_tab):
            try:
                z, targets = ref_pair(z_tab, y_tab)
            except RefError as err:
                expect_error(run, zp if err.source == "logits" else yp, err)
                return
            check_result(run, ref_cross_entropy(z, targets), n=z.shape[0], c=z.shape[1], kind="index")

        def read_z():
            if not blob.startswith((b"\x93NUMPY", b"PK\x03\x04")) and not name.endswith(".npy"):
                return ref_read_text(blob)  # not a .npy by content or by name: text
            return ref_read_npy(blob)

        expected_outcome(run, zp, yp, read_z, lambda: ref_read_text("".join(f"{v}\n" for v in t).encode()), compute)


@settings(max_examples=examples(60), **SETTINGS)
@given(data=st.data())
def test_npy_labels(data):
    z = data.draw(logit_matrix(), label="logits")
    n, c = z.shape
    dtype = data.draw(st.sampled_from([np.bool_, np.int8, np.int64, np.uint64, np.float16, np.float32, np.float64,
                                       np.longdouble, np.complex64, "U1"]), label="dtype")
    shape = data.draw(st.sampled_from([(n,), (n, 1), (1, n), (n, c), (), (n, c, 1), (0,)]), label="shape")
    small = st.integers(-1 if np.dtype(dtype).kind == "i" else 0, c) if np.dtype(dtype).kind in "iu" else None
    arr = data.draw(hnp.arrays(dtype, shape, elements=small), label="labels")
    if data.draw(st.booleans()) and np.dtype(dtype).itemsize > 1 and np.dtype(dtype).kind in "iufc":
        arr = arr.astype(arr.dtype.newbyteorder(">"))
    blob = npy_bytes(arr)
    binary = data.draw(st.booleans(), label="--binary")
    with tempfile.TemporaryDirectory() as d:
        zp = write(d, "logits.csv", csv_of(z))
        yp = write(d, "labels.npy", blob)
        run = xent(zp, yp, "--format", "json", *(["--binary"] if binary else []))

        def compute(z_tab, y_tab):
            try:
                _, targets = ref_pair(z_tab, y_tab, binary=binary)
            except RefError as err:
                expect_error(run, zp if err.source == "logits" else yp, err)
                return
            if binary:
                check_result(run, ref_binary_cross_entropy(z, targets.values), n=n, c=c, kind="binary")
            else:
                check_result(run, ref_cross_entropy(z, targets), n=n, c=c, kind=targets.kind)

        expected_outcome(run, zp, yp, lambda: ref_read_text(csv_of(z)), lambda: ref_read_npy(blob), compute)


UNPICKLED: list[str] = []


def _mark_unpickled(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class Booby:
    """Unpickling this object calls ``_mark_unpickled``: xent must never do it."""

    def __reduce__(self):
        return (_mark_unpickled, ("unpickled!",))


@settings(max_examples=examples(25), **SETTINGS)
@given(items=st.lists(st.one_of(st.integers(), st.text(max_size=3), st.none(), st.just(Booby())), min_size=1,
                      max_size=6), stdin=st.booleans(), name=st.sampled_from(["z.npy", "z.csv"]))
def test_npy_objects_are_refused_and_never_unpickled(items, stdin, name):
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    blob = npy_bytes(np.append(arr, Booby()))
    UNPICKLED.clear()
    with tempfile.TemporaryDirectory() as d:
        yp = write(d, "y.csv", b"0\n")
        if stdin:
            run = xent("-", yp, stdin=blob)
            source = "<stdin>"
        else:
            source = write(d, name, blob)
            run = xent(source, yp)
    assert UNPICKLED == []
    line = expect_error(run, source, RefError("npy"))
    assert "pickle" in line or "object" in line.lower(), line


# --------------------------------------------------------------------------
# 3. Inline --logits / --labels
# --------------------------------------------------------------------------

INLINE_CHARS = st.one_of(
    st.sampled_from(list("0123456789.,;-+eE \t\ninfaN#'") + ["1", "2", ",", ";", "\r", "\"", "\u00a0", "\u0661"]),
    st.characters(blacklist_categories=("Cs",)),
)


@st.composite
def inline_rows(draw) -> str:
    """Rows of number-ish tokens joined by ',' and ';' with spaces, often valid."""
    rows = draw(st.integers(1, 4))
    width = draw(st.integers(1, 4))
    parts = []
    for _ in range(rows):
        w = width if draw(st.integers(0, 9)) else draw(st.integers(1, 5))
        cells = [draw(PAD) + draw(st.one_of(*([FINITE_NUMBER] * 5), st.sampled_from(SPECIAL_WORDS + NOT_NUMBERS)))
                 + draw(PAD) for _ in range(w)]
        parts.append(draw(st.sampled_from([",", ", ", " ,"])).join(cells) if width > 1 or w > 1 else cells[0])
    seps = [draw(st.sampled_from([";", ";", " ; ", "\n", ";;", ";\n"])) for _ in parts]
    return "".join(p + s for p, s in zip(parts, seps))[: -1 if draw(st.booleans()) else None]


@settings(max_examples=examples(150), **SETTINGS)
@given(data=st.data())
def test_inline_logits_and_labels(data):
    logits = data.draw(st.one_of(inline_rows(), st.text(INLINE_CHARS, max_size=30)), label="--logits")
    try:
        tab = ref_read_inline(logits)
        n, c = tab.shape
        labels = data.draw(st.one_of(
            st.lists(st.integers(0, c - 1), min_size=n, max_size=n).map(lambda t: ",".join(map(str, t))),
            st.text(INLINE_CHARS, max_size=12),
        ), label="--labels")
    except RefError:
        labels = data.draw(st.one_of(st.just("0"), st.text(INLINE_CHARS, max_size=12)), label="--labels")
    run = xent(f"--logits={logits}", f"--labels={labels}", "--format", "json")
    if '"' in logits + labels:
        return  # csv quoting: only the contract is checked

    def compute(z_tab, y_tab):
        try:
            z, targets = ref_pair(z_tab, y_tab)
        except RefError as err:
            expect_error(run, "--logits" if err.source == "logits" else "--labels", err)
            return
        check_result(run, ref_cross_entropy(z, targets), n=z.shape[0], c=z.shape[1], kind=targets.kind)

    expected_outcome(run, "--logits", "--labels", lambda: ref_read_inline(logits), lambda: ref_read_inline(labels),
                     compute)


# --------------------------------------------------------------------------
# 4. Option values
# --------------------------------------------------------------------------

JUNK_OPTION = st.one_of(st.text(INLINE_CHARS, max_size=8), st.sampled_from(["", " ", "nan", "inf", "-inf", "1e309",
                                                                          "-1", "1e999", "0x1", "1_0", "None"]))


def _vector_text(values: list[float], sep: str) -> str:
    return sep.join(repr(v) for v in values)


@st.composite
def class_vector(draw, c: int, bad: bool = True) -> tuple[str, list[float] | None]:
    """(text, expected vector or None when the text must be refused)."""
    kind = draw(st.sampled_from(["ok", "ok", "ok", "scalar"] + (["short", "negative", "junk"] if bad else [])))
    sep = draw(st.sampled_from([",", ", ", ";", " "]))
    if kind in ("ok", "scalar"):
        k = c if kind == "ok" else 1
        # One scale per vector (with zeros): moderate, tiny (subnormal) or huge. Mixing tiny and
        # huge weights loses the tiny samples' losses (test_tiny_and_huge_weights, numeric/plan.py).
        scale = draw(st.sampled_from([st.floats(0, 10), st.floats(0, 10),
                                      st.sampled_from([1e-300, 5e-324, 2.5e-310]), st.sampled_from([1e300, 3e299])]))
        vals = draw(st.lists(st.one_of(scale, st.just(0.0)), min_size=k, max_size=k))
        return _vector_text(vals, sep), vals
    if kind == "short":
        k = draw(st.integers(2, 7).filter(lambda k: k != c))  # one value is a valid scalar for --binary
        return _vector_text([1.0] * k, sep), None
    if kind == "negative":
        vals = [1.0] * c
        vals[draw(st.integers(0, c - 1))] = draw(st.sampled_from([-1.0, -1e-300, float("nan"), float("inf")]))
        return _vector_text(vals, sep), None
    return draw(JUNK_OPTION), None


def _parse_choice(value: str, choices: list[str]) -> str | None:
    return value if value in choices else None


@settings(max_examples=examples(200), **SETTINGS)
@given(data=st.data())
def test_option_values(data):
    binary = data.draw(st.booleans(), label="--binary")
    z = data.draw(logit_matrix(), label="logits")
    n, c = z.shape
    if binary:
        y = np.array(data.draw(st.lists(st.lists(st.sampled_from([0.0, 1.0, 0.5, 0.25]), min_size=c, max_size=c),
                                        min_size=n, max_size=n)))
        labels_text = csv_of(y)
        targets = RefTargets("binary", y)
    elif c == 1 or data.draw(st.booleans()):  # (one class: an N x 1 table is read as class indices)
        t = data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n))
        if data.draw(st.booleans()):
            t[data.draw(st.integers(0, n - 1))] = -100 if data.draw(st.booleans()) else c - 1
        labels_text = "".join(f"{v}\n" for v in t).encode()
        targets = RefTargets("index", np.array(t, dtype=np.float64))
    else:
        y = np.array(data.draw(st.lists(st.lists(st.floats(0, 1), min_size=c, max_size=c), min_size=n, max_size=n)))
        labels_text = csv_of(y)
        targets = RefTargets("prob", y)
    bad = data.draw(st.integers(0, 2), label="with bad values") == 0
    junk = JUNK_OPTION if bad else st.nothing()
    args: list[str] = []
    problems: list[str] = []  # options the reference expects xent to refuse (it may name any one of them)

    def opt(name: str, strategy, label: str) -> Any:
        value = data.draw(strategy, label=label)
        if value is not None:
            args.append(f"{name}={value}")
        return value

    reduction = opt("--reduction", st.one_of(st.none(), st.sampled_from(["mean", "sum", "none"]), junk),
                    "--reduction")
    if reduction is not None and reduction not in ("mean", "sum", "none"):
        problems.append("--reduction")
    reduction = reduction if reduction in ("mean", "sum", "none") else "mean"
    dtype = opt("--dtype", st.one_of(st.none(), st.sampled_from(["float64", "float32"]), junk), "--dtype")
    if dtype is not None and dtype not in ("float64", "float32"):
        problems.append("--dtype")
    fmt = data.draw(st.sampled_from(["json", "json", "json", "csv", "table", None]), label="--format")
    if fmt is not None:
        args.append(f"--format={fmt}")
    if bad and data.draw(st.integers(0, 4)) == 0:
        fmt = data.draw(JUNK_OPTION, label="--format junk")
        args.append(f"--format={fmt}")
        if fmt not in ("table", "json", "csv"):
            problems.append("--format")
    digits = opt("--digits", st.one_of(st.none(), st.integers(-2, 20).map(str), junk), "--digits")
    if digits is not None:
        try:
            if not 1 <= int(digits) <= 17:
                problems.append("--digits")
        except ValueError:
            problems.append("--digits")
    header = opt("--header", st.one_of(st.none(), st.sampled_from(["auto", "no"]), junk), "--header")
    if header is not None and header not in ("auto", "yes", "no"):
        problems.append("--header")

    weight_text, weight = data.draw(st.one_of(st.none(), class_vector(c, bad)).map(lambda v: v or (None, None)),
                                    label="--weight")
    if weight_text is not None:
        args.append(f"--weight={weight_text}")
        if weight is None or (len(weight) != c and not (binary and len(weight) == 1)):
            problems.append("--weight")
    eps_text = None
    ignore_text = None
    mode_text = None
    pos_text, pos = None, None
    eps = 0.0
    ignore = -100
    if binary:
        args.append("--binary")
        pos_text, pos = data.draw(st.one_of(st.none(), class_vector(c, bad)).map(lambda v: v or (None, None)),
                                  label="--pos-weight")
        if pos_text is not None:
            args.append(f"--pos-weight={pos_text}")
            if pos is None:
                problems.append("--pos-weight")
        if bad and data.draw(st.integers(0, 4)) == 0:  # options that do not apply to --binary
            bad = data.draw(st.sampled_from(["--ignore-index=1", "--label-smoothing=0.1", "--targets=prob"]))
            args.append(bad)
            problems.append(bad.split("=")[0])
    else:
        mode_text = opt("--targets", st.one_of(st.none(), st.sampled_from(["auto", "index", "prob"]), junk),
                        "--targets")
        eps_text = opt("--label-smoothing", st.one_of(st.none(), st.floats(0, 1).map(repr),
                                                      st.sampled_from(["0", "1", "0.1", "1e-320", "1.0000001", "-0"]),
                                                      junk), "--label-smoothing")
        ignore_text = opt("--ignore-index", st.one_of(st.none(), st.integers(-101, c + 1).map(str),
                                                      st.sampled_from(["-100", str(2**63), str(-(10**30))]),
                                                      junk), "--ignore-index")
        if bad and data.draw(st.integers(0, 4)) == 0:
            args.append("--pos-weight=2")
            problems.append("--pos-weight")
        if eps_text is not None:
            try:
                eps = float(eps_text)
            except ValueError:
                eps = math.nan
            if not 0.0 <= eps <= 1.0:
                problems.append("--label-smoothing")
        if ignore_text is not None:
            try:
                ignore = int(ignore_text)
                if not -(2**63) <= ignore < 2**63:  # PyTorch's ignore_index is an int64
                    problems.append("--ignore-index")
            except ValueError:
                problems.append("--ignore-index")
            if mode_text == "prob":  # refused whatever the labels hold
                problems.append("--ignore-index")
        if mode_text is not None and mode_text not in ("auto", "index", "prob"):
            problems.append("--targets")
        mode = mode_text if mode_text in ("index", "prob") else "auto"
        try:  # how the labels are read (by shape, or as --targets says) and whether they are valid then
            targets = ref_targets(ref_read_text(labels_text), n, c, mode, ignore_index=ignore)
            if targets.pending is not None:
                problems.append("labels")  # e.g. -100 when another --ignore-index is given
        except RefError:
            problems.append("labels")
        if targets.kind == "prob" and ignore_text is not None and "--ignore-index" not in problems:
            problems.append("--ignore-index")

    def replace(name: str, values: list[float]) -> None:
        args[[i for i, a in enumerate(args) if a.startswith(name + "=")][0]] = f"{name}={_vector_text(values, ',')}"

    if weight is not None and any(v > 1e300 for v in weight) and reduction == "mean" and not binary:
        weight = [min(v, 1e300) for v in weight]  # see test_huge_weights_mean (a kernel bug)
        replace("--weight", weight)
    if binary and weight is not None and pos is not None and max(weight) * max(pos) > 1e300:
        pos = [min(v, 1.0) for v in pos]  # see test_bce_weight_times_pos_weight_overflow (a kernel bug)
        replace("--pos-weight", pos)
    if (eps > 0 and reduction == "mean" and weight is not None and len(weight) == c and targets.kind == "index"
            and smoothing_overflows(weight, targets.values, ignore)):
        args.remove(f"--label-smoothing={eps_text}")  # see test_smoothing_with_weights_far_apart (the kernel)
        eps = 0.0
    if dtype == "float32":
        for name, vec in (("--weight", weight), ("--pos-weight", pos)):
            if vec is not None and any(v > float(np.finfo(np.float32).max) for v in vec):
                problems.append(name)
    with tempfile.TemporaryDirectory() as d:
        zp = write(d, "logits.csv", csv_of(z))
        yp = write(d, "labels.csv", labels_text)
        run = xent(zp, yp, *args)
        if problems:
            event("refused: " + problems[0] if len(problems) == 1 else "refused (several problems)")
            assert run.code == 2, (run, problems)
            names = [yp if p == "labels" else p for p in problems]
            assert any(name in run.line for name in names), (run, problems)
            return
        assert run.code == 0, run
        event(f"computed ({'binary' if binary else targets.kind}, {reduction}, {dtype or 'float64'})")
        if fmt == "table" or fmt is None:
            return
        f32 = dtype == "float32"
        zz = z.astype(np.float32).astype(np.float64) if f32 else z
        wv = None if weight is None else np.array(weight, dtype=np.float32 if f32 else np.float64).astype(np.float64)
        if f32 and targets.kind != "index":
            targets = RefTargets(targets.kind, targets.values.astype(np.float32).astype(np.float64))
        if binary:
            qv = None if pos is None else np.array(pos, dtype=np.float32 if f32 else np.float64).astype(np.float64)
            ref = ref_binary_cross_entropy(zz, targets.values, weight=wv, reduction=reduction, pos_weight=qv)
        else:
            ref = ref_cross_entropy(zz, targets, weight=wv, ignore_index=ignore, eps=eps, reduction=reduction)
        if f32:
            ref.rtol = ref.loss_rtol = 1e-4
            ref.tiny = 4 * 2.0**-149  # a few float32 subnormal steps
            # the float64 cancellation allowance, in float32 roundings (2**-24 instead of 2**-52)
            ref.grad_atol = 1e-6 * float(np.max(np.abs(ref.grad), initial=0.0)) + np.asarray(ref.grad_atol) * 2.0**29
        if fmt == "json":
            check_result(run, ref, n=n, c=c, kind=targets.kind)
            assert run.json()["dtype"] == (dtype or "float64")
        else:  # csv: one row per sample, then the reduced loss
            rows = [line.split(",") for line in run.stdout.strip().splitlines()]
            assert len(rows) == 1 + n + (reduction != "none"), run
            if reduction != "none":
                assert rows[-1][0] == reduction
                assert_close("loss", rows[-1][1], ref.loss, ref.loss_rtol, ref.tiny)


def smoothing_overflows(weight: list[float], t: np.ndarray, ignore: int) -> bool:
    """The weights of the target classes are far (> 2**64) from 1 and another class's weight is far from them."""
    used = [weight[int(v)] for v in t if v != ignore and 0 <= v < len(weight)]
    top = max(used, default=0.0)
    if top <= 0:
        return False
    k = math.frexp(top)[1]
    if abs(k) <= 64:
        return False
    try:
        math.ldexp(max(weight), -k)
        return False
    except OverflowError:
        return True


@pytest.mark.xfail(strict=True, reason="numeric/softmax.py: a mean over a denominator of 1e-323 makes the "
                                       "true gradient "
                                       "~1e323, beyond float64; one element comes out nan instead of -inf")
def test_smoothing_with_weights_far_apart():
    with tempfile.TemporaryDirectory() as d:
        zp = write(d, "z.csv", b"0,0\n0,0\n")
        yp = write(d, "y.csv", b"0\n0\n")
        run = xent(zp, yp, "--weight=5e-324,1", "--label-smoothing=1", "--format=json")
    ref = ref_cross_entropy(np.zeros((2, 2)), RefTargets("index", np.zeros(2)), weight=[5e-324, 1.0], eps=1.0)
    check_result(run, ref, n=2, c=2, kind="index")


@pytest.mark.xfail(strict=True, reason="numeric/plan.py ReductionPlan: after scaling the weights by 2**-k for the "
                                       "mean, a tiny weight underflows, and its samples' reported losses are 0")
def test_tiny_and_huge_weights():
    with tempfile.TemporaryDirectory() as d:
        zp = write(d, "z.csv", b"0,0,0\n0,0,0\n")
        yp = write(d, "y.csv", b"0\n2\n")
        run = xent(zp, yp, "--weight=1e-188,0,1e300", "--format=json")
    ref = ref_cross_entropy(np.zeros((2, 3)), RefTargets("index", np.array([0.0, 2.0])), weight=[1e-188, 0.0, 1e300])
    check_result(run, ref, n=2, c=3, kind="index")


def test_huge_weights_mean():
    with tempfile.TemporaryDirectory() as d:
        zp = write(d, "z.csv", b"2,1,0.1\n0.1,2,1.9\n")
        yp = write(d, "y.csv", b"1\n0\n")
        run = xent(zp, yp, "--weight=1e308,1e308,1e308", "--format=json")
    z = np.array([[2, 1, 0.1], [0.1, 2, 1.9]])
    check_result(run, ref_cross_entropy(z, RefTargets("index", np.array([1.0, 0.0])),
                                        weight=[1e308] * 3), n=2, c=3, kind="index")


# --------------------------------------------------------------------------
# 5. Standard input
# --------------------------------------------------------------------------


@settings(max_examples=examples(80), **SETTINGS)
@given(data=st.data())
def test_stdin_matches_file(data):
    blob = data.draw(st.one_of(SOUP, text_file(LOGIT_CELL, clean=LOGIT_CLEAN),
                               npy_array().map(npy_bytes)), label="bytes")
    as_labels = data.draw(st.booleans(), label="stdin is LABELS")
    engine = data.draw(st.sampled_from(["polars", "plain"] if HAVE_POLARS else ["plain"]), label="engine")
    with tempfile.TemporaryDirectory() as d:
        other = write(d, "labels.csv" if not as_labels else "logits.csv",
                      b"0\n" if not as_labels else b"2,1,0.1\n")
        path = write(d, "input.dat", blob)
        pair = (path, other) if not as_labels else (other, path)
        via_file = xent(*pair, "--format", "json", engine=engine)
        pair = ("-", other) if not as_labels else (other, "-")
        via_stdin = xent(*pair, "--format", "json", stdin=blob, engine=engine)
    assert via_stdin.code == via_file.code, (via_file, via_stdin)
    if via_file.code == 0:
        a = json.loads(via_file.stdout.replace(json.dumps(path)[1:-1], "<stdin>"))
        b = via_stdin.json()
        assert a == b
    else:
        assert ("<stdin>:" in via_stdin.line) == (f"{path}:" in via_file.line), (via_file, via_stdin)
        normalise = re.compile(r"\b(is empty)(: no numbers found)?")
        assert normalise.sub(r"\1", via_stdin.line.replace("<stdin>", "SRC")) == normalise.sub(
            r"\1", via_file.line.replace(path, "SRC")), (via_file, via_stdin)


# --------------------------------------------------------------------------
# Streaming (--output with file inputs) agrees with the in-memory result
# --------------------------------------------------------------------------


def both_faulty(z_blob: bytes, labels_npy: bool, labels: str, binary: bool) -> bool:
    """Whether the reference finds a problem in the logits and, independently, one in the labels."""
    try:
        z_tab = ref_read_npy(z_blob) if z_blob.startswith(b"\x93NUMPY") else ref_read_text(z_blob)
    except RefError:
        return True  # the labels were written for 2 x 3 logits: they are faulty when these would not be
    try:
        ref_logits(z_tab, binary)
        return False
    except RefError:
        pass
    y = np.loadtxt(io.StringIO(labels), delimiter=",", ndmin=2)
    y_tab = RefTable(y, list(range(1, y.shape[0] + 1)))
    try:
        return ref_targets(y_tab, *z_tab.shape, binary=binary).pending is not None
    except RefError:
        return True


@settings(max_examples=examples(60), **SETTINGS)
@given(data=st.data())
def test_output_file_matches_in_memory(data):
    blob = data.draw(st.one_of(text_file(LOGIT_CELL, clean=LOGIT_CLEAN), npy_array().map(npy_bytes)),
                     label="logits bytes")
    try:
        tab = ref_read_npy(blob) if blob.startswith(b"\x93NUMPY") else ref_read_text(blob)
        n, c = tab.shape
    except RefError:
        n, c = 2, 3
    labels = data.draw(st.one_of(
        st.lists(st.integers(0, max(0, c - 1)), min_size=n, max_size=n).map(lambda t: "".join(f"{v}\n" for v in t)),
        st.lists(st.lists(st.sampled_from(["0", "1", "0.5"]), min_size=c, max_size=c), min_size=n, max_size=n).map(
            lambda rows: "".join(",".join(r) + "\n" for r in rows)),
    ), label="labels")
    as_npy_labels = data.draw(st.booleans(), label="labels as .npy")
    binary = data.draw(st.booleans(), label="--binary")
    suffix = data.draw(st.sampled_from([".csv", ".npy", ".tsv"]), label="output")
    engine = data.draw(st.sampled_from(["polars", "plain"] if HAVE_POLARS else ["plain"]), label="engine")
    with tempfile.TemporaryDirectory() as d:
        zp = write(d, "logits" + (".npy" if blob.startswith(b"\x93NUMPY") else ".csv"), blob)
        if as_npy_labels:
            yp = write(d, "labels.npy", npy_bytes(np.loadtxt(io.StringIO(labels), delimiter=",", ndmin=2)))
        else:
            yp = write(d, "labels.csv", labels.encode())
        out = os.path.join(d, "grad" + suffix)
        flags = ["--binary"] if binary else []
        memory = xent(zp, yp, "--format", "json", *flags, engine=engine)
        if binary and memory.code == 0 and isinstance(memory.json()["loss"], str):
            return  # an infinite BCE loss crashes the streamed path: test_streamed_infinite_bce_loss
        streamed = xent(zp, yp, "--format", "json", "-o", out, *flags, engine=engine)
        assert streamed.code == memory.code, (memory, streamed)
        if memory.code == 2:
            assert not os.path.exists(out)
            if streamed.line != memory.line:
                # The streamed path checks in another order (row by row; the labels before the
                # logits' values): it may report another problem of the same input, or one of
                # the other input when the reference finds both inputs faulty.
                same_source = memory.line.split(": ")[1] == streamed.line.split(": ")[1]
                assert same_source or both_faulty(blob, as_npy_labels, labels, binary), (memory, streamed)
                assert f"{zp}:" in streamed.line or f"{yp}:" in streamed.line, streamed
                event("streamed reports another problem first")
            return
        a, b = memory.json(), streamed.json()
        for key in ("loss", "n", "classes", "targets", "denominator"):
            assert a[key] == b[key], (key, memory, streamed)
        grad = np.load(out) if suffix == ".npy" else np.loadtxt(out, delimiter="\t" if suffix == ".tsv" else ",",
                                                                 ndmin=2)
        assert_close("written grad", grad, numbers(a["grad"]), rtol=0.0)


@pytest.mark.xfail(strict=True, reason="numeric/sigmoid.py bce_block: when weight * pos_weight overflows, the loss is "
                                       "nan instead of inf and the warning blames a -inf logit that is not there")
def test_bce_weight_times_pos_weight_overflow():
    with tempfile.TemporaryDirectory() as d:
        zp = write(d, "z.csv", b"0,0\n")
        yp = write(d, "y.csv", b"0,1\n")
        run = xent("--binary", zp, yp, "--weight=1e300", "--pos-weight=1e300", "--format=json")
    ref = ref_binary_cross_entropy(np.zeros((1, 2)), np.array([[0.0, 1.0]]), weight=[1e300], pos_weight=[1e300])
    check_result(run, ref, n=1, c=2, kind="binary")
    assert "-inf" not in run.stderr, run


def test_mean_of_huge_losses():
    with tempfile.TemporaryDirectory() as d:
        zp = write(d, "z.csv", b"0,0,1e308\n1e308,0,0\n")
        yp = write(d, "y.csv", b"0\n1\n")
        run = xent(zp, yp, "--format=json")
    z = np.array([[0, 0, 1e308], [1e308, 0, 0]])
    check_result(run, ref_cross_entropy(z, RefTargets("index", np.array([0.0, 1.0]))), n=2, c=3, kind="index")
    assert run.json()["loss"] == 1e308


def test_in_memory_reading_closes_its_files():
    import gc

    with tempfile.TemporaryDirectory() as d:
        zp = write(d, "z.csv", b"2,1,0.1\n0.1,2,1.9\n")
        yp = write(d, "y.csv", b"1\n0\n")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            assert xent(zp, yp).code == 0
            assert xent(zp, write(d, "bad.csv", b"1\nx\n")).code == 2
            gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]


def test_streamed_infinite_bce_loss():
    with tempfile.TemporaryDirectory() as d:
        zp = write(d, "z.csv", b"-inf,-inf\n")
        yp = write(d, "y.csv", b"0,1\n")
        run = xent("--binary", zp, yp, "-o", os.path.join(d, "g.csv"), "--format", "json")
    assert run.code == 0 and run.json()["loss"] == "inf", run


# --------------------------------------------------------------------------
# Deterministic checks that the fuzzing above can fail
# --------------------------------------------------------------------------


def test_both_text_engines_are_exercised(monkeypatch):
    """The engine switch really selects polars or the plain engine for the bulk of a file."""
    calls: list[str] = []
    for name in ("_polars_block", "_numpy_block"):
        real = getattr(sources.TextParser, name)

        def spy(self, *a, _real=real, _name=name, **k):
            out = _real(self, *a, **k)
            if out is not None:  # this engine read the block
                calls.append(_name)
            return out

        monkeypatch.setattr(sources.TextParser, name, spy)
    with tempfile.TemporaryDirectory() as d:
        zp = write(d, "z.csv", b"2,1,0.1\n0.1,2,1.9\n0,0,0\n")
        yp = write(d, "y.csv", b"1\n0\n2\n")
        for engine in ENGINES:
            engine = engine.values[0] if hasattr(engine, "values") else engine
            if engine == "polars" and not HAVE_POLARS:
                continue
            calls.clear()
            assert xent(zp, yp, "--format", "json", engine=engine).code == 0
            assert calls == ["_polars_block" if engine == "polars" else "_numpy_block"], (engine, calls)


def test_reference_reproduces_the_worked_example():
    """The NumPy reference against the source notes' worked example (1.417, 2.620, mean 2.019)."""
    z = np.array([[2, 1, 0.1], [0.1, 2, 1.9]])
    ref = ref_cross_entropy(z, RefTargets("index", np.array([1.0, 0.0])))
    assert np.allclose(ref.losses, [1.417, 2.620], atol=5e-4)
    assert abs(ref.loss - 2.019) < 5e-4
    assert np.allclose(ref.grad, [[0.330, -0.379, 0.049], [-0.464, 0.243, 0.220]], atol=5e-4)
    # A confident prediction keeps its tiny loss: log1p(e^-50), not 0.
    tiny = ref_cross_entropy(np.array([[50.0, 0.0]]), RefTargets("index", np.array([0.0])))
    assert tiny.losses[0] == pytest.approx(math.exp(-50), rel=1e-15)
    assert ref_read_text(b"\xef\xbb\xbfa;b\r\n\r\n1;2\r\n# c\n 3 ; '4' \n").values.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    ("name", "data", "fragments"),
    [
        ("cr inside a quoted line", b"'1',2,3\r4\n0,1,2\n", ["row 1", "carriage return"]),
        ("bare CR line ends", b"1,2,3\r0,1,2\r", ["row 1", "carriage return"]),
        ("huge quoted cell", b'"' + b"1" * 200_000 + b'",2,3\n0,1,2\n', ["row 1", "longer than"]),
        ("plain engine: an empty cell hidden by a vertical tab", b"0,0,0\n1,2\x0b5,3\n4,,6\n", ["row 2", "column 2"]),
        ("plain engine: an empty cell hidden by a CR", b"0,0,0\n1,2\r5,3\n4,,6\n", ["row 2"]),
        ("UTF-16", "1,2,3\n0,1,2\n".encode("utf-16"), ["UTF-16"]),
        ("latin-1", "\u00e9,b,c\n1,2,3\n".encode("latin-1"), ["row 1", "UTF-8", "0xe9"]),
        ("NUL", b"1,2,3\n0,1\x00,2\n", ["row 2", "NUL"]),
        ("unicode digits", "\u0661,2,3\n0,1,2\n".encode(), ["row 1", "column 1", "not a number"]),
        ("npz archive", b"PK\x03\x04\x14\x00\x00\x00\x08\x00", [".npz"]),
    ],
)
@pytest.mark.parametrize("engine", ENGINES)
def test_found_by_fuzzing(engine, name, data, fragments):
    """Inputs the fuzzers found mishandled (a crash, a wrong result or an unhelpful message)."""
    with tempfile.TemporaryDirectory() as d:
        zp = write(d, "z.npz" if "npz" in name else "z.csv", data)
        yp = write(d, "y.csv", b"0\n0\n0\n")
        run = xent(zp, yp, "--format", "json", engine=engine)
    assert run.code == 2, run
    for fragment in [f"{zp}:", *fragments]:
        assert fragment in run.line, (fragment, run)


@pytest.mark.parametrize(
    ("header", "fragments"),
    [
        (b"{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000, 3), }", ["truncated"]),
        (b"{'descr': '<f8', 'fortran_order': False, 'shape': (10000000000000000000000, 3), }", ["truncated"]),
        (b"{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", ["pickle"]),
        (b"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3, 1), }", ["3 dimensions"]),
        (b"{'descr': '<f8', 'fortran_order': False, 'shape': (-2, 3), }", [".npy", "negative"]),
        (b"{'descr': '<c16', 'fortran_order': False, 'shape': (2,), }", ["complex128"]),
        (b"{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (2,), }", ["only real numbers"]),
        (b"{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'extra': (((((((((((1))))))))))) }", [".npy"]),
        (b"{'descr': '<f8', 'fortran_order': False, 'shape': (2,), ", [".npy"]),
    ],
)
@pytest.mark.parametrize("stdin", [False, True])
def test_npy_headers_found_by_fuzzing(header, fragments, stdin):
    header = header.ljust(117) + b"\n"
    blob = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 48
    with tempfile.TemporaryDirectory() as d:
        yp = write(d, "y.csv", b"0\n")
        source = "<stdin>" if stdin else write(d, "z.npy", blob)
        run = xent(source if not stdin else "-", yp, stdin=blob if stdin else None)
    assert run.code == 2, run
    for fragment in [f"{source}:", *fragments]:
        assert fragment in run.line, (fragment, run)


def test_binary_labels_column_for_one_row_of_logits_names_the_right_row():
    with tempfile.TemporaryDirectory() as d:
        yp = write(d, "y.csv", b"0\n1\n2\n")
        run = xent("--binary", "--logits", "0,0,0", yp)
    assert run.code == 2
    assert f"{yp}: row 3, column 1:" in run.line, run


def test_longdouble_beyond_float64_is_refused_in_one_line():
    arr = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.longdouble)
    if np.finfo(np.longdouble).max <= np.finfo(np.float64).max:
        pytest.skip("long double is float64 on this platform")
    arr[1, 2] = np.longdouble(10) ** 400
    with tempfile.TemporaryDirectory() as d:
        zp = write(d, "z.npy", npy_bytes(arr))
        yp = write(d, "y.csv", b"0\n0\n")
        run = xent(zp, yp)
    assert run.code == 2
    assert f"{zp}: row 2, column 3:" in run.line and "range" in run.line, run


def test_bool_npy_class_indices_streamed_and_in_memory_agree():
    with tempfile.TemporaryDirectory() as d:
        zp = write(d, "z.csv", b"2,1,0.1\n0.1,2,1.9\n")
        yp = write(d, "y.npy", npy_bytes(np.array([True, False])))
        memory = xent(zp, yp, "--format", "json")
        streamed = xent(zp, yp, "--format", "json", "-o", os.path.join(d, "g.csv"))
    assert memory.code == streamed.code == 0, (memory, streamed)
    assert memory.json()["loss"] == streamed.json()["loss"]
