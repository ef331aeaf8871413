"""File mode for implementations in other languages: export the battery, then check their outputs.

``export(dir)`` writes each case's inputs as CSV and .npy plus ``manifest.json``
naming the files the implementation must write; ``results(dir)`` reads those
files back and judges them exactly as a Python implementation is judged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import XentInputError
from ..files import format_rows, write_atomic
from .battery import Case, Options, battery
from .runner import TOLERANCES, CaseResult, judge

FORMAT = "xent-verify-battery/1"

PROTOCOL = """\
xent verify battery
===================

For every case listed in manifest.json, read the inputs and write the outputs
named under "outputs", then run:  xent verify --results {dir}

Inputs (both forms hold the same numbers):
  <case>/logits.npy, <case>/logits.csv    N x C logits, float64 ("-inf" masks a class)
  <case>/targets.npy, <case>/targets.csv  class indices (N values, one per line)
                                          or N x C target rows (probabilities / binary labels)

Outputs (write them into the case's folder):
  loss.txt   the loss: one number for reduction mean or sum; one number per
             sample (one per line) for reduction none; for --binary with
             reduction none, N lines of C comma-separated numbers
  grad.csv   optional: d loss / d logits, N lines of C comma-separated numbers
             (or grad.npy); for reduction none, the gradient of the sum
Numbers are plain decimals; write enough digits (e.g. %.17g for double).
The options every case uses are in manifest.json ("options").
"""


def _write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))


def _write_npy(path: Path, arr: np.ndarray) -> None:
    write_atomic(path, lambda fh: np.save(fh, arr, allow_pickle=False))


def export(directory: Path, options: Options, seed: int, command: str) -> list[Case]:
    """Write the battery into ``directory`` (created if needed). Existing case files are replaced."""
    if directory.exists() and not directory.is_dir():
        raise XentInputError("exists and is not a directory", source=str(directory))
    directory.mkdir(parents=True, exist_ok=True)
    cases = battery(options, seed)
    entries = []
    for case in cases:
        folder = directory / case.name
        folder.mkdir(exist_ok=True)
        for stale in ("loss.txt", "grad.csv", "grad.npy"):  # outputs of an earlier run would be judged
            (folder / stale).unlink(missing_ok=True)
        _write_npy(folder / "logits.npy", case.logits)
        _write_text(folder / "logits.csv", format_rows(case.logits))
        _write_npy(folder / "targets.npy", case.targets)
        if case.targets.ndim == 1:
            _write_text(folder / "targets.csv", "\n".join(str(int(v)) for v in case.targets) + "\n")
        else:
            _write_text(folder / "targets.csv", format_rows(case.targets))
        entries.append({
            "name": case.name,
            "description": case.description,
            "shape": list(case.shape),
            "tags": sorted(case.tags),
            "inputs": {
                "logits": f"{case.name}/logits.npy",
                "logits_csv": f"{case.name}/logits.csv",
                "targets": f"{case.name}/targets.npy",
                "targets_csv": f"{case.name}/targets.csv",
                "targets_kind": "binary" if options.binary else options.targets,
            },
            "outputs": {"loss": f"{case.name}/loss.txt", "grad": f"{case.name}/grad.csv",
                        "grad_npy": f"{case.name}/grad.npy"},
        })
    manifest = {
        "format": FORMAT,
        "generated_by": command,
        "seed": seed,
        "options": options.as_dict(),
        "cases": entries,
    }
    _write_text(directory / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    _write_text(directory / "README.txt", PROTOCOL.format(dir=directory))
    return cases


def _options_from(manifest: dict[str, Any], source: str) -> Options:
    o = manifest.get("options")
    if not isinstance(o, dict):
        raise XentInputError("manifest has no options", source=source)
    try:
        return Options(
            reduction=str(o["reduction"]),
            weight=None if o.get("weight") is None else tuple(float(v) for v in o["weight"]),
            ignore_index=None if o.get("ignore_index") is None else int(o["ignore_index"]),
            label_smoothing=float(o.get("label_smoothing") or 0.0),
            binary=bool(o.get("binary")),
            pos_weight=None if o.get("pos_weight") is None else tuple(float(v) for v in o["pos_weight"]),
            targets="index" if o.get("targets") in (None, "binary") else str(o["targets"]),
            dtype=str(o.get("dtype") or "float64"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise XentInputError(f"manifest options are not valid: {exc}", source=source) from None


def _load_numbers(path: Path) -> np.ndarray:
    text = path.read_text(encoding="utf-8-sig")
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        rows.append([float(v) for v in line.replace(",", " ").replace("\t", " ").split()])
    if not rows:
        raise ValueError("no numbers")
    width = {len(r) for r in rows}
    if len(width) != 1:
        raise ValueError("rows have different lengths")
    return np.array(rows, dtype=np.float64)


def read_manifest(directory: Path) -> tuple[dict[str, Any], Options]:
    path = directory / "manifest.json"
    if not path.is_file():
        raise XentInputError("has no manifest.json (write one with xent verify --export)", source=str(directory))
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise XentInputError(f"is not readable JSON: {exc}", source=str(path)) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("cases"), list):
        raise XentInputError(f"is not an xent verify manifest ({FORMAT})", source=str(path))
    return manifest, _options_from(manifest, str(path))


def results(directory: Path, rtol: float | None, atol: float | None) -> tuple[Options, int, list[CaseResult], bool]:
    """Judge the outputs an implementation wrote next to the exported inputs."""
    manifest, options = read_manifest(directory)
    out: list[CaseResult] = []
    any_grad = False
    text_dtype = options.dtype if options.dtype in TOLERANCES else "float64"
    for entry in manifest["cases"]:
        try:
            name = str(entry["name"])
            inputs, outputs = entry["inputs"], entry["outputs"]
            z = np.load(directory / inputs["logits"], allow_pickle=False)
            t = np.load(directory / inputs["targets"], allow_pickle=False)
        except (KeyError, TypeError, OSError, ValueError) as exc:
            raise XentInputError(f"case inputs cannot be read: {exc}", source=str(directory / "manifest.json")) from None
        case = Case(name, str(entry.get("description", "")), np.asarray(z, dtype=np.float64), t,
                    frozenset(entry.get("tags", [])))
        loss_path = directory / outputs["loss"]
        if not loss_path.is_file():
            out.append(CaseResult(case, False, error=f"no output: {outputs['loss']} was not written"))
            continue
        try:
            loss = _load_numbers(loss_path)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            out.append(CaseResult(case, False, error=f"{outputs['loss']} is not a list of numbers ({exc})"))
            continue
        loss = _shape_loss(loss, case, options)
        grad = None
        try:
            if (directory / outputs["grad_npy"]).is_file():
                grad = np.load(directory / outputs["grad_npy"], allow_pickle=False)
            elif (directory / outputs["grad"]).is_file():
                grad = _load_numbers(directory / outputs["grad"])
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            out.append(CaseResult(case, False, error=f"the gradient file cannot be read ({exc})"))
            continue
        any_grad = any_grad or grad is not None
        if grad is not None and grad.dtype == np.float64 and text_dtype != "float64":
            grad = grad.astype(text_dtype)
        if text_dtype != "float64":
            loss = loss.astype(text_dtype)
        out.append(judge(case, options, loss, grad, rtol=rtol, atol=atol))
    return options, int(manifest.get("seed", 0)), out, any_grad


def _shape_loss(loss: np.ndarray, case: Case, options: Options) -> np.ndarray:
    n, c = case.shape
    if options.reduction != "none":
        return loss.reshape(()) if loss.size == 1 else loss
    if options.binary:
        return loss.reshape(n, c) if loss.size == n * c else loss
    return loss.reshape(n) if loss.size == n else loss
