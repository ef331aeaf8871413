"""Rendering results as a rich table, JSON or CSV (the only place rich is used)."""

from __future__ import annotations

import io
import json
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

MAX_ROWS = 40
MAX_COLS = 8


def stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


# --------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------


def json_number(x: float, dtype: np.dtype | None = None) -> str:
    """A JSON token for a float: shortest round-trip digits; non-finite as a string."""
    x = float(x)
    if math.isnan(x):
        return '"nan"'
    if math.isinf(x):
        return '"inf"' if x > 0 else '"-inf"'
    if dtype is not None and dtype == np.float32:
        return str(np.float32(x))
    return repr(x)


def _json_vector(values: np.ndarray, dtype: np.dtype) -> str:
    return "[" + ", ".join(json_number(v, dtype) for v in values.tolist()) + "]"


def _json_matrix(values: np.ndarray, dtype: np.dtype, indent: str) -> str:
    if values.shape[0] == 0:
        return "[]"
    inner = (",\n" + indent + "  ").join(_json_vector(row, dtype) for row in values)
    return "[\n" + indent + "  " + inner + "\n" + indent + "]"


def options_json(spec: Any) -> dict[str, Any]:
    """The options of a result, as the JSON output reports them (the loss's own options only)."""

    def vec(v: Any) -> list[float] | None:
        return None if v is None else [float(x) for x in v]

    return {
        "loss": spec.kind,
        "weight": vec(spec.weight),
        "ignore_index": spec.ignore if spec.kind in ("ce", "nll") else None,
        "label_smoothing": float(spec.label_smoothing) if spec.kind == "ce" else None,
        "pos_weight": vec(spec.pos_weight),
    }


def to_json(result: Any, meta: dict[str, Any], targets: np.ndarray) -> str:
    """The whole result as JSON (non-finite numbers appear as "inf"/"-inf"/"nan")."""
    dt = result.grad.dtype
    head: dict[str, Any] = {
        "kind": result.kind,
        "reduction": result.reduction,
        "n": result.n,
        "classes": result.classes,
        "targets": result.target_type,
        "dtype": str(dt),
        "options": options_json(result.spec),
        "inputs": {"logits": meta.get("logits"), "labels": meta.get("labels")},
        "output": meta.get("output"),
        "warnings": list(meta.get("warnings", [])),
    }
    parts = ["{"]
    items = [(k, json.dumps(v)) for k, v in head.items()]
    loss = "null" if result.loss is None else json_number(result.loss, dt)
    items.insert(2, ("loss", loss))
    denom = "null" if result.denominator is None else json_number(result.denominator)
    items.insert(3, ("denominator", denom))
    losses = result.losses
    if losses.ndim == 2:
        items.append(("losses", _json_matrix(losses, dt, "  ")))
    else:
        items.append(("losses", _json_vector(losses, dt)))
    items.append(("probs", _json_matrix(result.probs, dt, "  ")))
    items.append(("grad", _json_matrix(result.grad, dt, "  ")))
    parts.append(",\n".join(f'  "{k}": {v}' for k, v in items))
    parts.append("}")
    return "\n".join(parts)


def to_csv(result: Any) -> str:
    """One row per sample: losses, probabilities, gradient; then the reduced loss."""
    dt = result.grad.dtype
    c = result.classes
    buf = io.StringIO()
    if result.losses.ndim == 2:
        loss_cols = [f"loss_{j}" for j in range(c)]
    else:
        loss_cols = ["loss"]
    cols = ["sample", *loss_cols, *(f"p_{j}" for j in range(c)), *(f"grad_{j}" for j in range(c))]
    buf.write(",".join(cols) + "\n")
    fmt = _csv_formatter(dt)
    losses = result.losses.reshape(result.n, -1)
    for i in range(result.n):
        cells = [str(i)]
        cells += [fmt(v) for v in losses[i].tolist()]
        cells += [fmt(v) for v in result.probs[i].tolist()]
        cells += [fmt(v) for v in result.grad[i].tolist()]
        buf.write(",".join(cells) + "\n")
    if result.loss is not None:
        buf.write(",".join([result.reduction, fmt(result.loss)] + [""] * (len(cols) - 2)) + "\n")
    return buf.getvalue()


def _csv_formatter(dt: np.dtype) -> Callable[[float], str]:
    def fmt(x: float) -> str:
        token = json_number(x, dt)
        return token.strip('"')

    return fmt


# --------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------


def _g(x: float, digits: int, *, keep_zeros: bool = True) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:#.{digits}g}" if keep_zeros else f"{x:.{digits}g}"


def _vector(values: Sequence[float], digits: int) -> str:
    vals = list(values)
    if len(vals) > MAX_COLS:
        shown = [_g(v, digits) for v in vals[:5]] + ["…"] + [_g(v, digits) for v in vals[-2:]]
    else:
        shown = [_g(v, digits) for v in vals]
    return "[" + ", ".join(shown) + "]"


def _target_cell(target: np.ndarray, i: int, result: Any, ignore_index: Any, digits: int) -> str:
    if result.target_type == "index":
        t = int(target[i])
        if ignore_index is not None and t == ignore_index:
            return f"{t} (ignored)"
        return str(t)
    return _vector(target[i].tolist(), digits)


