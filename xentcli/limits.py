"""The limits ``xent verify`` puts on the code it checks, defined once for the library and the command line.

A target runs in a worker process (``xentcli.verify.isolation``) with a time
limit per case, :data:`DEFAULT_TIMEOUT` seconds unless told otherwise (the
first case's limit also covers loading the target), and optionally a memory
limit. This module imports neither NumPy nor click, so that the command line
can show and check these values without loading the library.
"""

from __future__ import annotations

import math
import numbers
import re
import sys
from typing import Any

from .errors import XentInputError

__all__ = ["DEFAULT_TIMEOUT", "check_timeout", "format_size", "memory_limit_unsupported", "parse_size"]

DEFAULT_TIMEOUT = 60.0  # seconds per case: room for importing torch or JAX and a first CUDA or XLA compilation

_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_HOW = "write it as 512M, 2G or a number of bytes"


def parse_size(value: Any) -> int:
    """Bytes from ``512M``, ``2G``, ``1.5GiB``, ``300MB`` (powers of 1024) or a whole number of bytes."""
    if isinstance(value, bool):
        raise XentInputError(f"{value!r} is not a size ({_HOW})", option="max_memory")
    if isinstance(value, numbers.Integral):
        size = int(value)
    elif isinstance(value, str):
        m = _SIZE.match(value)
        if m is None:
            raise XentInputError(f"{value!r} is not a size ({_HOW})", option="max_memory")
        size = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    else:
        raise XentInputError(f"{value!r} is not a size ({_HOW})", option="max_memory")
    if size <= 0:
        raise XentInputError(f"{value!r} must be more than 0 bytes", option="max_memory")
    return size


def format_size(size: int) -> str:
    """``64 MiB``, ``1.5 GiB``."""
    for unit, name in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if size >= unit:
            return f"{size / unit:.3g} {name}"
    return f"{size} bytes"


def memory_limit_unsupported() -> str | None:
    """Why this system cannot enforce a memory limit (None: it can).

    The limit is Linux's RLIMIT_DATA (since Linux 4.7 it counts every private
    writable mapping, so NumPy's large arrays too). macOS accepts resource
    limits but does not enforce them; Windows has none.
    """
    platform = sys.platform  # (a variable: the type checker knows only one platform)
    if not platform.startswith("linux"):
        return f"memory limits are enforced on Linux only (this system is {platform})"
    try:
        import resource
    except ImportError:  # pragma: no cover
        return "the resource module is not available"
    if not hasattr(resource, "RLIMIT_DATA"):  # pragma: no cover
        return "RLIMIT_DATA is not available"
    return None


def check_timeout(timeout: Any) -> float | None:
    """Seconds per case, or None for no limit (also for 0 and infinity)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise XentInputError(f"{timeout!r} is not a number of seconds", option="timeout")
    value = float(timeout)
    if math.isnan(value) or value < 0:
        raise XentInputError(f"{timeout!r} must be a number of seconds >= 0 (0: no limit)", option="timeout")
    return None if value == 0 or math.isinf(value) else value
