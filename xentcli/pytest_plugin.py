"""xent's pytest plugin, loaded by pytest wherever xentcli is installed (entry point ``pytest11``: ``xent``).

Derivation documents as tests::

    pytest --xent-derivations docs/derivations

collects every derivation document in the folder (the files ``xent derive
--check DIR`` reads: ``.md``, ``.tex``, ``.json`` and ``.txt`` directly in it)
or a single FILE as one test each, ``PATH::derivation``. The option may be
repeated, or set once in the configuration (``xent_derivations = docs/derivations``
in ``[tool.pytest.ini_options]`` or ``pytest.ini``). A test regenerates its
document from the command in its header, as ``xent derive --check`` does; it
fails with the diff when the document drifts, with the checks that failed when
the proof fails, and with the reason when the header cannot be regenerated.

A loss implementation in one line, with the ``xent_verify`` fixture::

    def test_cross_entropy(xent_verify):
        xent_verify(cross_entropy, label_smoothing=0.1, weight=[1.0, 2.0, 1.0])

``xent_verify(fn_or_target, **options)`` runs ``xent verify``'s battery on a
function (or a ``"path/file.py:function"`` / ``"package.module:function"``
target) with the options of :func:`xentcli.verify.check` and returns the
report; when a case fails, the test fails with verify's report (the failing
cases, the tolerances, the verdict and the diagnosis) and no traceback.
:func:`xentcli.verify.assert_conforms` is the same check for any test runner.

Importing this module costs nothing beyond pytest: xentcli is imported only
when an option or the fixture is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .reports import DocumentCheck
    from .verify.runner import Report

OPTION = "--xent-derivations"
INI = "xent_derivations"
ITEM_NAME = "derivation"

_FILES = pytest.StashKey[set[Path]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xent", "xent: derivation documents and loss implementations")
    group.addoption(
        OPTION,
        action="append",
        default=[],
        metavar="PATH",
        help="collect every derivation document in the folder PATH (or the file PATH) as a test that regenerates "
             "it from its header, as 'xent derive --check' does; may be repeated",
    )
    parser.addini(INI, type="paths", default=[],
                  help="derivation folders or files to collect, as with --xent-derivations")


def pytest_configure(config: pytest.Config) -> None:
    given = [Path(p) for p in config.getoption(OPTION)]
    configured = [Path(p) for p in config.getini(INI)]
    if not given and not configured:
        return
    from .cli.derive import derivation_files
    from .errors import XentInputError

    try:
        files = derivation_files([*given, *configured])
    except XentInputError as exc:
        raise pytest.UsageError(f"{OPTION}: {exc.cli_message()}") from None
    config.stash[_FILES] = {f.resolve() for f in files}
    # Collected like any path on the command line: pytest visits them (each once) and asks pytest_collect_file.
    config.args.extend(str(p) for p in (*given, *configured))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> DerivationFile | None:
    files = parent.config.stash.get(_FILES, None)
    if files and file_path.resolve() in files:
        return DerivationFile.from_parent(parent, path=file_path)
    return None


class DerivationFile(pytest.File):
    """A derivation document: one test, ``derivation``."""

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        yield DerivationItem.from_parent(self, name=ITEM_NAME)


class DerivationFailed(Exception):
    """The document drifts from a fresh run or does not prove."""

    def __init__(self, result: DocumentCheck):
        super().__init__(result.problem())
        self.result = result


class DerivationUnusable(Exception):
    """The document cannot be regenerated (no header, a header that is not a valid command, unreadable)."""


class DerivationItem(pytest.Item):
    """Regenerate a derivation document from its header and compare it, as ``xent derive --check FILE``."""

    def runtest(self) -> None:
        from dataclasses import replace

        from .cli.derive import check_document, read_document
        from .errors import XentInputError

        shown = Path(self.nodeid.split("::", 1)[0])  # relative to the rootdir, as pytest shows it
        try:
            document = replace(read_document(self.path), path=shown)  # diffs and messages name the node's path
            result = check_document(document)
        except XentInputError as exc:
            raise DerivationUnusable(exc.cli_message()) from None
        if not result.passed:
            raise DerivationFailed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        if isinstance(excinfo.value, DerivationFailed):
            from .reports import document_text

            return document_text(excinfo.value.result).rstrip("\n")
        if isinstance(excinfo.value, DerivationUnusable):
            return f"cannot be regenerated: {excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"xent derive --check {self.nodeid.split('::', 1)[0]}"


@pytest.fixture
def xent_verify() -> Callable[..., Report]:
    """``xent_verify(fn_or_target, **options)``: run xent verify's battery; fail the test with its report."""

    def verify(fn: Callable[..., Any] | str, /, **options: Any) -> Report:
        __tracebackhide__ = True
        from . import reports
        from .errors import XentInputError
        from .verify import check

        try:
            if isinstance(fn, str):
                from .verify.loader import load

                options.setdefault("name", fn)
                fn = load(fn)
            report = check(fn, **options)
        except XentInputError as exc:
            refused = f"xent verify: {exc}"
        else:
            refused = ""
        if refused:
            pytest.fail(refused, pytrace=False)
        if not report.passed:
            pytest.fail(reports.verify_text(report).rstrip("\n"), pytrace=False)
        return report

    return verify
