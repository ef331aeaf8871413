"""What isolation costs: the default battery with the target in a worker process against in-process.

    python benchmarks/verify_isolation.py              # 7 rounds
    python benchmarks/verify_isolation.py --repeat 15

Every round runs each contender once, in turn, so that the machine's load
falls on all of them alike; the table gives the median over rounds, and the
difference and ratio to in-process are the medians of each round's own
difference and ratio. The target is tests/zoo/correct.py:ce_log_softmax (a
correct NumPy implementation) on the default battery (13 cases, up to
4 x 32768 and 1000 x 5).

  library      xentcli.verify.check(TARGET, isolate=False) against check(TARGET)
  command      xent verify TARGET --format json --in-process, against without
  one crash    check() of the same target but for os._exit on the N = 1 case:
               a second worker takes the remaining cases
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = f"{HERE.parent / 'tests' / 'zoo' / 'correct.py'}:ce_log_softmax"
CRASHING = """\
import os, sys
sys.path.insert(0, {zoo!r})
from correct import ce_log_softmax

def f(z, t):
    if z.shape[0] == 1:
        os._exit(3)
    return ce_log_softmax(z, t)
"""


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def command(*extra: str) -> Callable[[], object]:
    env = dict(os.environ)
    env.pop("XENT_DEBUG", None)

    def run() -> None:
        proc = subprocess.run([sys.executable, "-m", "xentcli", "verify", TARGET, "--format", "json", *extra],
                              capture_output=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"xent verify failed: {proc.stderr.decode()[-500:]}")

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()

    from xentcli.verify import check

    with tempfile.TemporaryDirectory() as tmp:
        crashing = Path(tmp) / "crashing.py"
        crashing.write_text(CRASHING.format(zoo=str(HERE.parent / "tests" / "zoo")), encoding="utf-8")

        def library(isolate: bool) -> Callable[[], object]:
            def run() -> None:
                report = check(TARGET, isolate=isolate)
                assert report.passed and report.isolation is not None
                assert report.isolation["mode"] == ("process" if isolate else "in-process")

            return run

        def one_crash() -> None:
            report = check(f"{crashing}:f")
            assert [r.case.name for r in report.failures] == ["one-sample"]
            assert report.isolation is not None and report.isolation["workers"] == 2

        contenders = {
            "library, in-process": library(False),
            "library, isolated": library(True),
            "library, isolated, one crash": one_crash,
            "command, --in-process": command("--in-process"),
            "command, isolated": command(),
        }
        baseline = {"library, isolated": "library, in-process",
                    "library, isolated, one crash": "library, in-process",
                    "command, isolated": "command, --in-process"}
        for run in contenders.values():  # warm-up: imports, file caches
            run()
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.repeat):
            for name, run in contenders.items():
                times[name].append(timed(run))

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.repeat} rounds")
    print(f"{'contender':30} {'median s':>9} {'min s':>7} {'+ s vs in-process':>18} {'ratio':>6}")
    for name, values in times.items():
        line = f"{name:30} {statistics.median(values):9.3f} {min(values):7.3f}"
        if name in baseline:
            base = times[baseline[name]]
            diff = statistics.median(v - b for v, b in zip(values, base))
            ratio = statistics.median(v / b for v, b in zip(values, base))
            worst = max(v - b for v, b in zip(values, base))
            line += f" {diff:+11.3f} (max {worst:+.2f}) {ratio:5.1f}x"
        print(line)


if __name__ == "__main__":
    main()
