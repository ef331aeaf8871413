"""Reports that CI systems display: JUnit XML, Markdown and plain text, for ``xent verify`` and ``derive --check``.

Each renderer reads the library's own results and returns text:

* a verify :class:`~xentcli.verify.Report` (one :class:`~xentcli.verify.CaseResult`
  per battery case: its status, what differs, the diagnosis or the error);
* a list of :class:`DocumentCheck` (one per derivation document that
  ``xent derive --check`` regenerated from its header: whether it matches,
  whether it proves, the diff).

JUnit XML has one ``<testcase>`` per battery case or document, a failed case
as ``<failure>`` (an implementation that raised: ``<error>``) whose
``message`` carries the diagnosis; it validates against the Jenkins xUnit
``junit-10`` schema that Jenkins, GitLab and the GitHub test-report actions
read. Markdown is for a pull-request comment or a GitHub job summary.

No click, no rich, no clock: the same results always give the same bytes.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .verify.runner import CaseResult, Report

__all__ = [
    "DocumentCheck",
    "case_outcome",
    "document_text",
    "documents_junit",
    "documents_markdown",
    "documents_summary",
    "documents_text",
    "verify_junit",
    "verify_markdown",
    "verify_text",
]

# How many diff lines a Markdown report shows per document (a GitHub job summary holds at most 1 MiB),
# and a JUnit report (the full diff is one `xent derive --check FILE` away).
MARKDOWN_DIFF_LINES = 200
JUNIT_DIFF_LINES = 2000

TOLERANCE_RULE = "|got − ref| ≤ 8u(κ + L)·|ref|, u the unit roundoff of the accuracy dtype (README: verify's accuracy)"

PASSED = "passed"
FAILED = "failed"
ERROR = "error"


# --------------------------------------------------------------------------
# Derivation documents
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentCheck:
    """One derivation document regenerated from its header and compared with the committed text."""

    path: str
    command: str
    matches: bool  # the regenerated text is byte for byte the committed one
    proved: bool  # the fresh derivation proves every check
    diff: str = ""  # unified diff, committed -> regenerated ("" when it matches)
    failed_checks: tuple[tuple[str, str], ...] = ()  # (name, detail) of each check that failed

    @property
    def passed(self) -> bool:
        return self.matches and self.proved

    @property
    def status(self) -> str:
        """``ok``, ``differs`` (the text drifted, proved or not) or ``fails`` (same text, but it does not prove)."""
        if self.passed:
            return "ok"
        return "differs" if not self.matches else "fails"

    def problem(self) -> str:
        """One line on what is wrong ('' when nothing is)."""
        parts = []
        if not self.matches:
            parts.append("differs from a fresh run")
        if not self.proved:
            names = ", ".join(name for name, _ in self.failed_checks) or "a check"
            parts.append(f"does not prove ({names} failed)")
        return " and ".join(parts)


def document_text(check: DocumentCheck) -> str:
    """What ``xent derive --check`` prints for one document: ``ok      PATH``, or the status, the diff and
    the checks that failed."""
    lines = [f"ok      {check.path}\n" if check.passed else f"{check.status} {check.path}\n"]
    if not check.matches:
        lines.append(check.diff)
    if not check.proved:
        lines.append(f"        not proved: {', '.join(name for name, _ in check.failed_checks)}\n")
        lines += [f"        {name}: {' '.join(detail.split())}\n" for name, detail in check.failed_checks if detail]
    return "".join(lines)


def documents_text(checks: Sequence[DocumentCheck], *, failures_only: bool = False) -> str:
    return "".join(document_text(c) for c in checks if not (failures_only and c.passed))


def documents_summary(checks: Sequence[DocumentCheck]) -> str:
    bad = sum(not c.passed for c in checks)
    if bad:
        return f"{bad} of {len(checks)} derivation files differ from a fresh run or do not prove"
    return f"all {len(checks)} derivation files match a fresh run and prove"


def documents_junit(checks: Sequence[DocumentCheck]) -> str:
    cases = []
    for c in checks:
        message = c.problem()
        if not c.matches:
            message += f"; regenerated with: {c.command}"
        body = []
        if not c.matches:
            body.append(_clip_lines(c.diff, JUNIT_DIFF_LINES, c.path))
        if not c.proved:
            body.append("".join(f"failed check {name}: {detail}\n" if detail else f"failed check {name}\n"
                                for name, detail in c.failed_checks))
        cases.append(_TestCase(c.path, "xent derive --check", PASSED if c.passed else FAILED, message, "".join(body),
                               "drift" if not c.matches else "not proved"))
    return _junit("xent derive --check", cases, [])


def documents_markdown(checks: Sequence[DocumentCheck]) -> str:
    bad = [c for c in checks if not c.passed]
    mark = _FAIL if bad else _PASS
    out = [f"### {mark} xent derive --check: {documents_summary(checks)}", "", "| file | result |", "|---|---|"]
    for c in checks:
        result = f"{_PASS} matches a fresh run and proves" if c.passed else f"{_FAIL} {c.problem()}"
        out.append(f"| {_code(c.path, cell=True)} | {_cell(result)} |")
    for c in bad:
        out += ["", f"#### {_code(c.path)} {_inline(c.problem())}", ""]
        if not c.matches:
            out += [f"Regenerated with {_code(c.command)}; the committed file (−) against a fresh run (+):", ""]
            out += _fenced(_clip_lines(c.diff, MARKDOWN_DIFF_LINES, c.path), "diff")
        if not c.proved:
            out += ["", "Checks that failed:", ""]
            out += [f"- {_code(name)}" + (f": {_inline(detail)}" if detail else "") for name, detail in c.failed_checks]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# Verify reports
# --------------------------------------------------------------------------


def case_outcome(r: CaseResult, strict: bool = False) -> str:
    """How a CI system counts one battery case: ``passed`` (also a documented framework divergence, unless
    ``strict``), ``failed`` (differs) or ``error`` (did not run)."""
    if r.verdict == "pass" or (r.verdict == "differs" and not strict):
        return PASSED
    return ERROR if r.error else FAILED


def _what(r: CaseResult) -> str:
    from .verify.runner import describe

    return describe(r)


def _divergence(r: CaseResult) -> str:
    """A divergence case's line: the behaviour, what the frameworks return, why the reference differs."""
    assert r.divergence is not None
    return (f"differs where the frameworks differ: {r.divergence.title}: {r.divergence_detail} "
            f"(frameworks: {r.divergence.frameworks}; reference: {r.divergence.reason})")


