"""The pre-commit hooks, run by pre-commit itself on a throwaway project.

The hooks repository is this checkout as it stands (tracked and untracked,
not ignored, files: what a commit of the work tree would hold), committed into a
temporary git repository, since pre-commit clones its hooks at a rev. The
project is another temporary git repository whose ``.pre-commit-config.yaml``
names that repository and rev, as a real project's would. pre-commit builds the
hooks' environment (``language: python``: a virtualenv with xentcli and its
dependencies installed by pip, about 20-40 s) once for the module.

References: pre-commit's own verdicts and exit codes, and the committed text
of the derivation document.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ZOO = Path(__file__).resolve().parent / "zoo"
REQUIRE = bool(os.environ.get("CI") or os.environ.get("XENT_REQUIRE_TOOLS"))

GIT_ENV = {
    "GIT_AUTHOR_NAME": "xent tests",
    "GIT_AUTHOR_EMAIL": "tests@example.invalid",
    "GIT_COMMITTER_NAME": "xent tests",
    "GIT_COMMITTER_EMAIL": "tests@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def missing(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason} (CI or XENT_REQUIRE_TOOLS is set)")
    pytest.skip(reason)


def git(*args: str, cwd: Path) -> str:
    run = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                         env={**os.environ, **GIT_ENV}, check=False)
    assert run.returncode == 0, run
    return run.stdout


def snapshot(dest: Path) -> str:
    """Commit this checkout's work tree into a new repository at ``dest``; return the commit."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, check=False)
    if listing.returncode != 0:
        missing("the tests do not run from a git checkout, so there is no hooks repository to try")
    for name in listing.stdout.decode().split("\0"):
        src = ROOT / name
        if name and src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    git("init", "-q", cwd=dest)
    git("add", "-A", cwd=dest)
    git("commit", "-q", "-m", "snapshot of the work tree", cwd=dest)
    return git("rev-parse", "HEAD", cwd=dest).strip()


