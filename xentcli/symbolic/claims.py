"""Parse and evaluate ``--claim`` expressions with a small, closed grammar.

A claim is an elementwise closed form of the gradient, e.g. ``p - y``,
``p*sum(y) - y``, ``(p - y)/N`` or ``p - ((1 - eps)*y + eps/C)``. It is parsed
with :func:`ast.parse` and only these nodes are accepted:

* numbers (integers and decimals, taken exactly), parentheses;
* ``+ - * /`` and ``**`` with a small integer exponent;
* the elementwise names ``p`` (softmax, or sigmoid for BCE), ``y`` (target),
  ``z`` (logit), ``w`` (weight), ``q`` (BCE positive weight) and the scalars
  ``N`` (what a mean over samples divides by), ``W`` (summed target weights of
  a weighted mean over class indices), ``C`` (classes), ``eps`` (label
  smoothing) and ``m`` (the mask of a sample that may be ignored); with the
  options of a language model ``lam`` (z-loss), ``cap`` (soft-cap), ``T``
  (temperature) and ``lse`` (log Σ exp of the capped and scaled logits);
* calls ``sum(...)`` (over the classes), ``exp(...)``, ``log(...)`` and
  ``tanh(...)``.

Nothing is ever handed to ``eval``/``exec``/``sympify``; attribute access,
subscripts, keywords, strings and any other name are rejected.

Limits (each refused with exit code 2 and one line naming the limit, before
any symbolic work, so that no claim can take unbounded time or memory):

* ``MAX_LENGTH``: at most 400 characters; plain printable ASCII only (no
  control characters, newlines, ``#`` comments or ``\\`` continuations);
* ``MAX_NODES``: at most 200 syntax-tree nodes;
* ``MAX_DEPTH``: at most 32 levels of nesting (operators, unary signs and
  calls; redundant parentheses do not count);
* ``MAX_POWER``: an exponent is a whole number between -8 and 8;
* ``MAX_DEGREE``: the claim's degree is at most 8, counting each name as
  degree 1, constants as 0, ``+``/``-`` as the larger, ``*``/``/`` as the sum,
  ``x**n`` as ``|n|`` times that of ``x`` and ``sum``/``exp``/``log`` as that
  of their argument (at least 1); e.g. ``(p - y)**8`` is allowed,
  ``(p - y)**8*p`` and ``(p**4)**4`` are not;
* ``MAX_NUMBER_DIGITS``: whole numbers have at most 12 digits; decimals must
  be finite.

A claim within these limits is then decided exactly for a concrete C with a
budget on the size of the polynomials involved (see
:mod:`xentcli.symbolic.claim_steps`): one that would need more is refused
(exit 2) and names a smaller C, or ``--classes n``, instead. A claim with a
part that is undefined for every input (a division by 0, the log of 0 or of
a negative number) is malformed: :class:`Undefined` names that part, and it
is refused (exit 2) too.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

import sympy as sp

from ..errors import XentInputError

VECTORS = ("p", "y", "z", "w", "q")
SCALARS = ("N", "W", "C", "eps", "m", "lam", "cap", "T", "lse")
FUNCTIONS = ("sum", "exp", "log", "tanh")
MAX_LENGTH = 400
MAX_NODES = 200
MAX_DEPTH = 32
MAX_POWER = 8
MAX_DEGREE = 8
MAX_NUMBER_DIGITS = 12

_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)
_UNARY = (ast.UAdd, ast.USub)
_STRUCTURAL = (ast.Expression, ast.Load, ast.operator, ast.unaryop)


def _fail(message: str) -> XentInputError:
    return XentInputError(message, source="--claim")


def _check_characters(text: str) -> None:
    for ch in text:
        code = ord(ch)
        if code < 32 or code == 127 or code > 126:
            name = f"U+{code:04X}"
            shown = repr(ch) if code < 32 or code == 127 else f"'{ch}'"
            raise _fail(f"character {shown} ({name}) is not allowed: a claim is one line of plain ASCII")
        if ch in "#\\":
            raise _fail(f"character '{ch}' is not allowed in a claim (no comments or line continuations)")


def parse(text: str) -> ast.Expression:
    """Parse and validate a claim; raise :class:`XentInputError` (exit 2) when it is not in the grammar."""
    if not isinstance(text, str):
        raise _fail("is not text")
    if len(text) > MAX_LENGTH:
        raise _fail(f"is {len(text)} characters long; claims are limited to {MAX_LENGTH}")
    if not text.strip():
        raise _fail("is empty")
    _check_characters(text)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise _fail(f"is not a valid expression ({exc.msg})") from None
    except (RecursionError, MemoryError):  # nesting beyond what Python's parser takes
        raise _fail("is nested too deeply to parse") from None
    except ValueError as exc:
        raise _fail(f"is not a valid expression ({exc})") from None
    count = 0
    callees = set()
    for node in ast.walk(tree):
        count += 1
        if count > MAX_NODES:
            raise _fail(f"is too large (more than {MAX_NODES} parts)")
        _validate(node)
        if isinstance(node, ast.Call):
            callees.add(id(node.func))
        elif isinstance(node, ast.Name) and node.id in FUNCTIONS and id(node) not in callees:
            raise _fail(f"{node.id} is a function: write {node.id}(...)")
    depth = _depth(tree.body)
    if depth > MAX_DEPTH:
        raise _fail(f"is nested {depth} levels deep; claims are limited to {MAX_DEPTH}")
    deg = degree(tree)
    if deg > MAX_DEGREE:
        raise _fail(
            f"has degree {deg} (names count 1, products add, '**n' multiplies); claims are limited to "
            f"degree {MAX_DEGREE}"
        )
    return tree


def _validate(node: ast.AST) -> None:
    if isinstance(node, _STRUCTURAL):
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
        if isinstance(node.value, int) and abs(node.value) >= 10**MAX_NUMBER_DIGITS:
            raise _fail(f"numbers in a claim are limited to {MAX_NUMBER_DIGITS} digits")
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
        if node.keywords or len(node.args) != 1 or isinstance(node.args[0], ast.Starred):
            raise _fail(f"{node.func.id}() takes exactly one argument")
        return
    if isinstance(node, ast.Attribute):
        raise _fail("attribute access ('.') is not allowed in a claim")
    if isinstance(node, ast.Subscript):
        raise _fail("subscripts are not allowed: names stand for the j-th entry already")
    raise _fail(f"{type(node).__name__} is not allowed in a claim")


def _children(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.BinOp):
        return [node.left, node.right]
    if isinstance(node, ast.UnaryOp):
        return [node.operand]
    if isinstance(node, ast.Call):
        return list(node.args)
    return []


def _depth(root: ast.AST) -> int:
    """Nesting depth of a validated claim, without recursion (a deep tree cannot overflow the stack)."""
    deepest = 0
    stack = [(root, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((child, d + 1) for child in _children(node))
    return deepest


def degree(tree: ast.Expression) -> int:
    """The claim's degree as documented above (an upper bound of its polynomial degree in the names)."""

    def deg(node: ast.AST) -> int:
        if isinstance(node, ast.Constant):
            return 0
        if isinstance(node, ast.Name):
            return 1
        if isinstance(node, ast.UnaryOp):
            return deg(node.operand)
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Pow):
                return abs(_int_constant(node.right) or 0) * deg(node.left)
            a, b = deg(node.left), deg(node.right)
            return max(a, b) if isinstance(node.op, (ast.Add, ast.Sub)) else a + b
        if isinstance(node, ast.Call):
            return max(1, deg(node.args[0]))
        return 0

    return deg(tree.body)


