"""``xent derive``: machine-checked derivations, and the ``--check`` regression for CI."""

from __future__ import annotations

import difflib
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import XentInputError
from ..symbolic.problem import MAX_CLASSES
from . import CONTEXT_SETTINGS, EXIT_INPUT, EXIT_MATH, EXIT_OK, error_line, warning_line
from .options import LOSS_PARAMS, loss_options, loss_spec

if TYPE_CHECKING:
    from ..reports import DocumentCheck

EXTENSIONS = {".md": "markdown", ".tex": "latex", ".json": "json", ".txt": "text"}

EPILOG = """\b
Examples:
  xent derive --classes 3                      # steps + proof
  xent derive --classes n                      # symbolic number of classes
  xent derive --classes 4 --loss bce --pos-weight sym --format markdown
  xent derive --classes 3 --claim "p - y"      # check a hand-derived gradient
  xent derive --classes 3 --reduction mean --label-smoothing sym --weight sym
  xent derive --classes 3 --label-smoothing 1/10 --weight 1,2,3
  xent derive --classes 3 --format markdown --output derivations/ce-3.md
  xent derive --check derivations/             # CI: exit 1 on any drift
  xent derive --check derivations/ --format junit > derivations.xml

\b
--weight, --label-smoothing and --pos-weight take sym (a symbol) or exact
values. Claims are elementwise closed forms in p (softmax, or sigmoid for
bce), y, z, w, q and the scalars N, W, C, eps, m, with + - * / **, sum(),
exp() and log().
Exit codes: 0 proved, 1 not proved / refuted / drift, 2 bad usage.
"""


