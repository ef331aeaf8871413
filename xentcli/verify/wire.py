"""The pipe protocol between xent and the worker process that runs a target (see :mod:`.isolation`).

Every message is a frame: an 8-byte little-endian length, then the payload.

* xent -> worker: a pickle (the worker trusts xent: the configuration, then one
  case at a time with its arrays and the options).
* worker -> xent: a reply that xent can read without trusting the worker: a
  4-byte length, a JSON header, then the arrays the header lists, each in
  NumPy's .npy format, read back with ``allow_pickle=False``. Whatever the
  target does to its process, xent only ever gets JSON and arrays of numbers.
"""

from __future__ import annotations

import io
import json
import os
import struct
from typing import Any

import numpy as np

LENGTH = struct.Struct("<Q")
HEADER = struct.Struct("<I")
MAX_FRAME = 1 << 31  # 2 GiB: far beyond the largest output of any case
MAX_HEADER = 1 << 20


class WireError(Exception):
    """A frame that is truncated, too large or malformed."""


def write_frame(fd: int, payload: bytes) -> None:
    """Write one frame to the file descriptor ``fd`` (all of it, across partial writes)."""
    view = memoryview(LENGTH.pack(len(payload)) + payload)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_exact(fd: int, size: int) -> bytes | None:
    """``size`` bytes from ``fd``; None at the end of the stream before the first byte."""
    parts: list[bytes] = []
    left = size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            if left == size:
                return None
            raise WireError(f"the stream ended {left} bytes before the end of a frame")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def read_frame(fd: int) -> bytes | None:
    """The next frame's payload, or None at the end of the stream."""
    head = read_exact(fd, LENGTH.size)
    if head is None:
        return None
    (size,) = LENGTH.unpack(head)
    if size > MAX_FRAME:
        raise WireError(f"a frame of {size:,} bytes is larger than any result")
    if size == 0:
        return b""
    payload = read_exact(fd, size)
    if payload is None:
        raise WireError("the stream ended inside a frame")
    return payload


def encode_reply(header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> bytes:
    """A reply: the JSON header (with the arrays' names and sizes added) and each array as .npy."""
    blobs = []
    names = []
    for name, arr in (arrays or {}).items():
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        blobs.append(buf.getvalue())
        names.append([name, len(blobs[-1])])
    text = json.dumps({**header, "arrays": names}, ensure_ascii=True).encode("ascii")
    return HEADER.pack(len(text)) + text + b"".join(blobs)


def decode_reply(payload: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and arrays of a reply; anything else is a :class:`WireError`."""
    try:
        (size,) = HEADER.unpack_from(payload)
        if size > MAX_HEADER or HEADER.size + size > len(payload):
            raise WireError("the reply's header does not fit in the reply")
        header = json.loads(payload[HEADER.size:HEADER.size + size].decode("ascii"))
        if not isinstance(header, dict) or not isinstance(header.get("kind"), str):
            raise WireError("the reply's header is not a message")
        arrays: dict[str, np.ndarray] = {}
        offset = HEADER.size + size
        for name, length in header.get("arrays", []):
            if not isinstance(name, str) or not isinstance(length, int) or offset + length > len(payload):
                raise WireError("the reply lists an array that is not in it")
            arr = np.load(io.BytesIO(payload[offset:offset + length]), allow_pickle=False)
            if not isinstance(arr, np.ndarray):
                raise WireError("the reply holds something that is not an array")
            arrays[name] = arr
            offset += length
    except WireError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a malformed reply makes json or np.load raise
        raise WireError(f"the reply cannot be read ({type(exc).__name__}: {exc})") from None
    return header, arrays