def _int_constant(node: ast.AST) -> int | None:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _int_constant(node.operand)
        return None if inner is None else -inner
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    return None


def names(tree: ast.Expression) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id not in FUNCTIONS}


class Algebra:
    """How a claim's syntax tree becomes a value: one implementation per kind of value.

    :func:`fold` walks the tree; ``vector(name, k)`` gives the k-th entry of
    p, y, z or w; ``scalar(name)`` gives N, W, C or eps; ``summation(f)`` sums
    ``f(m)`` over the classes. The arithmetic defaults are Python operators.
    """

    def const(self, value: int | float) -> Any:
        raise NotImplementedError

    def vector(self, name: str, k: Any) -> Any:
        raise NotImplementedError

    def scalar(self, name: str) -> Any:
        raise NotImplementedError

    def summation(self, f: Callable[[Any], Any]) -> Any:
        raise NotImplementedError

    def add(self, a: Any, b: Any) -> Any:
        return a + b

    def sub(self, a: Any, b: Any) -> Any:
        return a - b

    def mul(self, a: Any, b: Any) -> Any:
        return a * b

    def div(self, a: Any, b: Any) -> Any:
        return a / b

    def neg(self, a: Any) -> Any:
        return -a

    def power(self, a: Any, n: int) -> Any:
        return a**n

    def exp(self, a: Any) -> Any:
        raise NotImplementedError

    def log(self, a: Any) -> Any:
        raise NotImplementedError

    def tanh(self, a: Any) -> Any:
        raise NotImplementedError

    def seen(self, node: ast.AST, value: Any, index: Any) -> Any:
        """Called with the value of every part of the claim (at class ``index``); returns the value to use
        (an algebra may name a value by the part it came from)."""
        return value