class ClassesType(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    name = "C"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | str:
        from ..symbolic.problem import check_letter

        if isinstance(value, int):
            n = value
        else:
            text = str(value).strip()
            if re.fullmatch(r"[A-Za-z]", text):
                try:
                    return check_letter(text)
                except XentInputError as exc:
                    self.fail(exc.message, param, ctx)
            if not re.fullmatch(r"[+-]?[0-9]+", text):
                self.fail(f"{value!r} is neither a whole number nor a single letter (symbolic C)", param, ctx)
            digits = text.lstrip("+-").lstrip("0")
            if len(digits) > len(str(MAX_CLASSES)):  # never int() a 5000-digit string
                self.fail(
                    f"{text[:20] + '...' if len(text) > 20 else text} is outside 2..{MAX_CLASSES}; use a letter "
                    "(e.g. --classes n) for every C at once",
                    param,
                    ctx,
                )
            n = int(digits or "0") * (-1 if text.startswith("-") else 1)
        if not 2 <= n <= MAX_CLASSES:
            self.fail(
                f"{n} is outside 2..{MAX_CLASSES}; use a letter (e.g. --classes n) for every C at once", param, ctx
            )
        return n


@click.command(context_settings=CONTEXT_SETTINGS, epilog=EPILOG)
@click.option("--classes", "-c", type=ClassesType(), default="3", show_default=True,
              help=f"Number of classes (2..{MAX_CLASSES}) or a letter for a symbolic C.")
@loss_options("derive")
@click.option("--assume-normalized/--no-assume-normalized", default=True, show_default=True,
              help="Probability targets: assume they sum to 1 in the final step (class indices always do).")
@click.option("--claim", metavar="EXPR", help="Prove or refute an elementwise closed form of the gradient.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "latex", "json", "junit"]), default=None,
              help="Output format. [default: rich view on a terminal, text otherwise] With --check: the report "
                   "as text, markdown or junit (JUnit XML).")
@click.option("--output", "-o", type=click.Path(path_type=Path), metavar="FILE",
              help="Write the document to FILE (format from --format or the extension .md/.tex/.json/.txt).")
@click.option("--expand", is_flag=True,
              help="JSON: write every string in the logits alone instead of the names in 'definitions' "
                   "(p_k, Z, s); large for many classes.")
@click.option("--check", "check_path", type=click.Path(path_type=Path), metavar="DIR",
              help="Regenerate every derivation file in DIR (or one FILE; more PATHs may follow) from its header "
                   "and compare.")
@click.argument("more_paths", nargs=-1, type=click.Path(path_type=Path), metavar="[PATH]...")
@click.pass_context
def derive(
    ctx: click.Context,
    /,
    classes: int | str,
    assume_normalized: bool,
    claim: str | None,
    fmt: str | None,
    output: Path | None,
    expand: bool,
    check_path: Path | None,
    more_paths: tuple[Path, ...],
    **loss: Any,
) -> int:
    """Derive the softmax Jacobian and a cross-entropy gradient with SymPy, and prove the closed form.

    Every step is checked exactly (no simplify): the Jacobian entry by entry,
    the chain rule, the cancellation and the direct derivative; a claim is
    proved or refuted with a counterexample. Exit code 1 if anything fails.
    """
    if more_paths and check_path is None:
        extra = " ".join(map(str, more_paths))
        raise click.UsageError(f"Got unexpected extra argument{'s' if len(more_paths) > 1 else ''} ({extra}); "
                               "only --check takes more than one PATH")
    if check_path is not None:
        names = ("classes", "claim", "output", "assume_normalized", "expand", *LOSS_PARAMS)
        given = [n for n in names if _given(ctx, n)]
        if given:
            raise click.UsageError("--check takes no other options but --format: each file's header says how to "
                                   "regenerate it")
        if fmt not in (None, *CHECK_FORMATS):
            raise click.UsageError(f"--check reports as {', '.join(CHECK_FORMATS)}; not {fmt}")
        return run_check([check_path, *more_paths], fmt or "text")
    if fmt == "junit":
        raise click.UsageError("--format junit is a report of --check: use it with --check DIR")

    if output is not None and fmt is None:
        fmt = EXTENSIONS.get(output.suffix.lower())
        if fmt is None:
            raise click.UsageError(f"cannot tell the format of {str(output)!r}: use --format or .md/.tex/.json/.txt")
    if output is not None and output.is_dir():
        raise XentInputError("is a directory", source=str(output))
    notes: list[str] = []
    problem = _problem(classes, loss_spec(loss, ctx, notes), assume_normalized, claim)
    for note in notes:
        warning_line(note)
    from .render import stdout_is_terminal

    rich_view = fmt is None and output is None and stdout_is_terminal()
    fmt = fmt or "text"
    derivation, text = generate(problem, fmt, command_line(problem, fmt, expand), progress=_progress_bar(classes),
                                expand=expand)
    if output is not None:
        from ..writers import write_atomic

        write_atomic(output, lambda fh: fh.write(text.encode("utf-8")))
        click.echo(f"{'proved' if derivation.verified else 'NOT proved'}: wrote {output}", err=True)
    elif rich_view:
        from .derive_view import print_derivation

        print_derivation(derivation)
    else:
        click.echo(text, nl=False)
    if not derivation.verified:
        failed = derivation.failed
        detail = next((c.detail for c in failed if c.detail), "")
        error_line(
            f"not proved: {', '.join(c.name for c in failed)} failed" + (f" ({detail})" if detail else "")
        )
        return EXIT_MATH
    return EXIT_OK


def _given(ctx: click.Context, name: str) -> bool:
    try:
        return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    except KeyError:  # pragma: no cover - a parameter this command does not have
        return False


def _problem(classes: int | str, spec: Any, assume_normalized: bool, claim: str | None) -> Any:
    """The derivation to make, with the claim's grammar, limits and names checked before any work."""
    from ..symbolic import claims
    from ..symbolic.claim_steps import check_names
    from ..symbolic.problem import Problem

    problem = Problem(classes, spec, assume_normalized, claim)
    if claim is not None:
        check_names(claims.names(claims.parse(claim)), problem)
    return problem


def command_line(problem: Any, fmt: str, expand: bool = False) -> str:
    """The canonical ``xent derive`` command for a problem (what a document's header records)."""
    parts = ["xent", "derive", "--classes", str(problem.classes), *problem.spec.to_args("derive")]
    if not problem.assume_normalized:
        parts.append("--no-assume-normalized")
    if problem.claim is not None:
        parts += ["--claim", problem.claim]
    parts += ["--format", fmt]
    if expand:
        parts.append("--expand")
    return shlex.join(parts)


def generate(problem: Any, fmt: str, command: str, progress: Any = None, expand: bool = False) -> tuple[Any, str]:
    """Derive ``problem`` and render it in ``fmt`` with ``command`` as its header; returns (derivation, text)."""
    from ..symbolic.derivation import derive_problem
    from ..symbolic.documents import render

    derivation = derive_problem(problem, command=command, progress=progress, expand=expand)
    return derivation, render(derivation, fmt)


def _progress_bar(classes: int | str) -> Any:
    """A rich progress bar on stderr for long runs when stderr is a terminal; otherwise nothing."""
    if not isinstance(classes, int) or classes < 30:
        return None
    try:
        if not sys.stderr.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    from rich.console import Console
    from rich.progress import Progress

    progress = Progress(console=Console(stderr=True), transient=True)
    tasks: dict[str, Any] = {}

    def report(name: str, done: int, total: int) -> None:
        if not progress.live.is_started:
            progress.start()
        if name not in tasks:
            tasks[name] = progress.add_task(f"checking {name}", total=total)
        progress.update(tasks[name], completed=done)
        if done >= total and all(t.finished for t in progress.tasks):
            progress.stop()

    return report


# --------------------------------------------------------------------------
# --check: regenerate from headers and compare
# --------------------------------------------------------------------------


CHECK_FORMATS = ("text", "markdown", "junit")


def derivation_files(paths: Sequence[Path]) -> list[Path]:
    """The documents ``--check`` reads: each FILE as given, and every .md/.tex/.json/.txt file directly in each
    DIR (sorted), each once."""
    found: dict[Path, None] = {}
    for path in paths:
        for f in _files(path):
            found.setdefault(f, None)
    return list(found)


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        try:
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)
        except OSError as exc:
            raise XentInputError(f"cannot be listed: {exc}", source=str(path)) from None
        if not files:
            raise XentInputError("holds no derivation files (.md, .tex, .json, .txt)", source=str(path))
        return files
    if path.exists():
        raise XentInputError("is neither a regular file nor a directory", source=str(path))
    raise XentInputError("no such file or directory", source=str(path))


