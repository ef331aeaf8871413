"""``xent verify`` survives the code it checks: real targets that crash, exit, hang, hog memory and print.

Each misbehaving target below is a correct implementation (tests/zoo/correct.py)
except on the battery's N = 1 case ("one-sample"), where it does its worst. The
command runs as a real process, and every test asserts that xent

* exits 1 (0 for a target that misbehaves only harmlessly), never 139 or 137;
* names the case and the cause, in the report and on the one stderr line;
* still checks every other case (all of them pass);
* keeps ``--format json`` valid JSON on stdout, whatever the target printed.

Then: loading failures (exit 2, one line), signals while a target hangs (exit 130, and the worker is
gone), the library API (function objects sent by reference, lambdas run in-process with a warning),
and the worker's output capture on its own.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import one_error_line

from xentcli.errors import XentInputError, XentWarning
from xentcli.limits import memory_limit_unsupported, parse_size

ZOO = Path(__file__).parent / "zoo"
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX signals and process groups")
needs_memory_limit = pytest.mark.skipif(memory_limit_unsupported() is not None,
                                        reason=memory_limit_unsupported() or "")

MISBEHAVING = """\
import ctypes
import os
import sys
import time

import numpy as np

sys.path.insert(0, {zoo!r})
from correct import ce_log_softmax


def one(z):
    return z.shape[0] == 1  # only the battery's one-sample case has N = 1


def segfault(z, t):
    if one(z):
        ctypes.string_at(0)
    return ce_log_softmax(z, t)


def exits(z, t):
    if one(z):
        os._exit(3)
    return ce_log_softmax(z, t)


def hangs(z, t):
    if one(z):
        pid_file = os.environ.get("XENT_TEST_PID_FILE")
        if pid_file:
            with open(pid_file, "w") as fh:
                fh.write(str(os.getpid()))
        time.sleep(3600)
    return ce_log_softmax(z, t)


def hogs(z, t):
    if one(z):
        chunks = []
        for _ in range(64):  # 1 GiB at most: if the limit did not hold, the case would pass and the test fail
            chunks.append(np.ones(2 << 20))  # 16 MiB, written: really allocated
    return ce_log_softmax(z, t)


def chatty(z, t):
    sys.stdout.write("y" * (4 << 20) + "\\n")
    print("the last line Python printed")
    os.write(1, b"written to file descriptor 1\\n")
    if os.name == "posix":
        ctypes.CDLL(None).printf(b"printed by C for N = %d\\n", ctypes.c_int(z.shape[0]))
    print("on stderr", file=sys.stderr)
    loss, grad = ce_log_softmax(z, t)
    return loss, (grad * 2 if one(z) else grad)


def poisons(z, t):
    with open(os.environ["XENT_TEST_PID_FILE"], "a") as fh:
        fh.write(f"{{os.getpid()}}\\n")
    if one(z):  # what torch raises once a kernel's device-side assert has poisoned the CUDA context
        raise RuntimeError("CUDA error: device-side assert triggered")
    return ce_log_softmax(z, t)


def always_exits(z, t):
    os._exit(5)


def pid(z, t):
    with open(os.environ["XENT_TEST_PID_FILE"], "w") as fh:
        fh.write(str(os.getpid()))
    return ce_log_softmax(z, t)
