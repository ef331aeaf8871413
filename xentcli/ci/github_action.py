"""The GitHub Action's check step (``action.yml`` at the repository root): ``python -m xentcli.ci.github_action``.

It reads what to check from the environment, where ``action.yml`` puts the
action's inputs:

``XENT_DERIVATIONS``
    derivation documents or folders for ``xent derive --check``, separated by
    spaces or newlines (quoted as in a shell when a name has a space);
``XENT_VERIFY``
    one ``xent verify`` per line: the target and its options, as they follow
    ``xent verify`` on the command line (blank lines and ``#`` comments are
    skipped, a leading ``xent verify`` too);
``GITHUB_STEP_SUMMARY``
    the file GitHub shows as the job summary (appended to; when it is unset,
    as outside GitHub, the summary is only printed).

Each check runs as ``python -m xentcli ... --format markdown`` with this
interpreter; its report goes to the log (in a foldable group, with an error
annotation when it fails) and to the job summary: the derivation files that
drifted, with the diff, and the failing cases under their diagnosis. The exit
code is xent's: 0 every check passes, 1 a derivation drifts or does not prove
or a case fails, 2 a check could not run (bad input or usage, one line).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

EXIT_OK = 0
EXIT_MATH = 1
EXIT_INPUT = 2


@dataclass
class Check:
    title: str  # the command as a person would type it
    argv: list[str]  # after `python -m xentcli`
    code: int = EXIT_OK
    report: str = ""
    error: str = ""


def parse_paths(text: str) -> list[str]:
    """``XENT_DERIVATIONS``: paths separated by whitespace, shell-quoted when needed (raises ``ValueError``)."""
    try:
        return shlex.split(text, comments=True)
    except ValueError as exc:
        raise ValueError(f"derivations: {exc}") from None


def parse_verify(text: str) -> list[list[str]]:
    """``XENT_VERIFY``: one argument list per line (raises ``ValueError`` naming the line)."""
    runs = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            args = shlex.split(line, comments=True)
        except ValueError as exc:
            raise ValueError(f"verify, line {number}: {exc}: {line.strip()!r}") from None
        if args[:2] == ["xent", "verify"]:
            args = args[2:]
        if args:
            runs.append(args)
    return runs


def plan(environ: Mapping[str, str]) -> list[Check]:
    """The checks the inputs ask for (raises ``ValueError`` on inputs that cannot be read)."""
    checks = []
    paths = parse_paths(environ.get("XENT_DERIVATIONS", ""))
    if paths:
        checks.append(Check(shlex.join(["xent", "derive", "--check", *paths]),
                            ["derive", "--check", *paths, "--format", "markdown"]))
    for args in parse_verify(environ.get("XENT_VERIFY", "")):
        checks.append(Check(shlex.join(["xent", "verify", *args]), ["verify", *args, "--format", "markdown"]))
    if not checks:
        raise ValueError("nothing to check: give the action 'derivations' (paths), 'verify' (targets), or both")
    return checks


def run(check: Check) -> None:
    proc = subprocess.run([sys.executable, "-m", "xentcli", *check.argv], capture_output=True, text=True,
                          encoding="utf-8", errors="replace", stdin=subprocess.DEVNULL, check=False)
    check.code = proc.returncode
    check.report = proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    check.error = next((ln for ln in reversed(lines) if ln.startswith("xent: error: ")), lines[-1] if lines else "")
    if check.code not in (EXIT_OK, EXIT_MATH) and not check.error:
        check.error = f"exited with code {check.code}"
    _log(check, proc.stderr)


def _log(check: Check, stderr: str) -> None:
    out = sys.stdout
    out.write(f"::group::{_escape(check.title)}\n")
    out.write(check.report)
    out.write(stderr)
    out.write("::endgroup::\n")
    if check.code != EXIT_OK:
        what = check.error.removeprefix("xent: error: ") or "failed"
        out.write(f"::error title={_escape(check.title, prop=True)}::{_escape(what)}\n")
    out.flush()


def _escape(text: str, prop: bool = False) -> str:
    """Text for a GitHub workflow command (``::error title=...::message``)."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def summary(checks: Sequence[Check]) -> str:
    """The job summary: a verdict line, then each check's Markdown report (or why it could not run)."""
    bad = [c for c in checks if c.code != EXIT_OK]
    if bad:
        head = f"## ❌ xent: {len(bad)} of {len(checks)} checks failed"
    else:
        head = f"## ✅ xent: {'the check passes' if len(checks) == 1 else f'all {len(checks)} checks pass'}"
    parts = [head + "\n"]
    for c in checks:
        if c.code in (EXIT_OK, EXIT_MATH) and c.report.strip():
            parts.append(c.report)
        else:
            parts.append(f"### ⚠️ `{c.title}` could not run\n\n```\n{c.error}\n```\n")
    return "\n".join(parts)


def main(environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    try:
        checks = plan(environ)
    except ValueError as exc:
        print(f"xent: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    for check in checks:
        run(check)
    text = summary(checks)
    target = environ.get("GITHUB_STEP_SUMMARY")
    if target:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(text)
    codes = {c.code for c in checks}
    if codes <= {EXIT_OK}:
        print(f"xent: {len(checks)} of {len(checks)} checks pass")
        return EXIT_OK
    bad = sum(c.code != EXIT_OK for c in checks)
    print(f"xent: {bad} of {len(checks)} checks failed", file=sys.stderr)
    return EXIT_MATH if codes <= {EXIT_OK, EXIT_MATH} else EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
