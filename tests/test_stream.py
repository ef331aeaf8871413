"""Streaming ``xent compute --output``: the file and the loss equal the in-memory result exactly.

Blocks are made tiny so that every run crosses many read blocks and kernel
blocks; the reference is the library called on the whole arrays at once.
"""

from __future__ import annotations

import importlib
import json
import os
import warnings

import numpy as np
import pytest
import reference_render
from conftest import one_error_line

from xentcli import numeric, numtext, sources, stream, writers
from xentcli.errors import XentWarning


@pytest.fixture(autouse=True)
def tiny_blocks(monkeypatch):
    monkeypatch.setattr(sources, "CHUNK_BYTES", 997)  # read blocks of a few lines
    monkeypatch.setattr(stream, "BLOCK_VALUES", 23)  # each cut in parts of a few rows to compute and write
    monkeypatch.setattr(numeric.blocks, "BLOCK_ELEMENTS", 64)  # kernel blocks of a few rows
    monkeypatch.setattr(numeric.sigmoid, "BCE_BLOCK_ELEMENTS", 64)
    monkeypatch.setattr(numeric.blocks, "PARALLEL_MIN", 256)  # and threads
    monkeypatch.setattr(writers, "WRITEBACK_BYTES", 1)  # every written part handed to the disk at once


@pytest.fixture(params=["fast", "numpy"])
def engine(request, monkeypatch):
    monkeypatch.setattr(sources, "_POLARS", False if request.param == "numpy" else None)
    return request.param


def write_table(path, arr, kind):
    if kind == "npy":
        np.save(path, arr)
    elif arr.ndim == 1:
        path.write_text("\n".join(str(int(v)) for v in arr) + "\n")
    else:
        path.write_text("\n".join(",".join(repr(float(v)) for v in row) for row in arr) + "\n")


def reference(z, y, opts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XentWarning)
        if opts.get("binary"):
            return numeric.binary_cross_entropy(
                z, y, weight=opts.get("weight"), pos_weight=opts.get("pos_weight"),
                reduction=opts["reduction"], dtype=opts["dtype"],
            )
        return numeric.cross_entropy(
            z, y, weight=opts.get("weight"), ignore_index=opts.get("ignore_index", -100),
            reduction=opts["reduction"], label_smoothing=opts.get("eps", 0.0), dtype=opts["dtype"],
            target_type="prob" if y.ndim == 2 else "index", **opts.get("lm", {}),
        )


def cli_args(opts):
    args = ["--reduction", opts["reduction"], "--dtype", opts["dtype"]]
    if opts.get("binary"):
        args.append("--binary")
    if opts.get("weight") is not None:
        args += ["--weight", ",".join(repr(float(w)) for w in opts["weight"])]
    if opts.get("pos_weight") is not None:
        args += ["--pos-weight", ",".join(repr(float(w)) for w in opts["pos_weight"])]
    if "ignore_index" in opts:
        args += ["--ignore-index", str(opts["ignore_index"])]
    if opts.get("eps"):
        args += ["--label-smoothing", repr(opts["eps"])]
    for key, value in opts.get("lm", {}).items():
        args += ["--" + key.replace("_", "-"), repr(value)]
    return args