HELP_FLAGS = ("-h", "--help")
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024


def _problem_from_header(command: Any, source: str) -> tuple[Any, str, list[str], bool]:
    """The problem of a header's command, parsed by xent's own option parser (never by a shell).

    Everything that can be checked without deriving is checked here, so that a
    bad header is reported (exit 2, naming the file) before any work is done.
    Returns the problem, the format, deprecation notes on its spelling, and whether JSON is expanded.
    """
    if not isinstance(command, str):
        raise XentInputError(f"header command is not text: {command!r}"[:200], source=source)
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise XentInputError(f"header command cannot be parsed: {exc}", source=source) from None
    if argv[:2] != ["xent", "derive"]:
        raise XentInputError(f"header does not name an 'xent derive' command: {command[:200]!r}", source=source)
    if any(a in HELP_FLAGS for a in argv[2:]):
        raise XentInputError("header command asks for --help instead of a derivation", source=source)
    if any("\x00" in a for a in argv):  # (os.stat of a path argument would raise ValueError)
        raise XentInputError("header command contains a NUL character", source=source)
    try:
        sub = derive.make_context("derive", argv[2:], resilient_parsing=False)
    except click.ClickException as exc:
        raise XentInputError(f"header command is not valid: {exc.format_message()}", source=source) from None
    except ValueError as exc:  # a value click's own types cannot even look at (a path with a NUL byte)
        raise XentInputError(f"header command is not valid: {exc}", source=source) from None
    except click.exceptions.Exit:  # an eager option that exits (help); refused above, kept as a guard
        raise XentInputError("header command does not describe a derivation", source=source) from None
    p = sub.params
    if p.get("check_path") is not None or p.get("output") is not None:
        raise XentInputError("header command must not use --check or --output", source=source)
    if p.get("more_paths"):
        extra = " ".join(map(str, p["more_paths"]))
        raise XentInputError(f"header command is not valid: unexpected extra arguments ({extra})"[:300],
                             source=source)
    if p["fmt"] == "junit":
        raise XentInputError("header command is not valid: --format junit is a report, not a derivation",
                             source=source)
    notes: list[str] = []
    try:
        spec = loss_spec({k: p[k] for k in LOSS_PARAMS if k in p}, sub, notes)
        problem = _problem(p["classes"], spec, p["assume_normalized"], p["claim"])
    except (XentInputError, click.UsageError) as exc:
        message = exc.cli_message() if isinstance(exc, XentInputError) else exc.format_message()
        raise XentInputError(f"header command: {message}", source=source) from None
    return problem, p["fmt"] or "text", notes, bool(p.get("expand"))


