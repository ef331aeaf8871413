"""End to end: ``xent compute big.csv labels.csv --output grad.csv`` against what a user would script.

    python benchmarks/end_to_end.py                  # a ~600 MB CSV (generated once, kept in --dir)
    python benchmarks/end_to_end.py --size-mb 100    # smaller

Each command runs as its own process; the table gives wall time and peak RSS
(from the operating system's accounting of that process) and the ratios
measured in the same run:
  xent      xent compute LOGITS LABELS --output grad.csv (streams in row blocks)
  polars    polars read_csv -> the same NumPy kernel -> polars write_csv
  pandas    pandas read_csv -> torch cross_entropy + backward -> DataFrame.to_csv
Scripts whose libraries are not installed are skipped (said so).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

POLARS_SCRIPT = r"""
import sys, polars as pl
from xentcli import cross_entropy
z = pl.read_csv(sys.argv[1], has_header=False).to_numpy()
t = pl.read_csv(sys.argv[2], has_header=False).to_numpy().reshape(-1)
r = cross_entropy(z, t, with_probs=False)
pl.from_numpy(r.grad).write_csv(sys.argv[3], include_header=False)
print(r.loss)
"""

PANDAS_SCRIPT = r"""
import sys, pandas as pd, torch
z = torch.from_numpy(pd.read_csv(sys.argv[1], header=None).to_numpy()).requires_grad_(True)
t = torch.from_numpy(pd.read_csv(sys.argv[2], header=None).to_numpy().reshape(-1))
loss = torch.nn.functional.cross_entropy(z, t)
loss.backward()
pd.DataFrame(z.grad.numpy()).to_csv(sys.argv[3], header=False, index=False)
print(loss.item())
"""


def available(module: str) -> bool:
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}): {err[-500:]}")
    return wall, usage.ru_maxrss / 1024


def make_inputs(directory: Path, size_mb: int, classes: int) -> tuple[Path, Path]:
    logits = directory / f"logits_{size_mb}mb_{classes}.csv"
    labels = directory / f"labels_{size_mb}mb_{classes}.csv"
    if logits.exists() and labels.exists():
        return logits, labels
    rng = np.random.default_rng(0)
    rows_per_block = max(1, 2_000_000 // classes)
    written = 0
    n = 0
    with open(logits, "w") as fz, open(labels, "w") as fy:
        while written < size_mb * 1e6:
            z = rng.normal(scale=3.0, size=(rows_per_block, classes))
            text = "\n".join(",".join(f"{v:.7g}" for v in row) for row in z) + "\n"
            fz.write(text)
            fy.write("\n".join(str(v) for v in rng.integers(0, classes, rows_per_block)) + "\n")
            written += len(text)
            n += rows_per_block
    return logits, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=600)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "xent-bench")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    logits, labels = make_inputs(args.dir, args.size_mb, args.classes)
    size = logits.stat().st_size / 1e6
    print(f"input: {logits.name} ({size:.0f} MB, {args.classes} classes); python {sys.version.split()[0]}")
    has_polars = available("polars")
    print("xent's fast reader/writer (polars):", "installed" if has_polars else "not installed (pure NumPy path)")
    out = args.dir / "grad.csv"
    commands = {"xent": [sys.executable, "-m", "xentcli", "compute", str(logits), str(labels), "--output", str(out),
                         "--format", "json"]}
    if has_polars:
        commands["polars"] = [sys.executable, "-c", POLARS_SCRIPT, str(logits), str(labels), str(out)]
    else:
        print("polars is not installed: the polars script is skipped")
    if available("pandas") and available("torch"):
        commands["pandas"] = [sys.executable, "-c", PANDAS_SCRIPT, str(logits), str(labels), str(out)]
    else:
        print("pandas or torch is not installed: the pandas+torch script is skipped")
    times: dict[str, list[float]] = {k: [] for k in commands}
    rss: dict[str, float] = {k: 0.0 for k in commands}
    for _ in range(args.repeat):  # interleaved, so drift in the machine's speed hits all alike
        for name, cmd in commands.items():
            wall, peak = run(cmd)
            times[name].append(wall)
            rss[name] = max(rss[name], peak)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'command':8} {'median s':>9} {'min s':>7} {'max s':>7} {'peak RSS MB':>12} {'xent / this':>12}")
    for name in commands:
        ratio = med["xent"] / med[name]
        print(f"{name:8} {med[name]:9.2f} {min(times[name]):7.2f} {max(times[name]):7.2f} {rss[name]:12.0f} "
              f"{ratio:12.2f}")
    out.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
