"""No data lost: interruptions, write errors and refusals leave every earlier file as it was.

Every file xent writes (``compute --output``, streamed or in memory,
``derive --output``, ``verify --export``) goes to a temporary file in the
same directory and is renamed into place. Whatever happens before the
rename (SIGINT, SIGTERM, a full disk, a failing fsync or rename, a bad row
deep inside the input, a failure in the reader or writer thread) the earlier
file at the output path keeps its bytes and its mode, and the directory
holds exactly the files it held before: no partial file, no temporary file.
An error is one line on stderr naming the file and the reason (exit 2); an
interruption is the one line ``xent: interrupted`` (exit 130).

Real signals are sent to ``python -m xentcli`` in a subprocess while it is
writing (the temporary file exists). Write errors are real where that is
possible without privileges (a file-size limit makes the kernel refuse the
write) and injected in-process otherwise: xentcli's ``os`` calls are routed
through :class:`Faults`, which hands out files that run out of space after a
byte budget and can make fsync, rename or the creation of the temporary file
fail.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import SEED_LABELS, SEED_LOGITS, one_error_line

from xentcli import files, numeric, sources, stream
from xentcli import writers as atomic_writers

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and resource limits")

EARLIER = b"an earlier result that must survive, byte for byte\n"
EARLIER_MODE = 0o640
INTERRUPTED = "xent: interrupted\n"


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root`` (dot files included): its bytes and permission bits."""
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            p = Path(dirpath, name)
            out[str(p.relative_to(root))] = (p.read_bytes(), stat.S_IMODE(p.lstat().st_mode))
    return out


def temporaries(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name.endswith(".tmp"))


def plant_earlier(path: Path) -> None:
    path.write_bytes(EARLIER)
    os.chmod(path, EARLIER_MODE)


def assert_earlier_untouched(path: Path) -> None:
    assert path.read_bytes() == EARLIER
    assert stat.S_IMODE(path.stat().st_mode) == EARLIER_MODE


def table_text(arr: np.ndarray) -> str:
    return "\n".join(",".join(repr(float(v)) for v in row) for row in arr) + "\n"


