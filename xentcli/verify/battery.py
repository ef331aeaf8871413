"""The conformance battery: seeded, reproducible cases that expose the usual mistakes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import XentInputError
from ..spec import LossSpec

LARGE_VOCAB = 32_768


def fixed_classes(spec: LossSpec) -> int | None:
    """Weights fix the number of classes (columns) of every case (class weights need at least 2)."""
    if spec.kind != "bce" and isinstance(spec.weight, tuple) and len(spec.weight) < 2:
        raise XentInputError("needs one value per class (at least 2)", option="weight")
    for vec in (spec.weight, spec.pos_weight):
        if isinstance(vec, tuple) and len(vec) > 1:
            return len(vec)
    return None


@dataclass
class Case:
    """One input of the battery, in float64 (the implementation gets them cast to the chosen dtype)."""

    name: str
    description: str
    logits: np.ndarray
    targets: np.ndarray
    tags: frozenset[str] = field(default_factory=frozenset)

    @property
    def shape(self) -> tuple[int, int]:
        n, c = self.logits.shape
        return int(n), int(c)


def handed(case: Case, options: LossSpec) -> tuple[np.ndarray, np.ndarray]:
    """A case's inputs as the implementation is handed them: the logits (and probability targets) in
    ``--dtype``. bfloat16, which NumPy lacks, is handed over as float32 arrays holding bfloat16 values (a
    torch or JAX target gets them as that framework's bfloat16, exactly the same numbers)."""
    targets = case.targets
    if options.dtype == "bfloat16":
        from ..numeric import bfloat16_round

        if targets.dtype.kind == "f":
            targets = bfloat16_round(targets, "target")
        return bfloat16_round(case.logits, "logits"), targets
    if targets.dtype.kind == "f":
        targets = targets.astype(options.dtype)
    return case.logits.astype(options.dtype), targets


def _targets(rng: np.random.Generator, z: np.ndarray, options: LossSpec, kind: str = "auto") -> np.ndarray:
    n, c = z.shape
    out: np.ndarray
    if options.kind == "bce":
        out = (rng.random((n, c)) < 0.5).astype(np.float64) if kind == "hard" else rng.random((n, c))
    elif options.targets == "prob":
        if kind == "onehot":
            out = np.eye(c)[rng.integers(0, c, size=n)]
        elif kind == "unnormalised":
            out = rng.random((n, c)) * 1.5
        else:
            out = rng.dirichlet(np.full(c, 0.7), size=n)
    else:
        out = np.asarray(rng.integers(0, c, size=n), dtype=np.int64)
    return out


def _with_ignored(rng: np.random.Generator, t: np.ndarray, options: LossSpec) -> np.ndarray:
    if options.ignore_index is None:
        return t
    t = t.copy()
    n = t.shape[0]
    k = max(1, n // 3)
    t[rng.choice(n, size=k, replace=False)] = options.ignore_index
    return t


def battery(options: LossSpec, seed: int = 0) -> list[Case]:
    """The cases for these options, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    fixed = fixed_classes(options)
    C = fixed or 5
    cases: list[Case] = []

    def add(name: str, description: str, z: np.ndarray, kind: str = "auto", tags: tuple[str, ...] = (),
            targets: np.ndarray | None = None) -> None:
        t = _targets(rng, z, options, kind) if targets is None else targets
        cases.append(Case(name, description, np.asarray(z, dtype=np.float64), t, frozenset(tags)))

    add("random", f"8 samples x {C} classes, logits ~ N(0, 1)", rng.normal(size=(8, C)))
    add("scale-10", "logits ~ N(0, 10^2)", rng.normal(scale=10.0, size=(8, C)))
    add("scale-100", "logits ~ N(0, 100^2), |z| up to ~300: exp(z) overflows float32 and float16 unless shifted "
        "(float64 only beyond 709: see extreme and offset)",
        rng.normal(scale=100.0, size=(8, C)), tags=("large",))
    if fixed in (None, 2):
        add("two-classes", "C = 2", rng.normal(size=(7, 2)))
    if fixed is None:
        add("large-vocab", f"4 samples x {LARGE_VOCAB} classes", rng.normal(scale=3.0, size=(4, LARGE_VOCAB)))
    add("one-sample", "N = 1", rng.normal(size=(1, C)))
    add("many-samples", f"1000 samples x {C} classes", rng.normal(size=(1000, C)))
    ties = np.repeat(rng.normal(size=(6, 1)), C, axis=1)
    ties[3:, : max(1, C // 2)] += 1.0  # two-way ties at the maximum
    add("ties", "rows with equal logits, and ties at the maximum", ties)
    add("extreme", "logits up to |z| = 1e4", rng.uniform(-1e4, 1e4, size=(6, C)), tags=("large",))

    if options.kind == "bce":
        n = 6
        z = rng.uniform(-1e4, 1e4, size=(n, C))
        y = (z < 0).astype(np.float64)  # confidently wrong everywhere
        add("confident-wrong", "|z| up to 1e4 with the opposite label: sigmoid(-|z|) underflows", z,
            targets=y, tags=("large", "confident-wrong"))
        add("confident-right", "|z| up to 1e4 with the matching label: losses ~ exp(-|z|)", z,
            targets=1.0 - y, tags=("large", "confident-right"))
        add("hard-labels", "targets exactly 0 or 1", rng.normal(size=(8, C)), kind="hard")
        return cases

    # Cross-entropy: confident predictions put the target probability far from 1/C.
    n = 6
    z = rng.normal(size=(n, C))
    t = rng.integers(0, C, size=n)
    wrong = z.copy()
    wrong[np.arange(n), t] = -40.0
    wrong[np.arange(n), (t + 1) % C] = 40.0  # target probability ~ e^-80 < 1e-12
    right = z.copy()
    right[np.arange(n), t] = 60.0  # target probability 1 - O(e^-60)
    far = z.copy()
    far[np.arange(n), t] = -5e3
    far[np.arange(n), (t + 1) % C] = 5e3
    masked = rng.normal(size=(n, C))
    if C > 2:
        masked[np.arange(n), (t + 2) % C] = -np.inf  # a masked class that is never the target
    else:
        masked[0, (t[0] + 1) % C] = -np.inf

    def onehot_or_index(tt: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.eye(C)[tt] if options.targets == "prob" else tt.astype(np.int64)
        return out

    add("confident-wrong", "target probability below 1e-12 (target logit -40, another +40)", wrong,
        targets=onehot_or_index(t), tags=("confident-wrong",))
    add("confident-wrong-extreme", "target logit -5000, another +5000: the loss is 1e4", far,
        targets=onehot_or_index(t), tags=("confident-wrong", "large"))
    add("confident-right", "target logit 60: the loss and gradient are ~1e-26", right,
        targets=onehot_or_index(t), tags=("confident-right",))
    add("masked", "-inf logits (masked classes) that are never the target", masked,
        targets=onehot_or_index(t), tags=("masked",))
    add("offset", "logits 1000 + N(0, 1): exp(z) overflows unless shifted, every probability is moderate",
        1000.0 + rng.normal(size=(8, C)), tags=("large",))
    if options.softcap is not None:
        cap = float(options.softcap)  # type: ignore[arg-type]  # a numeric spec: no SYM
        x = rng.uniform(-40.0, 40.0, size=(8, C))
        x[:4, 0] = np.where(x[:4, 0] < 0, -1.0, 1.0) * rng.uniform(0.05, 0.5, size=4)  # and some below the cap
        add("softcap-saturation", f"|z| up to 40 times the soft-cap ({cap:g}): tanh(z/c) rounds to ±1, and its "
            "derivative 1 − tanh² is below 1e-30", cap * x, tags=("saturation",))
    if options.has_z_loss:
        add("large-lse", "logits 100 + N(0, 3^2): lse(z) ~ 100, the z-loss λ·lse² and its gradient 2λ·lse·p "
            "dominate", 100.0 + rng.normal(scale=3.0, size=(8, C)), tags=("large",))
        if fixed is None:
            add("large-lse-vocab", f"4 samples x {LARGE_VOCAB} classes, logits 30 + N(0, 1): lse ~ 40 from the "
                "many classes", 30.0 + rng.normal(size=(4, LARGE_VOCAB)), tags=("large",))
    if options.targets == "prob":
        add("one-hot", "one-hot probability rows", rng.normal(size=(8, C)), kind="onehot")
        add("soft", "soft probability rows (Dirichlet)", rng.normal(size=(8, C)), kind="soft")
        add("unnormalised", "probability rows that do not sum to 1: the gradient is p*sum(y) - y",
            rng.normal(size=(8, C)), kind="unnormalised", tags=("unnormalised",))
    if options.ignore_index is not None and options.targets == "index":
        z = rng.normal(size=(9, C))
        tt = _with_ignored(rng, rng.integers(0, C, size=9), options)
        add("ignored", f"a third of the samples have target {options.ignore_index} (ignored)", z,
            targets=tt.astype(np.int64), tags=("ignored",))
        add("all-ignored", f"every sample has target {options.ignore_index}: a mean over zero weight is 0/0",
            rng.normal(size=(4, C)), targets=np.full(4, options.ignore_index, dtype=np.int64), tags=("ignored",))
    return cases
