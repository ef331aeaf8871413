"""Start-up cost: ``xent --help``, ``xent --version`` and a small ``xent compute``, against bare Python.

    python benchmarks/startup.py

Each command runs as its own process (median of --repeat runs); the ratio is
to ``python -c pass`` measured in the same run. ``python -X importtime`` shows
which heavy modules each command imports: --help and --version must import
neither NumPy nor SymPy, and compute must not import SymPy.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "xent --help": [sys.executable, "-m", "xentcli", "--help"],
    "xent --version": [sys.executable, "-m", "xentcli", "--version"],
    "xent compute (2x3)": [sys.executable, "-m", "xentcli", "compute", "--logits", "2,1,0.1;0.1,2,1.9",
                           "--labels", "1,0", "--format", "json"],
    "xent derive --classes 3": [sys.executable, "-m", "xentcli", "derive", "--classes", "3", "--format", "json"],
}
HEAVY = ("numpy", "sympy", "rich", "polars")


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True)
    return time.perf_counter() - start


def imported(cmd: list[str]) -> set[str]:
    proc = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], capture_output=True, text=True)
    names = set()
    for line in proc.stderr.splitlines():
        if "|" in line:
            name = line.rsplit("|", 1)[1].strip().split(".")[0]
            names.add(name)
    return {h for h in HEAVY if h in names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    # As installed: with bytecode (a checkout under PYTHONDONTWRITEBYTECODE would compile in every run).
    subprocess.run([sys.executable, "-c", "import compileall, pathlib, xentcli; "
                    "compileall.compile_dir(pathlib.Path(xentcli.__file__).parent, quiet=1)"], check=True)
    times = {k: [] for k in COMMANDS}
    for _ in range(args.repeat):
        for name, cmd in COMMANDS.items():
            times[name].append(wall(cmd))
    base = statistics.median(times["python -c pass"])
    print(f"{'command':26} {'median s':>9} {'vs python':>10}  heavy modules imported")
    for name, cmd in COMMANDS.items():
        med = statistics.median(times[name])
        mods = ", ".join(sorted(imported(cmd))) if name != "python -c pass" else ""
        print(f"{name:26} {med:9.3f} {med / base:10.1f}  {mods or '-'}")


if __name__ == "__main__":
    main()
