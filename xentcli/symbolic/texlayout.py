r"""Display math that fits a page: LaTeX for a chain ``a = b = c`` broken into rows of a bounded width.

The documents (Markdown for GitHub, the LaTeX document) show each equation of a
derivation on one line when it fits, and otherwise as the rows of an
``aligned``/``align*`` block: one row per ``= term``, and a term that is still
too wide broken after a ``+`` or ``-`` of its top level (a long SymPy sum, or a
factor in parentheses, which is then opened with ``\biggl(`` on one row and
closed with ``\biggr)`` on a later one). Uniform sums of many terms, such as
``y_1 + y_2 + ... + y_{50}``, are abbreviated with ``\dots``.

Widths are estimated in em of the math font from the LaTeX text (glyph widths of
Computer Modern, as KaTeX and TeX use them; fractions, scripts and limits count
their widest part). The estimate only decides where to break; the tests measure
the result with KaTeX and with pdflatex.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sympy as sp
from sympy.printing.latex import LatexPrinter

from .model import Tex

LATEX_SETTINGS: dict[str, Any] = {"ln_notation": False}
EQ_WIDTH = 1.334  # " = " with TeX's thick spaces
BIN_WIDTH = 1.222  # " + " with medium spaces
CONTINUATION_INDENT = 1.0  # \quad

# Advance widths (em) of Computer Modern math italic letters, as in KaTeX's metrics.
_ITALIC = dict(zip(
    "abcdefghijklmnopqrstuvwxyz",
    (0.529, 0.429, 0.433, 0.52, 0.466, 0.49, 0.477, 0.576, 0.345, 0.412, 0.521, 0.298, 0.878, 0.6, 0.485,
     0.503, 0.446, 0.451, 0.469, 0.361, 0.572, 0.485, 0.716, 0.572, 0.49, 0.465),
))
_UPPER = 0.76
_COMMANDS = {
    r"\delta": 0.444, r"\sigma": 0.571, r"\varepsilon": 0.466, r"\epsilon": 0.406, r"\partial": 0.556,
    r"\ell": 0.417, r"\nabla": 0.833, r"\Sigma": 0.722, r"\alpha": 0.64, r"\top": 0.778, r"\checkmark": 0.833,
    r"\infty": 1.0, r"\|": 0.5, r"\dots": 1.172, r"\ldots": 1.172, r"\cdots": 1.5, r"\log": 1.45, r"\exp": 1.6,
    r"\lambda": 0.583, r"\mu": 0.603, r"\pi": 0.57, r"\tau": 0.437, r"\theta": 0.469,
}
_RELATIONS = {"=", "<", ">", r"\le", r"\ge", r"\leq", r"\geq", r"\in", r"\to", r"\approx", r"\ne", r"\neq",
              r"\mapsto", r"\equiv"}
_BINARY = {"+", "-", r"\cdot", r"\times", r"\odot", r"\pm"}
_SPACES = {r"\,": 0.167, r"\:": 0.222, r"\;": 0.278, r"\!": -0.167, r"\quad": 1.0, r"\qquad": 2.0, r"\ ": 0.333,
           "~": 0.333, r"\enspace": 0.5}
_TEXT_COMMANDS = {r"\text": 0.5, r"\mathrm": 0.5, r"\operatorname": 0.5, r"\texttt": 0.525, r"\textbf": 0.57,
                  r"\mathit": 0.5, r"\textit": 0.5, r"\mathbf": 0.57}
_ACCENTS = {r"\tilde", r"\hat", r"\bar", r"\vec", r"\widetilde", r"\overline"}
_BIG = {r"\bigl": 0.5, r"\bigr": 0.5, r"\Bigl": 0.6, r"\Bigr": 0.6, r"\biggl": 0.75, r"\biggr": 0.75,
        r"\Biggl": 0.9, r"\Biggr": 0.9, r"\big": 0.5, r"\Big": 0.6, r"\bigg": 0.75}
_CHARS = {"(": 0.389, ")": 0.389, "[": 0.278, "]": 0.278, ",": 0.445, ".": 0.278, "/": 0.5, "'": 0.275,
          "|": 0.278, "!": 0.278, ":": 0.278, ";": 0.445, "*": 0.5}
_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|[{}^_&]|\S")


def tex_width(tex: str, display: bool = True) -> float:
    """Estimated width in em of ``tex`` typeset as math (display style unless ``display`` is false)."""
    tokens = _TOKEN.findall(tex)
    width, _ = _run(tokens, 0, 1.0, display)
    return width


def _group(tokens: list[str], i: int) -> tuple[list[str], int]:
    """The tokens of the argument starting at ``i`` (a braced group or one token) and the index after it."""
    if i >= len(tokens):
        return [], i
    if tokens[i] != "{":
        return [tokens[i]], i + 1
    depth, j = 0, i
    while j < len(tokens):
        if tokens[j] == "{":
            depth += 1
        elif tokens[j] == "}":
            depth -= 1
            if depth == 0:
                return tokens[i + 1:j], j + 1
        j += 1
    return tokens[i + 1:], len(tokens)


def _env(tokens: list[str], i: int) -> tuple[list[str], int]:
    r"""The tokens between ``\begin{..}`` at ``i`` and its ``\end{..}``, and the index after it."""
    depth, j = 0, i
    while j < len(tokens):
        if tokens[j] == r"\begin":
            depth += 1
        elif tokens[j] == r"\end":
            depth -= 1
            if depth == 0:
                _, after = _group(tokens, j + 1)
                _, start = _group(tokens, i + 1)
                return tokens[start:j], after
        j += 1
    return tokens[i + 1:], len(tokens)


def _cells(tokens: list[str]) -> list[list[list[str]]]:
    r"""Rows of cells of an array body (split at ``\\`` and ``&`` outside groups)."""
    rows: list[list[list[str]]] = [[[]]]
    depth = 0
    for t in tokens:
        if t in ("{", r"\begin"):
            depth += 1
        elif t in ("}", r"\end"):
            depth -= 1
        if depth == 0 and t == r"\\":
            rows.append([[]])
        elif depth == 0 and t == "&":
            rows[-1].append([])
        else:
            rows[-1][-1].append(t)
    return rows


def _run(tokens: list[str], i: int, scale: float, display: bool) -> tuple[float, int]:
    total = 0.0
    prev = "start"  # kind of the previous atom: start, ord, op, bin, rel, open
    last_base = 0.0  # width of the last atom (for limits)
    script = {"^": 0.0, "_": 0.0}
    sub_scale = 0.7 if scale >= 1.0 else 0.5
    while i < len(tokens):
        t = tokens[i]
        i += 1
        if t in ("^", "_"):
            arg, i = _group(tokens, i)
            w = _run(arg, 0, sub_scale, False)[0]
            if prev == "op" and display:  # limits above and below a display sum
                extra = max(0.0, max(w, script["^" if t == "_" else "_"]) - last_base)
                total += extra - max(0.0, script["^" if t == "_" else "_"] - last_base)
            else:
                total += max(0.0, w - script["^" if t == "_" else "_"])
            script[t] = w
            continue
        script = {"^": 0.0, "_": 0.0}
        w, kind = 0.0, "ord"
        if t == "{":
            arg, i = _group(tokens, i - 1)
            w = _run(arg, 0, scale, display)[0]
        elif t in (r"\frac", r"\dfrac", r"\tfrac"):
            num, i = _group(tokens, i)
            den, i = _group(tokens, i)
            inner = scale if (display and t != r"\tfrac") or t == r"\dfrac" else sub_scale
            w = max(_run(num, 0, inner, False)[0], _run(den, 0, inner, False)[0]) + 0.24 * scale
        elif t in (r"\left", r"\right") or t in _BIG:
            _, i = _group(tokens, i)
            w = _BIG.get(t, 0.6) * scale
            kind = "open" if t in (r"\left", r"\bigl", r"\Bigl", r"\biggl", r"\Biggl") else "ord"
        elif t in (r"\sum", r"\prod"):
            w, kind = (1.444 if display else 1.0) * scale, "op"
        elif t in _TEXT_COMMANDS:
            arg, i = _group(tokens, i)
            w = _text_width(arg) * _TEXT_COMMANDS[t] * scale
            if t == r"\operatorname":
                kind = "op"
        elif t in _ACCENTS:
            arg, i = _group(tokens, i)
            w = _run(arg, 0, scale, display)[0]
        elif t == r"\sqrt":
            arg, i = _group(tokens, i)
            w = _run(arg, 0, scale, display)[0] + 0.85 * scale
        elif t == r"\begin":
            body, i = _env(tokens, i - 1)
            rows = _cells(body)
            ncols = max(len(r) for r in rows)
            cols = [max((_run(r[c], 0, scale, False)[0] for r in rows if c < len(r)), default=0.0)
                    for c in range(ncols)]
            w = sum(cols) + (ncols - 1) * 1.0 * scale
        elif t in _SPACES:
            w, kind = _SPACES[t] * scale, prev
        elif t in (r"\\", "&"):
            continue
        elif t in _RELATIONS:
            w, kind = (0.778 + (0.556 if scale >= 1.0 else 0.0)) * scale, "rel"
        elif t in _BINARY:
            unary = prev in ("start", "bin", "rel", "open", "op")
            w, kind = (0.778 + (0.0 if unary or scale < 1.0 else 0.444)) * scale, "ord" if unary else "bin"
        elif t in _COMMANDS:
            w = _COMMANDS[t] * scale
            kind = "op" if t in (r"\log", r"\exp") else "ord"
        elif t.startswith("\\"):
            w = 0.8 * scale
        elif t in _CHARS:
            w = _CHARS[t] * scale
            kind = "open" if t in "([" else "ord"
        elif t.isdigit():
            w = 0.5 * scale
        elif t.islower() and t.isascii():
            w = _ITALIC.get(t, 0.5) * scale
        elif t.isupper() and t.isascii():
            w = _UPPER * scale
        else:
            w = 0.6 * scale
        total += w
        last_base = w
        prev = kind
    return total, i


def _text_width(tokens: list[str]) -> float:
    """Characters of a text argument (inline math in it counted as characters too)."""
    n = 0.0
    for t in tokens:
        if t.startswith("\\") and len(t) > 2:
            n += 1.0
        elif t not in ("{", "}", "$"):
            n += len(t)
    return n


# --------------------------------------------------------------------------
# Chunks: pieces of a term with the places a row may break
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """A piece of a term. ``tex`` of every chunk but a term's first starts with a binary operator, or is the
    parenthesis of a product (``\\biggl(...``), whose ``lead`` (``\\cdot \\biggl(...``) is used when it starts a row."""

    tex: str
    lead: str = ""

    @property
    def width(self) -> float:
        return tex_width(self.tex)

    @property
    def starts_row(self) -> str:
        return self.lead or self.tex


class ChunkPrinter(LatexPrinter):  # type: ignore[misc]  # SymPy is untyped
    """SymPy's LaTeX printer (fixed settings), which also splits a sum into terms and abbreviates long uniform sums."""

    def __init__(self) -> None:
        super().__init__(LATEX_SETTINGS)

    def _print_Add(self, expr: Any, order: Any = None) -> str:
        terms = self._add_terms(expr, order)
        return "".join(("" if k == 0 else " ") + t for k, t in enumerate(terms))

    def _add_terms(self, expr: Any, order: Any = None) -> list[str]:
        """The printed terms of a sum, each but the first starting with ``+ `` or ``- ``; long uniform sums
        (more than 8 terms of one shape, e.g. y_1 + ... + y_50) as first two, ``\\dots`` and last."""
        terms = self._as_ordered_terms(expr, order=order)
        out = []
        for k, term in enumerate(terms):
            sign = ""
            if k > 0:
                if term.could_extract_minus_sign():
                    sign, term = "- ", -term
                else:
                    sign = "+ "
            tex = self._print(term)
            if self._needs_add_brackets(term):
                tex = rf"\left({tex}\right)"
            out.append(sign + tex)
        if len(out) > 8 and len({_shape(t) for t in out[1:]}) == 1:
            op = out[-1][:2]
            out = [*out[:2], op + r"\dots", out[-1]]
        return out

    def chunks(self, expr: Any, limit: float) -> list[Chunk]:
        """``expr`` as chunks a row may break between; pieces wider than ``limit`` are split further where a
        sum allows it."""
        if not isinstance(expr, (sp.Basic, sp.MatrixBase)):
            return [Chunk(str(expr))]
        whole = self._print(expr)
        if tex_width(whole) <= limit:
            return [Chunk(whole)]
        if isinstance(expr, sp.Add):
            return self._term_chunks(expr, limit) or [Chunk(whole)]
        if isinstance(expr, sp.Mul):
            return self._mul_chunks(expr, limit) or [Chunk(whole)]
        return [Chunk(whole)]

    def _term_chunks(self, expr: sp.Add, limit: float) -> list[Chunk] | None:
        """A sum as one chunk per term (a term wider than ``limit`` split further); None if abbreviated."""
        terms = self._as_ordered_terms(expr, order=None)
        printed = self._add_terms(expr)
        if len(printed) != len(terms):
            return None
        out: list[Chunk] = []
        for k, (term, tex) in enumerate(zip(terms, printed)):
            if tex_width(tex) <= limit:
                out.append(Chunk(tex))
                continue
            sign = tex[:2] if k > 0 else ""
            inner = self.chunks(-term if sign == "- " else term, limit)
            out.append(Chunk(sign + inner[0].tex))
            out += inner[1:]
        return out

    def _print_Symbol(self, expr: Any, style: str = "plain") -> str:
        # the prose's epsilon (label smoothing) is \varepsilon
        return str(super()._print_Symbol(expr, style)).replace(r"\epsilon", r"\varepsilon")

    def _mul_chunks(self, expr: sp.Mul, limit: float) -> list[Chunk] | None:
        r"""A product with a wide sum among its factors: ``coefficient \biggl( sum \biggr) rest``."""
        sign = ""
        if expr.could_extract_minus_sign():
            sign, expr = "- ", -expr
        num, den = sp.fraction(expr, exact=True)
        factors = list(sp.Mul.make_args(num))
        sums = [f for f in factors if isinstance(f, sp.Add)]
        if not sums:
            return None
        widest = max(sums, key=lambda f: tex_width(self._print(f)))
        rest = [f for f in factors if f is not widest]
        parts = []
        if den != 1:
            parts.append(rf"\frac{{1}}{{{self._print(den)}}}")
        if rest:
            parts.append(self._print(sp.Mul(*rest, evaluate=False)) if len(rest) > 1 else self._print(rest[0]))
        head = " ".join(parts)
        inner = self._term_chunks(widest, limit) or [Chunk(self._print(widest))]
        tall = any(r"\frac" in c.tex for c in inner)
        left, right = (r"\biggl(", r"\biggr)") if tall else (r"\bigl(", r"\bigr)")
        opening = f"{left}{inner[0].tex}"
        out = [Chunk(f"{sign}{head}".strip() or sign.strip()), Chunk(opening, rf"\cdot {opening}"), *inner[1:]]
        if not head:  # nothing before the parenthesis: it opens the term
            out = [Chunk(f"{sign}{opening}".strip()), *inner[1:]]
        last = out[-1]
        out[-1] = Chunk(last.tex + right, last.lead + right if last.lead else "")
        return out


def _shape(term: str) -> str:
    """A printed term with its numbers blanked: terms of one shape differ only in their indices."""
    return re.sub(r"\d+", "#", term)


_PRINTER = ChunkPrinter()


def tidy_signs(expr: Any) -> Any:
    """``-Sum(-f)`` written as ``Sum(f)``: SymPy's .doit() leaves such double signs (−Σ −(...)) in its results;
    the value is the same, and only the printed form changes."""
    if not isinstance(expr, sp.Basic):
        return expr

    def double(e: Any) -> bool:
        return (isinstance(e, sp.Mul) and len(e.args) == 2 and e.args[0] == -1 and isinstance(e.args[1], sp.Sum)
                and e.args[1].function.could_extract_minus_sign())

    return expr.replace(double, lambda e: sp.Sum(-e.args[1].function, *e.args[1].limits))


def latex(item: Any) -> str:
    """LaTeX of a math item (a :class:`Tex`, a SymPy object or a string), on one line."""
    if isinstance(item, Tex):
        return item.latex
    if isinstance(item, str):
        return item
    return str(_PRINTER.doprint(tidy_signs(item)))


def tex_chunks(tex: str) -> list[Chunk]:
    r"""A LaTeX term split before each `` + ``/`` - `` of its top level (outside braces, parentheses, brackets
    and ``\left..\right``)."""
    out: list[str] = []
    depth = 0
    start = 0
    for m in re.finditer(r"\\left\b|\\right\b|\\[A-Za-z]+|\\.|[{}()\[\]]| [+-] ", tex):
        t = m.group()
        if t in (r"\left", "{", "(", "["):
            depth += 1
        elif t in (r"\right", "}", ")", "]"):
            depth -= 1
        elif t in (" + ", " - ") and depth == 0 and m.start() > start:
            out.append(tex[start:m.start()].strip())
            start = m.start() + 1
    out.append(tex[start:].strip())
    return [Chunk(t) for t in out if t]


_VERBATIM = re.compile(r"\\texttt\{(.*)\}\Z")


def item_chunks(item: Any, limit: float) -> list[Chunk]:
    """A math item as chunks a row may break between, each (where possible) at most ``limit`` em wide."""
    if isinstance(item, Tex) or isinstance(item, str):
        text = item.latex if isinstance(item, Tex) else item
        if tex_width(text) <= limit:
            return [Chunk(text)]
        verbatim = _VERBATIM.match(text)
        if verbatim and "}" not in verbatim.group(1).replace(r"\}", ""):
            return [Chunk(r"\texttt{" + piece + "}") for piece in _split_verbatim(verbatim.group(1), limit)]
        return tex_chunks(text)
    return _PRINTER.chunks(tidy_signs(item), limit)


def _split_verbatim(text: str, limit: float) -> list[str]:
    r"""Typewriter text (a claim as it was typed) cut after an operator, a comma or a space into pieces of at
    most ``limit`` em; never inside a TeX escape such as ``\_``."""
    most = max(8, int(limit / 0.525))
    pieces: list[str] = []
    start, last_break = 0, 0
    for k, c in enumerate(text):
        if c in "+-*/, (" and (k == 0 or text[k - 1] != "\\"):
            last_break = k + 1
        if k + 1 - start > most and last_break > start:
            pieces.append(text[start:last_break])
            start = last_break
    pieces.append(text[start:])
    return [p for p in pieces if p]


# --------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------


def chain_rows(terms: Sequence[Any], limit: float, note: str = "", note_width: float = 0.0) -> list[str]:
    r"""The chain ``terms[0] = terms[1] = ...`` as rows for ``aligned``/``align*``, each estimated at most
    ``limit`` em wide; a single row (no ``&``) when the whole chain fits on one line.

    With a short left-hand side the rows align at its ``=`` (``lhs &= t1``, ``&= t2``); with a long one every
    row starts at the left (``& lhs``, ``&= t1``). A term too wide for a row continues on the next, indented,
    after a ``+`` or ``-``. ``note`` (LaTeX, e.g. ``\qquad\text{(for every j)}``) ends the last row if it fits
    there, else it is a row of its own.
    """
    whole = " = ".join(latex(t) for t in terms)
    if tex_width(whole) + note_width <= limit:
        return [whole + note]
    lhs = latex(terms[0])
    lhs_w = tex_width(lhs)
    aligned = lhs_w <= 0.3 * limit
    offset = lhs_w if aligned else 0.0
    rows: list[str] = []
    if aligned:  # the first row holds 'lhs = terms[1]'
        current, current_w = lhs + " &= ", lhs_w + EQ_WIDTH
    else:
        current, current_w = "& ", 0.0
    for n, term in enumerate(terms):
        if n == 0 and aligned:
            continue
        if n >= (2 if aligned else 1):  # every further '= term' starts a row
            rows.append(current.rstrip())
            current, current_w = "&= ", offset + EQ_WIDTH
        room = limit - offset - EQ_WIDTH - CONTINUATION_INDENT
        for k, piece in enumerate(item_chunks(term, room)):
            w = piece.width
            if k > 0 and current_w + w > limit:
                rows.append(current.rstrip())
                lead = piece.starts_row
                current, current_w = r"& \quad " + lead + " ", offset + CONTINUATION_INDENT + tex_width(lead)
                continue
            current += piece.tex + " "
            current_w += w
    row = current.rstrip()
    if note and current_w + note_width <= limit:
        rows.append(row + note)
    else:
        rows.append(row)
        if note:
            rows.append("& " + note.strip())
    if len(rows) == 1:  # nothing to align: one (too wide) row
        return [rows[0].replace(" &= ", " = ", 1).removeprefix("& ").removeprefix("&= ")]
    return rows


def rows_width(rows: Sequence[str]) -> float:
    """The estimated width of the widest row."""
    return max(tex_width(r.replace("&", "")) for r in rows)


# --------------------------------------------------------------------------
# Matrices too wide for a row: a summary and an entrywise table
# --------------------------------------------------------------------------

MAX_ENTRIES = 36  # a larger matrix lists its first entries, \dots and its last


def matrix_fits(matrix: Any, limit: float) -> bool:
    return tex_width(latex(matrix)) <= limit


def display_rows(terms: Sequence[Any], limit: float, note: str = "", note_width: float = 0.0) -> list[str]:
    r"""Rows of a display (see :func:`chain_rows`). A matrix in the chain that is too wide for a row is
    replaced by its name, and its entries follow as rows ``J_{12} &= ...`` (broken like any other term)."""
    wide = [k for k, t in enumerate(terms) if isinstance(t, sp.MatrixBase) and not matrix_fits(t, limit)]
    if not wide:
        return chain_rows(terms, limit, note, note_width)
    name = latex(terms[0]) if wide[0] > 0 else "M"
    summary = [t for k, t in enumerate(terms) if k not in wide]
    rows = _aligned(chain_rows(summary, limit, note, note_width)) if len(summary) > 1 else []
    matrix = terms[wide[0]]
    cells: list[tuple[int, int] | None] = [(i, j) for i in range(matrix.rows) for j in range(matrix.cols)]
    if len(cells) > MAX_ENTRIES:
        cells = [*cells[:4], None, cells[-1]]
    for cell in cells:
        if cell is None:
            rows.append(r"& \;\;\vdots")
            continue
        i, j = cell
        sub = f"{i + 1}{j + 1}" if matrix.rows < 10 and matrix.cols < 10 else f"{i + 1},{j + 1}"
        base = name if re.fullmatch(r"[A-Za-z]", name) else f"{{{name}}}"
        rows += _aligned(chain_rows([Tex(f"{base}_{{{sub}}}", ""), matrix[i, j]], limit))
    return rows


def _aligned(rows: list[str]) -> list[str]:
    """Rows of an aligned block: a single row ``a = b`` becomes ``a &= b``."""
    if len(rows) == 1 and "&" not in rows[0].replace(r"\&", ""):
        lhs, eq, rhs = rows[0].partition(" = ")
        return [f"{lhs} &= {rhs}" if eq else f"& {rows[0]}"]
    return rows
