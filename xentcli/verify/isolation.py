"""Run the target in a worker process, so that ``xent verify`` survives the code it checks.

The worker (:mod:`.worker`) is a fresh Python interpreter with xent's own
``sys.path``. It loads the target once, then receives case after case; xent
waits for each answer at most ``timeout`` seconds (the first case's limit also
covers loading the target), and:

* a case whose worker died (a segfault, ``os._exit``, an abort in C code) is a
  failed case, "crashed: SIGSEGV (signal 11)", and a new worker takes the
  remaining cases;
* a case over the time limit is killed (with the worker's process group) and
  failed, "timed out after T s";
* with ``max_memory`` the worker may allocate that much beyond what it holds
  before loading the target (Linux's RLIMIT_DATA: heap and private mappings);
  an allocation beyond it fails, and the case is failed, "exceeded the memory
  limit";
* what the target prints (file descriptors 1 and 2, also from C) is captured
  and kept per case (the last :data:`OUTPUT_KEPT` bytes), for the report of a
  failing case; it never reaches xent's own output.

Targets named ``path/file.py:function`` or ``module:function`` are always
isolated. A function object is sent by reference (its module and name, or its
file when its module cannot be imported by name) and any other callable
(``functools.partial``, a callable instance) pickled; what cannot be sent (a
lambda, a function defined inside another, one defined at an interactive
prompt, an object that does not pickle) runs in this process with an
:class:`~xentcli.errors.XentWarning` saying so, unless isolation was required.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import queue
import re
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import types
import warnings
import weakref
from typing import Any

import numpy as np

from ..errors import XentInputError, XentWarning
from ..limits import DEFAULT_TIMEOUT, check_timeout, format_size, memory_limit_unsupported, parse_size
from ..spec import LossSpec
from .native import call_target, check_target
from .wire import WireError, decode_reply, read_frame, write_frame

__all__ = ["DEFAULT_TIMEOUT", "Executor", "InProcess", "TargetFailed", "describe_exit"]

OUTPUT_KEPT = 4096  # bytes of each case's output kept: its end
MARKER_WAIT = 2.0  # seconds to wait for the rest of a case's output once its result is in
POLL = 0.25  # seconds between checks while waiting (Ctrl-C is handled at least this often)


class TargetFailed(Exception):
    """The target gave no loss for a case: it raised, returned no numbers, crashed, timed out or ran out of memory.

    ``error`` is the case's verdict ("raised ValueError: ...", "crashed: SIGSEGV (signal 11)", "timed out after
    2 s", "exceeded the memory limit (64 MiB)"), ``fault`` is ``"crash"``, ``"timeout"`` or ``"memory"`` when
    the worker process failed (None when the target raised) and ``output`` what it printed during the case.
    """

    def __init__(self, error: str, fault: str | None = None, output: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.fault = fault
        self.output = output


# --------------------------------------------------------------------------
# How a target reaches the worker
# --------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def target_spec(fn: Any) -> tuple[dict[str, Any] | None, str]:
    """What the worker needs to load ``fn`` (or None), and why it cannot be sent when it cannot."""
    if isinstance(fn, str):
        return {"kind": "name", "target": fn}, ""
    if isinstance(fn, types.FunctionType):
        qualname = fn.__qualname__
        if "<lambda>" in qualname:
            return None, "it is a lambda, which another process cannot import"
        if "<locals>" in qualname:
            return None, "it is defined inside a function, which another process cannot import"
        module = fn.__module__ or ""
        mod = sys.modules.get(module)
        file = getattr(mod, "__file__", None) if mod is not None else fn.__globals__.get("__file__")
        file = os.path.abspath(file) if isinstance(file, str) and os.path.isfile(file) else None
        if file is None and (module == "__main__" or mod is None):
            return None, "it is not defined in a file (an interactive session?), which another process cannot import"
        return {"kind": "function", "module": module, "file": file, "qualname": qualname}, ""
    try:
        data = pickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - whatever pickling raises, the object stays here
        return None, f"it cannot be pickled ({type(exc).__name__}: {_one_line(exc)})"
    return {"kind": "pickle", "data": data}, ""


# --------------------------------------------------------------------------
# The two ways to call a target
# --------------------------------------------------------------------------


class InProcess:
    """Call the target in this process (``isolate=False``, ``--in-process``): for debugging, without limits.

    What it prints goes to stderr, so that it cannot corrupt a report on stdout.
    """

    mode = "in-process"

    def __init__(self, fn: Any, check: dict[str, Any] | None = None) -> None:
        if isinstance(fn, str):
            from .loader import load

            fn = load(fn)
        if check is not None:
            check_target(fn, check["options"], device=check["device"], framework=check["framework"])
        self.fn = fn

    def __call__(self, logits: np.ndarray, targets: np.ndarray, options: LossSpec, **kwargs: Any
                 ) -> tuple[Any, Any, str | None]:
        with warnings.catch_warnings(), np.errstate(all="ignore"), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore")
            loss, grad = call_target(self.fn, logits, targets, options, **kwargs)
        return loss, grad, None

    def close(self, grace: float = 0.0) -> None:
        pass


class _Output:
    """What the worker printed during one case: its size and its last :data:`OUTPUT_KEPT` bytes."""

    def __init__(self) -> None:
        self.total = 0
        self.tail = bytearray()

    def add(self, data: bytes) -> None:
        if not data:
            return
        self.total += len(data)
        self.tail += data[-OUTPUT_KEPT:]
        if len(self.tail) > OUTPUT_KEPT:
            del self.tail[: len(self.tail) - OUTPUT_KEPT]

    def text(self) -> str | None:
        return output_text(bytes(self.tail), self.total)


_ESCAPES = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def output_text(tail: bytes, total: int) -> str | None:
    """Printable text of a case's output (terminal escapes removed), None when it printed nothing."""
    text = _ESCAPES.sub(b"", tail).decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROLS.sub("\ufffd", text).strip()
    if not text:
        return None
    if total > len(tail):
        text = f"[{total - len(tail):,} earlier bytes not shown]\n{text}"
    return text