def verify_text(report: Report) -> str:
    """The lines ``xent verify`` prints under its table, verdict first (what a pytest failure shows, whose
    first line is its summary): the verdict, the diagnoses, each failing or differing case and the accuracy."""
    lines = [report.summary(), *(f"diagnosis: {d}" for d in report.diagnoses)]
    lines += [f"{r.case.name} ({r.case.description}): {_what(r)}" for r in report.results if r.verdict != "pass"]
    if report.tolerance_note:
        lines.append(f"accuracy demanded: {report.tolerance_note}")
    return "\n".join(lines) + "\n"


def verify_junit(report: Report) -> str:
    cases = []
    for r in report.results:
        outcome = case_outcome(r, report.strict)
        what = _divergence(r) if r.divergence is not None else _what(r)
        message = f"diagnosis: {r.diagnosis}; {what}" if r.diagnosis else what
        body = [f"case {r.case.name}: {r.case.description}", f"N×C = {_shape(r)}", f"verdict: {r.verdict}", what]
        if r.diagnosis:
            body.append(f"diagnosis: {r.diagnosis}")
        if not r.error:
            body.append(f"returned {r.dtype}; accuracy demanded: {r.bar} ({TOLERANCE_RULE})")
        kind = "error" if outcome == ERROR else ("divergence" if r.divergence is not None else "mismatch")
        out = "\n".join(body) + "\n" if outcome == PASSED and r.divergence is not None else ""
        cases.append(_TestCase(r.case.name, report.target, outcome, message, "\n".join(body) + "\n", kind, out))
    properties = [
        ("target", report.target),
        ("options", report.options.describe()),
        ("seed", str(report.seed)),
        ("checked", "loss and gradient" if report.checked_grad else "loss only"),
        ("strict", "true" if report.strict else "false"),
        ("tolerances", report.tolerance_note or ""),
        ("summary", report.summary()),
    ]
    properties += [("diagnosis", d) for d in report.diagnoses]
    properties += [("divergence", d) for d in report.divergences()]
    return _junit(f"xent verify {report.target}", cases, properties)


