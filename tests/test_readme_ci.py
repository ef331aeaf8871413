"""The README's "Use in CI" examples are complete and fit what they configure.

Each example is a fenced block whose first line names its file
(``# .pre-commit-config.yaml``); it is parsed as that file and checked
against the real declarations: the hook ids of .pre-commit-hooks.yaml (and
pre-commit's own config validator), the inputs of action.yml, pytest's ini
option, the options xent accepts.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README[README.index("\n## Use in CI\n"):README.index("\n## Formulas\n")]


def example(first_line: str) -> str:
    blocks = re.findall(r"```[a-z]*\n(.*?)```", SECTION, flags=re.S)
    found = [b for b in blocks if b.startswith(first_line + "\n")]
    assert len(found) == 1, first_line
    return found[0]


def test_the_pre_commit_example_names_this_repository_s_hooks(tmp_path):
    config = yaml.safe_load(example("# .pre-commit-config.yaml"))
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))}
    (repo,) = config["repos"]
    assert [h["id"] for h in repo["hooks"]] == list(hooks)  # both hooks, as the section describes them
    path = tmp_path / ".pre-commit-config.yaml"
    path.write_text(example("# .pre-commit-config.yaml"), encoding="utf-8")
    pytest.importorskip("pre_commit")
    run = subprocess.run([sys.executable, "-m", "pre_commit", "validate-config", str(path)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run
    manifest = subprocess.run([sys.executable, "-m", "pre_commit", "validate-manifest",
                               str(ROOT / ".pre-commit-hooks.yaml")], capture_output=True, text=True, check=False)
    assert manifest.returncode == 0, manifest


def test_the_workflow_example_is_complete_and_uses_the_action_s_inputs():
    workflow = yaml.safe_load(example("# .github/workflows/xent.yml"))
    action = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    assert workflow["name"] and workflow[True]  # `on:` (YAML 1.1 reads the key as true)
    (job,) = workflow["jobs"].values()
    steps = job["steps"]
    assert steps[0]["uses"].startswith("actions/checkout@")
    ours = [s for s in steps if s.get("uses", "").startswith("OWNER/xent@")]
    assert len(ours) == 1
    assert set(ours[0]["with"]) <= set(action["inputs"])
    for line in ours[0]["with"]["verify"].splitlines():  # each line is what follows `xent verify`
        assert line.split()[0].endswith((".py:cross_entropy", ".py:cross_entropy_smoothed"))
    table = SECTION[SECTION.index("| input | meaning (default) |"):]
    table = table[:table.index("\n\n")]
    inputs_table = re.findall(r"^\| `([a-z-]+)` \|", table, flags=re.M)
    assert set(inputs_table) == set(action["inputs"])  # every input documented


def test_the_pytest_examples():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    toml = tomllib.loads(example("# pyproject.toml"))
    assert toml["tool"]["pytest"]["ini_options"]["xent_derivations"] == ["docs/derivations"]
    from xentcli.pytest_plugin import INI

    assert INI == "xent_derivations"
    compile(example("# tests/test_losses.py"), "test_losses.py", "exec")


def test_the_gitlab_example_writes_both_reports():
    gitlab = yaml.safe_load(example("# .gitlab-ci.yml"))
    script = gitlab["xent"]["script"]
    assert any("--format junit > xent-derivations.xml" in line for line in script)
    assert any("--format junit > xent-verify.xml" in line for line in script)
    assert gitlab["xent"]["artifacts"]["reports"]["junit"] == "xent-*.xml"
