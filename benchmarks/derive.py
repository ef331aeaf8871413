"""``xent derive`` end to end, per number of classes and per option set, against the budget.

    python benchmarks/derive.py                       # every variant at C = 3, 30, 100, 200 and symbolic C
    python benchmarks/derive.py --classes 200 --variants ce "ce --label-smoothing sym --weight sym"

Each run is its own process (the median of --repeat runs); for each it prints
the wall time, the CPU time and the peak resident memory of that process, and
the size of the JSON it wrote. ``python -c "import sympy"`` is measured in the
same run as the floor every derivation pays, and the ratio to it is printed
so that figures from machines of different speed compare. The budget (issue
"C = 200 in seconds"): every variant at C = 200 within 10 s and 500 MB, the
JSON within 2 MB.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_SECONDS = {"3": 2.0, "200": 10.0, "n": 5.0}
BUDGET_MB = 500.0
BUDGET_JSON_MB = 2.0

VARIANTS = [
    "ce",
    "ce --reduction sum",
    "ce --reduction mean --weight sym",
    "ce --label-smoothing sym",
    "ce --label-smoothing 1/10 --weight sym --ignore-index -100 --reduction mean",
    "ce --targets prob --reduction mean --weight sym",
    "ce --targets prob --no-assume-normalized",
    "nll",
    "nll --reduction mean --weight sym --ignore-index -100",
    "kl",
    "kl --reduction batchmean",
    "kl --reduction mean",
    "bce",
    "bce --weight sym --pos-weight sym --reduction mean",
]


def run(cmd: list[str]) -> tuple[float, float, float, int]:
    """Wall seconds, CPU seconds (user + system) and peak RSS in MB of one child process, and its exit code."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, code


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", nargs="+", default=["3", "30", "100", "200", "n"])
    ap.add_argument("--variants", nargs="+", default=VARIANTS)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    floor = statistics.median(run([sys.executable, "-c", "import sympy"])[0] for _ in range(args.repeat))
    print(f"floor: python -c 'import sympy' = {floor:.2f} s (wall)")
    print(f"{'variant':76} {'C':>4} {'wall s':>7} {'cpu s':>6} {'vs floor':>8} {'MB':>6} {'json MB':>7} {'budget s':>8}"
          "  exit")
    over = 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "derivation.json"
        for variant in args.variants:
            parts = shlex.split(variant)
            extra = (["--loss", parts[0]] if parts[0] != "ce" else []) + parts[1:]
            for c in args.classes:
                cmd = [sys.executable, "-m", "xentcli", "derive", "--classes", c, *extra, "--format", "json",
                       "--output", str(out)]
                runs = [run(cmd) for _ in range(args.repeat)]
                wall = statistics.median(r[0] for r in runs)
                cpu = statistics.median(r[1] for r in runs)
                mb = max(r[2] for r in runs)
                code = runs[-1][3]
                size = out.stat().st_size / 1e6 if out.exists() else float("nan")
                budget = BUDGET_SECONDS.get(c)
                late = budget is not None and (wall > budget or mb > BUDGET_MB or size > BUDGET_JSON_MB)
                over += late or code != 0
                print(f"{variant:76} {c:>4} {wall:7.2f} {cpu:6.2f} {wall / floor:8.1f} {mb:6.0f} {size:7.2f} "
                      f"{budget if budget else '':>8}  {code}{'  OVER' if late else ''}", flush=True)
    print(f"{over} run(s) over budget or failing" if over else "every run within budget")


if __name__ == "__main__":
    main()