def write_inputs(folder: Path, n: int = 600, c: int = 6, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    z = folder / "z.csv"
    y = folder / "y.csv"
    z.write_text(table_text(rng.normal(scale=3.0, size=(n, c))))
    y.write_text("".join(f"{i % c}\n" for i in range(n)))
    return z, y


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Read, compute and write in blocks of a few rows: every stream crosses many blocks."""
    monkeypatch.setattr(sources, "CHUNK_BYTES", 997)
    monkeypatch.setattr(numeric.blocks, "BLOCK_ELEMENTS", 64)
    monkeypatch.setattr(numeric.blocks, "PARALLEL_MIN", 256)


@pytest.fixture(params=["fast", "numpy"])
def engine(request, monkeypatch):
    """Text written through polars (when installed) or NumPy's savetxt."""
    monkeypatch.setattr(sources, "_POLARS", False if request.param == "numpy" else None)
    return request.param


@pytest.fixture
def writers(monkeypatch):
    """Counts the streamed writers created (proves which path a run took)."""
    made = []
    real_init = stream.GradWriter.__init__

    def init(self, *args, **kwargs):
        made.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(stream.GradWriter, "__init__", init)
    return made


# --------------------------------------------------------------------------
# Fault injection in-process
# --------------------------------------------------------------------------


class FaultyFile:
    """A file object that takes ``budget`` more bytes (shared by all files) and then fails as a full disk
    does: the part that fits is written, then ENOSPC (or a Ctrl-C, with ``interrupt``)."""

    def __init__(self, faults: Faults, fh) -> None:
        self._faults = faults
        self._fh = fh

    def write(self, data):
        view = memoryview(data).cast("B")  # a str raises TypeError here, as a binary file does
        f = self._faults
        if f.budget is not None and len(view) > f.budget:
            fits = f.budget
            if fits:
                self._fh.write(view[:fits])
            f.budget = 0
            f.hits += 1
            if f.interrupt:
                raise KeyboardInterrupt
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if f.budget is not None:
            f.budget -= len(view)
        return self._fh.write(view)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()
        return False

    def __iter__(self):
        return iter(self._fh)


class Faults:
    """Stands in for the ``os`` module inside xentcli.files and xentcli.stream."""

    def __init__(self) -> None:
        self.budget: int | None = None  # bytes the disk still takes
        self.interrupt = False  # running out of budget is a Ctrl-C instead of ENOSPC
        self.fsync_error: OSError | None = None
        self.replace_error: OSError | None = None
        self.create_error: OSError | None = None
        self.hits = 0

    def __getattr__(self, name):
        return getattr(os, name)

    def fdopen(self, fd, *args, **kwargs):
        return FaultyFile(self, os.fdopen(fd, *args, **kwargs))

    def open(self, path, flags, *args, **kwargs):
        if self.create_error is not None and str(path).endswith(".tmp"):
            self.hits += 1
            raise self.create_error
        return os.open(path, flags, *args, **kwargs)

    def fsync(self, fd):
        if self.fsync_error is not None:
            self.hits += 1
            raise self.fsync_error
        return os.fsync(fd)

    def replace(self, src, dst, *args, **kwargs):
        if self.replace_error is not None:
            self.hits += 1
            raise self.replace_error
        return os.replace(src, dst, *args, **kwargs)


@pytest.fixture
def faults(monkeypatch):
    f = Faults()
    monkeypatch.setattr(atomic_writers, "os", f)
    return f


@dataclass
class Job:
    """A command that writes ``target`` (an earlier version of which exists) somewhere under ``root``."""

    args: list
    target: Path
    streamed: bool
    budget: int  # bytes after which the disk is full: in the middle of the output
    named: str  # the error line names this file (a prefix of it for a directory export)
    fresh: dict | None = None  # export: the bytes of each file in a complete new export (root-relative)


def assert_nothing_lost(root: Path, before: dict, job: Job) -> None:
    """The same files as before, each with its earlier bytes and mode; only an export may have replaced
    some files, each by a whole new file. The earlier file at the target is untouched."""
    after = snapshot(root)
    assert sorted(after) == sorted(before)  # no partial file, no temporary file
    for name, (data, mode) in after.items():
        if (data, mode) != before[name]:
            assert job.fresh is not None and data == job.fresh.get(name), f"{name} was changed"
    assert_earlier_untouched(job.target)


def make_job(kind: str, root: Path, xent) -> Job:
    if kind.startswith("stream"):
        z, y = write_inputs(root)
        out = root / f"grad.{kind.split('-')[1]}"
        plant_earlier(out)
        return Job(["compute", z, y, "-o", out, "--format", "json"], out, True, 20_000, str(out))
    if kind.startswith("memory"):
        out = root / f"grad.{kind.split('-')[1]}"
        plant_earlier(out)
        args = ["compute", "--logits", SEED_LOGITS, "--labels", SEED_LABELS, "-o", out, "--format", "json"]
        return Job(args, out, False, 40, str(out))
    if kind == "derive":
        out = root / "ce.md"
        plant_earlier(out)
        return Job(["derive", "--classes", "2", "--format", "markdown", "-o", out], out, False, 1000, str(out))
    if kind == "export":
        cases = root / "cases"
        earlier = xent("verify", "--export", cases, "--seed", "1")  # an earlier export, replaced case by case
        assert earlier.code == 0, earlier
        manifest = cases / "manifest.json"
        os.chmod(manifest, EARLIER_MODE)
        manifest.write_bytes(EARLIER)
        reference = root.parent / f"{root.name}-fresh-export"  # what a complete new export writes
        assert xent("verify", "--export", reference, "--seed", "2").code == 0
        fresh = {str(Path("cases") / k): data for k, (data, _mode) in snapshot(reference).items()}
        return Job(["verify", "--export", cases, "--seed", "2"], manifest, False, 300_000, str(cases) + os.sep, fresh)
    raise AssertionError(kind)


JOBS = ["stream-csv", "stream-npy", "memory-csv", "memory-npy", "derive", "export"]

FAULTS = {
    # name: (set up, expected reason)
    "disk-full": (lambda f, job: setattr(f, "budget", job.budget), "No space left on device"),
    "disk-full-at-once": (lambda f, job: setattr(f, "budget", 0), "No space left on device"),
    "fsync": (lambda f, job: setattr(f, "fsync_error", OSError(errno.EIO, os.strerror(errno.EIO))),
              os.strerror(errno.EIO)),
    "rename": (lambda f, job: setattr(f, "replace_error", OSError(errno.EXDEV, os.strerror(errno.EXDEV))),
               os.strerror(errno.EXDEV)),
    "read-only-dir": (lambda f, job: setattr(f, "create_error", PermissionError(errno.EACCES, "Permission denied")),
                      "Permission denied"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("kind", JOBS)
def test_write_error_keeps_the_earlier_file_and_leaves_nothing(xent, tmp_path, tiny_blocks, faults, writers,
                                                                kind, fault):
    job = make_job(kind, tmp_path, xent)
    before = snapshot(tmp_path)
    setup, reason = FAULTS[fault]
    setup(faults, job)
    run = xent(*job.args)
    line = one_error_line(run)
    assert line.startswith(f"xent: error: {job.named}"), line
    assert line.endswith(f": cannot be written: {reason}"), line
    assert faults.hits, "the fault was never hit"
    assert bool(writers) == job.streamed
    assert_nothing_lost(tmp_path, before, job)


@pytest.mark.parametrize("kind", JOBS)
def test_interrupt_while_writing_keeps_the_earlier_file(xent, tmp_path, tiny_blocks, faults, monkeypatch, writers,
                                                        kind):
    """Ctrl-C in the middle of the output: exit 130, one line, the earlier file as it was, no temporary file."""
    job = make_job(kind, tmp_path, xent)
    before = snapshot(tmp_path)
    if job.streamed:  # the main thread computes while the writer thread writes: interrupt the 4th block
        real = stream._compute_block
        calls = []

        def compute_block(*args, **kwargs):
            calls.append(1)
            if len(calls) == 4:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(stream, "_compute_block", compute_block)
    else:  # the main thread writes: interrupt it half-way through the file
        faults.budget = job.budget
        faults.interrupt = True
    run = xent(*job.args)
    assert (run.code, run.stderr, run.stdout) == (130, INTERRUPTED, ""), run
    assert bool(writers) == job.streamed
    assert_nothing_lost(tmp_path, before, job)


@pytest.mark.parametrize(("kind", "when"), [(kind, "creating") for kind in JOBS]
                         + [("stream-csv", "just-created"), ("stream-npy", "just-created")])
def test_interrupt_as_the_temporary_file_is_created(xent, tmp_path, faults, monkeypatch, writers, kind, when):
    """Ctrl-C the moment the temporary file exists, before anything holds on to it: it is still removed."""
    job = make_job(kind, tmp_path, xent)
    before = snapshot(tmp_path)
    if when == "creating":  # the file exists, its file object does not yet

        def fdopen(fd, *args, **kwargs):
            faults.hits += 1
            raise KeyboardInterrupt

        monkeypatch.setattr(faults, "fdopen", fdopen, raising=False)
    else:  # the stream's writer object is complete but not yet in the caller's hands

        class Interrupted(stream.GradWriter):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                faults.hits += 1
                raise KeyboardInterrupt

        monkeypatch.setattr(stream, "GradWriter", Interrupted)
    run = xent(*job.args)
    assert (run.code, run.stderr, run.stdout) == (130, INTERRUPTED, ""), run
    assert faults.hits
    assert_nothing_lost(tmp_path, before, job)


@pytest.mark.parametrize("fmt", ["csv", "npy"])
def test_successful_replacement_keeps_the_mode(xent, tmp_path, tiny_blocks, fmt):
    z, y = write_inputs(tmp_path)
    for args in ([z, y], ["--logits", SEED_LOGITS, "--labels", SEED_LABELS]):  # streamed, in memory
        out = tmp_path / f"grad.{fmt}"
        plant_earlier(out)
        run = xent("compute", *args, "-o", out)
        assert run.code == 0, run
        assert out.read_bytes() != EARLIER
        assert stat.S_IMODE(out.stat().st_mode) == EARLIER_MODE
        assert temporaries(tmp_path) == []


# --------------------------------------------------------------------------
# Failures in the reader and writer threads of the stream
# --------------------------------------------------------------------------


@pytest.fixture
def spy_abort(monkeypatch):
    """Size of the temporary file when the writer is aborted: proves blocks were written before the failure."""
    sizes = []
    real = stream.GradWriter.abort

    def abort(self):
        fh = self.file.fh
        if self.tmp is not None and os.path.exists(self.tmp):
            if fh is not None and not fh.closed:
                try:
                    fh.flush()
                except (OSError, ValueError):
                    pass
            sizes.append(os.path.getsize(self.tmp))
        real(self)

    monkeypatch.setattr(stream.GradWriter, "abort", abort)
    return sizes


@pytest.mark.parametrize("where", ["logits", "labels"])
@pytest.mark.parametrize("fmt", ["csv", "npy"])
def test_bad_row_deep_inside_the_input(xent, tmp_path, tiny_blocks, engine, spy_abort, where, fmt):
    """The reader thread fails on row 2901 of 3000, after many blocks went to the temporary file."""
    z, y = write_inputs(tmp_path, n=3000, c=4)
    bad = z if where == "logits" else y
    lines = bad.read_text().splitlines()
    lines[2900] = "1,2,x,4" if where == "logits" else "cat"
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / f"grad.{fmt}"
    plant_earlier(out)
    before = snapshot(tmp_path)
    line = one_error_line(xent("compute", z, y, "-o", out, "--reduction", "sum"))  # no pre-pass over the labels
    if where == "logits":
        assert line == "xent: error: " + f"{z}: row 2901, column 3: 'x' is not a number", line
    else:
        assert line.startswith(f"xent: error: {y}: row 2901, column 1: 'cat' is not a number"), line
    assert spy_abort and spy_abort[0] > 20_000, spy_abort  # many blocks had been written
    assert snapshot(tmp_path) == before
    assert_earlier_untouched(out)


@pytest.mark.parametrize(("error", "expected"), [
    (OSError(errno.EIO, os.strerror(errno.EIO)), f": cannot be written: {os.strerror(errno.EIO)}"),
    (OSError(f"[Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}"),
     f": cannot be written: {os.strerror(errno.ENOSPC)}"),
    (OSError(f"{os.strerror(errno.EFBIG)} (os error {errno.EFBIG})"),
     f": cannot be written: {os.strerror(errno.EFBIG)}"),
    (RuntimeError("the formatter broke"), "the formatter broke"),
], ids=["eio", "errno-in-text", "os-error-in-text", "bug"])
def test_writer_thread_failure(xent, tmp_path, tiny_blocks, engine, monkeypatch, spy_abort, error, expected):
    """The writer thread fails on its 6th block (an OSError as polars re-raises it: errno only in the text)."""
    z, y = write_inputs(tmp_path, n=3000, c=4)
    out = tmp_path / "grad.csv"
    plant_earlier(out)
    before = snapshot(tmp_path)
    real = stream.write_block
    calls = []

    def write_block(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(stream, "write_block", write_block)
    line = one_error_line(xent("compute", z, y, "-o", out))
    assert expected in line, line
    if isinstance(error, OSError):
        assert line == f"xent: error: {out}{expected}"
    assert snapshot(tmp_path) == before
    assert_earlier_untouched(out)


# --------------------------------------------------------------------------
# Output paths refused before any work
# --------------------------------------------------------------------------


@pytest.fixture
def no_compute(monkeypatch):
    """Fails the test if a loss is computed: the refusal must come first."""

    def boom(*args, **kwargs):
        raise AssertionError("computed before refusing the output path")

    monkeypatch.setattr(numeric, "cross_entropy", boom)
    monkeypatch.setattr(stream, "_compute_block", boom)


def _compute_args(mode: str, z: Path, y: Path) -> list:
    return [z, y] if mode == "files" else ["--logits", SEED_LOGITS, "--labels", SEED_LABELS]


@pytest.mark.parametrize("mode", ["files", "inline"])
@pytest.mark.parametrize(("case", "fragment"), [
    ("missing-dir", "does not exist"),
    ("parent-is-a-file", "is not a directory"),
    ("is-a-directory", "is a directory"),
    ("dir-not-writable", "is not writable"),
])
def test_unusable_output_path_is_refused_up_front(xent, tmp_path, monkeypatch, no_compute, mode, case, fragment):
    z, y = write_inputs(tmp_path, n=4, c=3)
    out = {
        "missing-dir": tmp_path / "no" / "such" / "grad.csv",
        "parent-is-a-file": z / "grad.csv",
        "is-a-directory": tmp_path / "grad.csv",
        "dir-not-writable": tmp_path / "locked" / "grad.csv",
    }[case]
    if case == "is-a-directory":
        out.mkdir()
    if case == "dir-not-writable":
        out.parent.mkdir()
        real_access = os.access
        monkeypatch.setattr(files, "os", _Proxy(access=lambda p, m, **k: False if Path(p) == out.parent
                                                else real_access(p, m, **k)))
    before = snapshot(tmp_path)
    line = one_error_line(xent("compute", *_compute_args(mode, z, y), "-o", out))
    assert line.startswith(f"xent: error: {out}: ") and fragment in line, line
    assert snapshot(tmp_path) == before


class _Proxy:
    def __init__(self, **overrides):
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(os, name)


@posix_only
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory_for_real(xent, tmp_path):
    z, y = write_inputs(tmp_path, n=4, c=3)
    locked = tmp_path / "locked"
    locked.mkdir()
    out = locked / "grad.csv"
    plant_earlier(out)
    os.chmod(locked, 0o555)
    try:
        line = one_error_line(xent("compute", z, y, "-o", out))
        assert "is not writable" in line
        line = one_error_line(xent("derive", "--classes", "2", "-o", locked / "ce.md"))
        assert line.endswith("cannot be written: Permission denied"), line
        assert sorted(p.name for p in locked.iterdir()) == ["grad.csv"]
        assert_earlier_untouched(out)
    finally:
        os.chmod(locked, 0o755)


def test_derive_output_in_a_missing_directory_or_under_a_file(xent, tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("x\n")
    before = snapshot(tmp_path)
    for out, reason in ((tmp_path / "no" / "ce.md", "No such file or directory"), (afile / "ce.md", "Not a directory")):
        line = one_error_line(xent("derive", "--classes", "2", "-o", out))
        assert line.startswith(f"xent: error: {out}: ") and line.endswith(reason), line
    (tmp_path / "d.md").mkdir()
    line = one_error_line(xent("derive", "--classes", "2", "-o", tmp_path / "d.md"))
    assert line == f"xent: error: {tmp_path / 'd.md'}: is a directory"
    (tmp_path / "d.md").rmdir()
    assert snapshot(tmp_path) == before


def test_export_under_a_file_is_one_line(xent, tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("x\n")
    before = snapshot(tmp_path)
    for target in (afile, afile / "cases"):
        line = one_error_line(xent("verify", "--export", target))
        assert str(target) in line and "unexpected" not in line, line
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------
# Refusing to write over an input
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "which"), [("files", "logits"), ("files", "labels"), ("npy", "logits"),
                                             ("npy", "labels"), ("inline-logits", "labels")])
@pytest.mark.parametrize("alias", ["same", "relative", "dot-slash", "absolute", "symlink", "hardlink",
                                   "symlinked-dir"])
def test_output_over_an_input_is_refused(xent, tmp_path, monkeypatch, no_compute, mode, alias, which):
    monkeypatch.chdir(tmp_path)
    if mode == "npy":
        np.save(tmp_path / "z.npy", np.random.default_rng(0).normal(size=(4, 3)))
        np.save(tmp_path / "y.npy", np.arange(4) % 3)
        z, y = Path("z.npy"), Path("y.npy")
    else:
        z, y = (p.relative_to(tmp_path) for p in write_inputs(tmp_path, n=4, c=3))
    if mode == "inline-logits":
        args = ["--logits", "2,1,0.1;0.1,2,1.9;0,0,0;1,1,1", str(y)]
    else:
        args = [str(z), str(y)]
    victim = z if which == "logits" else y
    if alias == "same":
        out = str(victim)
    elif alias == "relative":
        (tmp_path / "sub").mkdir()
        out = f"sub/../{victim}"
    elif alias == "dot-slash":
        out = f"./{victim}"
    elif alias == "absolute":
        out = str(tmp_path / victim)
    elif alias == "symlink":
        out = f"link{victim.suffix}"
        os.symlink(victim, out)
    elif alias == "hardlink":
        out = f"hard{victim.suffix}"
        os.link(victim, out)
    else:
        os.symlink(tmp_path, "mirror")
        out = f"mirror/{victim}"
    before = snapshot(tmp_path)
    line = one_error_line(xent("compute", *args, "-o", out))
    assert line == f"xent: error: {Path(out)}: is one of the input files; refusing to overwrite it", line
    assert snapshot(tmp_path) == before


def test_derive_check_modifies_nothing(xent, tmp_path):
    folder = tmp_path / "derivations"
    folder.mkdir()
    for name, args in (("ce-2.md", ["--format", "markdown"]), ("bce-2.json", ["--loss", "bce", "--format", "json"])):
        assert xent("derive", "--classes", "2", *args, "-o", folder / name).code == 0
    drifted = folder / "ce-2.md"
    drifted.write_text(drifted.read_text().replace("Softmax", "Softmaxx", 1))
    os.chmod(drifted, 0o600)
    before = snapshot(tmp_path)
    times = {p: p.stat().st_mtime_ns for p in folder.iterdir()}
    run = xent("derive", "--check", folder)
    assert run.code == 1, run
    assert "differs" in run.stdout
    assert snapshot(tmp_path) == before
    assert {p: p.stat().st_mtime_ns for p in folder.iterdir()} == times


# --------------------------------------------------------------------------
# Real signals and real write errors, in a subprocess
# --------------------------------------------------------------------------

N_BIG, C_BIG = 200_000, 100


@pytest.fixture(scope="session")
def big(tmp_path_factory) -> tuple[Path, Path]:
    """A logits file that takes a few seconds to stream (200000 x 100), written once per session."""
    folder = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(11)
    block = 2000
    buf = io.BytesIO()
    np.savetxt(buf, np.round(rng.normal(scale=3.0, size=(block, C_BIG)), 1), fmt="%.1f", delimiter=",")
    text = buf.getvalue()
    z = folder / "big.csv"
    with open(z, "wb") as fh:
        for _ in range(N_BIG // block):
            fh.write(text)
    y = folder / "labels.npy"  # read at once (a text column's first block is parsed with care: slower)
    np.save(y, np.arange(N_BIG) % C_BIG)
    return z, y


def _env() -> dict:
    env = dict(os.environ, COLUMNS="120", TERM="dumb")
    env.pop("XENT_DEBUG", None)
    return env


def _preexec(file_size_limit: int | None = None):
    def setup() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # as in a terminal, even if the test runner ignores it
        if file_size_limit is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return setup


def start(args: list, *, cwd: Path, stdin=subprocess.DEVNULL, limit: int | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *[str(a) for a in args]], cwd=cwd, stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), preexec_fn=_preexec(limit))


def wait_for(proc: subprocess.Popen, ready, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"finished (exit {proc.returncode}) before {what}: {err.decode()!r}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} after {timeout} s")
        time.sleep(0.002)


def finish(proc: subprocess.Popen, timeout: float = 15.0) -> tuple[int, str, str, float]:
    """Wait for the end; a process that does not end promptly (a thread keeping it alive) fails the test."""
    t0 = time.monotonic()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        if hasattr(signal, "SIGUSR1"):
            proc.send_signal(signal.SIGUSR1)  # the scripts below print every thread's stack on it
            time.sleep(1.0)
        proc.kill()
        err = proc.communicate()[1].decode(errors="replace")
        pytest.fail(f"still running {timeout} s after the signal; its stderr: {err}")
    return proc.returncode, out.decode(), err.decode(), time.monotonic() - t0


def temp_of(folder: Path, target: str):
    return lambda: any(n.startswith(f".{target}.") and n.endswith(".tmp") for n in os.listdir(folder))


def assert_interrupted(code: int, out: str, err: str) -> None:
    assert code == 130, (code, err)
    assert err == INTERRUPTED, err  # exactly one line, no traceback, no blank line
    assert out == ""


SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]


@posix_only
@pytest.mark.parametrize("fmt", ["csv", "npy"])
@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_while_streaming(big, tmp_path, sig, fmt):
    z, y = big
    out = tmp_path / f"grad.{fmt}"
    plant_earlier(out)
    before = snapshot(tmp_path)
    proc = start(["-m", "xentcli", "compute", z, y, "--output", out.name], cwd=tmp_path)
    wait_for(proc, temp_of(tmp_path, out.name), "a temporary file")
    proc.send_signal(sig)
    code, stdout, stderr, seconds = finish(proc)
    assert_interrupted(code, stdout, stderr)
    assert seconds < 10, seconds
    assert snapshot(tmp_path) == before
    assert_earlier_untouched(out)


@posix_only
def test_repeated_ctrl_c_still_cleans_up(big, tmp_path):
    z, y = big
    out = tmp_path / "grad.csv"
    plant_earlier(out)
    before = snapshot(tmp_path)
    proc = start(["-m", "xentcli", "compute", z, y, "-o", out], cwd=tmp_path)
    wait_for(proc, temp_of(tmp_path, out.name), "a temporary file")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.001)
    proc.send_signal(signal.SIGINT)
    assert_interrupted(*finish(proc)[:3])
    assert snapshot(tmp_path) == before


# A slow disk: fsync takes a minute, so the signal lands while the temporary file is being written.
SLOW_FSYNC = """\
import faulthandler, os, signal, sys, time
faulthandler.register(signal.SIGUSR1)
_fsync = os.fsync
def slow_fsync(fd):
    time.sleep(60)
    _fsync(fd)
os.fsync = slow_fsync
from xentcli.cli import main
main(sys.argv[1:])
"""

# fsync that the signal cannot interrupt (as on a disk that does not answer): the main thread blocks
# SIGINT/SIGTERM while it waits, so neither stops the wait nor runs Python's handler.
STUCK_FSYNC = SLOW_FSYNC.replace(
    "    time.sleep(60)",
    "    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})\n"
    "    open(os.environ['XENT_TEST_STUCK'], 'w').close()  # tells the test the wait has begun\n"
    "    time.sleep(60)")


@posix_only
@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("what", ["compute-in-memory", "derive", "export"])
def test_signal_while_writing_slowly(xent, tmp_path, sig, what):
    if what == "compute-in-memory":
        target, folder = tmp_path / "grad.npy", tmp_path
        args = ["compute", "--logits", SEED_LOGITS, "--labels", SEED_LABELS, "-o", target]
    elif what == "derive":
        target, folder = tmp_path / "ce.md", tmp_path
        args = ["derive", "--classes", "3", "-o", target]
    else:
        folder = tmp_path / "cases"
        assert xent("verify", "--export", folder, "--seed", "1").code == 0  # an earlier export
        target = folder / "manifest.json"
        args = ["verify", "--export", folder, "--seed", "2"]
    plant_earlier(target)
    before = snapshot(tmp_path)
    proc = start(["-c", SLOW_FSYNC, *args], cwd=tmp_path)
    wait_for(proc, lambda: bool(temporaries(tmp_path)), "a temporary file")
    proc.send_signal(sig)
    assert_interrupted(*finish(proc)[:3])
    assert snapshot(tmp_path) == before
    assert_earlier_untouched(target)


@posix_only
@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="needs pthread_sigmask")
@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_while_a_system_call_holds_the_main_thread(xent, tmp_path_factory, monkeypatch, sig):
    from xentcli.cli import GRACE_SECONDS

    tmp_path = tmp_path_factory.mktemp("out")
    stuck = tmp_path_factory.mktemp("marker") / "stuck"  # outside the folder whose files are compared
    monkeypatch.setenv("XENT_TEST_STUCK", str(stuck))
    target = tmp_path / "grad.npy"
    plant_earlier(target)
    before = snapshot(tmp_path)
    proc = start(["-c", STUCK_FSYNC, "compute", "--logits", SEED_LOGITS, "--labels", SEED_LABELS, "-o", target],
                 cwd=tmp_path)
    wait_for(proc, stuck.exists, "the stuck fsync")
    proc.send_signal(sig)
    code, out, err, seconds = finish(proc, timeout=GRACE_SECONDS + 10)
    assert_interrupted(code, out, err)
    assert GRACE_SECONDS - 1 < seconds < GRACE_SECONDS + 8, seconds
    assert snapshot(tmp_path) == before
    assert_earlier_untouched(target)


