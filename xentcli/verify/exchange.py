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
from ..files import format_rows
from ..spec import LossSpec
from ..writers import write_atomic
from .accuracy import Bar
from .battery import Case, battery
from .runner import CaseResult, judge

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
             sample (one per line) for reduction none; for bce and kl with
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


def export(directory: Path, options: LossSpec, seed: int, command: str) -> list[Case]:
    """Write the battery into ``directory`` (created if needed). Existing case files are replaced."""
    if directory.exists() and not directory.is_dir():
        raise XentInputError("exists and is not a directory", source=str(directory))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise XentInputError(f"cannot be created: {exc.strerror or exc}", source=str(directory)) from None
    cases = battery(options, seed)
    entries = []
    for case in cases:
        folder = directory / case.name
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise XentInputError(f"cannot be created: {exc.strerror or exc}", source=str(folder)) from None
        for stale in ("loss.txt", "grad.csv", "grad.npy"):  # outputs of an earlier run would be judged
            try:
                (folder / stale).unlink(missing_ok=True)
            except OSError as exc:
                raise XentInputError(f"cannot be removed: {exc.strerror or exc}", source=str(folder / stale)) from None
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
                "targets_kind": options.targets,
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


MAX_FILE_BYTES = 256 * 1024 * 1024  # no output of the battery comes near this


def _options_from(manifest: dict[str, Any], source: str) -> LossSpec:
    """The manifest's options, validated exactly as ``xent verify``'s own options are."""
    try:
        return LossSpec.from_dict(manifest.get("options"))
    except XentInputError as exc:
        raise XentInputError(f"manifest options are not valid: {exc}", source=source) from None


