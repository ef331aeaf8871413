"""Render a :class:`~xentcli.symbolic.model.Derivation` as Markdown, LaTeX, JSON or plain text.

Output is deterministic (no timestamps, fixed printer settings and widths),
and every document starts with the exact command that produced it, which
``xent derive --check`` reads back to regenerate and compare the file.
"""

from __future__ import annotations

import json
import re
from typing import Any

import sympy as sp

from .header import HEADER, read_header  # noqa: F401 - read_header: this module's name for it since the start
from .model import Block, Check, Derivation, Equation, MatrixDisplay, Para, Tex
from .texlayout import display_rows, latex
from .texprose import tex_prose
from .textlayout import cells, linear, math_lines, unify_minus, wrap

FORMATS = ("markdown", "latex", "json", "text")


def render(derivation: Derivation, fmt: str) -> str:
    if fmt == "markdown":
        return to_markdown(derivation)
    if fmt == "latex":
        return to_latex(derivation)
    if fmt == "json":
        return to_json(derivation)
    if fmt == "text":
        return to_text(derivation)
    raise ValueError(f"unknown format {fmt!r}")


def verdict_line(d: Derivation) -> str:
    checks = d.checks
    passed = sum(c.passed for c in checks)
    if d.verified:
        return f"Verdict: proved ({passed} of {len(checks)} checks pass)"
    failed = ", ".join(c.name for c in d.failed)
    return f"Verdict: NOT proved ({len(checks) - passed} of {len(checks)} checks fail: {failed})"


# --------------------------------------------------------------------------
# LaTeX pieces (shared by Markdown and the LaTeX document)
# --------------------------------------------------------------------------

# How wide a display may be, in em of the math font, as estimated by texlayout.tex_width. Markdown: GitHub
# draws math at about 20 px per em, so 40 em keeps a display under 900 px with room for the estimate's
# error (the tests measure it with KaTeX). LaTeX: the article class's text is 345 pt = 34.5 em wide.
MARKDOWN_WIDTH_EM = 40.0
LATEX_WIDTH_EM = 30.0


def _tex(item: Any) -> str:
    return latex(item)


def _para_md(p: Para) -> str:
    out = []
    for part in p.parts:
        if isinstance(part, str):
            out.append(_md_text(part))
        else:
            out.append(f"${_tex(part)}$")
    return "".join(out)


def _md_text(text: str) -> str:
    """Prose for Markdown: characters that GitHub would read as emphasis, math or HTML are escaped."""
    for a, b in (("\\", "\\\\"), ("*", r"\*"), ("$", r"\$"), ("<", "&lt;"), ("`", r"\`")):
        text = text.replace(a, b)
    return text


def _para_latex(p: Para) -> str:
    out = []
    for part in p.parts:
        if isinstance(part, str):
            out.append(tex_prose(part))
        else:
            out.append(f"${_tex(part)}$")
    return "".join(out)


def _chain(block: Equation | MatrixDisplay) -> tuple[Any, ...]:
    if isinstance(block, MatrixDisplay):
        return (block.name, block.matrix, *block.equals)
    return block.terms


def _check_md(c: Check) -> str:
    mark = "✓" if c.passed else "✗ **FAILED**"
    detail = f" — {_md_text(c.detail)}" if c.detail else ""
    return f"- {mark} `{c.name}`: {_md_text(c.statement)}{detail}  \n  <sub>method: {_md_text(c.method)}</sub>"


# --------------------------------------------------------------------------
# Markdown (GitHub renders $...$ and $$...$$)
# --------------------------------------------------------------------------


def to_markdown(d: Derivation) -> str:
    lines = [f"<!-- {HEADER}{d.command} -->", f"# {_md_text(d.title)}", "", f"**{verdict_line(d)}**", ""]
    if d.assumptions:
        lines += [f"Assumption: ${' ; '.join(_assumption_tex(a) for a in d.assumptions)}$", ""]
    for n, step in enumerate(d.steps, start=1):
        lines += [f"## {n}. {_md_text(step.title)}", ""]
        for block in step.blocks:
            lines += _block_md(block)
        if step.checks:
            lines += [_check_md(c) for c in step.checks]
            lines.append("")
    lines += ["## Checks", "", "| check | result | statement | method |", "|---|---|---|---|"]
    for c in d.checks:
        cell = _md_text(c.statement + (f" — {c.detail}" if c.detail else "")).replace("|", r"\|")
        method = _md_text(c.method).replace("|", r"\|")
        mark = "✓" if c.passed else "✗"
        lines.append(f"| `{c.name}` | {mark} | {cell} | {method} |")
    lines.append("")
    return "\n".join(lines)


_SUM_ASSUMPTION = re.compile(r"Sum\(([a-z])\[([a-z])\], \(\2, 1, ([A-Za-z])\)\)\Z")
_INDEXED_SYMBOL = re.compile(r"([a-z])(\d+)\Z")
_LONGEST_SUM = 6  # terms written out before a sum is abbreviated with \dots


