"""The ``xent`` command line: parse, call the library, render, map errors to exit codes.

Exit codes: 0 ok, 1 a mathematical check or verification failed, 2 bad input
or usage, 130 interrupted. Every error is one line on stderr, never a traceback
(set ``XENT_DEBUG=1`` to see one).
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from typing import Any

import click

from .._version import __version__
from ..errors import XentInputError, XentMathError

EXIT_OK = 0
EXIT_MATH = 1
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def error_line(message: str) -> None:
    """Print one line to stderr (newlines folded so it stays one line)."""
    text = " ".join(str(message).split())
    click.echo(f"xent: error: {text}", err=True)


def warning_line(message: str) -> None:
    text = " ".join(str(message).split())
    click.echo(f"xent: warning: {text}", err=True)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: every ``except KeyboardInterrupt: raise`` lets it through too,
    and no ``except Exception`` (an error inside SymPy, a failed check) can swallow it."""


class _Interrupted(BaseException):
    """An interruption on its way out of click (which would print a blank line for a KeyboardInterrupt)."""


_signals_seen = 0
_INTERRUPTED_LINE = "xent: interrupted"
_said = threading.Lock()  # held once the line has been printed: it is printed once, by whoever is first
GRACE_SECONDS = 5.0  # how long an interrupted command has to clean up by itself before the process ends anyway


def _on_signal(signum: int, frame: Any) -> None:  # pragma: no cover - exercised via subprocess
    """SIGINT/SIGTERM: interrupt once; while the cleanup runs, a second signal is ignored and a third exits."""
    global _signals_seen
    _signals_seen += 1
    if _signals_seen == 1:
        raise KeyboardInterrupt() if signum == signal.SIGINT else _Terminated()
    if _signals_seen >= 3:
        os._exit(EXIT_INTERRUPTED)


def _say_interrupted() -> None:
    """After SIGINT/SIGTERM: remove every temporary file still there, then print the line (once)."""
    from ..writers import remove_temporaries

    # Each writer removes its own file on the way out; this also covers an interruption that surfaced
    # where no writer saw it (Python runs the handler between any two steps, even inside a cleanup).
    remove_temporaries()
    if _said.acquire(blocking=False):
        click.echo(_INTERRUPTED_LINE, err=True)


def _watchdog() -> Any:
    """End the process GRACE_SECONDS after SIGINT/SIGTERM if the command has not ended by then.

    The handler above runs in the main thread, between two steps of Python
    code. A main thread held in a system call (fsync on a slow disk, a write
    to a full pipe), a long step of C code, or an interruption lost on the way
    (raised where Python can only print it, as in a finaliser) would keep the
    process running. The signal also wakes this thread (``set_wakeup_fd``),
    whichever thread it was delivered to: after the grace period it removes
    the temporary files still open, prints the line and exits with 130.
    Returns a function that disarms it (POSIX only; ``None`` elsewhere).
    """
    if os.name != "posix":
        return None
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    except (ValueError, OSError):  # not the main thread
        os.close(read_end)
        os.close(write_end)
        return None
    done = threading.Event()

    def watch() -> None:
        wanted = {int(signal.SIGINT), int(signal.SIGTERM)}
        while True:
            try:
                data = os.read(read_end, 64)
            except OSError:
                return
            if not data or done.is_set():
                return
            if wanted.intersection(data):
                break
        if done.wait(GRACE_SECONDS):
            return
        from ..writers import remove_temporaries

        remove_temporaries()
        line = b"\r\x1b[?25h" if os.isatty(2) else b""  # a progress bar's hidden cursor shown again
        if _said.acquire(blocking=False):
            line += (_INTERRUPTED_LINE + "\n").encode()
        try:
            os.write(2, line)
        except OSError:
            pass
        os._exit(EXIT_INTERRUPTED)

    threading.Thread(target=watch, name="xent-interrupt-watch", daemon=True).start()

    def disarm() -> None:
        done.set()
        try:
            signal.set_wakeup_fd(previous)
        except (ValueError, OSError):
            pass
        os.close(write_end)  # the thread reads the end of the pipe and returns

    return disarm


