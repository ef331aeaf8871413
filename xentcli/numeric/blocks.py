"""Row blocks, threads and scratch buffers shared by the kernels.

The kernels work on cache-sized blocks of rows; large inputs are spread
over all cores (NumPy releases the GIL inside its loops). Each row's result
depends only on that row, so blocking and threading never change a bit.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

BLOCK_ELEMENTS = 1 << 19  # elements per block of rows for the softmax kernels
BCE_BLOCK_ELEMENTS = 1 << 18  # BCE keeps ~8 block-sized arrays live: smaller blocks stay in cache
PARALLEL_MIN = 1 << 20  # below this many elements one thread is faster
SHORT_ROWS = 64  # rows up to this length are summed with einsum (no per-row call overhead)
NARROW_ROWS = 8  # rows up to this length are summed column by column (einsum's setup per row costs more)

_POOL: ThreadPoolExecutor | None = None
_LOCAL = threading.local()

T = TypeVar("T")


def row_blocks(n: int, c: int, elements: int | None = None) -> list[slice]:
    """Slices of about ``elements`` values (whole rows) covering ``n`` rows of ``c`` columns."""
    step = max(1, (BLOCK_ELEMENTS if elements is None else elements) // max(c, 1))
    return [slice(start, min(n, start + step)) for start in range(0, n, step)]


def _workers() -> int:
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except (AttributeError, OSError):
        return max(1, min(8, os.cpu_count() or 1))


def for_blocks(work: Callable[[slice], T], n: int, c: int, elements: int | None = None) -> list[T]:
    """Run ``work(slice)`` over cache-sized row blocks, on all cores for large inputs.

    Each worker thread takes the next block not yet taken, so a core slowed
    down by another program holds up only the blocks it has in hand (a fixed
    share per thread would make everyone wait for the slowest). Which thread
    computes a block never changes a bit. Returns the results in row order.
    """
    global _POOL
    blocks = row_blocks(n, c, elements)
    workers = _workers()
    if len(blocks) < 2 or n * c < PARALLEL_MIN or workers < 2:
        return [work(sl) for sl in blocks]
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xent")
    out: list[Any] = [None] * len(blocks)
    todo = iter(range(len(blocks)))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            out[i] = work(blocks[i])

    for future in [_POOL.submit(worker) for _ in range(workers)]:
        future.result()
    return out


def scratch(name: str, shape: tuple[int, int], dtype: Any) -> np.ndarray:
    """A per-thread reusable buffer (fresh block-sized arrays would page-fault on every block)."""
    size = shape[0] * shape[1]
    buf = getattr(_LOCAL, name, None)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = np.empty(size, dtype=dtype)
        setattr(_LOCAL, name, buf)
    view: np.ndarray = buf[:size].reshape(shape)
    return view


def zeros(shape: tuple[int, int], dtype: Any) -> np.ndarray:
    """A per-thread block of zeros (max/min against an array is 3x faster than against a scalar)."""
    z = scratch("zeros", shape, dtype)
    if getattr(_LOCAL, "zeros_ok", None) != (z.size, np.dtype(dtype)):
        z[...] = 0
        _LOCAL.zeros_ok = (z.size, np.dtype(dtype))
    return z


def _column_sum(e: np.ndarray) -> np.ndarray:
    """Row sums of a narrow block, left to right in float64, a column at a time."""
    acc = e[:, 0].astype(np.float64)
    for j in range(1, e.shape[1]):
        np.add(acc, e[:, j], out=acc)
    return acc


def row_sums(e: np.ndarray) -> np.ndarray:
    """Row sums accumulated in float64.

    Narrow rows are added column by column and short rows go through einsum
    with a float64 accumulator (neither makes a call per row); longer rows
    through NumPy's pairwise summation, in float64 also for float32 rows (the
    cast is done in buffers, without a float64 copy of the block; a float64 sum
    of float32 values loses nothing float32 can show). Each row's sum depends
    on that row alone, whatever block it is in.
    """
    out: np.ndarray
    if e.shape[1] <= NARROW_ROWS:
        out = _column_sum(e)
    elif e.shape[1] <= SHORT_ROWS:
        out = np.einsum("ij->i", e, dtype=np.float64)
    else:
        out = np.add.reduce(e, axis=1, dtype=np.float64)
    return out


def row_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products accumulated in float64, for rows whose products all have the same sign.

    Long float32 rows are multiplied in float32 (each product then carries one rounding, a relative
    u32, which a sum of terms of one sign keeps: the kernels' float32 bound allows 8 u32 kappa) and
    summed with a float64 accumulator; float64 rows in float64. Narrow rows form their products in
    float64 (exact for float32 values) and add them column by column.
    """
    out: np.ndarray
    if a.shape[1] <= NARROW_ROWS:
        prod64 = scratch("rowdot64", (a.shape[0], a.shape[1]), np.float64)
        out = _column_sum(np.multiply(a, b, out=prod64, dtype=np.float64))
    elif a.shape[1] <= SHORT_ROWS:
        out = np.einsum("ij,ij->i", a, b, dtype=np.float64)
    else:
        prod = np.multiply(a, b, out=scratch("rowdot", (a.shape[0], a.shape[1]), a.dtype))
        out = np.add.reduce(prod, axis=1, dtype=np.float64)
    return out
