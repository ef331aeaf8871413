"""``xent derive`` end to end, per number of classes, against the budget of the performance issue.

    python benchmarks/derive.py                 # C = 2, 3, 10, 30, 100 and symbolic C
    python benchmarks/derive.py --classes 3 100 --variants ce "ce --label-smoothing sym --weight sym --reduction mean"

Each run is its own process (median of --repeat); ``python -c "import sympy"``
is measured in the same run as the floor every derivation pays.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import time

BUDGET = {"3": 2.0, "100": 10.0, "n": 3.0}


def wall(cmd: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True)
    return time.perf_counter() - start, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", nargs="+", default=["2", "3", "10", "30", "100", "n"])
    ap.add_argument("--variants", nargs="+",
                    default=["ce", "bce", "nll", "kl",
                             "ce --label-smoothing sym --weight sym --ignore-index -100 --reduction mean",
                             "bce --weight sym --pos-weight sym --reduction mean"])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    floor = statistics.median(wall([sys.executable, "-c", "import sympy"])[0] for _ in range(args.repeat))
    print(f"floor: python -c 'import sympy' = {floor:.2f} s")
    print(f"{'variant':48} {'C':>4} {'median s':>9} {'vs floor':>9} {'budget s':>9}  exit")
    for variant in args.variants:
        parts = shlex.split(variant)
        extra = (["--loss", parts[0]] if parts[0] != "ce" else []) + parts[1:]
        for c in args.classes:
            cmd = [sys.executable, "-m", "xentcli", "derive", "--classes", c, *extra, "--format", "json"]
            runs = [wall(cmd) for _ in range(args.repeat)]
            med = statistics.median(t for t, _ in runs)
            code = runs[-1][1]
            budget = BUDGET.get(c)
            print(f"{variant:48} {c:>4} {med:9.2f} {med / floor:9.1f} {budget if budget else '':>9}  {code}")


if __name__ == "__main__":
    main()