class XentGroup(click.Group):
    """A click group whose ``main`` turns every failure into one line and an exit code."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt:
            raise _Interrupted() from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _Interrupted() from None

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        code = self._run(args, prog_name, complete_var, **extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(self, args: Any, prog_name: str | None, complete_var: str | None, **extra: Any) -> int:
        global _said
        debug = bool(os.environ.get("XENT_DEBUG"))
        if not _signals_seen:
            _said = threading.Lock()  # a new command (the library's tests run many in one process)
        try:
            rv = super().main(args, prog_name or "xent", complete_var, standalone_mode=False, **extra)
        except BaseException as exc:
            if _signals_seen and not debug:
                # The signal's exception can reach here in another form: C code that is interrupted in
                # the middle may replace it (numpy's file writing turns it into a TypeError). Whatever
                # comes out after SIGINT/SIGTERM is the interruption; the files were cleaned up on the way.
                _say_interrupted()
                return EXIT_INTERRUPTED
            return self._failure(exc, debug)
        if isinstance(rv, int):
            return rv
        return EXIT_OK

    def _failure(self, failure: BaseException, debug: bool) -> int:
        """The exit code for an exception out of a command, after printing its one line."""
        try:
            raise failure
        except XentInputError as exc:
            error_line(exc.cli_message())
            return EXIT_INPUT
        except XentMathError as exc:
            error_line(str(exc))
            return EXIT_MATH
        except click.UsageError as exc:
            hint = ""
            if exc.ctx is not None:
                hint = f" (see '{exc.ctx.command_path} --help')"
            error_line(exc.format_message() + hint)
            return EXIT_INPUT
        except click.ClickException as exc:
            error_line(exc.format_message())
            return exc.exit_code if exc.exit_code != 1 else EXIT_INPUT
        except (_Interrupted, click.Abort, KeyboardInterrupt):
            _say_interrupted()
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            # The reader went away (``xent ... | head``): not an error of ours.
            try:
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
            except OSError:
                pass
            return EXIT_OK
        except OSError as exc:
            # A file or directory the environment refuses (disk full, permissions, ...): one line.
            if debug:
                raise
            reason = exc.strerror or str(exc)
            error_line(f"{exc.filename}: {reason}" if exc.filename else reason)
            return EXIT_INPUT
        except MemoryError:
            error_line("out of memory; try a smaller input or --output with a .npy file")
            return EXIT_INPUT
        except Exception as exc:  # noqa: BLE001 - the contract is: never a traceback
            if debug:
                raise
            error_line(
                f"unexpected failure ({type(exc).__name__}: {exc}); "
                "set XENT_DEBUG=1 to see where it happened"
            )
            return EXIT_INPUT


@click.group(
    name="xent",
    cls=XentGroup,
    context_settings=CONTEXT_SETTINGS,
    epilog="""\b
Examples:
  xent compute --logits "2,1,0.1;0.1,2,1.9" --labels "1,0"
  xent compute logits.csv labels.csv --reduction sum --format json
  xent compute logits.npy labels.csv --output grad.csv
  xent compute --binary --logits "1,-1,0" --labels "0,0,1" --pos-weight 2
  xent derive --classes 3
  xent derive --classes n --loss nll --format markdown
  xent derive --check derivations/
  xent verify mypkg/losses.py:cross_entropy --label-smoothing 0.1

\b
Exit codes: 0 ok, 1 math/verification failure, 2 bad input or usage, 130 interrupted.
""",
)
@click.version_option(__version__, "-V", "--version", prog_name="xent", message="%(prog)s %(version)s")
def cli() -> None:
    """xent: a trusted reference for softmax / cross-entropy math.

    Compute losses and gradients with PyTorch's semantics, derive them
    symbolically, and verify other implementations against the reference.
    """


def _register() -> None:
    from .compute import compute
    from .derive import derive
    from .verify import verify

    cli.add_command(compute)
    cli.add_command(derive)
    cli.add_command(verify)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point.

    SIGINT (unless it was ignored when the program started, as for a
    background job) and SIGTERM interrupt the command: temporary files are
    removed, earlier output files are left as they were, and the program
    prints ``xent: interrupted`` and exits with 130, within GRACE_SECONDS
    even if the command cannot stop by itself (see :func:`_watchdog`).
    """
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            current = signal.getsignal(signum)
            if current is not (signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL):
                continue  # ignored (a background job) or someone else's handler
            previous[signum] = signal.signal(signum, _on_signal)
        except (ValueError, OSError):  # not in the main thread
            pass
    disarm = _watchdog() if previous else None
    try:
        cli.main(args=argv, prog_name="xent")
    except SystemExit:
        # The process ends now: what it holds is left to the system, not traced once more by the collector
        # as the interpreter shuts down (40-50 ms with NumPy and polars loaded). atexit functions and
        # the closing of modules and standard streams still run.
        gc.freeze()
        raise
    finally:
        if disarm is not None and not _signals_seen:
            disarm()  # after an interruption it stays: the way out may still hang (a thread's join at exit)
        for signum, handler in previous.items():
            try:
                # After an interruption the process is on its way out: a late second Ctrl-C must not kill
                # it with a traceback or by the signal (Python restores the default handler as it exits).
                signal.signal(signum, signal.SIG_IGN if _signals_seen else handler)
            except (ValueError, OSError, TypeError):
                pass