class _Capture:
    """Reads the worker's captured output on a thread and splits it at the end-of-case markers."""

    def __init__(self, fd: int, marker: bytes) -> None:
        self.fd = fd
        self.marker = marker
        self.cond = threading.Condition()
        self.done: dict[int, _Output] = {}
        self.current = _Output()
        self.eof = False
        self.last = time.monotonic()
        self.thread = threading.Thread(target=self._run, name="xent-verify-output", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            pending = self._feed(pending + chunk)
        with self.cond:
            self.current.add(pending)
            self.eof = True
            self.cond.notify_all()

    def _feed(self, data: bytes) -> bytes:
        """Take the complete part of ``data``; return what may be the start of a marker."""
        marker = self.marker
        while True:
            i = data.find(marker)
            if i < 0:
                keep = next((k for k in range(min(len(marker) - 1, len(data)), 0, -1)
                             if data.endswith(marker[:k])), 0)
                self._add(data[: len(data) - keep])
                return data[len(data) - keep:]
            end = data.find(b"\x1e", i + len(marker))
            if end < 0 and len(data) - i < len(marker) + 24:
                self._add(data[:i])
                return data[i:]
            number = data[i + len(marker):end] if end >= 0 else b""
            if not number.isdigit():  # not a marker after all
                self._add(data[: i + len(marker)])
                data = data[i + len(marker):]
                continue
            with self.cond:
                self.current.add(data[:i])
                self.done[int(number)] = self.current
                self.current = _Output()
                self.last = time.monotonic()
                self.cond.notify_all()
            data = data[end + 1:]

    def _add(self, data: bytes) -> None:
        if data:
            with self.cond:
                self.current.add(data)
                self.last = time.monotonic()

    def take(self, number: int, wait: float) -> str | None:
        """The output of case ``number`` (counted in this worker), waiting up to ``wait`` s for its marker,
        or for the end of the stream; without its marker, everything since the previous one."""
        deadline = time.monotonic() + wait
        with self.cond:
            while number not in self.done and not self.eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(min(left, POLL))
            out = self.done.pop(number, None)
            if out is None:
                out, self.current = self.current, _Output()
            for old in [k for k in self.done if k < number]:
                del self.done[old]
        return out.text()

    def settle(self, quiet: float, at_most: float) -> None:
        """Wait for output to arrive and then stop for ``quiet`` s (at most ``at_most`` s in all)."""
        start = time.monotonic()
        deadline = start + at_most
        while time.monotonic() < deadline:
            with self.cond:
                if self.eof or (self.last > start and time.monotonic() - self.last >= quiet):
                    return
            time.sleep(min(quiet, POLL) / 2)


class _TimedOut(Exception):
    pass


class _Died(Exception):
    pass


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the worker and whatever it started in its process group (before it is reaped: no pid reuse)."""
    if os.name == "posix":
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    else:  # pragma: no cover - Windows
        try:
            proc.kill()
        except OSError:
            pass


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Finalizer of a worker nobody closed: kill it and reap it."""
    if proc.returncode is None:
        _kill_group(proc)
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)