"""


@pytest.fixture(scope="module")
def targets(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("misbehaving")
    path = folder / "misbehaving.py"
    path.write_text(MISBEHAVING.format(zoo=str(ZOO)), encoding="utf-8")
    return path


def load_function(path: Path, name: str):
    """A function of ``path``, imported the way a test suite might (not through xent)."""
    spec = importlib.util.spec_from_file_location("misbehaving_by_path", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, COLUMNS="120", TERM="dumb", NO_COLOR="1", **extra)
    env.pop("XENT_DEBUG", None)
    env.pop("PYTHONUNBUFFERED", None)  # which also unbuffers C's stdio: the worker must flush it itself
    return env


def _preexec() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as in a terminal, even if the test runner ignores it


def xent_process(*args: object, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """``xent ARGS`` as a real process (a crash in it would show as its exit status)."""
    return subprocess.run([sys.executable, "-m", "xentcli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=_env(**env), timeout=timeout,
                          preexec_fn=_preexec if os.name == "posix" else None)


def verified(targets: Path, name: str, *options: object, code: int = 1) -> tuple[dict, str]:
    """Run ``xent verify misbehaving.py:NAME --format json``; the report and the one stderr line."""
    proc = xent_process("verify", f"{targets}:{name}", "--format", "json", *options, cwd=targets.parent)
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    report = json.loads(proc.stdout)  # stdout is the report and nothing else
    lines = proc.stderr.strip("\n").split("\n") if proc.stderr else []
    assert len(lines) == (1 if code else 0), proc.stderr[-2000:]
    return report, (lines[0] if lines else "")


def the_failure(report: dict) -> dict:
    """The one failing case, which must be one-sample; every other case ran and passed."""
    failures = [c for c in report["cases"] if not c["passed"]]
    assert [c["name"] for c in failures] == ["one-sample"], [(c["name"], c["error"]) for c in failures]
    assert len(report["cases"]) == 14
    return failures[0]


# --------------------------------------------------------------------------
# The misbehaving targets of the issue
# --------------------------------------------------------------------------


@posix_only
def test_segfault_fails_its_case_and_the_other_cases_still_run(targets):
    report, line = verified(targets, "segfault")
    bad = the_failure(report)
    assert bad["error"] == "crashed: SIGSEGV (signal 11)"
    assert bad["fault"] == "crash"
    assert "Segmentation fault" in bad["output"] and "in segfault" in bad["output"]  # where it crashed
    assert line == "xent: error: verification failed on 1 of 14 cases: crashed: SIGSEGV (signal 11) in case one-sample"
    assert report["isolation"]["mode"] == "process"
    assert report["isolation"]["workers"] == 2  # a new worker took the cases after the crash


def test_os_exit_fails_its_case(targets):
    report, line = verified(targets, "exits")
    bad = the_failure(report)
    assert (bad["error"], bad["fault"]) == ("crashed: exited with code 3", "crash")
    assert line.endswith("crashed: exited with code 3 in case one-sample")


@posix_only
def test_hang_is_timed_out_and_the_other_cases_still_run(targets):
    report, line = verified(targets, "hangs", "--timeout", "4")
    bad = the_failure(report)
    assert (bad["error"], bad["fault"]) == ("timed out after 4 s", "timeout")
    assert "in hangs" in bad["output"]  # the worker's traceback, asked for before it was killed
    assert line.endswith("timed out after 4 s in case one-sample")
    assert report["isolation"]["timeout"] == 4.0


@needs_memory_limit
def test_memory_hog_exceeds_the_limit_and_the_other_cases_still_run(targets):
    report, line = verified(targets, "hogs", "--max-memory", "128M")
    bad = the_failure(report)
    assert bad["fault"] == "memory"
    assert bad["error"].startswith("exceeded the memory limit (128 MiB; Unable to allocate 16.0 MiB")
    assert "exceeded the memory limit (128 MiB" in line and line.endswith("in case one-sample")
    assert report["isolation"]["max_memory"] == 128 << 20


def test_megabytes_of_output_stay_out_of_the_report(targets):
    report, line = verified(targets, "chatty")
    bad = the_failure(report)
    assert bad["error"] is None and bad["grad"]["passed"] is False  # judged on its numbers
    out = bad["output"]
    assert out.startswith("[") and "earlier bytes not shown]" in out  # 4 MiB printed, the end kept
    for printed in ("the last line Python printed", "written to file descriptor 1", "on stderr"):
        assert printed in out
    if os.name == "posix":
        assert "printed by C for N = 1" in out  # C's stdio buffer is flushed into the capture
    assert len(out) < 5000
    assert all(c["output"] is None for c in report["cases"] if c["passed"])  # shown for failing cases only
    assert line.startswith("xent: error: verification failed on 1 of 14 cases: not recognised: gradient: a constant "
                           "factor 2 on every element")  # the evidence: no model doubles the gradient


def test_a_cuda_error_gets_the_next_case_a_new_worker(targets, tmp_path, monkeypatch):
    """After a device-side assert every CUDA call of that process fails: the other cases must not be
    judged in it."""
    from xentcli.verify import check

    pids = tmp_path / "pids"
    monkeypatch.setenv("XENT_TEST_PID_FILE", str(pids))
    report = check(f"{targets}:poisons")
    assert [(r.case.name, r.error, r.fault) for r in report.failures] == [
        ("one-sample", "raised RuntimeError: CUDA error: device-side assert triggered", None)]
    names = [r.case.name for r in report.results]
    seen = pids.read_text().split()
    assert len(seen) == 14
    where = names.index("one-sample")
    assert len(set(seen[:where + 1])) == 1 and len(set(seen[where + 1:])) == 1 and seen[where] != seen[where + 1]
    assert report.isolation["workers"] == 2


def test_a_crash_on_every_case_is_a_verdict(targets):
    """Exit 1 with the report (not 2, "raised on every case"): the target ran, and crashed."""
    proc = xent_process("verify", f"{targets}:always_exits", "--format", "json", cwd=targets.parent)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert {c["error"] for c in report["cases"]} == {"crashed: exited with code 5"}
    assert proc.stderr == ("xent: error: verification failed on 14 of 14 cases: crashed: exited with code 5 "
                           "in case random (and 13 more)\n")


def test_table_shows_a_failing_case_with_its_output(targets):
    proc = xent_process("verify", f"{targets}:exits", "--format", "table", cwd=targets.parent)
    assert proc.returncode == 1
    assert "one-sample (N = 1): crashed: exited with code 3" in proc.stdout


# --------------------------------------------------------------------------
# Loading the target: failures are usage errors (exit 2, one line)
# --------------------------------------------------------------------------


@posix_only
def test_a_target_that_crashes_on_import_cannot_be_loaded(tmp_path):
    bad = tmp_path / "crashes_on_import.py"
    bad.write_text("import ctypes\nctypes.string_at(0)\n\ndef f(z, t):\n    return 0\n", encoding="utf-8")
    proc = xent_process("verify", f"{bad}:f", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr
    assert proc.stderr == (f"xent: error: {bad}:f: crashed while being loaded: SIGSEGV (signal 11); "
                           f"at {bad}:2 in <module>\n")


@posix_only
def test_a_target_whose_import_hangs_is_stopped_by_the_first_cases_time_limit(tmp_path):
    slow = tmp_path / "hangs_on_import.py"
    slow.write_text("import time\ntime.sleep(3600)\n\ndef f(z, t):\n    return 0\n", encoding="utf-8")
    proc = xent_process("verify", f"{slow}:f", "--timeout", "1", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr
    assert proc.stderr == (f"xent: error: {slow}:f: loading it did not finish within the time limit of 1 s per "
                           f"case (which includes importing the target); at {slow}:2 in <module>\n")


# --------------------------------------------------------------------------
# Signals: xent stays in charge of a hanging target
# --------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its new parent to reap it is not running
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@posix_only
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_while_a_target_hangs_ends_xent_and_the_worker(targets, tmp_path, sig):
    pid_file = tmp_path / "worker.pid"
    proc = subprocess.Popen([sys.executable, "-m", "xentcli", "verify", f"{targets}:hangs", "--format", "json"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_preexec,
                            env=_env(XENT_TEST_PID_FILE=str(pid_file)))
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the target never started hanging"
            time.sleep(0.02)
        worker = int(pid_file.read_text())
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (proc.returncode, err, out) == (130, b"xent: interrupted\n", b"")
    assert not _alive(worker)


# --------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------


def test_in_process_runs_the_target_inside_xent(xent, targets, tmp_path, monkeypatch):
    pid_file = tmp_path / "pid"
    monkeypatch.setenv("XENT_TEST_PID_FILE", str(pid_file))
    run = xent("verify", f"{targets}:pid", "--format", "json", "--in-process")
    assert run.code == 0, run
    assert int(pid_file.read_text()) == os.getpid()
    assert run.json()["isolation"]["mode"] == "in-process"
    run = xent("verify", f"{targets}:pid", "--format", "json")
    assert run.code == 0, run
    assert int(pid_file.read_text()) != os.getpid()
    assert run.json()["isolation"] == {"mode": "process", "timeout": 60.0, "max_memory": None, "workers": 1,
                                       "note": None}


ISOLATION_USAGE = [
    (["--in-process", "--timeout", "5"], "--timeout applies to a target in its own process"),
    (["--in-process", "--max-memory", "1G"], "--max-memory applies to a target in its own process"),
    (["--timeout", "-1"], "--timeout: -1.0 must be a number of seconds >= 0 (0: no limit)"),
    (["--timeout", "nan"], "--timeout: nan must be a number of seconds"),
    (["--timeout", "soon"], "--timeout"),
    (["--max-memory", "12x"], "--max-memory: '12x' is not a size (write it as 512M, 2G or a number of bytes)"),
    (["--max-memory", "0"], "--max-memory: '0' must be more than 0 bytes"),
]


@pytest.mark.parametrize(("args", "fragment"), ISOLATION_USAGE, ids=[" ".join(a) for a, _ in ISOLATION_USAGE])
def test_isolation_options_refuse_bad_values(xent, targets, args, fragment):
    line = one_error_line(xent("verify", f"{targets}:pid", *args))
    assert fragment in line, line


def test_isolation_options_need_a_target(xent, tmp_path):
    line = one_error_line(xent("verify", "--export", tmp_path / "cases", "--timeout", "3"))
    assert "--timeout applies to a TARGET" in line
    assert not (tmp_path / "cases").exists()


def test_max_memory_is_refused_where_it_cannot_be_enforced(xent, targets, monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    line = one_error_line(xent("verify", f"{targets}:pid", "--max-memory", "1G"))
    assert "--max-memory: cannot be enforced here: memory limits are enforced on Linux only" in line


@pytest.mark.parametrize(("text", "size"), [("512M", 512 << 20), ("2G", 2 << 30), ("1.5GiB", 3 << 29),
                                            ("300MB", 300 << 20), ("64k", 64 << 10), ("1000", 1000), (4096, 4096)])
def test_sizes(text, size):
    assert parse_size(text) == size


# --------------------------------------------------------------------------
# The library: check and assert_conforms take the same isolation
# --------------------------------------------------------------------------


@posix_only
def test_check_isolates_a_function_object(targets):
    from xentcli.verify import check

    report = check(load_function(targets, "segfault"))  # in this process, the segfault would end pytest
    assert [(r.case.name, r.error, r.fault) for r in report.failures] == [
        ("one-sample", "crashed: SIGSEGV (signal 11)", "crash")]
    assert report.isolation["mode"] == "process"
    assert "FAIL one-sample: crashed: SIGSEGV (signal 11)" in report.text()
    assert "       | Fatal Python error: Segmentation fault" in report.text()  # the output, under the case


def test_assert_conforms_takes_a_name_and_the_limits(targets):
    from xentcli.verify import VerificationError, assert_conforms

    with pytest.raises(VerificationError, match="FAIL one-sample: crashed: exited with code 3") as info:
        assert_conforms(f"{targets}:exits", timeout=30)
    assert info.value.report.isolation["timeout"] == 30
    with pytest.raises(XentInputError, match="no such file"):
        assert_conforms(f"{targets.parent}/nope.py:f")


def test_a_lambda_runs_in_process_with_a_warning_unless_isolation_is_required(targets):
    from xentcli.verify import check

    ce = load_function(targets, "exits")  # correct but on N = 1, where it would end this process
    safe = lambda z, t: ce(z, t) if z.shape[0] > 1 else ce(z[[0, 0]], t[[0, 0]])  # noqa: E731
    with pytest.warns(XentWarning, match="ran in this process, without isolation or time and memory limits: "
                                         "it is a lambda"):
        report = check(safe)
    assert report.isolation["mode"] == "in-process" and "it is a lambda" in report.isolation["note"]
    assert "note: the target ran in this process" in report.text()
    with pytest.raises(XentInputError, match="cannot run in a separate process: it is a lambda"):
        check(safe, isolate=True)
    with pytest.raises(XentInputError, match="cannot run in a separate process"):
        check(safe, max_memory="1G")  # a limit asked for is never silently dropped


LIBRARY_USAGE = [
    (dict(isolate=False, max_memory="1G"), "max_memory: applies only to a target run in its own process"),
    (dict(isolate=False, timeout=5), "timeout: applies only to a target run in its own process"),
    (dict(timeout=-2), "timeout: -2 must be a number of seconds"),
    (dict(timeout="5"), "timeout: '5' is not a number of seconds"),
    (dict(max_memory=1.5), "max_memory: 1.5 is not a size"),
    (dict(isolate="yes"), "isolate: 'yes' is not True, False or None"),
]


@pytest.mark.parametrize(("kwargs", "message"), LIBRARY_USAGE, ids=[str(k) for k, _ in LIBRARY_USAGE])
def test_library_isolation_arguments_are_checked(targets, kwargs, message):
    from xentcli.verify import check

    with pytest.raises(XentInputError) as info:
        check(load_function(targets, "pid"), **kwargs)
    assert str(info.value).startswith(message), str(info.value)


SCRIPT = """\
import sys
sys.path.insert(0, {zoo!r})
from correct import ce_log_softmax
from xentcli.verify import check