def verify_markdown(report: Report) -> str:
    """The verdict, the options, the failing cases grouped by diagnosis and the cases that differ where the
    frameworks differ (passing cases are only counted)."""
    mark = _PASS if report.passed else _FAIL
    out = [f"### {mark} xent verify {_code(report.target)}", "", _inline(report.summary()), ""]
    about = [f"options: {_inline(report.options.describe())}", f"seed {report.seed}"]
    if report.strict:
        about.append("--strict")
    if report.tolerance_note:
        about.append(f"accuracy demanded: {_inline(report.tolerance_note)}")
    out.append(" · ".join(about))
    failing = [r for r in report.results if r.verdict == "fail"]
    groups: dict[str, list[CaseResult]] = {}
    for r in failing:
        groups.setdefault(_group(r), []).append(r)
    for title, rows in groups.items():
        out += ["", f"**{title}** ({len(rows)} of {len(report.results)} cases):", "",
                "| case | N×C | what differs |", "|---|---|---|"]
        out += [f"| {_code(r.case.name, cell=True)} | {_shape(r)} | {_cell(_what(r))} |" for r in rows]
    differing: dict[str, list[CaseResult]] = {}
    for r in report.differing:
        assert r.divergence is not None
        differing.setdefault(r.divergence.key, []).append(r)
    for rows in differing.values():
        div = rows[0].divergence
        assert div is not None
        verdict = "fails under --strict" if report.strict else "passes; --strict fails it"
        out += ["", f"**Differs where the frameworks differ: {_inline(div.title)}** ({len(rows)} of "
                f"{len(report.results)} cases; {verdict}). Frameworks: {_inline(div.frameworks)}. "
                f"Reference: {_inline(div.reason)}.", "",
                "| case | N×C | what differs |", "|---|---|---|"]
        out += [f"| {_code(r.case.name, cell=True)} | {_shape(r)} | {_cell(r.divergence_detail or '')} |"
                for r in rows]
    shown = len(failing) + len(report.differing)
    if shown and shown < len(report.results):
        out += ["", f"The other {len(report.results) - shown} cases pass."]
    return "\n".join(out) + "\n"


def _group(r: CaseResult) -> str:
    if r.diagnosis:
        return "Diagnosis: " + _inline(r.diagnosis)
    if r.error:
        return "The implementation did not return a result"
    return "Differs, with no diagnosis"


def _shape(r: CaseResult) -> str:
    return "×".join(str(n) for n in r.case.shape)


# --------------------------------------------------------------------------
# JUnit XML
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _TestCase:
    name: str
    classname: str
    outcome: str
    message: str = ""
    text: str = ""
    kind: str = ""
    out: str = ""  # system-out: a passing case's note (a documented divergence)


def _junit(suite_name: str, cases: Sequence[_TestCase], properties: Iterable[tuple[str, str]]) -> str:
    failures = sum(c.outcome == FAILED for c in cases)
    errors = sum(c.outcome == ERROR for c in cases)
    counts = {"tests": str(len(cases)), "failures": str(failures), "errors": str(errors)}
    root = ET.Element("testsuites", {"name": _xml(suite_name), **counts})
    suite = ET.SubElement(root, "testsuite", {"name": _xml(suite_name), **counts, "skipped": "0"})
    props = list(properties)
    if props:
        holder = ET.SubElement(suite, "properties")
        for name, value in props:
            ET.SubElement(holder, "property", {"name": _xml(name), "value": _xml(value)})
    for c in cases:
        case = ET.SubElement(suite, "testcase", {"name": _xml(c.name), "classname": _xml(c.classname)})
        if c.outcome in (FAILED, ERROR):
            tag = "failure" if c.outcome == FAILED else "error"
            element = ET.SubElement(case, tag, {"message": _xml(c.message), "type": _xml(c.kind or tag)})
            element.text = _xml(c.text)
        if c.out:
            ET.SubElement(case, "system-out").text = _xml(c.out)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# Characters XML 1.0 cannot hold at all (not even as a character reference): C0 controls but tab, LF and CR,
# surrogates, U+FFFE and U+FFFF.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    """``text`` with every character XML cannot carry written as ``\\xNN`` / ``\\uNNNN``."""
    return _NOT_XML.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


# --------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------

_PASS = "✅"
_FAIL = "❌"


def _code(text: str, cell: bool = False) -> str:
    """``text`` as an inline code span (longer backtick fences when it holds backticks); in a table ``cell``
    with ``|`` escaped, which GitHub's tables require even inside code."""
    text = " ".join(text.split())
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    span = f"{fence}{pad}{text}{pad}{fence}"
    return span.replace("|", "\\|") if cell else span


def _inline(text: str) -> str:
    """Prose from the library as Markdown text, on one line, with only what Markdown would read as markup
    escaped (emphasis, code, an HTML tag, a link, GitHub's $math$), so that ``p*y``, ``w_{y_i}`` or ``grad[7, 1]``
    show as written, also in a terminal."""
    text = " ".join(text.split())
    return re.sub(r"([\\`*$]|<(?=[A-Za-z/!?])|\[(?=[^\]]*\][(\[])|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))", r"\\\1",
                  text)


def _cell(text: str) -> str:
    """Prose in a table cell: as :func:`_inline`, and ``|`` escaped (GitHub's tables split on it)."""
    return _inline(text).replace("|", "\\|")


def _fenced(text: str, info: str = "") -> list[str]:
    longest = max((len(m) for m in re.findall(r"^\s*(`{3,})", text, flags=re.M)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{info}", *text.rstrip("\n").split("\n"), fence]


def _clip_lines(text: str, limit: int, path: str) -> str:
    lines = text.splitlines(keepends=True)
    if len(lines) <= limit:
        return text
    rest = len(lines) - limit
    return "".join(lines[:limit]) + f"... {rest} more lines: run `xent derive --check {path}` for the whole diff\n"
