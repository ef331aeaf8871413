"""Plain-text layout for terminals and text files: math and prose that fit a given number of columns.

A display is shown as SymPy's 2-D unicode art when it fits; otherwise the chain
``a = b = c`` is split into one row per ``= term``; a row whose art is still too
wide is written in the linear form (``p₁·(y₁ + y₂) − y₁``) and wrapped after a
``+`` or ``−``. Prose is wrapped at word boundaries. The notation is the one the
prose uses: ``p₁`` for a numbered class, ``p_i`` and ``δ_ij`` for an index, ``−``
for minus, ``·`` for a product.
"""

from __future__ import annotations

import re
import textwrap
import unicodedata
from collections.abc import Sequence
from typing import Any

import sympy as sp
from sympy.printing.pretty.pretty import PrettyPrinter
from sympy.printing.pretty.pretty_symbology import greek_unicode
from sympy.printing.pretty.stringpict import prettyForm
from sympy.printing.str import StrPrinter

from .model import Tex
from .texlayout import tidy_signs

_PRETTY = {"use_unicode": True, "wrap_line": False, "num_columns": 10_000}
MAX_ENTRIES = 36  # a larger matrix too wide to draw lists its first entries, ⋮ and its last
_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
_SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def cells(text: str) -> int:
    """Terminal columns ``text`` takes (wide East Asian characters 2, combining marks 0)."""
    n = 0
    for c in text:
        if unicodedata.combining(c):
            continue
        n += 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
    return n


def _index(index: Any) -> str:
    """A class index as the prose writes it: p₁ for a number, p_i for a letter."""
    text = str(index)
    return text.translate(_SUBSCRIPTS) if text.isdigit() else f"_{text}"


def _symbol(name: str) -> str:
    m = re.fullmatch(r"([A-Za-z]+?)(\d*)", name)
    if not m:
        return name
    base, digits = m.groups()
    return str(greek_unicode.get(base, base)) + digits.translate(_SUBSCRIPTS)


# --------------------------------------------------------------------------
# 2-D art
# --------------------------------------------------------------------------


class ArtPrinter(PrettyPrinter):  # type: ignore[misc]  # SymPy is untyped
    """SymPy's unicode pretty printer with the prose's names for indexed quantities and Kronecker deltas."""

    def __init__(self) -> None:
        super().__init__(_PRETTY)

    def _print_Indexed(self, expr: Any) -> prettyForm:
        return prettyForm(_symbol(str(expr.base)) + "".join(_index(i) for i in expr.indices))

    def _print_KroneckerDelta(self, expr: Any) -> prettyForm:
        return prettyForm("δ_" + "".join(str(a) for a in expr.args))


def art(item: Any) -> prettyForm:
    if isinstance(item, Tex):
        return prettyForm(item.plain)
    if isinstance(item, str):
        return prettyForm(item)
    return ArtPrinter()._print(tidy_signs(item))


def _art_lines(form: prettyForm) -> list[str]:
    text = str(form.render(wrap_line=False))
    # one notation: the prose's minus sign and product dot
    return [ln.rstrip().replace("-", "−").replace("⋅", "·") for ln in text.splitlines()]


def _join(forms: Sequence[prettyForm], sep: str = " = ") -> prettyForm:
    out = forms[0]
    for f in forms[1:]:
        out = prettyForm(*out.right(sep, f))
    return out


# --------------------------------------------------------------------------
# Linear form
# --------------------------------------------------------------------------