# The first proof check (an exact SymPy comparison) stops in the middle and tells the test so: the
# signal lands inside the check, where an error raised by SymPy is caught and reported as a failed check.
INSIDE_A_CHECK = """\
import inspect, sys, time
import xentcli.cli
from xentcli.symbolic import concrete
real = concrete.ConcreteBackend._check_all
signature = inspect.signature(real)
def check_all(*args, **kwargs):
    bound = signature.bind(*args, **kwargs)
    ok = bound.arguments["ok"]
    def stopping(k):
        open(sys.argv[1], "w").close()
        time.sleep(60)
        return ok(k)
    bound.arguments["ok"] = stopping
    return real(*bound.args, **bound.kwargs)
concrete.ConcreteBackend._check_all = check_all
xentcli.cli.main(sys.argv[2:])
"""


@posix_only
@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_inside_a_proof_check(tmp_path, sig):
    """No check may take the signal for a failed check (and write a "NOT proved" document)."""
    target = tmp_path / "ce.md"
    plant_earlier(target)
    ready = tmp_path.parent / f"{tmp_path.name}-ready"
    proc = start(["-c", INSIDE_A_CHECK, ready, "derive", "--classes", "3", "-o", target], cwd=tmp_path)
    before = snapshot(tmp_path)
    wait_for(proc, ready.exists, "the first check")
    proc.send_signal(sig)
    assert_interrupted(*finish(proc)[:3])
    assert snapshot(tmp_path) == before
    assert_earlier_untouched(target)


