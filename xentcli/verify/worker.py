"""The worker process that runs a target for ``xent verify``; :mod:`.isolation` starts it, never a user.

It loads the target once (a ``path/file.py:function`` or ``module:function``
name through :func:`.loader.load`, a function by its module and name, or a
pickled callable), then reads case after case from its standard input, calls
the target through :func:`.native.call_target` and writes back the loss and
gradient as arrays (:mod:`.wire`). Its own standard output and error (file
descriptors 1 and 2, so also what C code prints) go to a pipe that xent reads
and keeps per case; a marker after each case tells xent where that case's
output ends. It ignores Ctrl-C (xent decides), dies with xent, and runs under
the memory limit when one is given.
"""

from __future__ import annotations

import faulthandler
import importlib
import importlib.util
import os
import pickle
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import XentInputError
from .wire import encode_reply, read_frame, write_frame

# Set in the worker: check() called from inside a worker (a script without ``if __name__ == "__main__":``
# that runs its checks again when the worker imports it) must not start a worker of its own.
ACTIVE = False
SYS_PATH_VARIABLE = "XENT_VERIFY_WORKER_SYS_PATH"
# How the worker is started: with xent's own sys.path, so that it imports this xentcli and finds what xent
# finds (a test module, a script's neighbours), and without the current directory shadowing NumPy.
BOOT = (
    "import json, os, sys; "
    f"sys.path[:] = json.loads(os.environ.pop({SYS_PATH_VARIABLE!r})); "
    "from xentcli.verify.worker import main; main()"
)
# An error after which the process's device context is unusable (a CUDA device-side assert, an illegal
# memory access): every later call fails the same way, so the next case gets a new worker.
POISON = re.compile(r"CUDA error|CUDA_ERROR|cudaError|device-side assert|illegal memory access|CUBLAS_STATUS_"
                    r"|CUDNN_STATUS_", re.IGNORECASE)
# The worker ran out of memory outside the target (reading a case, writing a result) under the limit.
MEMORY_EXIT = 87

_libc_fflush: Callable[[Any], int] | None = None


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def _detach_standard_streams() -> tuple[int, int]:
    """Keep the protocol pipes on new descriptors; 0 reads nothing, 1 joins 2 (the captured output)."""
    commands, replies = os.dup(0), os.dup(1)  # not inherited by anything the target starts
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    return commands, replies


def _die_with_parent() -> None:
    """End this process when xent ends, even if xent is killed outright while a target hangs."""
    parent = os.getppid()
    linux = sys.platform.startswith("linux")  # (a variable: the type checker knows only one platform)
    if linux:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent:  # xent ended before the request took effect
            os._exit(1)
        return
    if os.name != "posix":  # Windows: no parent-death signal; xent kills the worker when it ends normally
        return

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="xent-parent-watch", daemon=True).start()


def _flush_output() -> None:
    """Push what the target printed (Python's buffers and C's stdio buffers) into the pipe."""
    global _libc_fflush
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # noqa: BLE001 - a stream the target replaced or closed
            pass
    if sys.platform != "win32":
        try:
            if _libc_fflush is None:
                import ctypes

                _libc_fflush = ctypes.CDLL(None).fflush
            _libc_fflush(None)
        except (OSError, AttributeError):
            pass