VARIANTS = {
    "index": dict(),
    "index-weights": dict(weight=np.array([0.5, 2.0, 1.0, 3.0, 0.25])),
    "index-ignore": dict(ignore_index=-1),
    "index-weights-ignore-smoothing": dict(weight=np.array([0.5, 2.0, 1.0, 3.0, 0.25]), ignore_index=2, eps=0.1),
    "index-tiny-weights": dict(weight=np.array([1e-310, 2e-310, 1e-309, 3e-310, 5e-310])),
    "prob": dict(prob=True),
    "prob-smoothing-weights": dict(prob=True, eps=0.2, weight=np.array([1.0, 2.0, 3.0, 4.0, 5.0])),
    "index-language-model": dict(weight=np.array([0.5, 2.0, 1.0, 3.0, 0.25]), ignore_index=2, eps=0.1,
                                 lm=dict(z_loss=1e-3, softcap=30.0, temperature=0.7)),
    "prob-z-loss": dict(prob=True, lm=dict(z_loss=0.25)),
    "binary": dict(binary=True),
    "binary-weights": dict(binary=True, weight=np.array([1.0, 0.5, 2.0, 1.0, 3.0]),
                           pos_weight=np.array([2.0, 1.0, 0.5, 4.0, 1.0])),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("in_kind", "out_kind"), [("csv", "npy"), ("npy", "csv"), ("csv", "csv")])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_streamed_equals_in_memory_exactly(xent, tmp_path, engine, variant, reduction, in_kind, out_kind, dtype):
    opts = dict(VARIANTS[variant], reduction=reduction, dtype=dtype)
    rng = np.random.default_rng(sum(map(ord, variant)) + len(reduction))
    n, c = 157, 5
    z = rng.normal(scale=4.0, size=(n, c))
    z[3, 1] = -np.inf  # a masked class in some row
    z[70] = [1e3, -1e3, 0.5, 800.0, -2.0]  # extreme values
    if opts.get("binary"):
        z[3, 1] = -5.0
        y = rng.random((n, c))
        y[::7] = np.round(y[::7])
    elif opts.get("prob"):
        y = rng.dirichlet(np.ones(c), size=n)
        y[3, 1] = 0.0
        y[::11] *= 1.3  # unnormalised rows
    else:
        y = rng.integers(0, c, size=n)
        y[3] = 0
        if "ignore_index" in opts:
            y[::5] = opts["ignore_index"]
    lg = tmp_path / f"z.{in_kind}"
    lb = tmp_path / f"y.{in_kind}"
    write_table(lg, z, in_kind)
    write_table(lb, y if in_kind == "npy" or y.ndim == 2 else y, in_kind)
    out = tmp_path / f"g.{out_kind}"
    run = xent("compute", lg, lb, "--output", out, "--format", "json", *cli_args(opts))
    assert run.code == 0, run
    doc = run.json()
    assert doc["streamed"] is True and doc["rows_written"] == n
    want = reference(z, y.astype(float) if y.ndim == 2 else y, opts)
    if out_kind == "npy":
        got = np.load(out)
        assert got.dtype == np.dtype(dtype)
    else:  # text carries each value's shortest round-trip digits in the compute dtype
        got = np.loadtxt(out, delimiter=",", ndmin=2).astype(dtype)
    np.testing.assert_array_equal(got, want.grad)
    if reduction == "none":
        assert doc["loss"] is None
    else:
        expect = want.loss
        token = json.dumps(doc["loss"]) if isinstance(doc["loss"], str) else doc["loss"]
        if isinstance(token, str):
            assert token.strip('"') == ("nan" if expect != expect else "inf" if expect > 0 else "-inf")
        else:
            # JSON carries float32 results with float32's shortest digits
            assert np.array(token, dtype=dtype) == np.array(expect, dtype=dtype)
        assert doc["denominator"] == want.denominator


def test_stream_writes_nothing_when_a_late_block_is_bad(xent, tmp_path, engine):
    z = np.random.default_rng(0).normal(size=(300, 4))
    lines = [",".join(repr(float(v)) for v in row) for row in z]
    lines[250] = "1,2,x,4"
    lg = tmp_path / "z.csv"
    lg.write_text("\n".join(lines) + "\n")
    lb = tmp_path / "y.csv"
    lb.write_text("\n".join(str(i % 4) for i in range(300)) + "\n")
    out = tmp_path / "g.csv"
    out.write_text("earlier result\n")
    run = xent("compute", lg, lb, "-o", out)
    line = one_error_line(run)
    assert "z.csv" in line and "row 251" in line and "column 3" in line
    assert out.read_text() == "earlier result\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.csv", "y.csv", "z.csv"]