@posix_only
def test_ctrl_c_while_reading_standard_input(big, tmp_path):
    """The in-memory path (standard input), interrupted while it waits for more input."""
    z, y = big
    out = tmp_path / "grad.csv"
    plant_earlier(out)
    before = snapshot(tmp_path)
    proc = start(["-m", "xentcli", "compute", "-", y, "-o", out], cwd=tmp_path, stdin=subprocess.PIPE)
    with open(z, "rb") as fh:
        proc.stdin.write(fh.read(8 << 20))  # returns once the reader took (almost) all of it: it is running
    proc.stdin.flush()
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    code, stdout, stderr, _ = finish(proc)
    proc.stdin.close()
    assert_interrupted(code, stdout, stderr)
    assert snapshot(tmp_path) == before


@posix_only
@pytest.mark.parametrize("how", ["streamed-csv", "streamed-npy", "in-memory"])
def test_real_write_error_from_the_kernel(big, tmp_path, how):
    """A file-size limit (RLIMIT_FSIZE, 1 MiB) makes the kernel refuse the write, as a full disk does."""
    fmt = "npy" if how.endswith("npy") else "csv"
    out = tmp_path / f"grad.{fmt}"
    plant_earlier(out)
    if how == "in-memory":  # standard input is read into memory: 5000 x 100 logits, a 10 MB gradient
        z = tmp_path / "z.csv"
        with open(big[0], "rb") as fh:
            z.write_bytes(b"".join(fh.readline() for _ in range(5000)))
        y = tmp_path / "y.csv"
        y.write_text("".join(f"{i % C_BIG}\n" for i in range(5000)))
        before = snapshot(tmp_path)
        with open(z, "rb") as stdin:
            proc = start(["-m", "xentcli", "compute", "-", y, "-o", out], cwd=tmp_path, stdin=stdin, limit=1 << 20)
            code, stdout, stderr, _ = finish(proc, timeout=60)
    else:
        before = snapshot(tmp_path)
        proc = start(["-m", "xentcli", "compute", *big, "-o", out], cwd=tmp_path, limit=1 << 20)
        code, stdout, stderr, _ = finish(proc, timeout=60)
    assert (code, stdout) == (2, ""), stderr
    assert stderr == f"xent: error: {out}: cannot be written: {os.strerror(errno.EFBIG)}\n"
    assert snapshot(tmp_path) == before
    assert_earlier_untouched(out)