def _assumption_tex(a: str) -> str:
    """LaTeX for the assumptions the derivations state (``y1 + y2 = 1``, ``Sum(y[k], (k, 1, C)) = 1``).

    Formatted by pattern, not parsed: nothing here is handed to SymPy's parser (which evaluates).
    A sum of more than six terms is written ``y_1 + y_2 + \\dots + y_C``. Anything else is shown as written.
    """
    lhs, eq, rhs = a.partition("=")
    lhs = lhs.strip()
    m = _SUM_ASSUMPTION.match(lhs)
    if eq and m:
        base, k, upper = m.groups()
        return rf"\sum_{{{k}=1}}^{{{upper}}} {{{base}}}_{{{k}}} = {rhs.strip()}"
    terms = [_INDEXED_SYMBOL.match(t.strip()) for t in lhs.split("+")]
    matched = [t for t in terms if t is not None]
    if eq and len(matched) == len(terms):
        shown = [f"{t.group(1)}_{{{t.group(2)}}}" for t in matched]
        if len(shown) > _LONGEST_SUM:
            shown = [*shown[:2], r"\dots", shown[-1]]
        return " + ".join(shown) + f" = {rhs.strip()}"
    return _verbatim_tex(a)


def _verbatim_tex(text: str) -> str:
    r"""Text as it is written, inside math: ``\texttt{...}`` with TeX's special characters escaped."""
    out = text
    for a, b in (("\\", r"\backslash "), ("{", r"\{"), ("}", r"\}"), ("_", r"\_"), ("^", r"\hat{}"),
                 ("%", r"\%"), ("#", r"\#"), ("&", r"\&"), ("$", r"\$"), ("~", r"\sim ")):
        out = out.replace(a, b)
    return r"\texttt{" + out + "}"


def _block_md(block: Block) -> list[str]:
    if isinstance(block, Para):
        return [_para_md(block), ""]
    if isinstance(block, (Equation, MatrixDisplay)):
        rows = display_rows(_chain(block), MARKDOWN_WIDTH_EM)
        if len(rows) == 1:
            out = ["$$", rows[0], "$$"]
        else:
            out = ["$$", r"\begin{aligned}", *(r + r" \\" for r in rows[:-1]), rows[-1], r"\end{aligned}", "$$"]
        if isinstance(block, Equation) and block.note:
            out.append(f"<sub>{_md_text(block.note)}</sub>")
        return out + [""]
    raise TypeError(block)


# --------------------------------------------------------------------------
# LaTeX document
# --------------------------------------------------------------------------

LATEX_PREAMBLE = (
    r"\documentclass{article}",
    r"\usepackage{amsmath,amssymb}",
    r"\allowdisplaybreaks",
    r"\sloppy",
    r"\begin{document}",
)


def to_latex(d: Derivation) -> str:
    """A complete document, ASCII only, that pdfLaTeX and LuaLaTeX compile with the basic TeX Live packages."""
    lines = [
        f"% {HEADER}{d.command}",
        *LATEX_PREAMBLE,
        rf"\section*{{{tex_prose(d.title)}}}",
        rf"\textbf{{{tex_prose(verdict_line(d))}}}",
        "",
    ]
    if d.assumptions:
        lines += [rf"Assumption: ${' ; '.join(_assumption_tex(a) for a in d.assumptions)}$", ""]
    for n, step in enumerate(d.steps, start=1):
        lines.append(rf"\subsection*{{{n}. {tex_prose(step.title)}}}")
        for block in step.blocks:
            if isinstance(block, Para):
                lines += [_para_latex(block), ""]
            else:
                lines += _display_latex(block)
        if step.checks:
            lines.append(r"\begin{itemize}")
            for c in step.checks:
                mark = r"$\checkmark$" if c.passed else r"\textbf{FAILED}"
                detail = f" --- {tex_prose(c.detail)}" if c.detail else ""
                lines.append(rf"\item {mark} \texttt{{{_tt(c.name)}}}: {tex_prose(c.statement)}{detail}")
            lines.append(r"\end{itemize}")
        lines.append("")
    lines.append(r"\end{document}")
    return "\n".join(lines) + "\n"


def _tt(text: str) -> str:
    return text.replace("_", r"\_")


def _display_latex(block: Equation | MatrixDisplay) -> list[str]:
    note, note_width = "", 0.0
    if isinstance(block, Equation) and block.note:
        note = rf"\qquad \text{{({tex_prose(block.note)})}}"
        note_width = 2.0 + 0.5 * (len(block.note) + 2)
    rows = display_rows(_chain(block), LATEX_WIDTH_EM, note, note_width)
    if len(rows) == 1:
        return [r"\begin{equation*}", rows[0], r"\end{equation*}"]
    return [r"\begin{align*}", *(r + r" \\" for r in rows[:-1]), rows[-1], r"\end{align*}"]


# --------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------