def f(z, t):
    return ce_log_softmax(z, t)


{guard}report = check(f)
{indent}print(report.isolation["mode"], report.passed)
"""


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "unguarded"])
def test_a_function_of_a_script_is_isolated_when_the_script_guards_its_checks(tmp_path, guarded):
    """As with multiprocessing's spawn: the worker imports the script (not as __main__) to find f."""
    script = tmp_path / "check_mine.py"
    script.write_text(SCRIPT.format(zoo=str(ZOO), guard='if __name__ == "__main__":\n    ' if guarded else "",
                                    indent="    " if guarded else ""), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
                          env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    if guarded:
        assert (proc.stdout, proc.stderr) == ("process True\n", "")
    else:  # the worker refused to run the script's checks again, and said how to fix it
        assert proc.stdout == "in-process True\n"
        assert "XentWarning" in proc.stderr and "if __name__ == '__main__':" in proc.stderr


# --------------------------------------------------------------------------
# The worker's output, split per case
# --------------------------------------------------------------------------


def test_output_is_split_at_each_cases_marker_whatever_the_chunks():
    from xentcli.verify.isolation import OUTPUT_KEPT, _Capture

    marker = b"\x1exent-case-end-0123456789abcdef-"
    stream = (b"import noise\ncase 0 says \xe2\x9c\x93\n" + marker + b"0\x1e" + marker + b"1\x1e"
              + b"x" * (3 * OUTPUT_KEPT) + b"\x1b[31mred\x1b[0m\r\nend of 2\n" + marker + b"2\x1e"
              + marker[:10] + b" is not a marker\n" + marker + b"x\x1e" + b"tail")
    for size in (1, 7, len(marker) - 1, 4096):
        read, write = os.pipe()
        capture = _Capture(read, marker)

        def feed(size: int = size, write: int = write) -> None:
            for i in range(0, len(stream), size):
                os.write(write, stream[i:i + size])
            os.close(write)

        writer = threading.Thread(target=feed)
        writer.start()
        assert capture.take(0, 30) == "import noise\ncase 0 says ✓"
        assert capture.take(1, 30) is None  # printed nothing
        two = capture.take(2, 30)
        total = 3 * OUTPUT_KEPT + len(b"\x1b[31mred\x1b[0m\r\nend of 2\n")
        assert two.startswith(f"[{total - OUTPUT_KEPT:,} earlier bytes not shown]\nxxx")
        assert two.endswith("xred\nend of 2")  # escape sequences removed, CRLF as a newline
        writer.join()
        assert capture.take(3, 30) == (marker[:10] + b" is not a marker\n" + marker + b"x\x1etail").decode(
            "utf-8").replace("\x1e", "\ufffd")
        os.close(read)