@pytest.mark.parametrize(("n_labels", "fragment"), [(299, "logits have more rows"), (301, "the logits have 300 rows")])
def test_stream_label_count_mismatch(xent, tmp_path, engine, n_labels, fragment):
    z = np.random.default_rng(0).normal(size=(300, 4))
    lg = tmp_path / "z.csv"
    lg.write_text("\n".join(",".join(repr(float(v)) for v in row) for row in z) + "\n")
    lb = tmp_path / "y.csv"
    lb.write_text("\n".join(str(i % 4) for i in range(n_labels)) + "\n")
    out = tmp_path / "g.npy"
    run = xent("compute", lg, lb, "-o", out, "--reduction", "sum")
    line = one_error_line(run)
    assert "y.csv" in line and fragment in line
    assert not out.exists()


def test_stream_label_out_of_range_names_its_row(xent, tmp_path, engine):
    z = np.random.default_rng(0).normal(size=(300, 4))
    lg = tmp_path / "z.csv"
    lg.write_text("\n".join(",".join(repr(float(v)) for v in row) for row in z) + "\n")
    labels = [str(i % 4) for i in range(300)]
    labels[287] = "9"
    lb = tmp_path / "y.csv"
    lb.write_text("label\n" + "\n".join(labels) + "\n")
    run = xent("compute", lg, lb, "-o", tmp_path / "g.csv")
    line = one_error_line(run)
    assert "y.csv: row 289, column 1: class index 9 is out of range" in line


def test_single_row_labels_fall_back_to_memory(xent, tmp_path, engine):
    z = np.random.default_rng(0).normal(size=(30, 4))
    lg = tmp_path / "z.csv"
    lg.write_text("\n".join(",".join(repr(float(v)) for v in row) for row in z) + "\n")
    lb = tmp_path / "y.csv"
    lb.write_text(",".join(str(i % 4) for i in range(30)) + "\n")
    out = tmp_path / "g.npy"
    run = xent("compute", lg, lb, "-o", out, "--format", "json")
    assert run.code == 0, run
    assert run.json()["streamed"] is False
    np.testing.assert_array_equal(np.load(out), numeric.cross_entropy(z, np.arange(30) % 4).grad)


# --------------------------------------------------------------------------
# Streamed to standard output: the same bytes as the in-memory path, and as the format of old
# --------------------------------------------------------------------------

compute_cli = importlib.import_module("xentcli.cli.compute")


@pytest.fixture
def printer(monkeypatch):
    """The number writer of the engine under test: orjson and polars (fast), or Python alone (numpy)."""
    def use(engine):
        monkeypatch.setattr(numtext, "_ORJSON", None if engine == "fast" else False)
    return use


