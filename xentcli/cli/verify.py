"""``xent verify``: run the conformance battery on someone's implementation."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import click

from ..errors import XentInputError
from . import CONTEXT_SETTINGS, EXIT_MATH, EXIT_OK
from .options import LOSS_PARAMS, loss_options, loss_spec

EPILOG = """\b
Examples:
  xent verify mypkg/losses.py:cross_entropy
  xent verify mypkg.losses:cross_entropy --weight 1,2,1 --label-smoothing 0.1
  xent verify mypkg.losses:bce --binary --pos-weight 3 --format json
  xent verify --export cases/      # inputs + manifest for a C++/CUDA/Rust implementation
  xent verify --results cases/     # check the outputs it wrote there

\b
The function is called as f(logits, targets): logits float (N, C); targets
int64 class indices (N,) or float rows (N, C) (--targets prob; --binary: the
logits' shape). It returns the loss, or (loss, grad) with grad = d loss/d logits.
Exit codes: 0 all cases pass, 1 a case fails, 2 bad usage or a target that
cannot be run.
"""

@click.command(context_settings=CONTEXT_SETTINGS, epilog=EPILOG)
@click.argument("target", required=False, metavar="[TARGET]")
@loss_options("verify")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the battery.")
@click.option("--rtol", type=float, default=None, help="Relative tolerance (default by returned dtype).")
@click.option("--atol", type=float, default=None, help="Absolute tolerance, times max(1, max|reference|).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "junit", "markdown"]), default=None,
              help="junit: JUnit XML, one testcase per case; markdown: for a PR comment or job summary. "
                   "[default: table on a terminal, json otherwise]")
@click.option("--export", "export_dir", type=click.Path(path_type=Path), metavar="DIR",
              help="Write the battery's inputs and a manifest for an implementation in another language.")
@click.option("--results", "results_dir", type=click.Path(path_type=Path), metavar="DIR",
              help="Check the outputs an implementation wrote next to an exported battery.")
@click.pass_context
def verify(
    ctx: click.Context,
    /,
    target: str | None,
    seed: int,
    rtol: float | None,
    atol: float | None,
    fmt: str | None,
    export_dir: Path | None,
    results_dir: Path | None,
    **loss: Any,
) -> int:
    """Check an implementation of cross-entropy (or BCE) against the reference and diagnose mistakes.

    TARGET is path/to/file.py:function or module.path:function (importable from
    the current directory). Each case of a seeded battery (random and extreme
    logits, C = 2 and C = 32768, ties, masked classes, confident predictions,
    ignored samples, unnormalised targets) is compared with xent's reference.
    """
    from .. import verify as api

    for value, name in ((rtol, "--rtol"), (atol, "--atol")):
        if value is not None and not (0.0 <= value < float("inf")):
            raise click.BadParameter(f"{value!r} must be a finite number >= 0", param_hint=f"'{name}'")
    if seed < 0:
        raise click.BadParameter(f"{seed} must be a whole number >= 0", param_hint="'--seed'")
    modes = [m for m in (target, export_dir, results_dir) if m is not None]
    if len(modes) != 1:
        raise click.UsageError("give exactly one of TARGET, --export DIR or --results DIR")

    if results_dir is not None:
        given = [n for n in (*LOSS_PARAMS, "seed") if _given(ctx, n)]
        if given:
            raise click.UsageError("--results reads the options from the manifest; only --rtol, --atol and "
                                   "--format apply")
        from ..verify.diagnose import diagnose
        from ..verify.exchange import results

        opts, seed_used, case_results, _ = results(results_dir, rtol, atol)
        report = api.finish(f"outputs in {results_dir}", opts, seed_used, case_results, diagnose)
        return _show(report, fmt)

    from ..verify.battery import fixed_classes

    opts = loss_spec(loss, ctx)
    fixed_classes(opts)

    if export_dir is not None:
        from ..verify.exchange import export

        command = shlex.join(["xent", "verify", "--export", str(export_dir), *opts.to_args("verify"),
                              "--seed", str(seed)])
        cases = export(export_dir, opts, seed, command)
        click.echo(
            f"wrote {len(cases)} cases to {export_dir} (manifest.json, README.txt); run your implementation on "
            f"them, then: xent verify --results {export_dir}",
            err=True,
        )
        return EXIT_OK

    from ..verify.loader import load

    assert target is not None
    fn = load(target)
    report = api.check(fn, options=opts, seed=seed, rtol=rtol, atol=atol, name=target)
    errors = [r.error for r in report.results if r.error]
    if errors and len(errors) == len(report.results):
        raise XentInputError(f"raised on every case; the first: {errors[0].removeprefix('raised ')}", source=target)
    return _show(report, fmt)


def _given(ctx: click.Context, name: str) -> bool:
    try:
        return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    except KeyError:  # pragma: no cover
        return False


def _show(report: Any, fmt: str | None) -> int:
    from .render import stdout_is_terminal

    chosen = fmt or ("table" if stdout_is_terminal() else "json")
    if chosen == "json":
        click.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    elif chosen in ("junit", "markdown"):
        from .. import reports

        click.echo((reports.verify_junit if chosen == "junit" else reports.verify_markdown)(report), nl=False)
    else:
        _table(report)
    if not report.passed:
        from . import error_line

        why = f": {report.diagnoses[0]}" if report.diagnoses else ""
        error_line(f"verification failed on {len(report.failures)} of {len(report.results)} cases{why}")
        return EXIT_MATH
    return EXIT_OK


def _fmt(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.2e}"


def _table(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..verify.runner import describe

    console = Console(highlight=False)
    table = Table(title=f"xent verify {report.target}", caption=report.options.describe())
    table.add_column("case", no_wrap=True)
    table.add_column("N×C", justify="right", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("loss err (abs/rel)", justify="right", no_wrap=True)
    table.add_column("grad err (abs/rel)", justify="right", no_wrap=True)
    for r in report.results:
        status = "[green]pass[/green]" if r.passed else "[bold red]FAIL[/bold red]"
        if r.error:
            status = "[bold red]error[/bold red]"
        loss = "—" if r.loss is None else f"{_fmt(r.loss.max_abs)} {_fmt(r.loss.max_rel)}"
        grad = "—" if r.grad is None else f"{_fmt(r.grad.max_abs)} {_fmt(r.grad.max_rel)}"
        table.add_row(r.case.name, "×".join(map(str, r.case.shape)), status, loss, grad)
    console.print(table)
    for r in report.failures:
        console.print(f"[bold]{r.case.name}[/bold] ({r.case.description}): {describe(r)}")
    if report.tolerance_note:
        console.print(f"tolerances by returned dtype: {report.tolerance_note} "
                      "(|got − ref| ≤ atol·max(1, max|ref|) + rtol·|ref|)")
    style = "bold green" if report.passed else "bold red"
    console.print(f"[{style}]{report.summary()}[/{style}]")
    for d in report.diagnoses:
        console.print(f"[bold]diagnosis:[/bold] {d}")