def _inside(directory: Path, rel: Any, what: str, source: str) -> Path:
    """``directory / rel`` for a relative name that stays inside ``directory`` (also through symlinks)."""
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise XentInputError(f"{what} is not a file name: {str(rel)[:80]!r}", source=source)
    rel_path = Path(rel)
    if rel_path.is_absolute() or ".." in rel_path.parts:
        raise XentInputError(f"{what} {rel[:80]!r} is not a path inside {directory}", source=source)
    path = directory / rel_path
    try:
        inside = path.resolve().is_relative_to(directory.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        inside = False
    if not inside:
        raise XentInputError(f"{what} {rel[:80]!r} leads outside {directory}", source=source)
    return path


def _check_size(path: Path) -> None:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{size:,} bytes is more than any case needs ({MAX_FILE_BYTES:,})")


def _load_npy(path: Path) -> np.ndarray:
    """A .npy array, never unpickled; every failure (bad magic, truncation, pickles) is a ValueError."""
    try:
        _check_size(path)
        arr = np.load(path, allow_pickle=False)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - EOFError, OSError, ... from a malformed file
        raise ValueError(f"{type(exc).__name__}: {exc}") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive
        raise ValueError("not a single .npy array")
    return arr


def _load_numbers(path: Path) -> np.ndarray:
    _check_size(path)
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


def read_manifest(directory: Path) -> tuple[dict[str, Any], LossSpec]:
    path = directory / "manifest.json"
    if not path.is_file():
        raise XentInputError("has no manifest.json (write one with xent verify --export)", source=str(directory))
    try:
        _check_size(path)
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise XentInputError(f"is not readable JSON: {exc}", source=str(path)) from None
    if (not isinstance(manifest, dict) or manifest.get("format") != FORMAT
            or not isinstance(manifest.get("cases"), list)):
        raise XentInputError(f"is not an xent verify manifest ({FORMAT})", source=str(path))
    if not manifest["cases"]:
        raise XentInputError("lists no cases: nothing to verify", source=str(path))
    seed = manifest.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise XentInputError(f"manifest seed {str(seed)[:40]!r} is not a whole number >= 0", source=str(path))
    return manifest, _options_from(manifest, str(path))


def _case_inputs(directory: Path, entry: Any, options: LossSpec, source: str) -> tuple[Case, dict[str, Path]]:
    """One manifest entry: its inputs loaded and checked, and the paths of its outputs."""
    if not isinstance(entry, dict):
        raise XentInputError("a case is not a JSON object", source=source)
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise XentInputError("a case has no name", source=source)
    where = f"case {name[:80]!r}"
    description = entry.get("description", "")
    tags = entry.get("tags", [])
    inputs, outputs = entry.get("inputs"), entry.get("outputs")
    if not isinstance(description, str) or not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise XentInputError(f"{where}: description or tags are not text", source=source)
    if not isinstance(inputs, dict) or not isinstance(outputs, dict):
        raise XentInputError(f"{where}: 'inputs' and 'outputs' must be JSON objects", source=source)
    z_path = _inside(directory, inputs.get("logits"), f"{where}: input 'logits'", source)
    t_path = _inside(directory, inputs.get("targets"), f"{where}: input 'targets'", source)
    out = {"loss": _inside(directory, outputs.get("loss"), f"{where}: output 'loss'", source)}
    for key in ("grad", "grad_npy"):
        if outputs.get(key) is not None:
            out[key] = _inside(directory, outputs[key], f"{where}: output {key!r}", source)
    arrays = []
    for path, what in ((z_path, "logits"), (t_path, "targets")):
        try:
            arr = _load_npy(path)
        except (OSError, ValueError) as exc:
            raise XentInputError(f"{where}: the {what} cannot be read: {exc}", source=str(path)) from None
        if arr.dtype.kind not in "fiu" or arr.size == 0:
            raise XentInputError(f"{where}: the {what} are not a non-empty array of real numbers "
                                 f"(dtype {arr.dtype}, shape {arr.shape})", source=str(path))
        arrays.append(arr)
    z, t = arrays
    if z.ndim != 2:
        raise XentInputError(f"{where}: the logits must be N x C, got shape {z.shape}", source=str(z_path))
    index = options.targets == "index"
    if index and (t.ndim != 1 or t.shape[0] != z.shape[0] or t.dtype.kind not in "iu"):
        raise XentInputError(f"{where}: the targets must be {z.shape[0]} whole numbers (class indices), got "
                             f"{t.dtype} of shape {t.shape}", source=str(t_path))
    if not index and t.shape != z.shape:
        raise XentInputError(f"{where}: the targets must have the logits' shape {z.shape}, got {t.shape}",
                             source=str(t_path))
    t = t.astype(np.int64) if index else t.astype(np.float64)
    return Case(name, description, np.asarray(z, dtype=np.float64), t, frozenset(tags)), out


def results(directory: Path, rtol: float | None, atol: float | None, bar: Bar | None = None
            ) -> tuple[LossSpec, int, list[CaseResult], bool]:
    """Judge the outputs an implementation wrote next to the exported inputs.

    The manifest and the inputs are checked first (exit 2 when they cannot be used): every path must
    stay inside ``directory``, .npy files are read with ``allow_pickle=False``. An output that is
    missing or unreadable is that case's failure (exit 1); so is a case without a gradient file when
    other cases have one. ``grad.npy`` is read when it exists, ``grad.csv`` otherwise.
    """
    manifest, options = read_manifest(directory)
    source = str(directory / "manifest.json")
    read: list[tuple[Case, Any, Any, str | None]] = []  # case, loss, grad, error
    for entry in manifest["cases"]:
        case, outputs = _case_inputs(directory, entry, options, source)
        loss_path = outputs["loss"]
        loss_name = entry["outputs"]["loss"]
        if not loss_path.is_file():
            read.append((case, None, None, f"no output: {loss_name} was not written"))
            continue
        try:
            loss = _load_numbers(loss_path)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            read.append((case, None, None, f"{loss_name} is not a list of numbers ({exc})"))
            continue
        loss = _shape_loss(loss, case, options)
        grad = None
        try:
            if "grad_npy" in outputs and outputs["grad_npy"].is_file():
                grad = _load_npy(outputs["grad_npy"])
            elif "grad" in outputs and outputs["grad"].is_file():
                grad = _load_numbers(outputs["grad"])
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            read.append((case, loss, None, f"the gradient file cannot be read ({exc})"))
            continue
        read.append((case, loss, grad, None))
    any_grad = any(grad is not None for _, _, grad, _ in read)
    out: list[CaseResult] = []
    for entry, (case, loss, grad, error) in zip(manifest["cases"], read):
        if error is None and any_grad and grad is None:
            names = " nor ".join(entry["outputs"][k] for k in ("grad_npy", "grad") if entry["outputs"].get(k))
            error = f"no gradient: neither {names} was written, but other cases have one"
        if error is not None:
            out.append(CaseResult(case, False, error=error))
            continue
        try:
            out.append(judge(case, options, loss, grad, rtol=rtol, atol=atol, bar=bar))
        except XentInputError as exc:  # the reference refuses these inputs (NaN logits, a bad class index, ...)
            raise XentInputError(f"case {case.name[:80]!r}: the inputs cannot be used: {exc}", source=source) from None
    return options, int(manifest.get("seed", 0)), out, any_grad


def _shape_loss(loss: np.ndarray, case: Case, options: LossSpec) -> np.ndarray:
    n, c = case.shape
    if options.reduction != "none":
        return loss.reshape(()) if loss.size == 1 else loss
    if options.kind in ("bce", "kl"):  # elementwise losses
        return loss.reshape(n, c) if loss.size == n * c else loss
    return loss.reshape(n) if loss.size == n else loss