def unparse(node: ast.AST) -> str:
    """A part of a claim as text (Python's own spelling of it)."""
    return ast.unparse(node)


def dump(node: ast.AST) -> str:
    """A part of a claim as a structural key (equal parts, equal keys)."""
    return ast.dump(node, annotate_fields=False)


class Undefined(Exception):
    """A part of the claim is undefined for every input (a division by 0, the log of 0 or of a negative
    number): the claim is malformed. ``where`` is that part, as written in the claim."""

    def __init__(self, problem: str, where: str = ""):
        super().__init__(problem)
        self.problem = problem
        self.where = where
        self.classes: int | None = None  # the number of classes where it is undefined, if only some

    def message(self) -> str:
        text = f"{self.where!r} {self.problem}" if self.where else self.problem
        return f"at C = {self.classes}, {text}" if self.classes is not None else text


def fold(tree: ast.Expression, alg: Algebra, index: Any, sums: dict[int, Any] | None = None) -> Any:
    """The claim's value at class ``index`` in ``alg``.

    A ``sum(...)`` does not depend on the outer index, so each one is
    evaluated once and reused: nested sums cost C times their size, not
    C to the power of their depth; pass the same ``sums`` dict to reuse them
    across indices. An :class:`Undefined` raised by the algebra is given the
    part of the claim it came from.
    """
    sums = {} if sums is None else sums

    def ev(node: ast.AST, k: Any) -> Any:
        try:
            value = _ev(node, k)
        except Undefined as exc:
            if not exc.where and not isinstance(node, ast.Expression):
                exc.where = unparse(node)
            raise
        return alg.seen(node, value, k)

    def _ev(node: ast.AST, k: Any) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body, k)
        if isinstance(node, ast.Constant):
            assert isinstance(node.value, (int, float))  # guaranteed by parse()
            return alg.const(node.value)
        if isinstance(node, ast.Name):
            if node.id in VECTORS:
                return alg.vector(node.id, k)
            return alg.scalar(node.id)
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand, k)
            return alg.neg(v) if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp):
            op = node.op
            if isinstance(op, ast.Pow):
                n = _int_constant(node.right)
                assert n is not None  # guaranteed by parse()
                return alg.power(ev(node.left, k), n)
            a, b = ev(node.left, k), ev(node.right, k)
            if isinstance(op, ast.Add):
                return alg.add(a, b)
            if isinstance(op, ast.Sub):
                return alg.sub(a, b)
            if isinstance(op, ast.Mult):
                return alg.mul(a, b)
            return alg.div(a, b)
        if isinstance(node, ast.Call):
            fn = node.func.id  # type: ignore[attr-defined]
            arg = node.args[0]
            if fn == "sum":
                key = id(node)
                if key not in sums:
                    sums[key] = alg.summation(lambda m: ev(arg, m))
                return sums[key]
            if fn == "tanh":
                return alg.tanh(ev(arg, k))
            return alg.exp(ev(arg, k)) if fn == "exp" else alg.log(ev(arg, k))
        raise _fail(f"{type(node).__name__} is not allowed in a claim")  # unreachable after parse()

    return ev(tree, index)


class Env:
    """How names become SymPy values for one class index.

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


class _SympyAlgebra(Algebra):
    def __init__(self, env: Env):
        self.env = env

    def const(self, value: int | float) -> sp.Expr:
        return sp.Rational(repr(value)) if isinstance(value, float) else sp.Integer(value)

    def vector(self, name: str, k: Any) -> sp.Expr:
        return self.env.vector(name, k)

    def scalar(self, name: str) -> sp.Expr:
        return self.env.scalar(name)

    def summation(self, f: Callable[[Any], Any]) -> sp.Expr:
        return self.env.summation(f)

    def power(self, a: sp.Expr, n: int) -> sp.Expr:
        return a ** sp.Integer(n)

    def exp(self, a: sp.Expr) -> sp.Expr:
        return sp.exp(a)

    def log(self, a: sp.Expr) -> sp.Expr:
        return sp.log(a)

    def tanh(self, a: sp.Expr) -> sp.Expr:
        return sp.tanh(a)


def evaluate(tree: ast.Expression, env: Env, index: Any) -> sp.Expr:
    """The claim's value at class ``index`` as a SymPy expression."""
    return fold(tree, _SympyAlgebra(env), index)