def _read_document(f: Path) -> str:
    try:
        size = f.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise XentInputError(f"is {size:,} bytes, too large for a derivation document", source=str(f))
        return f.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise XentInputError(f"cannot be read: {exc}", source=str(f)) from None


@dataclass
class Document:
    """A derivation document read and its header understood: everything needed to regenerate it."""

    path: Path
    text: str
    command: str
    problem: Any
    fmt: str
    expand: bool
    notes: list[str] = field(default_factory=list)


def read_document(path: Path) -> Document:
    """Read ``path`` and parse its header; raises :class:`XentInputError` (exit 2) naming the file when it
    cannot be regenerated (unreadable, no header, a header that is not a valid ``xent derive`` command)."""
    from ..symbolic.header import read_header

    text = _read_document(path)
    command = read_header(text)
    if command is None:
        raise XentInputError(
            "has no 'Generated by: xent derive ...' header in its first lines, so it cannot be regenerated",
            source=str(path),
        )
    problem, fmt, notes, expand = _problem_from_header(command, str(path))
    assert isinstance(command, str)  # _problem_from_header refuses any other header
    return Document(path, text, command, problem, fmt, expand, notes)


def check_document(doc: Document) -> DocumentCheck:
    """Regenerate ``doc`` from its header (kept as written, also an older spelling of the same options) and
    compare it with the committed text."""
    from ..reports import DocumentCheck

    try:
        derivation, fresh = generate(doc.problem, doc.fmt, doc.command, expand=doc.expand)
    except XentInputError as exc:  # e.g. a claim too large for its C: name the file
        raise XentInputError(f"header command: {exc.cli_message()}", source=str(doc.path)) from None
    diff = ""
    if fresh != doc.text:
        lines = difflib.unified_diff(
            doc.text.splitlines(keepends=True),
            fresh.splitlines(keepends=True),
            fromfile=f"{doc.path} (committed)",
            tofile=f"{doc.path} (regenerated: {doc.command})",
            n=2,
        )
        diff = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    failed = tuple((c.name, c.detail) for c in derivation.failed)
    return DocumentCheck(str(doc.path), doc.command, fresh == doc.text, bool(derivation.verified), diff, failed)


def check_documents(paths: Sequence[Path], on_result: Callable[[DocumentCheck], None] | None = None,
                    on_note: Callable[[str], None] | None = None) -> list[DocumentCheck]:
    """Check every derivation document under ``paths`` (see :func:`derivation_files`).

    Every header is read before anything is derived, so a file that cannot be
    regenerated is refused (:class:`XentInputError`, exit 2) before any work.
    ``on_result`` sees each result as it is made, ``on_note`` each note on an
    old spelling in a header.
    """
    docs = [read_document(f) for f in derivation_files(paths)]
    results = []
    for doc in docs:
        for note in doc.notes:
            if on_note is not None:
                on_note(f"{doc.path}: header: {note}")
    for doc in docs:
        result = check_document(doc)
        if on_result is not None:
            on_result(result)
        results.append(result)
    return results


def run_check(paths: Sequence[Path], fmt: str = "text") -> int:
    from .. import reports

    def show(result: DocumentCheck) -> None:  # text is printed file by file, as each is done
        sys.stdout.write(reports.document_text(result))
        sys.stdout.flush()

    checks = check_documents(paths, on_result=show if fmt == "text" else None, on_note=warning_line)
    if fmt == "markdown":
        click.echo(reports.documents_markdown(checks), nl=False)
    elif fmt == "junit":
        click.echo(reports.documents_junit(checks), nl=False)
    summary = reports.documents_summary(checks)
    click.echo(summary, err=True)
    return EXIT_MATH if any(not c.passed for c in checks) else EXIT_OK


__all__ = ["check_document", "check_documents", "derivation_files", "derive", "generate", "read_document",
           "run_check", "EXIT_INPUT"]