class LinearPrinter(StrPrinter):  # type: ignore[misc]  # SymPy is untyped
    """One-line unicode: p₁·(y₁ + y₂) − y₁, exp(z_j), Σ_k exp(z_k), δ_ij."""

    printmethod = "_xent_linear"  # not SymPy's _sympystr, which writes z[j]

    def _print_Symbol(self, expr: Any) -> str:
        return _symbol(expr.name)

    def _print_Indexed(self, expr: Any) -> str:
        return _symbol(str(expr.base)) + "".join(_index(i) for i in expr.indices)

    def _print_KroneckerDelta(self, expr: Any) -> str:
        return "δ_" + "".join(str(a) for a in expr.args)

    def _print_Sum(self, expr: Any) -> str:
        body = str(self._print(expr.function))
        if isinstance(expr.function, sp.Add):
            body = f"({body})"
        parts = []
        for var, lower, upper in expr.limits:
            if lower == 1 and isinstance(upper, sp.Symbol):
                parts.append(f"Σ_{var}")
            else:
                parts.append(f"Σ_({var}={self._print(lower)}..{self._print(upper)})")
        return " ".join(parts) + " " + body


def linear(item: Any) -> str:
    """The one-line unicode form of a math item."""
    if isinstance(item, Tex):
        return item.plain
    if isinstance(item, str):
        return item
    if isinstance(item, sp.MatrixBase):
        rows = ["[" + ", ".join(linear(item[i, j]) for j in range(item.cols)) + "]" for i in range(item.rows)]
        return "[" + ", ".join(rows) + "]"
    text = str(LinearPrinter({"order": None}).doprint(tidy_signs(item)))
    text = text.replace("**", "^").replace("*", "·").replace("-", "−")
    return re.sub(r"\^(\d+)(?!\d)", lambda m: m.group(1).translate(_SUPERSCRIPTS), text)


def split_linear(text: str, width: int, first: str, rest: str) -> list[str]:
    """``first + text`` in lines of at most ``width`` columns, broken before a ``+``/``−``/``=`` at the lowest
    parenthesis depth that makes the pieces fit, continued after ``rest`` (an indent)."""
    room = width - cells(rest)
    pieces = _pieces(text, max(8, room))
    lines: list[str] = []
    current = first
    for k, piece in enumerate(pieces):
        if k > 0 and cells(current) + 1 + cells(piece) > width:
            lines.append(current.rstrip())
            current = rest + piece
        else:
            current += (" " if k > 0 else "") + piece
    lines.append(current.rstrip())
    out: list[str] = []
    for ln in lines:  # a piece that could not be split any further is cut (never wider than the console)
        while cells(ln) > width:
            cut = _cut(ln, width)
            out.append(ln[:cut])
            ln = rest + ln[cut:].lstrip()
        out.append(ln)
    return out


def _cut(line: str, width: int) -> int:
    n = 0
    for k, c in enumerate(line):
        n += cells(c)
        if n > width:
            return max(1, k)
    return len(line)


def _pieces(text: str, room: int) -> list[str]:
    """``text`` split before operators at depth 0, then deeper, until every piece fits ``room`` columns."""
    pieces = [text]
    for depth in range(0, 8):
        if all(cells(p) <= room for p in pieces):
            break
        out: list[str] = []
        for p in pieces:
            out += _split_at_depth(p, depth) if cells(p) > room else [p]
        pieces = out
    return pieces


def _split_at_depth(text: str, depth: int) -> list[str]:
    """``text`` cut before each `` + ``, `` − ``, `` = `` and after each ``,`` at parenthesis depth ``depth``."""
    out, start, level = [], 0, 0
    for k, c in enumerate(text):
        if c in "([{":
            level += 1
        elif c in ")]}":
            level -= 1
        elif level == depth and k > start and text.startswith((" + ", " − ", " = "), k):
            out.append(text[start:k])
            start = k + 1
        elif level == depth and c == ",":
            out.append(text[start:k + 1])
            start = k + 1
    out.append(text[start:])
    return [p.strip() for p in out if p.strip()]


# --------------------------------------------------------------------------
# Displays and prose
# --------------------------------------------------------------------------