@posix_only
def test_standard_input_redirected_from_the_output_is_refused(tmp_path):
    z, y = write_inputs(tmp_path, n=4, c=3)
    before = snapshot(tmp_path)
    with open(z, "rb") as stdin:
        proc = start(["-m", "xentcli", "compute", "-", y, "-o", z], cwd=tmp_path, stdin=stdin)
        code, out, err, _ = finish(proc, timeout=60)
    assert (code, out) == (2, ""), err
    assert err == f"xent: error: {z}: is the file on standard input; refusing to overwrite it\n"
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------
# Streamed to standard output (JSON, CSV): a reader that goes away, an interruption
# --------------------------------------------------------------------------


@posix_only
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_reader_going_away_mid_stream_ends_quietly(big, tmp_path, fmt):
    """``xent compute big.csv labels --format json | head -c 5000``: exit 0, nothing on stderr, at once."""
    z, y = big
    proc = start(["-m", "xentcli", "compute", z, y, "--format", fmt], cwd=tmp_path)
    first = proc.stdout.read(5000)  # the stream has started: the first pass is over
    assert len(first) == 5000
    proc.stdout.close()  # the reader goes away
    t0 = time.monotonic()
    try:
        err = proc.stderr.read()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - t0 < 10
    assert proc.returncode == 0, err
    assert err == b"", err
    assert first.startswith(b"{\n  \"kind\": \"cross_entropy\"" if fmt == "json" else b"sample,loss,p_0,")


