"""End to end: ``xent compute`` on big files against what a user would script, over a sweep of shapes.

    python benchmarks/end_to_end.py                         # C = 2, 10, 32, 1000; ~150 MB of logits each
    python benchmarks/end_to_end.py --size-mb 600 --classes 10,1000
    python benchmarks/end_to_end.py --pandas                # also pandas read_csv + torch + to_csv

For every number of classes C it generates (once, kept in --dir) a CSV of
logits of about --size-mb MB and the class indices both as a one-column CSV
and as a .npy file, then runs, interleaved (every round runs every command
once, in turn, so a drift in the machine's speed hits all of them alike):

  polars     the reference: polars read_csv -> the same NumPy kernel -> polars write_csv
             (the labels read by polars, or by np.load for .npy)
  output     xent compute LOGITS LABELS --output grad.csv       (streams in row blocks)
  json       xent compute LOGITS LABELS --format json > out.json (streamed to standard output)

Each command is its own process: wall time and peak RSS come from the
operating system's accounting of that process (os.wait4, in a small launcher
so that the peak is the command's own, not this script's). The table gives
the median wall time and the median over rounds of each command's time
divided by the reference's in the same round, and the peak RSS.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

POLARS_SCRIPT = r"""
import sys, numpy as np, polars as pl
from xentcli import cross_entropy
z = pl.read_csv(sys.argv[1], has_header=False).to_numpy()
if sys.argv[2].endswith(".npy"):
    t = np.load(sys.argv[2])
else:
    t = pl.read_csv(sys.argv[2], has_header=False).to_numpy().reshape(-1)
r = cross_entropy(z, t, with_probs=False)
pl.from_numpy(r.grad).write_csv(sys.argv[3], include_header=False)
print(r.loss)
"""

PANDAS_SCRIPT = r"""
import sys, numpy as np, pandas as pd, torch
z = torch.from_numpy(pd.read_csv(sys.argv[1], header=None).to_numpy()).requires_grad_(True)
if sys.argv[2].endswith(".npy"):
    t = torch.from_numpy(np.load(sys.argv[2]))
else:
    t = torch.from_numpy(pd.read_csv(sys.argv[2], header=None).to_numpy().reshape(-1))
loss = torch.nn.functional.cross_entropy(z, t)
loss.backward()
pd.DataFrame(z.grad.numpy()).to_csv(sys.argv[3], header=False, index=False)
print(loss.item())
"""


def available(module: str) -> bool:
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


# Linux counts in a child's peak RSS the memory of its parent at the fork (ru_maxrss survives exec):
# each command is started by this small launcher, which reports the peak of the command alone.
LAUNCHER = r"""
import os, sys
report, cmd = int(sys.argv[1]), sys.argv[2:]
pid = os.fork()
if pid == 0:
    os.close(report)
    os.execv(cmd[0], cmd)
