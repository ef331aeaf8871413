"""Bad input to ``xent compute``: exit code 2, one line naming file/row/column, nothing written.

Each case gives the files to create, the arguments (``{name}`` is replaced by
the path of a created file) and fragments the one error line must contain.
Every case also runs with ``--output`` to check that nothing is written.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import SEED_LABELS, SEED_LOGITS, one_error_line

Z = "2,1,0.1\n0.1,2,1.9\n"
Y = "1\n0\n"


def npy_bytes(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


CASES = [
    # --- files that cannot be read
    ("missing file", {"y.csv": Y}, ["{tmp}/nope.csv", "{y.csv}"], ["nope.csv", "no such file"]),
    ("directory", {"y.csv": Y}, ["{tmp}", "{y.csv}"], ["is a directory"]),
    ("empty file", {"z.csv": "", "y.csv": Y}, ["{z.csv}", "{y.csv}"], ["z.csv", "is empty"]),
    ("blank file", {"z.csv": "\n\n  \n", "y.csv": Y}, ["{z.csv}", "{y.csv}"], ["z.csv", "is empty"]),
    ("header only", {"z.csv": "a,b,c\n", "y.csv": Y}, ["{z.csv}", "{y.csv}"], ["z.csv", "no numbers"]),
    ("not utf-8", {"z.csv": b"2,1,\xff\n", "y.csv": Y}, ["{z.csv}", "{y.csv}"], ["z.csv", "not UTF-8", "0xff"]),
    ("nul bytes", {"z.csv": b"2,1\x00,3\n", "y.csv": Y}, ["{z.csv}", "{y.csv}"], ["z.csv", "binary"]),
    # --- text that is not a table of numbers
    ("ragged rows", {"z.csv": "2,1,0.1\n0.1,2\n", "y.csv": Y}, ["{z.csv}", "{y.csv}"],
     ["z.csv", "row 2", "has 2 values", "row 1 has 3"]),
    ("ragged after header", {"z.csv": "a,b,c\n2,1,0.1\n0.1,2,1.9,4\n", "y.csv": Y}, ["{z.csv}", "{y.csv}"],
     ["z.csv", "row 3", "has 4 values"]),
    ("non-numeric cell", {"z.csv": "2,1,0.1\n0.1,two,1.9\n", "y.csv": Y}, ["{z.csv}", "{y.csv}"],
     ["z.csv", "row 2", "column 2", "'two' is not a number"]),
    ("empty cell", {"z.csv": "2,,0.1\n0.1,2,1.9\n", "y.csv": Y}, ["{z.csv}", "{y.csv}"],
     ["z.csv", "row 1", "column 2", "empty cell"]),
    ("underscore number", {"z.csv": "2,1_000,0.1\n0.1,2,1.9\n", "y.csv": Y}, ["{z.csv}", "{y.csv}"],
     ["row 1", "column 2", "not a number"]),
    ("label not numeric", {"z.csv": Z, "y.csv": "1\ncat\n"}, ["{z.csv}", "{y.csv}"],
     ["y.csv", "row 2", "column 1", "'cat' is not a number"]),
    # --- values
    ("nan logit", {"z.csv": "2,1,0.1\n0.1,nan,1.9\n", "y.csv": Y}, ["{z.csv}", "{y.csv}"],
     ["z.csv", "row 2", "column 2", "NaN"]),
    ("+inf logit", {"z.csv": "2,1,inf\n0.1,2,1.9\n", "y.csv": Y}, ["{z.csv}", "{y.csv}"],
     ["z.csv", "row 1", "column 3", "+inf"]),
    ("overflowing logit", {"z.csv": "2,1,1e999\n0.1,2,1.9\n", "y.csv": Y}, ["{z.csv}", "{y.csv}"],
     ["z.csv", "row 1", "column 3", "1e999", "range"]),
    ("float32 overflow", {"z.csv": "2,1,1e300\n0.1,2,1.9\n", "y.csv": Y}, ["{z.csv}", "{y.csv}", "--dtype", "float32"],
     ["z.csv", "row 1", "column 3", "float32"]),
    ("all -inf row", {"z.csv": "2,1,0.1\n-inf,-inf,-inf\n", "y.csv": Y}, ["{z.csv}", "{y.csv}"],
     ["z.csv", "row 2", "-inf", "softmax is undefined"]),
    ("label out of range", {"z.csv": Z, "y.csv": "1\n3\n"}, ["{z.csv}", "{y.csv}"],
     ["y.csv", "row 2", "column 1", "class index 3", "out of range for 3 classes"]),
    ("label out of range in a row", {"z.csv": Z, "y.csv": "1,5\n"}, ["{z.csv}", "{y.csv}"],
     ["y.csv", "row 1", "column 2", "class index 5"]),
    ("negative label", {"z.csv": Z, "y.csv": "-1\n0\n"}, ["{z.csv}", "{y.csv}"],
     ["y.csv", "row 1", "column 1", "class index -1 is negative"]),
    ("fractional label", {"z.csv": Z, "y.csv": "1\n0.5\n"}, ["{z.csv}", "{y.csv}"],
     ["y.csv", "row 2", "column 1", "0.5", "not a whole number"]),
    ("nan label", {"z.csv": Z, "y.csv": "1\nnan\n"}, ["{z.csv}", "{y.csv}"],
     ["y.csv", "row 2", "column 1", "not a class index"]),
    ("label count mismatch", {"z.csv": Z, "y.csv": "1\n0\n2\n"}, ["{z.csv}", "{y.csv}"],
     ["y.csv", "3 rows x 1 column", "2 class indices"]),
    ("label shape mismatch", {"z.csv": Z, "y.csv": "0,1\n1,0\n"}, ["{z.csv}", "{y.csv}"],
     ["y.csv", "2 rows x 2 columns"]),
    ("negative probability", {"z.csv": Z, "y.csv": "0,1,0\n1.2,-0.2,0\n"}, ["{z.csv}", "{y.csv}"],
     ["y.csv", "row 2", "column 2", "negative"]),
    ("forced index on a table", {"z.csv": Z, "y.csv": "0,1,0\n1,0,0\n"}, ["{z.csv}", "{y.csv}", "--targets", "index"],
     ["y.csv", "class-index targets need 2 values"]),
    ("forced prob on indices", {"z.csv": Z, "y.csv": Y}, ["{z.csv}", "{y.csv}", "--targets", "prob"],
     ["y.csv", "probability targets need one row of 3 values"]),
    ("ignore-index with probabilities", {"z.csv": Z, "y.csv": "0,1,0\n1,0,0\n"},
     ["{z.csv}", "{y.csv}", "--ignore-index", "-1"], ["--ignore-index", "class-index targets"]),
    # --- options
    ("weight wrong length", {"z.csv": Z, "y.csv": Y}, ["{z.csv}", "{y.csv}", "--weight", "1,2"],
     ["--weight", "has 2 values", "one per class (3)"]),
    ("weight negative", {"z.csv": Z, "y.csv": Y}, ["{z.csv}", "{y.csv}", "--weight", "1,-2,1"],
     ["--weight", "value 2", "negative"]),
    ("weight not a number", {"z.csv": Z, "y.csv": Y}, ["{z.csv}", "{y.csv}", "--weight", "1,x,1"],
     ["--weight", "value 2", "'x' is not a number"]),
    ("weight nan", {"z.csv": Z, "y.csv": Y}, ["{z.csv}", "{y.csv}", "--weight", "1,nan,1"],
     ["--weight", "value 2", "not a number"]),
    ("smoothing above 1", {"z.csv": Z, "y.csv": Y}, ["{z.csv}", "{y.csv}", "--label-smoothing", "1.5"],
     ["--label-smoothing", "between 0 and 1"]),
    ("smoothing negative", {"z.csv": Z, "y.csv": Y}, ["{z.csv}", "{y.csv}", "--label-smoothing", "-0.1"],
     ["between 0 and 1"]),
    ("smoothing nan", {"z.csv": Z, "y.csv": Y}, ["{z.csv}", "{y.csv}", "--label-smoothing", "nan"],
     ["--label-smoothing", "not a number"]),
    ("smoothing not a number", {"z.csv": Z, "y.csv": Y}, ["{z.csv}", "{y.csv}", "--label-smoothing", "lots"],
     ["--label-smoothing", "lots"]),
    ("unknown reduction", {"z.csv": Z, "y.csv": Y}, ["{z.csv}", "{y.csv}", "--reduction", "avg"],
     ["--reduction", "avg"]),
    ("unknown dtype", {"z.csv": Z, "y.csv": Y}, ["{z.csv}", "{y.csv}", "--dtype", "float16"], ["--dtype"]),
    ("unknown option", {"z.csv": Z, "y.csv": Y}, ["{z.csv}", "{y.csv}", "--frobnicate"], ["--frobnicate"]),
    ("ignore-index not int", {"z.csv": Z, "y.csv": Y}, ["{z.csv}", "{y.csv}", "--ignore-index", "1.5"],
     ["--ignore-index"]),
    ("missing labels", {"z.csv": Z}, ["{z.csv}"], ["missing LABELS"]),
    ("missing both", {}, [], ["missing LOGITS"]),
    ("extra argument", {"z.csv": Z, "y.csv": Y}, ["{z.csv}", "{y.csv}", "{y.csv}"], ["unexpected extra argument"]),
    ("inline and file", {"z.csv": Z, "y.csv": Y}, ["--logits", SEED_LOGITS, "{z.csv}", "{y.csv}"],
     ["unexpected extra argument", "--logits given inline"]),
    ("both stdin", {}, ["-", "-"], ["standard input"]),
    ("inline logits bad", {}, ["--logits", "2,1,x;0,1,2", "--labels", SEED_LABELS],
     ["--logits", "row 1", "column 3", "'x' is not a number"]),
    ("inline logits ragged", {}, ["--logits", "2,1,0;0,1", "--labels", SEED_LABELS], ["--logits", "row 2"]),
    ("inline labels out of range", {}, ["--logits", SEED_LOGITS, "--labels", "1,9"],
     ["--labels", "row 1", "column 2", "class index 9"]),
    ("inline empty", {}, ["--logits", "", "--labels", SEED_LABELS], ["--logits", "empty"]),
    # --- binary
    ("binary label above 1", {"z.csv": Z, "y.csv": "0,1,0\n1,2,0\n"}, ["--binary", "{z.csv}", "{y.csv}"],
     ["y.csv", "row 2", "column 2", "outside [0, 1]"]),
    ("binary label negative", {"z.csv": Z, "y.csv": "0,1,0\n1,-0.5,0\n"}, ["--binary", "{z.csv}", "{y.csv}"],
     ["y.csv", "row 2", "column 2", "outside [0, 1]"]),
    ("binary shape", {"z.csv": Z, "y.csv": Y}, ["--binary", "{z.csv}", "{y.csv}"],
     ["y.csv", "binary cross-entropy needs labels with the logits' shape"]),
    ("binary smoothing", {"z.csv": Z, "y.csv": "0,1,0\n1,0,0\n"},
     ["--binary", "{z.csv}", "{y.csv}", "--label-smoothing", "0.1"],
     ["--label-smoothing", "binary cross-entropy"]),
    ("binary ignore", {"z.csv": Z, "y.csv": "0,1,0\n1,0,0\n"},
     ["--binary", "{z.csv}", "{y.csv}", "--ignore-index", "1"],
     ["--ignore-index", "binary cross-entropy"]),
    ("pos-weight without binary", {"z.csv": Z, "y.csv": Y}, ["{z.csv}", "{y.csv}", "--pos-weight", "2"],
     ["--pos-weight", "does not apply to the softmax cross-entropy"]),
    ("pos-weight negative", {"z.csv": Z, "y.csv": "0,1,0\n1,0,0\n"},
     ["--binary", "{z.csv}", "{y.csv}", "--pos-weight", "-1"],
     ["--pos-weight", "negative"]),
    ("pos-weight wrong length", {"z.csv": Z, "y.csv": "0,1,0\n1,0,0\n"},
     ["--binary", "{z.csv}", "{y.csv}", "--pos-weight", "1,2"], ["--pos-weight", "has 2 values"]),
    # --- .npy files
    ("corrupt npy", {"z.npy": b"\x93NUMPY\x01\x00garbage", "y.csv": Y}, ["{z.npy}", "{y.csv}"],
     ["z.npy", ".npy"]),
    ("truncated npy", {"z.npy": npy_bytes(np.ones((4, 3)))[:-7], "y.csv": Y}, ["{z.npy}", "{y.csv}"],
     ["z.npy", ".npy"]),
    ("npy without magic", {"z.npy": b"2,1,0.1\n", "y.csv": Y}, ["{z.npy}", "{y.csv}"],
     ["z.npy", "magic"]),
    ("pickled npy", {"z.npy": npy_bytes(np.array([[1, "a"]], dtype=object)), "y.csv": Y}, ["{z.npy}", "{y.csv}"],
     ["z.npy", "pickled data is never loaded"]),
    ("string npy", {"z.npy": npy_bytes(np.array([["a", "b"]])), "y.csv": Y}, ["{z.npy}", "{y.csv}"],
     ["z.npy", "real numbers"]),
    ("3-d npy with csv labels", {"z.npy": npy_bytes(np.ones((2, 3, 1))), "y.csv": Y}, ["{z.npy}", "{y.csv}"],
     ["z.npy", "3 dimensions (2, 3, 1)", "need .npy labels"]),
    ("3-d npy labels of 2-d logits", {"z.npy": npy_bytes(np.ones((2, 3))), "y.npy": npy_bytes(np.ones((2, 3, 1)))},
     ["{z.npy}", "{y.npy}"], ["y.npy", "3 dimensions"]),
    ("empty npy", {"z.npy": npy_bytes(np.ones((0, 3))), "y.csv": Y}, ["{z.npy}", "{y.csv}"], ["z.npy", "empty"]),
    ("npy nan", {"z.npy": npy_bytes(np.array([[2, 1, 0.1], [0.1, np.nan, 1.9]])), "y.csv": Y}, ["{z.npy}", "{y.csv}"],
     ["z.npy", "row 2", "column 2", "NaN"]),
    ("npy labels out of range", {"z.csv": Z, "y.npy": npy_bytes(np.array([1, 4]))}, ["{z.csv}", "{y.npy}"],
     ["y.npy", "row 2", "class index 4"]),
    ("complex npy", {"z.npy": npy_bytes(np.ones((2, 3), dtype=complex)), "y.csv": Y}, ["{z.npy}", "{y.csv}"],
     ["z.npy", "complex"]),
    # --- output
    ("output bad extension", {"z.csv": Z, "y.csv": Y}, ["{z.csv}", "{y.csv}", "-o", "{tmp}/g.json"],
     ["g.json", "unknown extension"]),
    ("output is an input", {"z.csv": Z, "y.csv": Y}, ["{z.csv}", "{y.csv}", "-o", "{y.csv}"],
     ["y.csv", "refusing to overwrite"]),
    ("output dir missing", {"z.csv": Z, "y.csv": Y}, ["{z.csv}", "{y.csv}", "-o", "{tmp}/no/such/g.csv"],
     ["does not exist"]),
]


def _materialise(tmp_path, files, args):
    paths = {}
    for name, content in files.items():
        p = tmp_path / name
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8", newline="")
        paths[name] = p
    out = []
    for a in args:
        for name, p in paths.items():
            a = a.replace("{" + name + "}", str(p))
        out.append(a.replace("{tmp}", str(tmp_path)))
    return out, paths


@pytest.mark.parametrize(("files", "args", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(xent, tmp_path, files, args, fragments):
    argv, paths = _materialise(tmp_path, files, args)
    before = {p: p.read_bytes() for p in paths.values()}
    run = xent("compute", *argv)
    line = one_error_line(run)
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert {p: p.read_bytes() for p in paths.values()} == before  # inputs untouched


@pytest.mark.parametrize(("files", "args", "fragments"), [c[1:] for c in CASES if "-o" not in c[2]],
                         ids=[c[0] for c in CASES if "-o" not in c[2]])
def test_bad_input_writes_nothing(xent, tmp_path, files, args, fragments):
    argv, _ = _materialise(tmp_path, files, args)
    out = tmp_path / "out" / "grad.csv"
    out.parent.mkdir()
    run = xent("compute", *argv, "--output", out)
    assert run.code == 2, run
    assert list(out.parent.iterdir()) == []


def test_output_refused_before_reading_stdin(xent, tmp_path):
    z = tmp_path / "z.csv"
    z.write_text(Z)
    run = xent("compute", z, "-", "-o", z, input=Y)
    one_error_line(run)
    assert z.read_text() == Z


def test_error_line_is_one_line_even_for_multiline_values(xent):
    run = xent("compute", "--logits", SEED_LOGITS, "--labels", SEED_LABELS, "--weight", "1,\n2")
    one_error_line(run)
