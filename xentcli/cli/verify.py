"""``xent verify``: run the conformance battery on someone's implementation."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import click

from ..errors import XentInputError
from ..limits import DEFAULT_TIMEOUT
from . import CONTEXT_SETTINGS, EXIT_MATH, EXIT_OK
from .options import LOSS_PARAMS, loss_options, loss_spec

EPILOG = """\b
Examples:
  xent verify mypkg/losses.py:cross_entropy
  xent verify mypkg.losses:cross_entropy --weight 1,2,1 --label-smoothing 0.1
  xent verify mypkg.losses:bce --binary --pos-weight 3 --format json
  xent verify mypkg/kernels.py:ce --timeout 10 --max-memory 2G
  xent verify --export cases/      # inputs + manifest for a C++/CUDA/Rust implementation
  xent verify --results cases/     # check the outputs it wrote there

\b
The function is called as f(logits, targets): logits float (N, C); targets
int64 class indices (N,) or float rows (N, C) (--targets prob; --binary: the
logits' shape). It returns the loss, or (loss, grad) with grad = d loss/d logits.
The target runs in a process of its own: a case that crashes it, exceeds
--timeout or --max-memory fails with the reason, and the other cases still run.
Exit codes: 0 all cases pass, 1 a case fails, 2 bad usage or a target that
cannot be run.
"""

ISOLATION_PARAMS = ("timeout", "max_memory", "in_process")

@click.command(context_settings=CONTEXT_SETTINGS, epilog=EPILOG)
@click.argument("target", required=False, metavar="[TARGET]")
@loss_options("verify")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the battery.")
@click.option("--accept-dtype", type=click.Choice(["float64", "float32", "float16", "bfloat16"]), default=None,
              help="Demand only this dtype's accuracy (a lower bar, stated), e.g. float32 work on float64 inputs. "
                   "[default: the accuracy of --dtype]")
@click.option("--strict", is_flag=True,
              help="Fail also where the implementation differs from xent only as the frameworks do (documented "
                   "divergences, README).")
@click.option("--rtol", type=float, default=None,
              help="Replace the derived accuracy bound by a fixed relative tolerance ...")
@click.option("--atol", type=float, default=None, help="... and absolute tolerance, times max(1, max|reference|).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "junit", "markdown"]), default=None,
              help="junit: JUnit XML, one testcase per case; markdown: for a PR comment or job summary. "
                   "[default: table on a terminal, json otherwise]")
@click.option("--framework", type=click.Choice(["auto", "numpy", "torch", "jax"]), default="auto",
              show_default=True,
              help="How TARGET is called: with NumPy arrays, or natively with torch tensors / JAX arrays "
                   "(auto: by the package TARGET comes from).")
@click.option("--device", metavar="DEVICE", default=None,
              help="torch or JAX device for a framework target (cpu, cuda, cuda:1, mps). [default: cpu]")
@click.option("--export", "export_dir", type=click.Path(path_type=Path), metavar="DIR",
              help="Write the battery's inputs and a manifest for an implementation in another language.")
@click.option("--results", "results_dir", type=click.Path(path_type=Path), metavar="DIR",
              help="Check the outputs an implementation wrote next to an exported battery.")
@click.option("--timeout", type=float, default=DEFAULT_TIMEOUT, show_default=True, metavar="SECONDS",
              help="Time limit of each case (the first case's includes importing the target); 0: none.")
@click.option("--max-memory", metavar="SIZE", default=None,
              help="Memory the target may allocate, e.g. 512M or 2G (Linux). [default: no limit]")
@click.option("--in-process", is_flag=True,
              help="Run the target inside xent, to debug it: no time or memory limit, and a crash ends xent.")
@click.pass_context
def verify(
    ctx: click.Context,
    /,
    target: str | None,
    seed: int,
    accept_dtype: str | None,
    strict: bool,
    rtol: float | None,
    atol: float | None,
    fmt: str | None,
    framework: str,
    device: str | None,
    export_dir: Path | None,
    results_dir: Path | None,
    timeout: float,
    max_memory: str | None,
    in_process: bool,
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
    isolation = [f"--{n.replace('_', '-')}" for n in ISOLATION_PARAMS if _given(ctx, n)]
    if target is None and isolation:
        raise click.UsageError(f"{isolation[0]} applies to a TARGET, which runs; --export and --results run nothing")
    if in_process and len(isolation) > 1:
        raise click.UsageError(f"{isolation[0]} applies to a target in its own process; --in-process runs it in xent")

    bar = api.make_bar(accept_dtype, rtol, atol)
    if results_dir is not None:
        given = [n for n in (*LOSS_PARAMS, "seed", "framework", "device") if _given(ctx, n)]
        if given:
            raise click.UsageError("--results reads the options from the manifest; only --accept-dtype, --strict, "
                                   "--rtol, --atol and --format apply")
        from ..verify.diagnose import diagnose
        from ..verify.exchange import results

        opts, seed_used, case_results, _ = results(results_dir, None, None, bar)
        report = api.finish(f"outputs in {results_dir}", opts, seed_used, case_results, diagnose, strict=strict,
                            bar=bar)
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

    assert target is not None
    report = api.check(target, options=opts, seed=seed, rtol=rtol, atol=atol, name=target, device=device,
                       framework=framework, accept_dtype=accept_dtype, strict=strict,
                       isolate=not in_process, timeout=None if in_process else timeout, max_memory=max_memory)
    errors = [r.error for r in report.results if r.error and not r.fault]  # crashes and timeouts are verdicts
    if errors and len(errors) == len(report.results):
        why = f"; diagnosis: {report.diagnoses[0]}" if report.diagnoses else ""
        raise XentInputError(f"raised on every case; the first: {errors[0].removeprefix('raised ')}{why}",
                             source=target)
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

        faults = [r for r in report.failures if r.fault]
        why = [f"{faults[0].error} in case {faults[0].case.name}" + (f" (and {len(faults) - 1} more)"
                                                                      if len(faults) > 1 else "")] if faults else []
        why += report.diagnoses[:1]
        if not why and report.strict and report.differing:
            why = [f"differs where the frameworks differ (--strict): {report.divergences()[0]}"]
        error_line(f"verification failed on {len(report.failures)} of {len(report.results)} cases"
                   + (f": {'; '.join(why)}" if why else ""))
        return EXIT_MATH
    return EXIT_OK


def _fmt(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.2e}"


def _errors(comp: Any) -> str:
    """The table cell of one comparison: abs and rel error, or the non-finite value returned."""
    if comp is None:
        return "—"
    if comp.note.startswith("shape"):
        return "shape"
    bad = comp.nonfinite
    if bad is not None:
        return {"nan": "nan", "inf": "+inf", "-inf": "-inf"}[bad]
    return f"{_fmt(comp.max_abs)} {_fmt(comp.max_rel)}"


def _table(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from ..verify.runner import describe

    console = Console(highlight=False)
    table = Table(title=f"xent verify {report.target}", caption=report.options.describe())
    table.add_column("case", no_wrap=True)
    table.add_column("N×C", justify="right", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("loss err (abs/rel)", justify="right", no_wrap=True)
    table.add_column("grad err (abs/rel)", justify="right", no_wrap=True)
    styles = {"pass": "[green]pass[/green]", "differs": "[yellow]differs[/yellow]", "fail": "[bold red]FAIL[/bold red]"}
    for r in report.results:
        status = styles[r.verdict]
        if r.verdict == "differs" and report.strict:
            status = "[bold red]differs[/bold red]"
        if r.error:
            status = "[bold red]error[/bold red]"
        table.add_row(r.case.name, "×".join(map(str, r.case.shape)), status, _errors(r.loss), _errors(r.grad))
    console.print(table)
    for r in report.results:
        if r.verdict != "pass":
            console.print(f"[bold]{r.case.name}[/bold] ({r.case.description}): {describe(r)}")
        if r.output and not r.passed:
            console.print(Text("\n".join(f"  | {line}" for line in r.output.splitlines()), style="dim"))
    if report.tolerance_note:
        console.print(f"accuracy demanded: {report.tolerance_note}")
    if report.isolation and report.isolation.get("note"):
        console.print(f"note: the target {report.isolation['note']}")
    style = "bold green" if report.passed else "bold red"
    console.print(f"[{style}]{report.summary()}[/{style}]")
    for d in report.diagnoses:
        console.print(f"[bold]diagnosis:[/bold] {d}")
    for d in report.divergences():
        console.print(f"[bold]differs where the frameworks differ:[/bold] {d}")
