"""Reading ``xent derive``'s JSON strings as a user would: parse, then substitute the definitions.

For a concrete C the loss, gradient and Jacobian strings use the names of the
``definitions`` map (p1..pC or sigma1..sigmaC, S, s); each definition uses
only names listed after it, so substituting them one by one, in the listed
order, leaves expressions in the logits, targets and options alone. This is
written from the JSON's documented contract, not from xentcli's code.
"""

from __future__ import annotations

from typing import Any

import sympy as sp


def definitions(doc: Any) -> list[tuple[sp.Symbol, str]]:
    """The (name, text) pairs of a JSON document (a dict) or a Derivation, in their listed order."""
    defs = doc["definitions"] if isinstance(doc, dict) else doc.definitions
    return [(sp.Symbol(k), v) for k, v in defs.items()]


def expand(expr: sp.Expr, doc: Any, parse: Any = None) -> sp.Expr:
    """``expr`` with every definition of ``doc`` substituted in the listed order."""
    parse = parse or sp.parse_expr
    for name, text in definitions(doc):
        expr = expr.xreplace({name: parse(text)})
    return expr


def parsed(text: str, doc: Any, parse: Any = None) -> sp.Expr:
    """One JSON string, parsed and with the definitions substituted."""
    parse = parse or sp.parse_expr
    return expand(parse(text), doc, parse)