def print_table(result: Any, meta: dict[str, Any], targets: np.ndarray, *, digits: int = 4, file: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, highlight=False, soft_wrap=False)
    spec = result.spec
    binary = spec.kind == "bce"
    elementwise = spec.kind in ("bce", "kl")
    title = spec.title
    extras = []
    if spec.weight is not None:
        extras.append("weighted")
    if spec.smoothing:
        extras.append(f"label smoothing {float(spec.label_smoothing):g}")
    if spec.pos_weight is not None:
        extras.append("pos_weight")
    caption = (
        f"{result.n} sample{'s' if result.n != 1 else ''} × {result.classes} "
        f"{'columns' if binary else 'classes'} · {result.target_type} targets · {result.grad.dtype}"
        + (" · " + ", ".join(extras) if extras else "")
    )
    table = Table(title=title, caption=caption, show_lines=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("target")
    table.add_column("loss" + (" (elementwise)" if elementwise else ""), justify="right")
    table.add_column("sigmoid(z)" if binary else "p = softmax(z)")
    grad_name = "∂L/∂z" + (" (of the sum)" if result.reduction == "none" else "")
    table.add_column(grad_name)
    losses = result.losses.reshape(result.n, -1)
    shown = min(result.n, MAX_ROWS)
    for i in range(shown):
        loss_cell = _vector(losses[i].tolist(), digits) if elementwise else _g(float(losses[i, 0]), digits)
        table.add_row(
            str(i),
            _target_cell(targets, i, result, spec.ignore, digits),
            loss_cell,
            _vector(result.probs[i].tolist(), digits),
            _vector(result.grad[i].tolist(), digits),
        )
    console.print(table)
    if result.n > shown:
        console.print(f"… {result.n - shown} more samples (use --format json or --output for all of them)")
    if result.loss is None:
        console.print("loss: none (reduction='none'; per-sample losses above)")
    else:
        if result.denominator is not None:
            how = f"{result.reduction}: sum of the losses / {_g(result.denominator, 12, keep_zeros=False)}"
        else:
            how = "sum of the losses"
        console.print(f"loss = [bold]{_g(result.loss, max(digits, 10))}[/bold]   ({how})")
    if meta.get("output"):
        console.print(f"gradient written to {meta['output']}")


# --------------------------------------------------------------------------
# Summaries (with --output the gradient is in the file; stdout says what was computed)
# --------------------------------------------------------------------------


def summary_of(result: Any, targets: np.ndarray) -> Any:
    """A :class:`~xentcli.stream.StreamResult` view of an in-memory result."""
    from ..stream import HEAD_ROWS, StreamResult

    losses = None if result.losses is None else np.asarray(result.losses)[:HEAD_ROWS]
    return StreamResult(
        spec=result.spec,
        kind=result.kind,
        reduction=result.reduction,
        target_type=result.target_type,
        loss=result.loss,
        n=result.n,
        classes=result.classes,
        denominator=result.denominator,
        dtype=str(result.grad.dtype),
        head_losses=losses,
        head_grad=result.grad[:HEAD_ROWS],
        head_targets=np.asarray(targets)[:HEAD_ROWS],
        rows_written=result.n,
    )


def print_summary(fmt: str, s: Any, meta: dict[str, Any]) -> None:
    import click

    dt = np.dtype(s.dtype)
    if fmt == "json":
        doc = [
            ("kind", json.dumps(s.kind)),
            ("reduction", json.dumps(s.reduction)),
            ("loss", "null" if s.loss is None else json_number(s.loss, dt)),
            ("denominator", "null" if s.denominator is None else json_number(s.denominator)),
            ("n", str(s.n)),
            ("classes", str(s.classes)),
            ("targets", json.dumps(s.target_type)),
            ("dtype", json.dumps(str(dt))),
            ("options", json.dumps(options_json(s.spec))),
            ("inputs", json.dumps({"logits": meta.get("logits"), "labels": meta.get("labels")})),
            ("output", json.dumps(meta.get("output"))),
            ("rows_written", str(s.rows_written)),
            ("streamed", "true" if meta.get("streamed") else "false"),
            ("warnings", json.dumps(list(meta.get("warnings", [])))),
            ("losses", "null"),
            ("probs", "null"),
            ("grad", "null"),
        ]
        click.echo("{\n" + ",\n".join(f'  "{k}": {v}' for k, v in doc) + "\n}")
        return
    if fmt == "csv":
        click.echo("reduction,loss,n,classes,output")
        loss = "" if s.loss is None else json_number(s.loss, dt).strip('"')
        click.echo(f"{s.reduction},{loss},{s.n},{s.classes},{meta.get('output')}")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=False)
    binary = s.spec.kind == "bce"
    title = s.spec.title
    shown = 0 if s.head_grad is None else s.head_grad.shape[0]
    table = Table(title=title, caption=f"{s.n} samples × {s.classes} {'columns' if binary else 'classes'} · "
                  f"{s.target_type} targets · {dt} · first {shown} rows")
    table.add_column("#", justify="right", style="dim")
    table.add_column("target")
    if s.head_losses is not None and s.head_losses.ndim == 1:
        table.add_column("loss", justify="right")
    table.add_column("∂L/∂z" + (" (of the sum)" if s.reduction == "none" else ""))
    for i in range(shown):
        t = s.head_targets[i]
        cells = [str(i), str(int(t)) if np.ndim(t) == 0 else _vector(np.ravel(t).tolist(), 4)]
        if s.head_losses is not None and s.head_losses.ndim == 1:
            cells.append(_g(float(s.head_losses[i]), 4))
        cells.append(_vector(s.head_grad[i].tolist(), 4))
        table.add_row(*cells)
    console.print(table)
    if s.loss is None:
        console.print("loss: none (reduction='none'; per-sample losses are not printed with --output)")
    else:
        how = f"{s.reduction}: sum / {_g(s.denominator, 12, keep_zeros=False)}" if s.denominator is not None else "sum"
        console.print(f"loss = [bold]{_g(s.loss, 10)}[/bold]   ({how})")
    console.print(f"gradient of {s.rows_written} rows written to {meta.get('output')}")
