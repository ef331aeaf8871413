"""Every file xent writes goes through :class:`AtomicFile`: all or nothing, and never over an input.

The bytes go to a temporary file ``.NAME.XXXXXXXX.tmp`` in the target's
directory, which is named before it is created, so an error or an
interruption at any point removes it. :meth:`AtomicFile.commit` flushes it
to disk, gives it the mode an earlier file had (else 0666 less the umask)
and renames it into place; until then an earlier file at the path keeps its
bytes and mode. A file the system refuses to write (disk full, permissions,
a missing directory) is an :class:`~xentcli.errors.XentInputError` naming
the path and the reason.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from .errors import XentInputError

__all__ = ["AtomicFile", "reason", "remove_temporaries", "write_atomic"]

# The temporary files that may exist now (a name is added before its file is created and taken out
# once the file is renamed or removed): what an exit that cannot wait for their owners removes.
_TEMPORARIES: set[str] = set()


def remove_temporaries() -> None:
    """Remove every temporary file of an :class:`AtomicFile` not yet committed or aborted (best effort).

    For a process that must end now, from any thread: the earlier files at
    the targets' paths stay as they were.
    """
    for tmp in list(_TEMPORARIES):
        try:
            os.unlink(tmp)
        except OSError:
            pass
        _TEMPORARIES.discard(tmp)


def reason(exc: OSError) -> str:
    """``No space left on device`` for an OSError, also for one re-raised by a library with the error
    number only in its text (``[Errno 28] ...`` or ``... (os error 28)``)."""
    if exc.strerror:
        return exc.strerror
    text = str(exc)
    m = re.search(r"\[Errno (\d+)\]|\(os error (\d+)\)", text)
    if m:
        return os.strerror(int(m.group(1) or m.group(2)))
    return text or type(exc).__name__


class AtomicFile:
    """A file at ``path`` that appears whole on :meth:`commit`, or not at all.

    Use it as a context manager (commit on success, abort on any exception),
    or call :meth:`open`, write to :attr:`fh`, then :meth:`commit` or
    :meth:`abort`. :meth:`abort` is safe at any point, more than once.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.tmp: str | None = None  # set before the file is created, cleared once renamed or removed
        self.fh: BinaryIO | None = None
        self._synced_to = 0  # bytes handed to the disk by start_writeback

    def error(self, exc: OSError) -> XentInputError:
        return XentInputError(f"cannot be written: {reason(exc)}", source=str(self.path))

    def open(self) -> BinaryIO:
        """Create the temporary file (mode 0600) and return it open for writing."""
        parent = self.path.parent if str(self.path.parent) else Path(".")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        try:
            for _attempt in range(100):
                self.tmp = str(parent / f".{self.path.name}.{os.urandom(4).hex()}.tmp")
                _TEMPORARIES.add(self.tmp)
                try:
                    fd = os.open(self.tmp, flags, 0o600)
                    break
                except FileExistsError:
                    _TEMPORARIES.discard(self.tmp)
                    self.tmp = None  # someone else's
            else:
                raise FileExistsError(errno.EEXIST, "no free temporary file name", str(parent))
            self.fh = os.fdopen(fd, "wb")
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise self.error(exc) from None
            raise
        return self.fh

    def start_writeback(self) -> None:
        """Have the system start writing what is in the file so far to disk, without waiting for it.

        For a big file written in parts: :meth:`commit`'s flush to disk then
        waits for the last part alone, not for the whole file, and the disk
        works while the next parts are computed. Each call hands over at
        least :data:`WRITEBACK_BYTES` (smaller calls do nothing); on systems
        without ``posix_fadvise`` it does nothing. On Linux, advising
        ``DONTNEED`` starts the write-back of the range's dirty pages and
        drops only pages already clean (just written, the range has none).
        A failure to write (the flush) is raised; a refused advice is not.
        """
        fh = self.fh
        if fh is None or not hasattr(os, "posix_fadvise"):
            return
        fh.flush()
        end = fh.tell()
        if end - self._synced_to < WRITEBACK_BYTES:
            return
        try:
            os.posix_fadvise(fh.fileno(), self._synced_to, end - self._synced_to, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass  # an advice: the data is written either way, and commit flushes it to disk
        self._synced_to = end

    def commit(self) -> None:
        """Flush the file to disk, give it its mode and rename it into place."""
        try:
            fh, tmp = self.fh, self.tmp
            assert fh is not None and tmp is not None, "commit() before open()"
            fh.flush()
            _copy_mode(self.path, fh.fileno(), tmp)
            os.fsync(fh.fileno())
            fh.close()
            os.replace(tmp, self.path)
            _TEMPORARIES.discard(tmp)
            self.tmp = None
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise self.error(exc) from None
            raise
        _sync_directory(self.path)

    def abort(self) -> None:
        """Remove the temporary file; an earlier file at ``path`` stays as it was."""
        tmp = self.tmp
        if tmp is not None:
            try:
                os.unlink(tmp)  # first: whatever happens next, nothing is left behind
                _TEMPORARIES.discard(tmp)
                self.tmp = None
            except OSError:
                pass
        if self.fh is not None:
            try:
                self.fh.close()
            except (OSError, ValueError):
                pass
        if self.tmp is not None:  # systems that cannot remove an open file
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            _TEMPORARIES.discard(self.tmp)
            self.tmp = None

    def __enter__(self) -> BinaryIO:
        return self.open()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()
            if isinstance(exc, OSError):
                raise self.error(exc) from None


WRITEBACK_BYTES = 32 << 20  # written to disk in parts of at least this (see AtomicFile.start_writeback)


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` with ``write(fh)`` through an :class:`AtomicFile`."""
    with AtomicFile(path) as fh:
        write(fh)


def _sync_directory(path: Path) -> None:
    """Make a rename durable (best effort: not every system can open a directory)."""
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd = os.open(parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _copy_mode(path: Path, fd: int, tmp: str) -> None:
    """Give the new file the mode an earlier file at ``path`` had, or what a new file gets under the umask."""
    try:
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask()
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        else:
            os.chmod(tmp, mode)
    except OSError:
        pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