@posix_only
@pytest.mark.parametrize("fmt", ["json", "csv"])
@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_mid_stream_is_one_line(big, tmp_path, fmt, sig):
    """Ctrl-C (or SIGTERM) while the numbers are being printed: exit 130, one line, no traceback."""
    z, y = big
    proc = start(["-m", "xentcli", "compute", z, y, "--format", fmt], cwd=tmp_path)
    assert len(proc.stdout.read(5000)) == 5000  # printing has begun
    proc.send_signal(sig)
    try:
        proc.stdout.read()  # drain, so that a blocked write cannot hide the signal
        code = proc.wait(timeout=30)
        err = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 130, err
    assert err == INTERRUPTED, err
    assert temporaries(tmp_path) == []


def test_output_thread_failure_reaches_the_caller(xent, tmp_path, tiny_blocks, monkeypatch):
    """A failure while formatting on the output thread is one line, not a hang or a lost error."""
    from xentcli import numtext

    compute_cli = __import__("importlib").import_module("xentcli.cli.compute")
    monkeypatch.setattr(compute_cli, "STREAM_MIN_BYTES", 0)
    z, y = write_inputs(tmp_path, n=3000, c=4)
    calls = []
    real = numtext.json_rows_parts  # what the streamed JSON's output thread formats with

    def json_rows_parts(block):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the formatter broke")
        return real(block)

    monkeypatch.setattr(numtext, "json_rows_parts", json_rows_parts)
    run = xent("compute", z, y, "--format", "json")
    assert run.code == 2, run
    assert "the formatter broke" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
