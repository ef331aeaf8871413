"""Reports CI systems display: ``--format junit`` and ``--format markdown`` of ``xent verify`` and
``xent derive --check``.

References outside the code under test: the Jenkins xUnit ``junit-10`` schema
(tests/schemas/junit-10.xsd, see the README there), checked by a real XML
Schema validator (``xmlschema``); Python's XML parser; and markdown-it-py
(CommonMark with GitHub's tables) for what a Markdown reader sees. Expected
case names come from the battery itself, expected diagnoses from the JSON report
of the same run.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema
from conftest import one_error_line
from markdown_it import MarkdownIt

from xentcli import reports
from xentcli.verify import check

HERE = Path(__file__).resolve().parent
ZOO = HERE / "zoo"
SCHEMA = xmlschema.XMLSchema10(HERE / "schemas" / "junit-10.xsd")
BATCH_SIZE = "off by the batch size"


def junit(text: str) -> ET.Element:
    """Validate ``text`` against the junit-10 schema and parse it."""
    SCHEMA.validate(text)
    return ET.fromstring(text)


def junit_cases(root: ET.Element) -> dict[str, ET.Element]:
    return {tc.get("name"): tc for tc in root.iter("testcase")}


def markdown_tokens(text: str):
    return MarkdownIt("commonmark").enable("table").parse(text)


def seen(inline) -> str:
    """The text a reader sees in an inline token: text, code spans, and nothing left of the markup."""
    return "".join(c.content for c in inline.children if c.type in ("text", "code_inline", "softbreak"))


def table_rows(text: str) -> list[list[str]]:
    rows, row, tokens = [], None, markdown_tokens(text)
    for i, tok in enumerate(tokens):
        if tok.type == "tr_open":
            row = []
        elif tok.type in ("td_open", "th_open"):
            row.append(seen(tokens[i + 1]))
        elif tok.type == "tr_close":
            rows.append(row)
    return rows


def emphasis(text: str) -> list[str]:
    """Every emphasis, link or HTML tag markdown-it finds: what would change how a string shows."""
    return [c.type for tok in markdown_tokens(text) if tok.type == "inline" for c in tok.children
            if c.type in ("em_open", "link_open", "html_inline")] + [
        tok.type for tok in markdown_tokens(text) if tok.type == "html_block"]


# ----------------------------------------------------------------------------
# xent verify --format junit
# ----------------------------------------------------------------------------


def test_verify_junit_has_one_testcase_per_case_and_the_diagnosis_in_the_failure(xent):
    target = f"{ZOO / 'wrong.py'}:grad_of_sum"
    expected = xent("verify", target, "--format", "json").json()
    run = xent("verify", target, "--format", "junit")
    assert run.code == 1, run
    root = junit(run.stdout)
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    cases = junit_cases(root)
    assert list(cases) == [c["name"] for c in expected["cases"]]  # one per battery case, in order
    failed = [c for c in expected["cases"] if not c["passed"]]
    assert suite.get("tests") == str(len(expected["cases"])) and suite.get("failures") == str(len(failed))
    assert suite.get("errors") == "0"
    for c in expected["cases"]:
        tc = cases[c["name"]]
        assert tc.get("classname") == target
        failure = tc.find("failure")
        if c["passed"]:
            assert failure is None and tc.find("error") is None
            continue
        assert BATCH_SIZE in c["diagnosis"]
        assert failure.get("message").startswith(f"diagnosis: {c['diagnosis']}; ") and "grad[" in failure.get("message")
        assert c["diagnosis"] in failure.text and c["description"] in failure.text
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["target"] == target and props["seed"] == "0" and BATCH_SIZE in props["diagnosis"]
    assert "verification failed on" in run.stderr  # the one stderr line, as with every format


def test_verify_junit_passing_report(xent):
    run = xent("verify", f"{ZOO / 'correct.py'}:ce_log_softmax", "--format", "junit")
    assert run.code == 0, run
    root = junit(run.stdout)
    assert root.find("testsuite").get("failures") == "0"
    assert len(junit_cases(root)) >= 10
    assert not list(root.iter("failure")) and not list(root.iter("error"))


def test_verify_junit_counts_an_implementation_that_raises_as_an_error(xent, tmp_path):
    impl = tmp_path / "raising.py"
    impl.write_text(
        "import numpy as np\n"
        "def f(z, y):\n"
        "    if z.shape[1] == 2:\n"
        "        raise ValueError('no binary case \\x00\\x1b[31m <&> \"quoted\" ]]>')\n"
        "    from xentcli import cross_entropy\n"
        "    r = cross_entropy(z, y)\n"
        "    return r.loss, r.grad\n",
        encoding="utf-8",
    )
    run = xent("verify", f"{impl}:f", "--format", "junit")
    assert run.code == 1, run
    root = junit(run.stdout)  # control characters in the exception do not break the XML
    suite = root.find("testsuite")
    assert suite.get("errors") == "1" and suite.get("failures") == "0"
    error = junit_cases(root)["two-classes"].find("error")
    assert error.get("message").startswith("raised ValueError: no binary case \\x00\\x1b[31m <&> \"quoted\" ]]>")


def test_verify_junit_from_results_of_another_language(xent, tmp_path):
    """--results (the file exchange) reports the same way."""
    cases = tmp_path / "cases"
    assert xent("verify", "--export", cases).code == 0
    run = xent("verify", "--results", cases, "--format", "junit")
    assert run.code == 1, run  # nothing was written: every case fails, each named
    root = junit(run.stdout)
    assert len(junit_cases(root)) == int(root.find("testsuite").get("tests")) >= 10


# ----------------------------------------------------------------------------
# xent verify --format markdown
# ----------------------------------------------------------------------------


def test_verify_markdown_lists_the_failing_cases_under_their_diagnosis(xent):
    target = f"{ZOO / 'wrong.py'}:grad_of_sum"
    expected = xent("verify", target, "--format", "json").json()
    run = xent("verify", target, "--format", "markdown")
    assert run.code == 1, run
    text = run.stdout
    failed = [c for c in expected["cases"] if not c["passed"]]
    rows = table_rows(text)
    assert rows[0] == ["case", "N×C", "what differs"]
    assert [r[0] for r in rows[1:]] == [c["name"] for c in failed]
    assert all(r[1] == "×".join(map(str, c["shape"])) for r, c in zip(rows[1:], failed))
    tokens = markdown_tokens(text)
    paragraphs = [seen(tokens[i + 1]) for i, t in enumerate(tokens) if t.type == "paragraph_open"]
    assert expected["summary"] in paragraphs
    diagnosis = expected["diagnoses"][0].split(" (case")[0]  # the report's line names the cases after it
    assert any(p.startswith(f"Diagnosis: {diagnosis}") for p in paragraphs), paragraphs
    headings = [seen(tokens[i + 1]) for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings == [f"❌ xent verify {target}"]
    assert f"The other {len(expected['cases']) - len(failed)} cases pass." in paragraphs


def test_verify_markdown_of_a_pass_is_short(xent):
    run = xent("verify", f"{ZOO / 'correct.py'}:ce_log_softmax", "--format", "markdown")
    assert run.code == 0, run
    assert run.stdout.startswith("### ✅ xent verify ")
    assert "PASS: " in run.stdout and "Diagnosis" not in run.stdout and "no diagnosis" not in run.stdout
    # what passes only as the frameworks do is shown, under the divergence, with what they return
    assert "**Differs where the frameworks differ: confident predictions" in run.stdout
    assert "passes; --strict fails it" in run.stdout


HOSTILE = "a|b *c* `d` <script>x</script> _e_ $x$ [l](http://x) w_{y_i} \\ end"


def test_markdown_shows_library_text_as_written():
    """Error texts and diagnoses are prose with |, *, _, `, <, $: a reader sees them exactly, in table cells too."""

    def f(z, y):
        raise ValueError(HOSTILE)

    report = check(f)
    text = reports.verify_markdown(report)
    rows = table_rows(text)[1:]
    assert rows and all(r[2] == f"raised ValueError: {HOSTILE}" for r in rows)
    assert emphasis(text) == []


@pytest.mark.parametrize("path", ["a`b.md", "`x`.md", "d/``odd``", "a|b_c_.md"])
def test_paths_show_as_written_in_markdown(path):
    text = reports.documents_markdown([reports.DocumentCheck(path, "xent derive --classes 2", True, True)])
    assert table_rows(text)[1] == [path, "✅ matches a fresh run and proves"]


