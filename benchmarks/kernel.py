"""Kernel speed: xent's NumPy loss + gradient against PyTorch, measured in the same run.

    python benchmarks/kernel.py            # all shapes, float32 and float64
    python benchmarks/kernel.py --quick    # small shapes, for a smoke test
    python benchmarks/kernel.py --kinds lm # the language-model options (z-loss, softcap, temperature)

For each shape and dtype it times (median of several runs, milliseconds):
  xent       xentcli.cross_entropy / binary_cross_entropy (loss + gradient, no probabilities,
             the gradient written into a reused buffer with out=)
  torch      torch.nn.functional.cross_entropy (or BCE with logits) + backward(); for "lm", the
             formulas written in PyTorch (softcap 30, temperature 2, z-loss 1e-4) + backward()
  closed     torch's best closed form: log_softmax, then exp into a preallocated
             buffer and the target subtracted (sigmoid for BCE)
  memcpy     np.copyto of the logits (the memory floor)
and prints the ratios xent/torch, xent/closed, xent/memcpy (the median over
rounds of the ratio within a round: each round runs every candidate once, in
turn), plus peak RSS.
Without torch installed the torch columns are skipped (said so).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from xentcli import binary_cross_entropy, cross_entropy  # noqa: E402

SHAPES = [(1_000_000, 10), (65536, 1000), (4096, 32000), (512, 256000)]
QUICK = [(100_000, 10), (4096, 1000)]


def interleaved(fns: dict, repeat: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median ms of each function, and the median over rounds of xent's time / each one's.

    Every round times each function once (in turn), so a drift in the machine's
    speed hits all of them alike; ratios are taken within a round.
    """
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = {k: statistics.median(a / b for a, b in zip(times["xent"], v)) for k, v in times.items()}
    return med, ratio


def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


def cases(kind: str, n: int, c: int, dtype, torch):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(n, c)).astype(dtype)
    grad = np.empty_like(z)  # reused, as torch's closed form reuses its buffer
    if kind == "index":
        t = rng.integers(0, c, size=n)
        ours = lambda: cross_entropy(z, t, with_probs=False, out=grad)  # noqa: E731
    elif kind == "lm":
        t = rng.integers(0, c, size=n)
        ours = lambda: cross_entropy(z, t, with_probs=False, out=grad, z_loss=1e-4, softcap=30.0,  # noqa: E731
                                     temperature=2.0)
    elif kind == "prob":
        if c <= 1000:
            t = rng.dirichlet(np.ones(c), size=n).astype(dtype)
        else:  # one-hot rows
            t = np.zeros((n, c), dtype=dtype)
            t[np.arange(n), rng.integers(0, c, n)] = 1
        ours = lambda: cross_entropy(z, t, target_type="prob", with_probs=False, out=grad)  # noqa: E731
    else:
        t = (rng.random((n, c)) < 0.5).astype(dtype)
        ours = lambda: binary_cross_entropy(z, t, with_probs=False, with_losses=False, out=grad)  # noqa: E731
    dst = np.empty_like(z)
    out = {"xent": ours, "memcpy": lambda: np.copyto(dst, z)}
    if torch is None:
        return out
    F = torch.nn.functional
    zt = torch.from_numpy(z)
    tt = torch.from_numpy(t)
    buf = torch.empty_like(zt)
    rows = torch.arange(n)

    if kind == "index":
        def autograd():
            x = zt.detach().requires_grad_(True)
            F.cross_entropy(x, tt).backward()

        def closed():
            ls = torch.log_softmax(zt, 1)
            loss = -ls[rows, tt].mean()
            torch.exp(ls, out=buf)
            buf[rows, tt] -= 1
            buf.div_(n)
            return loss
    elif kind == "lm":
        def autograd():
            x = zt.detach().requires_grad_(True)
            u = 30.0 * torch.tanh(x / 30.0) / 2.0
            (F.cross_entropy(u, tt) + 1e-4 * (torch.logsumexp(u, 1) ** 2).mean()).backward()

        closed = None
    elif kind == "prob":
        def autograd():
            x = zt.detach().requires_grad_(True)
            F.cross_entropy(x, tt).backward()

        def closed():
            ls = torch.log_softmax(zt, 1)
            loss = -(ls * tt).sum() / n
            torch.exp(ls, out=buf)
            buf.mul_(tt.sum(1, keepdim=True)).sub_(tt).div_(n)
            return loss
    else:
        def autograd():
            x = zt.detach().requires_grad_(True)
            F.binary_cross_entropy_with_logits(x, tt).backward()

        def closed():
            loss = F.binary_cross_entropy_with_logits(zt, tt)
            torch.sigmoid(zt, out=buf)
            buf.sub_(tt).div_(zt.numel())
            return loss
    out["torch"] = autograd
    if closed is not None:
        out["closed"] = closed
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small shapes only")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--kinds", default="index,prob,binary,lm")
    args = ap.parse_args()
    torch = torch_or_none()
    if torch is None:
        print("torch is not installed: the torch and closed columns are skipped")
    else:
        torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"numpy {np.__version__}")
    header = f"{'kind':7} {'shape':>13} {'dtype':8} {'xent':>8} {'torch':>8} {'closed':>8} {'memcpy':>7}" \
             f"  {'x/torch':>7} {'x/closed':>8} {'x/memcpy':>8}"
    print(header)
    print("-" * len(header))
    for kind in args.kinds.split(","):
        for n, c in QUICK if args.quick else SHAPES:
            for dtype in (np.float32, np.float64):
                fns = cases(kind, n, c, dtype, torch)
                t, r = interleaved(fns, args.repeat)
                fmt = lambda v: f"{v:8.1f}" if v is not None else f"{'—':>8}"  # noqa: E731
                rat = lambda k, r=r: f"{r[k]:7.2f}" if k in r else f"{'—':>7}"  # noqa: E731
                print(f"{kind:7} {f'{n}x{c}':>13} {np.dtype(dtype).name:8} {t['xent']:8.1f} {fmt(t.get('torch'))}"
                      f" {fmt(t.get('closed'))} {t['memcpy']:7.1f}  {rat('torch')} {rat('closed'):>8}"
                      f" {r['memcpy']:8.1f}")
                del fns
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