def _data_size() -> int | None:
    """This process's data size as the kernel counts it for RLIMIT_DATA (Linux), in bytes."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def limit_memory(extra: int) -> int:
    """Let this process allocate at most ``extra`` bytes more than it holds now; returns what it holds."""
    import resource

    base = _data_size()
    if base is None:
        raise OSError("the process's data size cannot be read (/proc/self/status)")
    limit = base + extra
    _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    return base


def _attribute(obj: Any, qualname: str) -> Any:
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _same_file(module: Any, file: str) -> bool:
    path = getattr(module, "__file__", None)
    return isinstance(path, str) and os.path.realpath(path) == os.path.realpath(file)


def _load_function(module: str, file: str | None, qualname: str) -> Any:
    """A module-level function: imported by its module's name when that is the same file, else from the file
    (a module xent's caller loaded from a path; a script, under another name than ``__main__``)."""
    if module != "__main__":
        try:
            mod = importlib.import_module(module)
        except ImportError:
            mod = None
        if mod is not None and (file is None or _same_file(mod, file)):
            return _attribute(mod, qualname)
    if file is None or not os.path.isfile(file):
        raise LookupError(f"{module}.{qualname} cannot be found by importing {module}")
    name = "__xent_main__" if module == "__main__" else module
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise LookupError(f"{file} cannot be imported")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    spec.loader.exec_module(loaded)
    return _attribute(loaded, qualname)


def load(spec: dict[str, Any]) -> Any:
    kind = spec["kind"]
    if kind == "name":
        from .loader import load as load_name

        return load_name(spec["target"])
    if kind == "function":
        return _load_function(spec["module"], spec["file"], spec["qualname"])
    return pickle.loads(spec["data"])


def _load_error(exc: BaseException, limited: bool) -> dict[str, Any]:
    memory = limited and (isinstance(exc, MemoryError) or isinstance(exc.__context__, MemoryError))
    if isinstance(exc, XentInputError):
        return {"kind": "load-error", "message": exc.message, "source": exc.source, "memory": memory,
                "option": exc.option}
    text = one_line(exc)
    return {"kind": "load-error", "message": f"{type(exc).__name__}: {text}" if text else type(exc).__name__,
            "source": None, "memory": memory}


def run_case(fn: Any, message: dict[str, Any], limited: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Call the target on one case; the reply's header and arrays."""
    from .native import call_target
    from .runner import to_array

    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            loss, grad = call_target(fn, message["logits"], message["targets"], message["options"],
                                     **message["kwargs"])
            try:
                arrays = {"loss": to_array(loss)}
                if grad is not None:
                    arrays["grad"] = to_array(grad)
            except (TypeError, ValueError) as exc:
                return {"kind": "not-numbers", "text": one_line(exc)}, {}
    except MemoryError as exc:
        if limited:
            return {"kind": "memory", "text": one_line(exc)}, {}
        return {"kind": "raised", "type": type(exc).__name__, "text": one_line(exc)}, {}
    except BaseException as exc:  # noqa: BLE001 - the target's failure, even SystemExit, is a result
        text = one_line(exc)
        return {"kind": "raised", "type": type(exc).__name__, "text": text, "poisoned": bool(POISON.search(text))}, {}
    return {"kind": "returned"}, arrays


def _mark(marker: bytes, number: int) -> bool:
    """Write the end-of-case marker into the captured output (False if the target closed it)."""
    _flush_output()
    try:
        os.write(2, marker + str(number).encode("ascii") + b"\x1e")
        return True
    except OSError:
        return False


def main() -> None:
    global ACTIVE
    ACTIVE = True
    commands, replies = _detach_standard_streams()
    if hasattr(signal, "SIGINT"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is xent's to handle: it ends this process
    _die_with_parent()
    faulthandler.enable(file=sys.stderr, all_threads=True)  # a crash leaves its Python traceback in the output
    if hasattr(signal, "SIGUSR1"):  # xent asks for a traceback before it kills a target that timed out
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)

    def reply(header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> None:
        write_frame(replies, encode_reply(header, arrays))

    try:
        payload = read_frame(commands)
        if payload is None:
            os._exit(0)
        config = pickle.loads(payload)
        marker: bytes = config["marker"]
        limited = config["max_memory"] is not None
        if limited:
            try:
                limit_memory(config["max_memory"])
            except (OSError, ValueError) as exc:
                reply({"kind": "setup-error", "message": f"the memory limit cannot be set: {one_line(exc)}"})
                os._exit(0)
        start = time.monotonic()
        try:
            fn = load(config["target"])
        except BaseException as exc:  # noqa: BLE001 - a target that cannot be loaded is reported, not raised
            _flush_output()
            reply(_load_error(exc, limited))
            os._exit(0)
        check = config.get("check")
        if check is not None:  # a target that cannot be called as asked is refused before any case
            from .native import check_target

            try:
                check_target(fn, check["options"], device=check["device"], framework=check["framework"])
            except XentInputError as exc:
                _flush_output()
                reply({**_load_error(exc, limited), "refused": True})
                os._exit(0)
        reply({"kind": "ready", "import_seconds": time.monotonic() - start})
        number = 0
        while True:
            payload = read_frame(commands)
            if payload is None:
                break
            message = pickle.loads(payload)
            header, arrays = run_case(fn, message, limited)
            header["marked"] = _mark(marker, number)
            number += 1
            reply(header, arrays)
            del message, header, arrays
    except MemoryError:
        os._exit(MEMORY_EXIT)
    except (BrokenPipeError, EOFError):  # xent went away
        os._exit(1)
    _flush_output()
    os._exit(0)