def to_json(d: Derivation) -> str:
    concrete = isinstance(d.classes, int)
    doc: dict[str, Any] = {
        "generated_by": d.command,
        "title": d.title,
        "classes": d.classes,
        "variant": d.loss,
        "options": d.options,
        "verified": d.verified,
        "assumptions": d.assumptions,
        "symbols": d.symbols,
        "parse": (
            "each expression parses with sympy.parse_expr(s) over the symbols z1..zC, y1..yC (and w1..wC, "
            "q1..qC, epsilon, mask, n_samples, w_total, rest where used) and the names in 'definitions' "
            "(p1..pC or sigma1..sigmaC, Z, s); substitute the definitions in the order listed (each uses only "
            "names listed after it), or derive with --expand for strings in the logits alone"
            if concrete
            else "each expression parses with sympy.parse_expr(s, local_dict={name: sympy.IndexedBase(name) for "
            "name in ('z', 'y', 'w', 'q')}); the number of classes, the indices i, j, k and epsilon, mask, "
            "n_samples, w_total, rest are plain symbols; 'gradient' is the generic entry j and 'jacobian' the "
            "generic entry (i, j)"
        ),
        "loss": d.loss_expr,
        "gradient": d.gradient,
        "gradient_assuming": d.gradient_assuming,
        "jacobian_of": d.jacobian_of,
        "jacobian": d.jacobian,
        "definitions": d.definitions,
        "checks": [c.as_dict() for c in d.checks],
        "steps": [{"title": s.title, "text": [_plain_block(b) for b in s.blocks]} for s in d.steps],
    }
    if d.problem.claim is not None:  # the claim's counterexample (null when proved or not decided)
        claim = next((c for c in d.checks if c.name == "claim"), None)
        doc["counterexample"] = claim.data.get("counterexample") if claim is not None else None
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------
# Plain text (also what the terminal view prints)
# --------------------------------------------------------------------------


def plain(item: Any) -> str:
    """One-line plain form of a math item."""
    if isinstance(item, Tex):
        return item.plain
    if isinstance(item, str):
        return item
    return str(sp.sstr(item))


def _plain_block(block: Block) -> str:
    if isinstance(block, Para):
        return "".join(p if isinstance(p, str) else plain(p) for p in block.parts)
    if isinstance(block, Equation):
        return " = ".join(plain(t) for t in block.terms) + (f"   ({block.note})" if block.note else "")
    if isinstance(block, MatrixDisplay):
        return " = ".join([plain(block.name), sp.sstr(block.matrix), *(plain(t) for t in block.equals)])
    raise TypeError(block)


TEXT_WIDTH = 80  # columns of --format text (a document: the same for every terminal)
TEXT_MARKS = ("[ok]", "[FAILED]")


def _linear_para(block: Para) -> str:
    """A paragraph on one line; the spaces inside its formulas are no-break spaces (see :func:`_wrap_para`)."""
    return "".join(unify_minus(p) if isinstance(p, str) else linear(p).replace(" ", NBSP) for p in block.parts)


NBSP = "\u00a0"


def _wrap_para(block: Para, width: int) -> list[str]:
    """A paragraph wrapped at the spaces of its prose: a short formula stays on one line."""
    return [ln.replace(NBSP, " ") for ln in wrap(_linear_para(block), width)]


def text_blocks(
    d: Derivation, width: int = TEXT_WIDTH, marks: tuple[str, str] = TEXT_MARKS
) -> list[tuple[str, list[str]]]:
    """The document as (kind, lines) pairs, every line at most ``width`` columns: title, verdict, heading,
    para, math, check-ok, check-fail. A check's first line starts with two spaces and its mark."""
    out: list[tuple[str, list[str]]] = [("title", wrap(d.title, width)), ("verdict", wrap(verdict_line(d), width))]
    for n, step in enumerate(d.steps, start=1):
        out.append(("heading", wrap(f"{n}. {step.title}", width)))
        for block in step.blocks:
            if isinstance(block, Para):
                out.append(("para", _wrap_para(block, width)))
            else:
                note = unify_minus(block.note) if isinstance(block, Equation) else ""
                out.append(("math", math_lines(_chain(block), note, width)))
        for c in step.checks:
            detail = f" — {c.detail}" if c.detail else ""
            mark = marks[0] if c.passed else marks[1]
            first = f"  {mark} "
            out.append(("check-ok" if c.passed else "check-fail",
                        wrap(f"{c.name}: {c.statement}{detail}", width, first, " " * cells(first))))
    return out


def to_text(d: Derivation, width: int = TEXT_WIDTH) -> str:
    """Plain text in lines of at most ``width`` columns (but the first: the command that made the file)."""
    lines = [f"# {HEADER}{d.command}"]
    for kind, block in text_blocks(d, width):
        rule = min(max(cells(ln) for ln in block), width)
        if kind == "title":
            lines += [*block, "=" * rule]
        elif kind == "verdict":
            lines += [*block, ""]
        elif kind == "heading":
            lines += ["", *block, "-" * rule]
        elif kind == "math":
            lines += ["", *block, ""]
        else:
            lines += block
    return "\n".join(lines) + "\n"
