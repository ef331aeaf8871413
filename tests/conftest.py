"""Shared fixtures: run the CLI in-process with a fixed terminal, and seed files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from xentcli.cli import cli

pytest_plugins = ["pytester"]  # tests/test_pytest_plugin.py runs pytest inside pytest

SEED_LOGITS = "2,1,0.1;0.1,2,1.9"
SEED_LABELS = "1,0"

# The worked example of ../shared/seeds/004_*.txt (rounded to 3 decimals there).
SEED_LOSSES = [1.417, 2.620]
SEED_MEAN = 2.019
SEED_GRAD_MEAN = [[0.330, -0.379, 0.049], [-0.464, 0.243, 0.220]]
SEED_PROBS = [[0.659, 0.242, 0.099], [0.073, 0.487, 0.440]]


class Run:
    def __init__(self, result):
        self.result = result
        self.code = result.exit_code
        self.stdout = result.stdout
        self.stderr = result.stderr

    def json(self):
        return json.loads(self.stdout)

    def __repr__(self) -> str:  # shows up in assertion failures
        return f"<Run code={self.code} stdout={self.stdout[:400]!r} stderr={self.stderr[:400]!r}>"


@pytest.fixture
def xent(monkeypatch):
    """Invoke ``xent ARGS...`` in-process; returns a :class:`Run`."""
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("XENT_DEBUG", raising=False)

    def run(*args: str, input: str | bytes | None = None) -> Run:
        runner = CliRunner()
        result = runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=True)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Run(result)

    return run


@pytest.fixture
def write(tmp_path: Path):
    """Write a text (str) or binary (bytes) file under tmp_path and return its path."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
        return path

    return _write


def one_error_line(run: Run) -> str:
    """Assert the run failed with exit code 2 and exactly one stderr line; return it."""
    assert run.code == 2, run
    lines = run.stderr.strip("\n").split("\n")
    assert len(lines) == 1, run
    assert lines[0].startswith("xent: error: "), run
    assert "Traceback" not in run.stderr
    assert run.stdout == "", run
    return lines[0]
