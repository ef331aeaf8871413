"""The GitHub Action (action.yml): its steps run here as GitHub would run them, on a fixture project.

The steps' ``run`` scripts are taken from action.yml and run with bash, with
the ``${{ inputs.* }}`` expressions in their ``env`` and ``working-directory``
replaced by the inputs (GitHub's defaults where a workflow gives none), and
``GITHUB_ACTION_PATH`` and ``GITHUB_STEP_SUMMARY`` set as GitHub sets them. The
install step is skipped (``install: 'false'``): xentcli is already installed in
the Python that runs the tests. References: the derivation document's
committed text, and the JSON report of the same ``xent verify`` run for the
case names and the diagnosis.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ZOO = Path(__file__).resolve().parent / "zoo"
ACTION = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
EXPRESSION = re.compile(r"\$\{\{\s*inputs\.([A-Za-z0-9_-]+)\s*\}\}")
CONDITION = re.compile(r"inputs\.([A-Za-z0-9_-]+) == '([^']*)'")


def run_action(inputs: dict[str, str], workspace: Path, summary: Path) -> subprocess.CompletedProcess[str]:
    """Run action.yml's steps in ``workspace``; returns the last step's process (or the first that failed)."""
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    declared = ACTION["inputs"]
    assert set(inputs) <= set(declared), set(inputs) - set(declared)
    values = {name: inputs.get(name, spec.get("default", "")) for name, spec in declared.items()}

    def expand(text: str) -> str:
        return EXPRESSION.sub(lambda m: values[m.group(1)], str(text))

    assert ACTION["runs"]["using"] == "composite"
    result = None
    for step in ACTION["runs"]["steps"]:
        if "if" in step:
            m = CONDITION.fullmatch(step["if"].strip())
            assert m, f"this test evaluates only `inputs.NAME == 'VALUE'`, not {step['if']!r}"
            if values[m.group(1)] != m.group(2):
                continue
        assert step["shell"] == "bash"
        env = {**os.environ, "GITHUB_ACTION_PATH": str(ROOT), "GITHUB_STEP_SUMMARY": str(summary),
               **{k: expand(v) for k, v in step.get("env", {}).items()}}
        env.pop("XENT_DEBUG", None)
        cwd = workspace / expand(step.get("working-directory", "."))
        result = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=cwd, env=env, capture_output=True,
                                text=True, timeout=600, check=False)
        if result.returncode != 0:
            break
    assert result is not None
    return result


@pytest.fixture
def workspace(tmp_path):
    """A project with a good and a drifted derivation document and two losses, one with a classic mistake."""
    docs = tmp_path / "docs" / "derivations"
    docs.mkdir(parents=True)
    for name in ("ce-c2.md", "ce-c2-drifted.md"):
        made = subprocess.run([sys.executable, "-m", "xentcli", "derive", "--classes", "2", "--format", "markdown",
                               "-o", str(docs / name)], capture_output=True, text=True, check=False)
        assert made.returncode == 0, made
    drifted = docs / "ce-c2-drifted.md"
    drifted.write_text(drifted.read_text(encoding="utf-8").replace("p_j - y_j", "p_j + y_j"), encoding="utf-8")
    (tmp_path / "losses.py").write_text(
        (ZOO / "correct.py").read_text(encoding="utf-8") + "\n\n"
        + (ZOO / "wrong.py").read_text(encoding="utf-8") + "\n\nright = ce_log_softmax\nwrong = grad_of_sum\n",
        encoding="utf-8",
    )
    return tmp_path


def test_the_job_summary_names_the_drifted_file_and_the_failing_case_with_its_diagnosis(workspace, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier steps' summary\n", encoding="utf-8")
    run = run_action({"derivations": "docs/derivations", "verify": "losses.py:right\nlosses.py:wrong\n",
                      "python": sys.executable, "install": "false"}, workspace, summary)
    assert run.returncode == 1, run
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("earlier steps' summary\n## ❌ xent: 2 of 3 checks failed\n")  # appended

    # the drifted derivation, with the diff; the good one passes
    assert "| `docs/derivations/ce-c2-drifted.md` | ❌ differs from a fresh run |" in text
    assert "| `docs/derivations/ce-c2.md` | ✅ matches a fresh run and proves |" in text
    assert "#### `docs/derivations/ce-c2-drifted.md` differs from a fresh run" in text
    assert "```diff\n--- docs/derivations/ce-c2-drifted.md (committed)\n" in text
    dl = "\\frac{\\partial L}{\\partial z_j}"
    assert f"\n-{dl} = p_j + y_j\n+{dl} = p_j - y_j\n" in text

    # the failing cases under their diagnosis; the correct loss passes
    expected = json.loads(subprocess.run([sys.executable, "-m", "xentcli", "verify", "losses.py:wrong"],
                                         cwd=workspace, capture_output=True, text=True, check=False).stdout)
    assert "### ✅ xent verify `losses.py:right`" in text
    assert "### ❌ xent verify `losses.py:wrong`" in text
    first = next(c for c in expected["cases"] if not c["passed"])
    assert f"**Diagnosis: {first['diagnosis']}**" in text
    for case in expected["cases"]:
        row = f"| `{case['name']}` | {'×'.join(map(str, case['shape']))} | "
        assert (row in text) is (not case["passed"]), case["name"]

    # the log: a foldable group and an error annotation per failed check
    assert "::group::xent derive --check docs/derivations\n" in run.stdout
    assert "::error title=xent verify losses.py%3Awrong::verification failed on" in run.stdout
    assert "::error title=xent verify losses.py%3Aright" not in run.stdout


def test_everything_passes(workspace, tmp_path):
    summary = tmp_path / "summary.md"
    (workspace / "docs" / "derivations" / "ce-c2-drifted.md").unlink()
    run = run_action({"derivations": "docs/derivations/ce-c2.md", "verify": "losses.py:right",
                      "python": sys.executable, "install": "false"}, workspace, summary)
    assert run.returncode == 0, run
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("## ✅ xent: all 2 checks pass\n")
    assert "::error" not in run.stdout


def test_working_directory_and_options_of_a_verify_line(workspace, tmp_path):
    (workspace / "pkg").mkdir()
    shutil.move(workspace / "losses.py", workspace / "pkg" / "losses.py")
    summary = tmp_path / "summary.md"
    run = run_action({"verify": "# the smoothed loss\nxent verify losses.py:ce_smoothing --label-smoothing 0.1\n",
                      "python": sys.executable, "install": "false", "working-directory": "pkg"}, workspace, summary)
    assert run.returncode == 0, run
    text = summary.read_text(encoding="utf-8")
    assert "### ✅ xent verify `losses.py:ce_smoothing`" in text
    assert "options: ce, reduction=mean, targets=index, label_smoothing=1/10 · seed 0" in text


def test_a_check_that_cannot_run_is_reported_and_exits_2(workspace, tmp_path):
    summary = tmp_path / "summary.md"
    run = run_action({"derivations": "docs/derivations", "verify": "losses.py:no_such_function",
                      "python": sys.executable, "install": "false"}, workspace, summary)
    assert run.returncode == 2, run
    text = summary.read_text(encoding="utf-8")
    assert "### ⚠️ `xent verify losses.py:no_such_function` could not run" in text
    assert "xent: error: losses.py:no_such_function: losses.py has no attribute 'no_such_function'" in text
    assert "ce-c2-drifted.md" in text  # the other checks still ran


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({}, "nothing to check: give the action 'derivations' (paths), 'verify' (targets), or both"),
        ({"XENT_VERIFY": "losses.py:right --weight '1,2"}, "verify, line 1: No closing quotation"),
        ({"XENT_DERIVATIONS": "'docs"}, "derivations: No closing quotation"),
    ],
)
def test_unreadable_inputs_are_one_line_and_exit_2(tmp_path, env, fragment):
    """The script run directly, as the action's step runs it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("XENT_", "GITHUB_"))}
    run = subprocess.run([sys.executable, "-m", "xentcli.ci.github_action"], cwd=tmp_path, capture_output=True,
                         text=True, env={**clean, **env, "GITHUB_STEP_SUMMARY": str(tmp_path / "s.md")}, check=False)
    assert run.returncode == 2, run
    assert run.stderr.startswith("xent: error: ") and fragment in run.stderr
    assert run.stderr.count("\n") == 1 and run.stdout == ""
    assert not (tmp_path / "s.md").exists()


def test_the_install_step_installs_this_checkout_into_the_chosen_python():
    install = ACTION["runs"]["steps"][0]
    assert install["if"] == "inputs.install == 'true'" and ACTION["inputs"]["install"]["default"] == "true"
    assert install["run"] == '"$XENT_PYTHON" -m pip install --disable-pip-version-check "$GITHUB_ACTION_PATH"'
    assert install["env"] == {"XENT_PYTHON": "${{ inputs.python }}"}
    assert (ROOT / "pyproject.toml").is_file()  # what pip installs from GITHUB_ACTION_PATH
