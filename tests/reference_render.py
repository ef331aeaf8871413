"""The byte format of ``xent compute --format json|csv`` as the in-memory path printed it before streaming.

A frozen copy of the renderer of commit 0a4f2f0 (value by value, with
Python's repr and NumPy's float32 str): the oracle that the streamed and the
fast writers must reproduce byte for byte.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np


def json_number(x, dtype=None):
    x = float(x)
    if math.isnan(x):
        return '"nan"'
    if math.isinf(x):
        return '"inf"' if x > 0 else '"-inf"'
    if dtype is not None and dtype == np.float32:
        return str(np.float32(x))
    return repr(x)


def _json_vector(values, dtype):
    return "[" + ", ".join(json_number(v, dtype) for v in values.tolist()) + "]"


def _json_matrix(values, dtype, indent):
    if values.shape[0] == 0:
        return "[]"
    inner = (",\n" + indent + "  ").join(_json_vector(row, dtype) for row in values)
    return "[\n" + indent + "  " + inner + "\n" + indent + "]"


def options_json(spec):
    def vec(v):
        return None if v is None else [float(x) for x in v]

    return {
        "loss": spec.kind,
        "weight": vec(spec.weight),
        "ignore_index": spec.ignore if spec.kind in ("ce", "nll") else None,
        "label_smoothing": float(spec.label_smoothing) if spec.kind == "ce" else None,
        "pos_weight": vec(spec.pos_weight),
        "z_loss": float(spec.z_loss) if spec.kind == "ce" else None,
        "softcap": None if spec.softcap is None else float(spec.softcap),
        "temperature": float(spec.temperature) if spec.kind == "ce" else None,
    }


def to_json(result, meta):
    """What ``xent compute --format json`` printed (click.echo adds the final newline)."""
    dt = result.grad.dtype
    head = {
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
    items = [(k, json.dumps(v)) for k, v in head.items()]
    items.insert(2, ("loss", "null" if result.loss is None else json_number(result.loss, dt)))
    at = 3
    if result.spec.has_z_loss:
        items.insert(3, ("z_loss", "null" if result.z_loss is None else json_number(result.z_loss, dt)))
        at = 4
    items.insert(at, ("denominator", "null" if result.denominator is None else json_number(result.denominator)))
    losses = result.losses
    if losses.ndim == 2:
        items.append(("losses", _json_matrix(losses, dt, "  ")))
    else:
        items.append(("losses", _json_vector(losses, dt)))
    items.append(("probs", _json_matrix(result.probs, dt, "  ")))
    items.append(("grad", _json_matrix(result.grad, dt, "  ")))
    return "\n".join(["{", ",\n".join(f'  "{k}": {v}' for k, v in items), "}"]) + "\n"


def to_csv(result):
    """What ``xent compute --format csv`` printed."""
    dt = result.grad.dtype
    c = result.classes
    buf = io.StringIO()
    loss_cols = [f"loss_{j}" for j in range(c)] if result.losses.ndim == 2 else ["loss"]
    cols = ["sample", *loss_cols, *(f"p_{j}" for j in range(c)), *(f"grad_{j}" for j in range(c))]
    buf.write(",".join(cols) + "\n")

    def fmt(x):
        return json_number(x, dt).strip('"')

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