def _exited(pid: int, wait: float) -> bool:
    """True once process ``pid`` has ended (within ``wait`` s), without reaping it."""
    waitid = getattr(os, "waitid", None)
    if waitid is None:  # pragma: no cover - Windows, old macOS
        time.sleep(min(wait, 0.1))
        return True
    deadline = time.monotonic() + wait
    while True:
        try:
            if waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
                return True
        except ChildProcessError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


class _Worker:
    """One worker process: started, fed cases, and ended (by xent, or by the target)."""

    def __init__(self, spec: dict[str, Any], max_memory: int | None, check: dict[str, Any] | None = None) -> None:
        from .worker import BOOT, SYS_PATH_VARIABLE

        self.marker = b"\x1exent-case-end-" + os.urandom(8).hex().encode("ascii") + b"-"
        env = dict(os.environ)
        env[SYS_PATH_VARIABLE] = json.dumps([str(p) for p in sys.path])
        extra: dict[str, Any] = {}
        if os.name == "posix":
            extra["start_new_session"] = True  # Ctrl-C at a terminal reaches xent only; killpg ends it all
        else:  # pragma: no cover - Windows
            extra["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-c", BOOT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, close_fds=True, **extra)
        self._finalizer = weakref.finalize(self, _end, self.proc)
        assert self.proc.stdin is not None and self.proc.stdout is not None and self.proc.stderr is not None
        self.replies: queue.Queue[tuple[str, bytes | str]] = queue.Queue()
        self.capture = _Capture(self.proc.stderr.fileno(), self.marker)
        threading.Thread(target=self._read_replies, name="xent-verify-replies", daemon=True).start()
        # One sender writes the messages in order: two threads writing frames to the same pipe could
        # interleave them when the worker is not reading yet (a case's arrays do not fit in the pipe).
        self._outbox: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._write_messages, name="xent-verify-send", daemon=True).start()
        self.ready = False
        self.import_seconds = 0.0
        self.cases = 0
        self.killed = False
        self._send({"marker": self.marker, "target": spec, "max_memory": max_memory, "check": check})

    def _read_replies(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            try:
                payload = read_frame(fd)
            except (OSError, WireError) as exc:
                self.replies.put(("eof", str(exc)))
                return
            if payload is None:
                self.replies.put(("eof", ""))
                return
            self.replies.put(("reply", payload))

    def _send(self, message: dict[str, Any]) -> None:
        """Send on the sender thread: a worker still loading the target does not read, and must not block xent."""
        self._outbox.put(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    def _write_messages(self) -> None:
        assert self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        while (payload := self._outbox.get()) is not None:
            try:
                write_frame(fd, payload)
            except OSError:
                return  # the worker is gone: what it did is in its replies and its exit status

    def _one_reply(self, deadline: float | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The next reply, decoded; a "ready" reply is recorded. Raises _TimedOut at ``deadline`` and _Died when
        the worker ends or sends what cannot be decoded."""
        while True:
            left = POLL if deadline is None else min(POLL, deadline - time.monotonic())
            if left <= 0:
                raise _TimedOut()
            try:
                kind, payload = self.replies.get(timeout=left)
            except queue.Empty:
                continue
            if kind == "eof":
                raise _Died(payload)
            assert isinstance(payload, bytes)
            try:
                header, arrays = decode_reply(payload)
            except WireError as exc:
                raise _Died(str(exc)) from None
            if header["kind"] == "ready":
                self.ready = True
                self.import_seconds = float(header.get("import_seconds", 0.0))
            return header, arrays

    def next_reply(self, deadline: float | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The next reply other than "ready"; raises _TimedOut at ``deadline`` and _Died when the worker ends."""
        while True:
            header, arrays = self._one_reply(deadline)
            if header["kind"] != "ready":
                return header, arrays

    def call(self, message: dict[str, Any], timeout: float | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        start = self.started if self.cases == 0 else time.monotonic()
        self.cases += 1
        self._send(message)
        return self.next_reply(None if timeout is None else start + timeout)

    def wait_ready(self, timeout: float | None) -> dict[str, Any] | None:
        """Wait until the target is loaded: None, or the worker's reply saying why it cannot be."""
        deadline = None if timeout is None else self.started + timeout
        while not self.ready:
            header, _ = self._one_reply(deadline)
            if header["kind"] != "ready":
                return header
        return None

    def traceback(self) -> None:
        """Ask a worker that timed out where it is stuck (its Python traceback goes to the captured output)."""
        if hasattr(signal, "SIGUSR1") and self.proc.returncode is None:
            try:
                os.kill(self.proc.pid, signal.SIGUSR1)
            except (ProcessLookupError, PermissionError):
                return
            self.capture.settle(quiet=0.1, at_most=0.5)

    def stop(self, grace: float) -> int:
        """End the worker and its process group: it has ``grace`` s to end by itself (it is told to by the
        end of its input), then it is killed. Its exit status."""
        self._outbox.put(None)
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        if not _exited(self.proc.pid, grace):
            self.killed = True
        _kill_group(self.proc)  # also what it started; before the worker is reaped, so its pid is still its own
        code = self.proc.wait()
        self._finalizer.detach()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        return code


_FRAME = re.compile(r'^\s*File "(?P<file>.*)", line (?P<line>\d+) in (?P<name>.*)$')


def whereabouts(output: str | None) -> str:
    """``; at path/file.py:12 in f`` from the traceback a worker printed (the innermost frame of the target's
    own code, not Python's library or xent's), else ``; its last output: ...``; empty without output."""
    if not output:
        return ""
    skip = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]  # xentcli itself
    skip += [sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib") if sysconfig.get_paths().get(k)]
    lines = output.splitlines()
    for line in lines:
        m = _FRAME.match(line)
        if m and m["file"] != "<string>" and not any(m["file"].startswith(root + os.sep) for root in skip):
            return f"; at {m['file']}:{m['line']} in {m['name']}"
    return f"; its last output: {lines[-1][:300]}"


def describe_exit(code: int) -> str:
    """``SIGSEGV (signal 11)`` for a process ended by a signal, ``exited with code 3`` otherwise."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
        return f"{name} (signal {-code})"
    if sys.platform == "win32" and code >= 0xC0000000:  # pragma: no cover - Windows exception codes
        known = {0xC0000005: "access violation", 0xC00000FD: "stack overflow", 0xC0000409: "stack buffer overrun"}
        return f"exit status 0x{code:08X}" + (f" ({known[code]})" if code in known else "")
    return f"exited with code {code}"


class Isolated:
    """Call the target in a worker process; after a crash or a timeout, a new worker takes the next case."""

    mode = "process"

    def __init__(self, spec: dict[str, Any], label: str, timeout: float | None, max_memory: int | None,
                 check: dict[str, Any] | None = None) -> None:
        self.spec = spec
        self.check = check
        self.label = label
        self.timeout = timeout
        self.max_memory = max_memory
        self.worker: _Worker | None = None
        self.workers = 0

    def _start(self) -> _Worker:
        self.workers += 1
        return _Worker(self.spec, self.max_memory, self.check)

    def load(self) -> dict[str, Any] | None:
        """Start the first worker and wait for the target to load; None, or the worker's reason it cannot.

        Raises :class:`XentInputError` when loading crashed or did not finish within the time limit.
        """
        worker = self.worker = self._start()
        try:
            header = worker.wait_ready(self.timeout)
        except _TimedOut:
            worker.traceback()
            worker.stop(0.0)
            self.worker = None
            where = whereabouts(worker.capture.take(0, MARKER_WAIT))
            raise XentInputError(f"loading it did not finish within the time limit of {self.timeout:g} s per case "
                                 f"(which includes importing the target){where}", source=self.label) from None
        except _Died:
            code = worker.stop(1.0)
            self.worker = None
            where = whereabouts(worker.capture.take(0, MARKER_WAIT))
            raise XentInputError(f"crashed while being loaded: {describe_exit(code)}{where}",
                                 source=self.label) from None
        if header is None:
            return None
        worker.stop(1.0)
        self.worker = None
        if header["kind"] == "setup-error":
            raise XentInputError(str(header.get("message")), option="max_memory")
        if header.get("memory") and self.max_memory is not None:
            raise XentInputError(f"loading it exceeded the memory limit ({format_size(self.max_memory)}): "
                                 f"{header.get('message')}", source=self.label)
        return header

    def __call__(self, logits: np.ndarray, targets: np.ndarray, options: LossSpec, **kwargs: Any
                 ) -> tuple[Any, Any, str | None]:
        if self.worker is None:
            try:
                self.worker = self._start()
            except OSError as exc:
                raise TargetFailed(f"no new worker process could be started: {exc}", "crash") from None
        worker = self.worker
        number = worker.cases
        message = {"logits": logits, "targets": targets, "options": options, "kwargs": kwargs}
        try:
            header, arrays = worker.call(message, self.timeout)
        except _TimedOut:
            worker.traceback()
            worker.stop(0.0)
            self.worker = None
            output = worker.capture.take(number, MARKER_WAIT)
            assert self.timeout is not None
            if not worker.ready:
                raise TargetFailed(f"timed out after {self.timeout:g} s, loading the target again", "timeout",
                                   output) from None
            note = f" (of which {worker.import_seconds:.1f} s loading the target)" if number == 0 else ""
            raise TargetFailed(f"timed out after {self.timeout:g} s{note}", "timeout", output) from None
        except _Died:
            code = worker.stop(1.0)
            self.worker = None
            output = worker.capture.take(number, MARKER_WAIT)
            raise self._crash(code, output, worker.killed) from None
        kind = header["kind"]
        if kind == "load-error":
            worker.stop(1.0)
            self.worker = None
            raise TargetFailed(f"could not be loaded again in a new worker: {header.get('message')}", "crash")
        output = worker.capture.take(number, MARKER_WAIT if header.get("marked") else 0.0)
        if header.get("poisoned"):  # its CUDA context is lost: the next case gets a new worker
            worker.stop(0.0)
            self.worker = None
        if kind == "returned":
            return arrays.get("loss"), arrays.get("grad"), output
        if kind == "raised":
            text = header.get("text") or ""
            raise TargetFailed(f"raised {header.get('type')}" + (f": {text}" if text else ""), None, output)
        if kind == "not-numbers":
            raise TargetFailed(f"returned something that is not numbers: {header.get('text')}", None, output)
        if kind == "memory":
            raise TargetFailed(self._memory_text(header.get("text")), "memory", output)
        raise TargetFailed(f"the worker sent an unknown reply ({str(kind)[:40]!r})", "crash", output)

    def _memory_text(self, detail: Any) -> str:
        assert self.max_memory is not None
        return f"exceeded the memory limit ({format_size(self.max_memory)}" + (f"; {detail})" if detail else ")")

    def _crash(self, code: int, output: str | None, killed: bool) -> TargetFailed:
        from .worker import MEMORY_EXIT

        if self.max_memory is not None and code == MEMORY_EXIT:
            return TargetFailed(self._memory_text("the worker ran out of memory"), "memory", output)
        hint = ""
        if code == -getattr(signal, "SIGKILL", 9) and not killed:
            hint = " (killed from outside: the system kills processes this way when memory runs out)"
        elif self.max_memory is not None and code in (-signal.SIGSEGV, -signal.SIGABRT,
                                                      -getattr(signal, "SIGBUS", signal.SIGSEGV)):
            hint = f" (under the memory limit of {format_size(self.max_memory)}: an allocation it refused can end so)"
        return TargetFailed(f"crashed: {describe_exit(code)}{hint}", "crash", output)

    def close(self, grace: float = 1.0) -> None:
        if self.worker is not None:
            worker, self.worker = self.worker, None
            worker.stop(grace)


class Executor:
    """Calls a target on one case at a time, in a worker process or in this one, and says which.

    Use it as a context manager: entering loads the target (raising :class:`XentInputError` when it
    cannot be loaded), leaving ends the worker.
    """

    def __init__(self, fn: Any, *, isolate: bool | None = None, timeout: Any = DEFAULT_TIMEOUT,
                 max_memory: Any = None, label: str | None = None, options: LossSpec | None = None,
                 device: str | None = None, framework: str = "auto") -> None:
        self.fn = fn
        # How each case calls the target (:func:`.native.call_target`'s keywords); with ``options`` the target
        # is first checked (:func:`.native.check_target`) where it is loaded, so that one that cannot be called
        # as asked is refused before any case runs.
        self.call = {"device": device, "framework": framework}
        self.check = None if options is None else {"options": options, **self.call}
        self.label = label or (fn if isinstance(fn, str) else getattr(fn, "__qualname__", None) or repr(fn)[:80])
        self.isolate = isolate
        self.timeout = check_timeout(timeout)
        self.max_memory = None if max_memory is None else parse_size(max_memory)
        self.note: str | None = None
        self.impl: InProcess | Isolated | None = None
        if isolate is not None and not isinstance(isolate, bool):
            raise XentInputError(f"{isolate!r} is not True, False or None", option="isolate")
        if isolate is False:
            if self.max_memory is not None:
                raise XentInputError("applies only to a target run in its own process (isolate=False was given)",
                                     option="max_memory")
            if timeout is not None and timeout != DEFAULT_TIMEOUT:
                raise XentInputError("applies only to a target run in its own process (isolate=False was given)",
                                     option="timeout")
        if self.max_memory is not None:
            reason = memory_limit_unsupported()
            if reason:
                raise XentInputError(f"cannot be enforced here: {reason}", option="max_memory")

    def __enter__(self) -> Executor:
        self.open()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(grace=1.0 if exc_type is None else 0.0)  # interrupted (Ctrl-C): no waiting

    def open(self) -> None:
        if self.isolate is False:
            self.impl = InProcess(self.fn, self.check)
            return
        from . import worker

        if worker.ACTIVE:  # a script that runs its checks when imported, imported by a worker to find a target
            raise XentInputError("check() was called in xent's worker process, which imports the script to run "
                                 "its target: put the script's checks under if __name__ == '__main__':",
                                 source=self.label)
        if isinstance(self.fn, str):
            from .loader import precheck

            precheck(self.fn)  # a malformed name or a missing file is refused at once, without a worker
        spec, reason = target_spec(self.fn)
        if not sys.executable:
            spec, reason = None, "the Python executable to start a worker with is unknown"
        if spec is not None:
            isolated = Isolated(spec, self.label, self.timeout, self.max_memory, self.check)
            try:
                failure = isolated.load()
            except BaseException:
                isolated.close(0.0)
                raise
            if failure is None:
                self.impl = isolated
                return
            if failure.get("refused") and failure.get("option"):
                raise XentInputError(str(failure.get("message")), option=failure["option"])
            if spec["kind"] == "name" or failure.get("refused"):
                raise XentInputError(str(failure.get("message")), source=failure.get("source") or self.label)
            reason = f"a new process cannot load it ({failure.get('message')})"
        if self.isolate is True or self.max_memory is not None:
            raise XentInputError(f"cannot run in a separate process: {reason}", source=self.label)
        self.note = f"ran in this process, without isolation or time and memory limits: {reason}"
        warnings.warn(XentWarning(f"{self.label} {self.note}"), stacklevel=4)
        self.impl = InProcess(self.fn, self.check)

    def __call__(self, logits: np.ndarray, targets: np.ndarray, options: LossSpec, **kwargs: Any
                 ) -> tuple[Any, Any, str | None]:
        if self.impl is None:
            self.open()
        assert self.impl is not None
        return self.impl(logits, targets, options, **{**self.call, **kwargs})

    def close(self, grace: float = 1.0) -> None:
        """End the worker; it has ``grace`` s to leave by itself before it is killed."""
        if self.impl is not None:
            self.impl.close(grace)

    def describe(self) -> dict[str, Any]:
        """How the target ran, for the report."""
        isolated = isinstance(self.impl, Isolated)
        return {
            "mode": "process" if isolated else "in-process",
            "timeout": self.timeout if isolated else None,
            "max_memory": self.max_memory if isolated else None,
            "workers": self.impl.workers if isinstance(self.impl, Isolated) else 0,
            "note": self.note,
        }