_, status, usage = os.wait4(pid, 0)
os.write(report, str(usage.ru_maxrss).encode())
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run(cmd: list[str], stdout: Path | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one process (its standard output to a file, or discarded)."""
    out = open(stdout, "wb") if stdout is not None else subprocess.DEVNULL  # noqa: SIM115 - closed below
    read_end, write_end = os.pipe()
    try:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, str(write_end), *cmd], stdout=out,
                                stderr=subprocess.PIPE, pass_fds=(write_end,))
        os.close(write_end)
        _, err = proc.communicate()
        wall = time.perf_counter() - start
        peak_kb = os.read(read_end, 64).decode()
    finally:
        os.close(read_end)
        if stdout is not None:
            out.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed ({proc.returncode}): {err.decode()[-500:]}")
    return wall, int(peak_kb) / 1024


def make_inputs(directory: Path, size_mb: int, classes: int) -> tuple[Path, Path, Path]:
    """Logits (CSV, ~size_mb MB, 7 significant digits) and class indices as a CSV column and as .npy."""
    logits = directory / f"logits_{size_mb}mb_{classes}.csv"
    labels = directory / f"labels_{size_mb}mb_{classes}.csv"
    labels_npy = directory / f"labels_{size_mb}mb_{classes}.npy"
    if logits.exists() and labels.exists() and labels_npy.exists():
        return logits, labels, labels_npy
    rng = np.random.default_rng(0)
    rows_per_block = max(1, 2_000_000 // classes)
    written = 0
    parts = []
    with open(logits, "w") as fz, open(labels, "w") as fy:
        while written < size_mb * 1e6:
            z = rng.normal(scale=3.0, size=(rows_per_block, classes))
            text = "\n".join(",".join(f"{v:.7g}" for v in row) for row in z) + "\n"
            fz.write(text)
            t = rng.integers(0, classes, rows_per_block)
            fy.write("\n".join(str(v) for v in t) + "\n")
            parts.append(t)
            written += len(text)
    np.save(labels_npy, np.concatenate(parts))
    return logits, labels, labels_npy


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem = float("nan")
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB; Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=150, help="size of each logits CSV (default 150)")
    ap.add_argument("--classes", default="2,10,32,1000", help="comma-separated numbers of classes")
    ap.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    ap.add_argument("--modes", default="output,json", help="xent modes to run: output, json (default both)")
    ap.add_argument("--labels", default="csv,npy", help="label formats: csv, npy (default both)")
    ap.add_argument("--pandas", action="store_true", help="also time pandas read_csv + torch + to_csv")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "xent-bench")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}")
    if not available("polars"):
        raise SystemExit("polars is not installed: the reference script needs it (pip install polars)")
    # An installed package has its bytecode; a source checkout may not (or may not write it, with
    # PYTHONDONTWRITEBYTECODE): compile it once here, so that no timed run spends time compiling.
    subprocess.run([sys.executable, "-c", "import compileall, pathlib, xentcli; "
                    "compileall.compile_dir(pathlib.Path(xentcli.__file__).parent, quiet=1)"], check=True)
    extras = [m for m in ("polars", "orjson") if available(m)]
    print(f"xent's optional fast writers installed: {', '.join(extras) or 'none (pure NumPy path)'}")
    if args.pandas and not (available("pandas") and available("torch")):
        print("pandas or torch is not installed: the pandas+torch script is skipped")
        args.pandas = False
    grad, out_json = args.dir / "grad.csv", args.dir / "out.json"
    xent = [sys.executable, "-m", "xentcli", "compute"]
    header = (f"{'C':>5} {'labels':6} {'command':8} {'input MB':>8} {'rows':>9} {'median s':>8} "
              f"{'/ polars':>8} {'peak RSS MB':>11}")
    print(header)
    print("-" * len(header))
    for classes in [int(c) for c in args.classes.split(",")]:
        logits, labels_csv, labels_npy = make_inputs(args.dir, args.size_mb, classes)
        size = logits.stat().st_size / 1e6
        rows = int(np.load(labels_npy, mmap_mode="r").shape[0])
        for kind in args.labels.split(","):
            labels = labels_csv if kind == "csv" else labels_npy
            commands: dict[str, tuple[list[str], Path | None]] = {
                "polars": ([sys.executable, "-c", POLARS_SCRIPT, str(logits), str(labels), str(grad)], None)}
            if "output" in args.modes:
                commands["output"] = (xent + [str(logits), str(labels), "--output", str(grad), "--format", "json"],
                                      None)
            if "json" in args.modes:
                commands["json"] = (xent + [str(logits), str(labels), "--format", "json"], out_json)
            if args.pandas:
                commands["pandas"] = ([sys.executable, "-c", PANDAS_SCRIPT, str(logits), str(labels), str(grad)],
                                      None)
            times: dict[str, list[float]] = {k: [] for k in commands}
            rss: dict[str, float] = {k: 0.0 for k in commands}
            for _ in range(args.repeat):
                for name, (cmd, stdout) in commands.items():
                    wall, peak = run(cmd, stdout)
                    times[name].append(wall)
                    rss[name] = max(rss[name], peak)
            for name in commands:
                ratio = statistics.median(a / b for a, b in zip(times[name], times["polars"]))
                print(f"{classes:5d} {kind:6} {name:8} {size:8.0f} {rows:9d} {statistics.median(times[name]):8.2f} "
                      f"{ratio:8.2f} {rss[name]:11.0f}", flush=True)
    grad.unlink(missing_ok=True)
    out_json.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