# ----------------------------------------------------------------------------
# xent derive --check --format junit|markdown
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    """A good, a drifted and a refuted derivation document (C = 2)."""
    from click.testing import CliRunner

    from xentcli.cli import cli

    d = tmp_path_factory.mktemp("derivations")
    runner = CliRunner()
    for name, args in (("good.md", []), ("drifted.md", []), ("refuted.txt", ["--claim", "p - 2*y"])):
        runner.invoke(cli, ["derive", "--classes", "2", *args, "-o", str(d / name)])
    drifted = d / "drifted.md"
    drifted.write_text(drifted.read_text(encoding="utf-8").replace("p_j - y_j", "p_j + y_j"), encoding="utf-8")
    return d


def test_derive_check_junit(xent, documents, tmp_path):
    d = tmp_path / "docs"
    shutil.copytree(documents, d)
    run = xent("derive", "--check", d, "--format", "junit")
    assert run.code == 1, run
    root = junit(run.stdout)
    cases = junit_cases(root)
    assert list(cases) == [str(d / n) for n in ("drifted.md", "good.md", "refuted.txt")]
    assert root.find("testsuite").get("failures") == "2"
    assert cases[str(d / "good.md")].find("failure") is None
    drift = cases[str(d / "drifted.md")].find("failure")
    assert drift.get("message") == ("differs from a fresh run; regenerated with: "
                                    "xent derive --classes 2 --format markdown")
    assert "-\\frac{\\partial L}{\\partial z_j} = p_j + y_j" in drift.text
    assert "+\\frac{\\partial L}{\\partial z_j} = p_j - y_j" in drift.text
    refuted = cases[str(d / "refuted.txt")].find("failure")
    assert refuted.get("message") == "does not prove (claim failed)"
    assert refuted.text.startswith("failed check claim: at z = (")
    assert run.stderr.strip() == "2 of 3 derivation files differ from a fresh run or do not prove"