class Project:
    def __init__(self, path: Path, env: dict[str, str]):
        self.path = path
        self.env = env

    def write(self, name: str, text: str) -> Path:
        p = self.path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
        return p

    def git(self, *args: str) -> str:
        return git(*args, cwd=self.path)

    def pre_commit(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pre_commit", *args], cwd=self.path, capture_output=True,
                              text=True, env=self.env, timeout=600, check=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    if shutil.which("git") is None:
        missing("git is not installed")
    pytest.importorskip("pre_commit")
    hooks_repo = tmp_path_factory.mktemp("xent-hooks")
    rev = snapshot(hooks_repo)
    path = tmp_path_factory.mktemp("project")
    env = {**os.environ, **GIT_ENV, "PRE_COMMIT_HOME": str(tmp_path_factory.mktemp("pre-commit-home")),
           "PRE_COMMIT_COLOR": "never"}
    env.pop("XENT_DEBUG", None)
    p = Project(path, env)
    p.git("init", "-q")
    config = {"repos": [{"repo": str(hooks_repo), "rev": rev, "hooks": [
        {"id": "xent-derive-check"},
        {"id": "xent-verify", "args": ["losses.py:cross_entropy"]},
    ]}]}
    p.write(".pre-commit-config.yaml", yaml.safe_dump(config, sort_keys=False))
    # A derivation document made by the xent under test, and the project's loss (correct for now).
    (path / "docs").mkdir()
    made = subprocess.run([sys.executable, "-m", "xentcli", "derive", "--classes", "2", "--format", "markdown",
                           "-o", str(path / "docs" / "ce-c2.md")], capture_output=True, text=True, check=False)
    assert made.returncode == 0, made
    p.write("losses.py", (ZOO / "correct.py").read_text(encoding="utf-8")
            + "\n\ncross_entropy = ce_log_softmax\n")
    p.write("README.md", "# A project\n\nIts losses are checked by xent.\n")
    p.git("add", "-A")
    p.git("commit", "-q", "-m", "a project with a derivation document")
    run = p.pre_commit("install-hooks")  # builds the hooks' environment once
    assert run.returncode == 0, run.stdout + run.stderr
    return p


def hook_line(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(name))


def test_the_hooks_pass_on_a_clean_project(project):
    run = project.pre_commit("run", "--all-files")
    assert run.returncode == 0, run.stdout + run.stderr
    assert hook_line(run.stdout, "xent derive --check").endswith("Passed")
    assert hook_line(run.stdout, "xent verify").endswith("Passed")


def test_a_drifted_document_fails_the_commit_with_the_diff(project):
    doc = project.path / "docs" / "ce-c2.md"
    committed = doc.read_text(encoding="utf-8")
    try:
        doc.write_text(committed.replace("p_j - y_j", "p_j + y_j"), encoding="utf-8")
        project.git("add", "docs/ce-c2.md")
        run = project.pre_commit("run")  # the staged files, as at a commit
        assert run.returncode == 1, run.stdout + run.stderr
        out = run.stdout
        assert hook_line(out, "xent derive --check").endswith("Failed")
        assert "differs docs/ce-c2.md" in out
        assert "--- docs/ce-c2.md (committed)" in out
        assert "-\\frac{\\partial L}{\\partial z_j} = p_j + y_j" in out
        assert "+\\frac{\\partial L}{\\partial z_j} = p_j - y_j" in out
        assert "1 of 1 derivation files differ" in out
        assert "\nok      " not in out  # only what failed
    finally:
        doc.write_text(committed, encoding="utf-8")
        project.git("add", "docs/ce-c2.md")


def test_documents_are_recognised_by_their_header_not_their_name(project):
    """A header-less Markdown file is left alone; a document renamed to anything is still checked."""
    notes = project.write("docs/notes.md", "# Notes\n\nNo header here: p_j + y_j.\n")
    odd = project.path / "proofs" / "gradient.proof"
    odd.parent.mkdir(exist_ok=True)
    text = (project.path / "docs" / "ce-c2.md").read_text(encoding="utf-8")
    try:
        project.git("add", "docs/notes.md")
        run = project.pre_commit("run", "xent-derive-check", "--files", "docs/notes.md", "README.md")
        assert run.returncode == 0, run.stdout + run.stderr
        assert hook_line(run.stdout, "xent derive --check").endswith("Passed")

        odd.write_text(text.replace("C = 2", "C = two"), encoding="utf-8")
        project.git("add", "proofs/gradient.proof")
        run = project.pre_commit("run", "xent-derive-check", "--files", "docs/notes.md", "proofs/gradient.proof")
        assert run.returncode == 1, run.stdout + run.stderr
        assert "differs proofs/gradient.proof" in run.stdout and "notes.md" not in run.stdout
    finally:
        project.git("rm", "-q", "--cached", "--ignore-unmatch", "docs/notes.md", "proofs/gradient.proof")
        notes.unlink()
        odd.unlink(missing_ok=True)


def test_the_verify_hook_fails_a_wrong_loss_with_the_diagnosis(project):
    losses = project.path / "losses.py"
    committed = losses.read_text(encoding="utf-8")
    try:
        losses.write_text((ZOO / "wrong.py").read_text(encoding="utf-8") + "\n\ncross_entropy = grad_of_sum\n",
                          encoding="utf-8")
        project.git("add", "losses.py")
        run = project.pre_commit("run")
        assert run.returncode == 1, run.stdout + run.stderr
        out = run.stdout
        assert hook_line(out, "xent verify").endswith("Failed")
        assert hook_line(out, "xent derive --check").endswith("Passed")  # losses.py has no header: left alone
        assert "FAIL: losses.py:cross_entropy differs from the reference" in out
        assert "Diagnosis: the gradient is off by the batch size" in out
        assert "| `random` | 8×5 |" in out
    finally:
        losses.write_text(committed, encoding="utf-8")
        project.git("add", "losses.py")