def run_both(xent, monkeypatch, *args):
    """The same command streamed (every file input streamed, in tiny blocks) and read into memory."""
    monkeypatch.setattr(compute_cli, "STREAM_MIN_BYTES", 0)
    calls = []
    real = stream.Stream.run

    def counted(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(stream.Stream, "run", counted)
    streamed = xent(*args)
    monkeypatch.setattr(compute_cli, "STREAM_MIN_BYTES", 1 << 62)
    memory = xent(*args)
    return streamed, memory, len(calls)


STDOUT_CASES = {
    # name: (classes, labels, extra options)
    "ce-index": (5, "index", []),
    "ce-index-narrow": (2, "index", []),
    "ce-index-weights-ignore-smoothing": (5, "index", ["--weight", "0.5,2,1,3,0.25", "--ignore-index", "2",
                                                       "--label-smoothing", "0.1"]),
    "ce-index-npy-1d": (3, "npy1", ["--ignore-index", "-1"]),
    "ce-index-npy-2d": (2, "npy2", []),
    "ce-prob": (5, "prob", []),
    "ce-prob-narrow-unnormalised": (2, "prob-off", ["--label-smoothing", "0.2", "--weight", "1,3"]),
    "ce-index-language-model": (5, "index", ["--ignore-index", "2", "--z-loss", "0.001", "--softcap", "30",
                                             "--temperature", "0.7"]),
    "nll": (4, "index", ["--loss", "nll"]),
    "kl": (4, "prob", ["--loss", "kl"]),
    "bce": (3, "binary", ["--binary"]),
    "bce-narrow-weights": (2, "binary", ["--binary", "--weight", "1,0.5", "--pos-weight", "2,4"]),
    "bce-single-column": (1, "binary", ["--binary"]),
}


def stdout_inputs(tmp_path, name, n, rng):
    c, layout, extra = STDOUT_CASES[name]
    z = rng.normal(scale=4.0, size=(n, c))
    z[n // 2] = 1e3 * np.sign(z[n // 2])  # extreme values
    if layout == "binary":
        y = rng.random((n, c))
        y[::7] = np.round(y[::7])
        z[5, 0], y[5, 0] = -np.inf, 1.0  # an infinite elementwise loss, and its warning
        z[9, -1], y[9, -1] = -np.inf, 0.0  # a masked element with a zero target: finite
    elif layout.startswith("prob"):
        y = rng.dirichlet(np.ones(c), size=n)
        z[4, 0], y[4, 0] = -np.inf, 0.0  # masked class with zero probability: finite
        if layout == "prob-off":
            y[::11] *= 1.3  # rows that do not sum to 1: a warning counted over every block
    else:
        y = rng.integers(0, c, size=n)
        z[4, 1], y[4] = -np.inf, 1  # the target class masked: an infinite loss, and its warning
        if "--ignore-index" in extra:
            y[::5] = int(extra[extra.index("--ignore-index") + 1])
    lg = tmp_path / "z.csv"
    lg.write_text("\n".join(",".join(repr(float(v)) for v in row) for row in z) + "\n")
    if layout == "npy1":
        lb = tmp_path / "y.npy"
        np.save(lb, y)
    elif layout == "npy2":
        lb = tmp_path / "y.npy"
        np.save(lb, y.reshape(-1, 1).astype(np.float32))
    elif y.ndim == 1:
        lb = tmp_path / "y.csv"
        lb.write_text("label\n" + "\n".join(str(int(v)) for v in y) + "\n")
    else:
        lb = tmp_path / "y.csv"
        lb.write_text("\n".join(",".join(repr(float(v)) for v in row) for row in y) + "\n")
    return z, y, lg, lb, extra


def library_result(name, z, y, extra, reduction, dtype):
    """The result of the library on the whole arrays (what the old in-memory renderer printed)."""
    c, layout, _ = STDOUT_CASES[name]
    opts = dict(zip(extra[::2], extra[1::2])) if "--binary" not in extra else dict(zip(extra[1::2], extra[2::2]))
    weight = [float(v) for v in opts["--weight"].split(",")] if "--weight" in opts else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XentWarning)
        if layout == "binary":
            pw = [float(v) for v in opts["--pos-weight"].split(",")] if "--pos-weight" in opts else None
            return numeric.binary_cross_entropy(z, y, weight=weight, pos_weight=pw, reduction=reduction, dtype=dtype)
        if opts.get("--loss") == "kl":
            return numeric.kl_div(z, y, reduction=reduction, dtype=dtype)
        if opts.get("--loss") == "nll":
            return numeric.nll_loss(z, y, reduction=reduction, dtype=dtype)
        return numeric.cross_entropy(
            z, y, weight=weight, ignore_index=int(opts.get("--ignore-index", -100)), reduction=reduction,
            label_smoothing=float(opts.get("--label-smoothing", 0.0)), dtype=dtype,
            target_type="prob" if y.ndim == 2 else "index", z_loss=float(opts.get("--z-loss", 0.0)),
            softcap=float(opts["--softcap"]) if "--softcap" in opts else None,
            temperature=float(opts.get("--temperature", 1.0)))


@pytest.mark.parametrize("name", list(STDOUT_CASES))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_streamed_stdout_is_the_in_memory_output_byte_for_byte(xent, tmp_path, monkeypatch, engine, printer, name,
                                                               reduction, dtype):
    printer(engine)
    rng = np.random.default_rng(sum(map(ord, name + reduction + dtype)))
    n = 157
    z, y, lg, lb, extra = stdout_inputs(tmp_path, name, n, rng)
    args = ["compute", lg, lb, "--reduction", reduction, "--dtype", dtype, *extra]
    want_lib = library_result(name, z, y, extra, reduction, dtype)
    # JSON and CSV are spooled in the first pass, or in a second one when the mean divides by a count of rows
    spooled = 2 if reduction == "mean" and STDOUT_CASES[name][1] in ("prob", "prob-off", "binary") else 1
    for fmt, passes in (("json", spooled), ("csv", spooled), ("table", 1)):
        streamed, memory, runs = run_both(xent, monkeypatch, *args, "--format", fmt)
        assert streamed.code == memory.code == 0, (streamed, memory)
        assert runs == passes, f"{fmt} was not streamed ({runs} passes)"
        assert streamed.stdout == memory.stdout, fmt
        assert streamed.stderr == memory.stderr, fmt  # the same warnings, in the same order
        notes = [line.removeprefix("xent: warning: ") for line in memory.stderr.splitlines()]
        meta = {"logits": str(lg), "labels": str(lb), "output": None, "warnings": notes}
        if fmt == "json":
            assert memory.stdout == reference_render.to_json(want_lib, meta)
        elif fmt == "csv":
            assert memory.stdout == reference_render.to_csv(want_lib)
        else:
            assert f"{n} samples" in streamed.stdout and f"{n - 40} more samples" in streamed.stdout
            assert f"\n│ {n - 1} " in streamed.stdout  # the last row is shown


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_streamed_stdout_across_summation_groups(xent, tmp_path, monkeypatch, fmt):
    """More rows than a summation group (1024), C = 2: the mean and every row still match exactly."""
    rng = np.random.default_rng(3)
    n = 2500
    z = rng.normal(scale=2.0, size=(n, 2))
    y = rng.integers(0, 2, size=n)
    y[::13] = -100
    lg, lb = tmp_path / "z.csv", tmp_path / "y.csv"
    lg.write_text("\n".join(f"{a!r},{b!r}" for a, b in z.tolist()) + "\n")
    lb.write_text("\n".join(str(v) for v in y) + "\n")
    streamed, memory, _ = run_both(xent, monkeypatch, "compute", lg, lb, "--format", fmt)
    assert streamed.code == 0 and streamed.stdout == memory.stdout
    want = numeric.cross_entropy(z, y)
    meta = {"logits": str(lg), "labels": str(lb), "output": None, "warnings": []}
    assert memory.stdout == (reference_render.to_json(want, meta) if fmt == "json" else reference_render.to_csv(want))


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_streamed_stdout_prints_nothing_for_a_bad_late_row(xent, tmp_path, monkeypatch, fmt):
    monkeypatch.setattr(compute_cli, "STREAM_MIN_BYTES", 0)
    z = np.random.default_rng(0).normal(size=(300, 4))
    lines = [",".join(repr(float(v)) for v in row) for row in z]
    lines[250] = "1,2,x,4"
    lg = tmp_path / "z.csv"
    lg.write_text("\n".join(lines) + "\n")
    lb = tmp_path / "y.csv"
    lb.write_text("\n".join(str(i % 4) for i in range(300)) + "\n")
    line = one_error_line(xent("compute", lg, lb, "--format", fmt))
    assert "z.csv: row 251, column 3: 'x' is not a number" in line


def test_small_inputs_and_pipes_are_read_into_memory(xent, tmp_path, monkeypatch):
    """Below the size threshold there is one read (no second pass); a pipe cannot be read twice."""
    lg, lb = tmp_path / "z.csv", tmp_path / "y.csv"
    lg.write_text("2,1,0.1\n0.1,2,1.9\n")
    lb.write_text("1\n0\n")
    streamed, memory, runs = run_both(xent, monkeypatch, "compute", lg, lb, "--format", "json")
    assert runs == 1 and streamed.stdout == memory.stdout
    monkeypatch.setattr(compute_cli, "STREAM_MIN_BYTES", 8 << 20)
    made = []
    monkeypatch.setattr(stream, "Stream", lambda *a, **k: made.append(1))
    assert xent("compute", lg, lb, "--format", "json").stdout == memory.stdout
    assert made == []
    assert compute_cli._rereadable(str(lg), str(lb))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert not compute_cli._rereadable(str(lg), str(fifo))


@pytest.mark.parametrize("mode", ["output", "json"])
def test_npy_read_in_blocks_names_a_bad_late_row(xent, tmp_path, monkeypatch, mode):
    """.npy inputs are read block by block from the file (not mapped): a value refused in a late block
    is named by its row in the file, and nothing is written."""
    monkeypatch.setattr(compute_cli, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(sources, "CHUNK_BYTES", 997)
    rng = np.random.default_rng(4)
    z = rng.normal(size=(500, 3))
    lg, lb = tmp_path / "z.npy", tmp_path / "y.npy"
    np.save(lg, z)
    y = np.arange(500, dtype=np.int64) % 3
    y[461] = 2**53 + 1
    np.save(lb, y)
    args = ["--output", tmp_path / "g.csv"] if mode == "output" else ["--format", "json"]
    line = one_error_line(xent("compute", lg, lb, *args))
    assert line == f"xent: error: {lb}: row 462: integer {2**53 + 1} is out of range: beyond 2**53 it has no " \
                   "exact float64 value", line
    assert not (tmp_path / "g.csv").exists()
    y[461] = 1
    np.save(lb, y)
    np.save(lg, z.astype(">f8"))  # big-endian, read by blocks as such
    run = xent("compute", lg, lb, "--format", "json", "--reduction", "sum")
    assert run.code == 0, run
    assert run.json()["loss"] == numeric.cross_entropy(z, y, reduction="sum").loss


def test_streamed_kl_batchmean_is_the_in_memory_output(xent, tmp_path, monkeypatch):
    """A mean over rows is first computed with a provisional row count, then the count the pass found."""
    rng = np.random.default_rng(8)
    z = rng.normal(size=(157, 3))
    y = rng.dirichlet(np.ones(3), size=157)
    lg, lb = tmp_path / "z.csv", tmp_path / "y.csv"
    lg.write_text("\n".join(",".join(repr(float(v)) for v in row) for row in z) + "\n")
    lb.write_text("\n".join(",".join(repr(float(v)) for v in row) for row in y) + "\n")
    for fmt in ("json", "csv"):
        streamed, memory, _ = run_both(xent, monkeypatch, "compute", lg, lb, "--loss", "kl", "--reduction",
                                       "batchmean", "--format", fmt)
        assert streamed.code == 0 and streamed.stdout == memory.stdout, fmt
    want = numeric.kl_div(z, y, reduction="batchmean")
    assert memory.stdout.rstrip("\n").split("\n")[-1].split(",")[:2] == ["batchmean", repr(want.loss)]


def test_wide_rows_are_read_in_bigger_blocks_with_the_same_result(xent, tmp_path, monkeypatch):
    """Beyond WIDE_ROW columns a text source reads bigger blocks (parsing pays per column): same bytes."""
    rng = np.random.default_rng(9)
    c = sources.WIDE_ROW + 88
    z = rng.normal(size=(30, c))
    y = rng.integers(0, c, size=30)
    lg, lb = tmp_path / "z.csv", tmp_path / "y.csv"
    lg.write_text("\n".join(",".join(repr(float(v)) for v in row) for row in z) + "\n")
    lb.write_text("\n".join(str(v) for v in y) + "\n")
    sizes = []
    real = sources.TextSource._blocks

    def blocks(self):
        for item in real(self):
            sizes.append((self.name, self.chunk_bytes))
            yield item

    monkeypatch.setattr(sources.TextSource, "_blocks", blocks)
    streamed, memory, _ = run_both(xent, monkeypatch, "compute", lg, lb, "--format", "json")
    assert streamed.code == 0 and streamed.stdout == memory.stdout
    assert max(size for name, size in sizes if name == str(lg)) == sources.WIDE_GROWTH * sources.CHUNK_BYTES
    meta = {"logits": str(lg), "labels": str(lb), "output": None, "warnings": []}
    assert memory.stdout == reference_render.to_json(numeric.cross_entropy(z, y), meta)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
@pytest.mark.parametrize("mode", ["output", "json"])
def test_a_named_pipe_is_read_once_into_memory(xent, tmp_path, monkeypatch, mode):
    """A pipe cannot be read twice: no stream starts on it (its first block would be lost to the fallback)."""
    import threading

    monkeypatch.setattr(compute_cli, "STREAM_MIN_BYTES", 0)
    z = np.random.default_rng(10).normal(size=(400, 3))
    text = "\n".join(",".join(repr(float(v)) for v in row) for row in z) + "\n"
    fifo = tmp_path / "z.pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(text), daemon=True)
    writer.start()
    lb = tmp_path / "y.csv"
    lb.write_text("\n".join(str(i % 3) for i in range(400)) + "\n")
    out = tmp_path / "g.npy"
    run = xent("compute", fifo, lb, "--format", "json", *(["--output", out] if mode == "output" else []))
    writer.join(5)
    assert run.code == 0, run
    want = numeric.cross_entropy(z, np.arange(400) % 3)
    assert run.json()["loss"] == want.loss and run.json()["n"] == 400
    if mode == "output":
        np.testing.assert_array_equal(np.load(out), want.grad)


# A whole run in a process of its own, its standard output a file or a pipe: the spooled arrays are then copied
# by the kernel (sendfile), which the in-process runs above (standard output a Python buffer) never reach.
RUN_WITH_THRESHOLD = """\
import sys
import xentcli.cli.compute
xentcli.cli.compute.STREAM_MIN_BYTES = int(sys.argv[1])
from xentcli.cli import main
main(sys.argv[2:])
"""


@pytest.mark.skipif(not hasattr(os, "sendfile"), reason="no os.sendfile here")
@pytest.mark.parametrize("fmt", ["json", "csv"])
@pytest.mark.parametrize("sink", ["file", "pipe"])
def test_streamed_stdout_through_the_kernel_is_the_in_memory_output(tmp_path, fmt, sink):
    import subprocess
    import sys

    rng = np.random.default_rng(7)
    z = rng.normal(scale=4.0, size=(3000, 40))
    y = rng.integers(0, 40, size=3000)
    lg, lb = tmp_path / "z.csv", tmp_path / "y.npy"
    write_table(lg, z, "csv")
    np.save(lb, y)
    outputs = {}
    for name, threshold in (("streamed", 0), ("memory", 1 << 62)):
        cmd = [sys.executable, "-c", RUN_WITH_THRESHOLD, str(threshold), "compute", str(lg), str(lb), "--format", fmt]
        env = dict(os.environ, COLUMNS="120", TERM="dumb")
        if sink == "file":
            target = tmp_path / f"{name}.out"
            with open(target, "wb") as fh:
                done = subprocess.run(cmd, stdout=fh, stderr=subprocess.PIPE, env=env)
            outputs[name] = target.read_bytes()
        else:
            done = subprocess.run(cmd, capture_output=True, env=env)
            outputs[name] = done.stdout
        assert done.returncode == 0, done.stderr
    assert len(outputs["streamed"]) > 1 << 20
    assert outputs["streamed"] == outputs["memory"]


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise on this system")
@pytest.mark.parametrize("fmt", ["csv", "npy"])
def test_the_writer_hands_its_file_to_the_disk_in_consecutive_ranges(tmp_path, monkeypatch, fmt):
    calls = []
    real = os.posix_fadvise

    def advise(fd, offset, length, advice):
        calls.append((offset, length, advice))
        return real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", advise)
    monkeypatch.setattr(writers, "WRITEBACK_BYTES", 500)
    rng = np.random.default_rng(3)
    blocks = [rng.normal(size=(rows, 3)) for rows in (40, 1, 7, 60, 2, 30)]
    path = tmp_path / f"grad.{fmt}"
    writer = stream.GradWriter(path, fmt, np.dtype(np.float64), 3)
    for block in blocks:
        writer.write(block)
    writer.commit()
    whole = np.concatenate(blocks)
    if fmt == "npy":
        assert np.array_equal(np.load(path), whole)
    else:
        assert np.array_equal(np.loadtxt(path, delimiter=",", ndmin=2), whole)
    size = path.stat().st_size
    assert calls and all(advice == os.POSIX_FADV_DONTNEED for _, _, advice in calls)
    assert [offset for offset, _, _ in calls] == [0] + [o + n for o, n, _ in calls[:-1]]  # one after the other
    assert all(length >= 500 for _, length, _ in calls)
    assert calls[-1][0] + calls[-1][1] <= size