def test_derive_check_markdown(xent, documents):
    run = xent("derive", "--check", documents / "good.md", documents / "drifted.md", "--format", "markdown")
    assert run.code == 1, run
    rows = table_rows(run.stdout)
    assert rows == [["file", "result"], [str(documents / "good.md"), "✅ matches a fresh run and proves"],
                    [str(documents / "drifted.md"), "❌ differs from a fresh run"]]
    tokens = markdown_tokens(run.stdout)
    fences = [t for t in tokens if t.type == "fence"]
    assert len(fences) == 1 and fences[0].info == "diff"
    assert "-\\frac{\\partial L}{\\partial z_j} = p_j + y_j\n" in fences[0].content
    headings = [seen(tokens[i + 1]) for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings[1] == f"{documents / 'drifted.md'} differs from a fresh run"


def test_derive_check_text_is_unchanged_and_takes_several_paths(xent, documents):
    run = xent("derive", "--check", documents / "good.md", documents / "refuted.txt", documents / "good.md")
    assert run.code == 1, run
    lines = run.stdout.splitlines()
    assert lines[:3] == [f"ok      {documents / 'good.md'}", f"fails {documents / 'refuted.txt'}",
                         "        not proved: claim"]  # a path given twice is checked once
    assert lines[3].startswith("        claim: at z = (") and len(lines) == 4


def test_markdown_diff_is_clipped_for_a_job_summary():
    big = "".join(f"+line {i}\n" for i in range(5000))
    check_ = reports.DocumentCheck("x.md", "xent derive --classes 2", False, True, big)
    text = reports.documents_markdown([check_])
    assert text.count("+line ") == reports.MARKDOWN_DIFF_LINES
    assert "4800 more lines: run `xent derive --check x.md` for the whole diff" in text
    junit(reports.documents_junit([check_]))


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--classes", "2", "--format", "junit"], "--format junit is a report of --check"),
        (["--check", ".", "--format", "latex"], "--check reports as text, markdown, junit; not latex"),
        (["--check", ".", "--format", "json"], "--check reports as text, markdown, junit; not json"),
        (["--classes", "2", "stray.md"], "unexpected extra argument (stray.md)"),
    ],
)
def test_report_usage_errors_exit_2(xent, args, fragment):
    assert fragment in one_error_line(xent("derive", *args))


def test_report_of_a_bad_header_is_nothing_but_the_error(xent, tmp_path):
    (tmp_path / "d.md").write_text("<!-- Generated by: xent derive --classes 2 --format junit -->\n")
    line = one_error_line(xent("derive", "--check", tmp_path, "--format", "junit"))
    assert "d.md" in line and "--format junit is a report" in line
