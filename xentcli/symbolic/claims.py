"""Parse and evaluate ``--claim`` expressions with a small, closed grammar.

A claim is an elementwise closed form of the gradient, e.g. ``p - y``,
``p*sum(y) - y``, ``(p - y)/N`` or ``p - ((1 - eps)*y + eps/C)``. It is parsed
with :func:`ast.parse` and only these nodes are accepted:

* numbers (integers and decimals, taken exactly), parentheses;
* ``+ - * /`` and ``**`` with a small integer exponent;
* the elementwise names ``p`` (softmax, or sigmoid for BCE), ``y`` (target),
  ``z`` (logit), ``w`` (class weight) and the scalars ``N`` (batch size),
  ``W`` (summed target weights of a weighted mean), ``C`` (classes) and
  ``eps`` (label smoothing);
* calls ``sum(...)`` (over the classes), ``exp(...)`` and ``log(...)``.

Nothing is ever handed to ``eval``/``exec``/``sympify``; attribute access,
subscripts, keywords, strings and any other name are rejected.
"""

from __future__ import annotations

import ast
from typing import Any, Callable

import sympy as sp

from ..errors import XentInputError

VECTORS = ("p", "y", "z", "w")
SCALARS = ("N", "W", "C", "eps")
FUNCTIONS = ("sum", "exp", "log")
MAX_LENGTH = 400
MAX_NODES = 200
MAX_POWER = 8

_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)
_UNARY = (ast.UAdd, ast.USub)


def _fail(message: str) -> XentInputError:
    return XentInputError(message, source="--claim")


def parse(text: str) -> ast.Expression:
    """Parse and validate a claim; raise :class:`XentInputError` (exit 2) when it is not in the grammar."""
    if len(text) > MAX_LENGTH:
        raise _fail(f"is {len(text)} characters long; claims are limited to {MAX_LENGTH}")
    if not text.strip():
        raise _fail("is empty")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise _fail(f"is not a valid expression ({exc.msg})") from None
    count = 0
    for node in ast.walk(tree):
        count += 1
        if count > MAX_NODES:
            raise _fail(f"is too large (more than {MAX_NODES} parts)")
        _validate(node)
    return tree


def _validate(node: ast.AST) -> None:
    if isinstance(node, (ast.Expression, ast.Load, ast.operator, ast.unaryop)):
        return  # operators are checked by their BinOp/UnaryOp
    if isinstance(node, ast.BinOp):
        if not isinstance(node.op, _BINOPS):
            raise _fail(f"operator {type(node.op).__name__} is not allowed (use + - * / **)")
        if isinstance(node.op, ast.Pow):
            n = _int_constant(node.right)
            if n is None or abs(n) > MAX_POWER:
                raise _fail(f"'**' needs a whole-number exponent between -{MAX_POWER} and {MAX_POWER}")
        return
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, _UNARY):
            raise _fail(f"operator {type(node.op).__name__} is not allowed")
        return
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise _fail(f"{node.value!r} is not a number")
        if isinstance(node.value, float) and not (abs(node.value) < float("inf")):
            raise _fail(f"{node.value!r} is not a finite number")
        if isinstance(node.value, int) and abs(node.value) > 10**12:
            raise _fail("numbers in a claim are limited to 12 digits")
        return
    if isinstance(node, ast.Name):
        if node.id not in VECTORS + SCALARS + FUNCTIONS:
            raise _fail(
                f"unknown name {node.id!r}; a claim may use {', '.join(VECTORS + SCALARS)} "
                f"and {', '.join(f + '()' for f in FUNCTIONS)}"
            )
        return
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise _fail(f"only {', '.join(f + '()' for f in FUNCTIONS)} can be called")
        if node.keywords or len(node.args) != 1:
            raise _fail(f"{node.func.id}() takes exactly one argument")
        return
    if isinstance(node, ast.Attribute):
        raise _fail("attribute access ('.') is not allowed in a claim")
    if isinstance(node, ast.Subscript):
        raise _fail("subscripts are not allowed: names stand for the j-th entry already")
    raise _fail(f"{type(node).__name__} is not allowed in a claim")


def _int_constant(node: ast.AST) -> int | None:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _int_constant(node.operand)
        return None if inner is None else -inner
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    return None


def names(tree: ast.Expression) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id not in FUNCTIONS}


class Env:
    """How names become values for one class index.

    ``vector(name, k)`` gives the k-th entry of p, y, z or w; ``scalar(name)``
    gives N, W, C or eps; ``indices()`` lists the classes ``sum`` runs over.
    """

    def __init__(
        self,
        vector: Callable[[str, Any], Any],
        scalar: Callable[[str], Any],
        indices: Callable[[], Any],
        summation: Callable[[Callable[[Any], Any]], Any],
    ):
        self.vector = vector
        self.scalar = scalar
        self.indices = indices
        self.summation = summation


def evaluate(tree: ast.Expression, env: Env, index: Any) -> sp.Expr:
    """The claim's value at class ``index`` as a SymPy expression."""

    def ev(node: ast.AST, k: Any) -> sp.Expr:
        if isinstance(node, ast.Expression):
            return ev(node.body, k)
        if isinstance(node, ast.Constant):
            return sp.Rational(repr(node.value)) if isinstance(node.value, float) else sp.Integer(node.value)
        if isinstance(node, ast.Name):
            if node.id in VECTORS:
                return env.vector(node.id, k)
            return env.scalar(node.id)
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand, k)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp):
            a, b = ev(node.left, k), ev(node.right, k)
            op = node.op
            if isinstance(op, ast.Add):
                return a + b
            if isinstance(op, ast.Sub):
                return a - b
            if isinstance(op, ast.Mult):
                return a * b
            if isinstance(op, ast.Div):
                return a / b
            return a ** b
        if isinstance(node, ast.Call):
            fn = node.func.id  # type: ignore[attr-defined]
            arg = node.args[0]
            if fn == "sum":
                return env.summation(lambda m: ev(arg, m))
            return sp.exp(ev(arg, k)) if fn == "exp" else sp.log(ev(arg, k))
        raise _fail(f"{type(node).__name__} is not allowed in a claim")  # unreachable after parse()

    return ev(tree, index)
