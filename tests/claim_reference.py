"""Independent references for claims, written for the tests only (nothing from ``xentcli.symbolic``).

* :func:`claim_value`: a claim's text evaluated at an exact point with Python's ``ast`` and SymPy
  (numbers are taken exactly as written: ``1e-300`` is 10**-300).
* :func:`derivative`: the loss written out from its textbook definition (PyTorch's, see the README's
  Formulas), differentiated by ``sympy.diff`` and evaluated at the point.
* :func:`same`: exact equality of two SymPy numbers (logarithms of rationals expanded over primes).
"""

from __future__ import annotations

import ast
from fractions import Fraction

import sympy as sp


def number(text: str) -> sp.Expr:
    return sp.sympify(text)


def probabilities(z: list[sp.Expr], binary: bool) -> list[sp.Expr]:
    if binary:
        return [sp.simplify(1 / (1 + sp.exp(-v))) for v in z]
    S = sp.Add(*[sp.exp(v) for v in z])
    return [sp.simplify(sp.exp(v) / S) for v in z]


def claim_value(text: str, sample: dict, j: int, binary: bool = False) -> sp.Expr:
    """The claim at class j (0-based), with p computed here from z (softmax, or sigmoid for ``binary``)."""
    z = [number(v) for v in sample["z"]]
    C = len(z)
    vectors = {"z": z, "p": probabilities(z, binary), "y": [number(v) for v in sample["y"]]}
    for name in ("w", "q"):
        vectors[name] = [number(v) for v in sample[name]] if name in sample else [sp.Integer(1)] * C
    scalars = {"C": sp.Integer(C)}
    for name in ("eps", "m", "N", "W"):
        if name in sample:
            scalars[name] = number(sample[name])

    def ev(node: ast.AST, k: int) -> sp.Expr:
        if isinstance(node, ast.Expression):
            return ev(node.body, k)
        if isinstance(node, ast.Constant):
            return sp.Rational(repr(node.value)) if isinstance(node.value, float) else sp.Integer(node.value)
        if isinstance(node, ast.Name):
            return vectors[node.id][k] if node.id in vectors else scalars[node.id]
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand, k)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp):
            a, b = ev(node.left, k), ev(node.right, k)
            op = type(node.op)
            return {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
                    ast.Div: lambda: a / b, ast.Pow: lambda: a**b}[op]()
        if isinstance(node, ast.Call):
            name = node.func.id  # type: ignore[attr-defined]
            if name == "sum":
                return sp.Add(*[ev(node.args[0], m) for m in range(C)])
            return (sp.exp if name == "exp" else sp.log)(ev(node.args[0], k))
        raise AssertionError(ast.dump(node))

    return ev(ast.parse(text, mode="eval"), j)


def derivative(sample: dict, j: int, *, kind: str = "ce", reduction: str = "none", smoothing: bool = False,
               denominator: str | None = None) -> sp.Expr:
    """∂L/∂z_j at the sample, by sympy.diff of the textbook loss (one sample; R, the other samples' losses, does
    not depend on z). ``denominator``: what a mean divides by ("N", "W", or "NC" for N*C elements)."""
    values = {k: [number(v) for v in sample[k]] for k in ("z", "y", "w", "q") if k in sample}
    C = len(values["z"])
    z = sp.symbols(f"z1:{C + 1}", real=True)
    y = values["y"]
    w = values.get("w", [sp.Integer(1)] * C)
    q = values.get("q", [sp.Integer(1)] * C)
    eps = number(sample["eps"]) if smoothing else sp.Integer(0)
    m = number(sample["m"]) if "m" in sample else sp.Integer(1)
    if kind == "bce":
        sig = [1 / (1 + sp.exp(-v)) for v in z]
        loss = sp.Add(*[w[k] * (-q[k] * y[k] * sp.log(sig[k]) - (1 - y[k]) * sp.log(1 - sig[k])) for k in range(C)])
    else:
        S = sp.Add(*[sp.exp(v) for v in z])
        a = [m * w[k] * ((1 - eps) * y[k] + eps / C) for k in range(C)]
        loss = -sp.Add(*[a[k] * sp.log(sp.exp(z[k]) / S) for k in range(C)])  # ce, nll and kl (up to a constant)
    if reduction in ("mean", "batchmean"):
        D = {"N": number(sample.get("N", "1")), "W": number(sample.get("W", "1"))}.get(denominator or "N")
        if denominator == "NC":
            D = number(sample["N"]) * C
        loss = loss / D
    d = sp.diff(loss, z[j]).subs({z[k]: values["z"][k] for k in range(C)})
    return sp.simplify(d)


def same(a: sp.Expr, b: sp.Expr) -> bool:
    """Exact equality: the difference, with logarithms of rationals split into logarithms of primes, is 0."""
    d = sp.expand(_split_logs(sp.sympify(a) - sp.sympify(b)))
    return bool(d == 0 or sp.simplify(d) == 0)


def _split_logs(e: sp.Expr) -> sp.Expr:
    """log(n) of an integer n as Σ e_p log(p) over its prime factors."""

    def split(arg: sp.Expr) -> sp.Expr:
        if arg.is_Rational and arg > 0:
            q = Fraction(int(arg.p), int(arg.q))
            out = sp.Integer(0)
            for n, s in ((q.numerator, 1), (q.denominator, -1)):
                for prime, k in sp.factorint(n).items():
                    out += s * k * sp.log(sp.Integer(prime))
            return out
        return sp.log(arg)

    return e.replace(lambda x: isinstance(x, sp.log), lambda x: split(x.args[0]))
