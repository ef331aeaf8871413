"""Soak: every stock framework loss over every combination of its options, dtypes and two seeds.

    python tests/tools/stock_sweep.py torch     # F.cross_entropy, nn.CrossEntropyLoss, BCE with logits
    python tests/tools/stock_sweep.py optax     # optax's three losses

Prints each combination that fails verify (a false alarm: a bug in xent until shown otherwise) and the
count; exits 1 if there is any. The test suite runs a representative subset (tests/test_verify_issue13.py);
this runs them all, in-process.
"""

from __future__ import annotations

import itertools
import sys
import warnings
from typing import Any

from xentcli.errors import XentInputError
from xentcli.spec import LossSpec
from xentcli.verify import check

W = (1.0, 2.0, 0.5, 1.0, 3.0)
PW = (3.0, 1.0, 0.5, 2.0, 1.0)
REDUCTIONS = ("mean", "sum", "none")


def run(target: str, failures: list[str], **options: Any) -> None:
    try:
        spec = LossSpec(**options)
    except XentInputError:
        return  # a combination PyTorch does not define
    for seed in (0, 1):
        report = check(target, options=spec, seed=seed, isolate=False)
        bad = [(r.case.name, r.error, r.diagnosis) for r in report.results if not r.passed]
        if bad:
            line = f"FAIL {target} {spec.describe()} seed {seed}: {bad[:3]}"
            print(line, flush=True)
            failures.append(line)
            return


def torch_combinations(failures: list[str]) -> None:
    for target in ("torch.nn.functional:cross_entropy", "torch.nn:CrossEntropyLoss"):
        for red, targets, w, ignore, eps, dt in itertools.product(
                REDUCTIONS, ("index", "prob"), (None, W), (None, 1), (0.0, 0.1), ("float64", "float32", "float16")):
            if targets == "prob" and ignore is not None:
                continue
            run(target, failures, kind="ce", reduction=red, targets=targets, weight=w, ignore_index=ignore,
                label_smoothing=eps, dtype=dt)
    for red, w, pw, dt in itertools.product(REDUCTIONS, (None, W), (None, PW), ("float64", "float32", "float16")):
        run("torch.nn.functional:binary_cross_entropy_with_logits", failures, kind="bce", reduction=red, weight=w,
            pos_weight=pw, dtype=dt)


def optax_combinations(failures: list[str]) -> None:
    for red, dt in itertools.product(REDUCTIONS, ("float64", "float32")):
        run("optax:softmax_cross_entropy", failures, kind="ce", reduction=red, targets="prob", dtype=dt)
        run("optax:softmax_cross_entropy_with_integer_labels", failures, kind="ce", reduction=red, dtype=dt)
        run("optax:sigmoid_binary_cross_entropy", failures, kind="bce", reduction=red, dtype=dt)


def main() -> int:
    warnings.simplefilter("ignore")
    failures: list[str] = []
    which = sys.argv[1] if len(sys.argv) > 1 else "torch"
    (torch_combinations if which == "torch" else optax_combinations)(failures)
    print(f"{len(failures)} combination(s) fail")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