def math_lines(terms: Sequence[Any], note: str, width: int, indent: int = 4) -> list[str]:
    """The chain ``terms[0] = terms[1] = ...`` (and its note) in lines of at most ``width`` columns."""
    pad = " " * indent
    room = width - indent
    forms = [art(t) for t in terms]
    wide = [k for k, t in enumerate(terms) if isinstance(t, sp.MatrixBase) and forms[k].width() > room]
    if wide:  # the chain without the matrix, then the matrix entry by entry
        name = linear(terms[0]) if wide[0] > 0 else "M"
        rest = [t for k, t in enumerate(terms) if k not in wide]
        entries = math_lines(rest, note, width, indent) if len(rest) > 1 else []
        matrix = terms[wide[0]]
        cells_: list[tuple[int, int] | None] = [(i, j) for i in range(matrix.rows) for j in range(matrix.cols)]
        if len(cells_) > MAX_ENTRIES:
            cells_ = [*cells_[:4], None, cells_[-1]]
        for cell in cells_:
            if cell is None:
                entries.append(pad + "  ⋮")
                continue
            i, j = cell
            small = matrix.rows < 10 and matrix.cols < 10
            sub = f"{i + 1}{j + 1}".translate(_SUBSCRIPTS) if small else f"_({i + 1},{j + 1})"
            entries += math_lines([Tex("", name + sub), matrix[i, j]], "", width, indent)
        return entries
    whole = _join(forms)
    if note:
        with_note = prettyForm(*whole.right(f"   ({note})"))
        if with_note.width() <= room:
            return [pad + ln for ln in _art_lines(with_note)]
    lines: list[str] = []
    if whole.width() <= room:
        lines = [pad + ln for ln in _art_lines(whole)]
    else:
        lines = _rows(terms, forms, room, pad)
    if note:
        lines += wrap(f"({note})", width, pad, pad + " ")
    return lines


def _rows(terms: Sequence[Any], forms: Sequence[prettyForm], room: int, pad: str) -> list[str]:
    lhs = forms[0]
    aligned = lhs.width() <= room // 3
    lines: list[str] = []
    if aligned:  # lhs = t1, then '= t2' under the first '='
        cont = " " * (lhs.width() + 1)
        first_prefix: tuple[prettyForm, str] | None = (prettyForm(*lhs.right(" = ")), linear(terms[0]) + " = ")
    else:  # a wide left-hand side on rows of its own, then '= t1', '= t2', ...
        cont = "  "
        lines += _row_lines(terms[0], forms[0], None, "", room, pad, cont)
        first_prefix = None
    for n, term in enumerate(terms[1:], start=1):
        if n == 1 and first_prefix is not None:
            prefix_form, prefix_text = first_prefix
        else:
            prefix_form, prefix_text = prettyForm(cont + "= "), cont + "= "
        lines += _row_lines(term, forms[n], prefix_form, prefix_text, room, pad, cont + "    ")
    return lines


def _row_lines(term: Any, form: prettyForm, prefix_form: prettyForm | None, prefix_text: str, room: int,
               pad: str, cont: str) -> list[str]:
    row = prettyForm(*prefix_form.right(form)) if prefix_form is not None else form
    if row.width() <= room:
        return [pad + ln for ln in _art_lines(row)]
    return [pad + ln for ln in split_linear(linear(term), room, prefix_text, cont)]


def wrap(text: str, width: int, first: str = "", rest: str = "") -> list[str]:
    """Prose in lines of at most ``width`` columns, broken at spaces (a word longer than a line is cut)."""
    lines = textwrap.wrap(text, width=width, initial_indent=first, subsequent_indent=rest,
                          break_long_words=True, break_on_hyphens=False) or [first.rstrip()]
    out: list[str] = []
    for ln in lines:  # textwrap counts characters; a wide character takes two columns
        while cells(ln) > width:
            cut = _cut(ln, width)
            out.append(ln[:cut])
            ln = rest + ln[cut:]
        out.append(ln)
    return out


def unify_minus(text: str) -> str:
    """Prose with the minus signs of its formulas written as −, like the rest of the notation: ``(1 - p_i)``
    and ``-p_i`` become ``(1 − p_i)`` and ``−p_i``; hyphens in words (log-softmax), numbers such as 1e-12,
    options (--weight) and arrows (->) are left alone."""
    text = re.sub(r"(?<= )-(?= )", "−", text)
    return re.sub(r"(?<![\w\-])-(?=[\w(])", "−", text)
