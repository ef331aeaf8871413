r"""Plain-unicode prose (check statements, notes, methods) as ASCII LaTeX text.

The derivation's prose is written once, in unicode (``∂p_i/∂z_j = δ_ij p_i −
p_i p_j for every 1 ≤ j ≤ C``). For the LaTeX document each word that holds
mathematics becomes inline math (``$\partial p_{i}/\partial z_{j}$``), a
Python name with underscores becomes ``\texttt{cross\_entropy}``, and the rest
is escaped text. The result is pure ASCII, so pdfLaTeX and LuaLaTeX read it
alike with no input encoding, font encoding or Unicode font set up.
"""

from __future__ import annotations

import re
import unicodedata

# Unicode in math words -> LaTeX math.
MATH = {
    "∂": r"\partial ", "Σ": r"\Sigma ", "∑": r"\sum ", "δ": r"\delta ", "ε": r"\varepsilon ", "σ": r"\sigma ",
    "ỹ": r"\tilde{y}", "ℓ": r"\ell ", "‖": r"\|", "⊙": r"\odot ", "→": r"\to ", "≤": r"\le ", "≥": r"\ge ",
    "∈": r"\in ", "ᵀ": r"^{\top}", "−": "-", "·": r"\cdot ", "⋅": r"\cdot ", "…": r"\dots ", "∇": r"\nabla ",
    "×": r"\times ", "ℯ": "e", "²": "^{2}", "³": "^{3}", "≠": r"\ne ", "≈": r"\approx ", "∞": r"\infty ",
    "λ": r"\lambda ", "μ": r"\mu ", "π": r"\pi ", "τ": r"\tau ", "θ": r"\theta ", "α": r"\alpha ",
    "{": r"\{", "}": r"\}", "%": r"\%", "#": r"\#", "&": r"\&", "$": r"\$", "~": r"\sim ", "\\": r"\backslash ",
}
_SUBSCRIPT_DIGITS = {chr(0x2080 + d): str(d) for d in range(10)}
# Unicode in text -> LaTeX text.
TEXT = {
    "—": "---", "–": "--", "’": "'", "‘": "`", "“": "``", "”": "''", "…": r"\dots{}", "✓": r"$\checkmark$",
    "✗": r"$\times$", "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "$": r"\$", "^": r"\textasciicircum{}", "~": r"\textasciitilde{}", "<": r"\textless{}",
    ">": r"\textgreater{}", "|": r"\textbar{}", "\u00a0": "~",
}
_MATH_MARK = set(MATH) - set("{}%#&$~\\") | set(_SUBSCRIPT_DIGITS) | {"_", "^"}
_CODE = re.compile(r"([A-Za-z][A-Za-z0-9]*)((?:_[A-Za-z0-9]+)+)")
_BREAK_AFTER = set("*+-/,(=")
_OPERATORS = {"=", "−", "-", "+", "·", "≤", "≥", "→", "∈", "<", ">", "<=", ">=", "->", "/"}
_NEUTRAL = re.compile(r"[(\[]*(?:[A-Za-z]|[0-9]+(?:[./][0-9]+)?)[)\],]*")
_TRAIL = re.compile(r"[.,;:!?]+\Z")


def tex_prose(text: str) -> str:
    r"""Prose with inline math for the LaTeX document (ASCII only).

    Words are split at spaces. A word with mathematics in it (a subscript, a unicode math sign), an operator,
    and the single letters and numbers next to them form one inline formula: ``for every 1 ≤ j ≤ C`` becomes
    ``for every $1 \le j \le C$``.
    """
    words = text.split(" ")
    kinds = [_kind(w) for w in words]
    out: list[str] = []
    k = 0
    while k < len(words):
        if kinds[k] not in ("math", "op") and not (kinds[k] == "neutral" and _touches_math(kinds, k)):
            out.append(_plain_word(words[k]))
            k += 1
            continue
        j = k
        while j < len(words) and (kinds[j] in ("math", "op") or (kinds[j] == "neutral" and _touches_math(kinds, j))):
            j += 1
        if not any(kinds[m] in ("math", "op") for m in range(k, j)):
            out.append(_plain_word(words[k]))
            k += 1
            continue
        phrase = " ".join(words[k:j])
        trail = _TRAIL.search(phrase)
        tail = ""
        if trail:
            phrase, tail = phrase[:trail.start()], trail.group()
        out.append("$" + _math(phrase) + "$" + _text(tail))
        k = j
    return " ".join(out)


def _kind(word: str) -> str:
    core = _TRAIL.sub("", word)
    if not core:
        return "text"
    if _is_code(core.strip("()'\"")):
        return "code"
    if core in _OPERATORS:
        return "op"
    if any(c in _MATH_MARK for c in core):
        return "math"
    if _NEUTRAL.fullmatch(core):
        return "neutral"
    return "text"


def _touches_math(kinds: list[str], k: int) -> bool:
    """A letter or number belongs to a formula when an operator or a math word stands right next to it."""
    return any(0 <= m < len(kinds) and kinds[m] in ("op", "math") for m in (k - 1, k + 1))


def _is_code(word: str) -> bool:
    """A Python name such as cross_entropy or n_samples (not a subscript such as p_i or δ_ij)."""
    m = _CODE.fullmatch(word)
    if not m:
        return False
    parts = m.group(2).split("_")[1:]
    return len(m.group(1)) >= 2 and any(len(p) >= 2 for p in parts) or any(len(p) >= 3 for p in parts)


def _plain_word(word: str) -> str:
    core = word.strip("()'\".,;:")
    if core and _is_code(core):
        before, after = word.split(core, 1)
        return _text(before) + r"\texttt{" + _text(core) + "}" + _text(after)
    return _breakable(_text(word)) if len(word) > 24 else _text(word)


def _math(word: str) -> str:
    out = []
    k = 0
    while k < len(word):
        c = word[k]
        if c in ("_", "^") and k + 1 < len(word):
            if word[k + 1] == "(":  # y_(C−1): the subscript in parentheses
                depth, j = 0, k + 1
                while j < len(word):
                    depth += {"(": 1, ")": -1}.get(word[j], 0)
                    if depth == 0:
                        break
                    j += 1
                out.append(c + "{" + _math(word[k + 2:j]) + "}")
                k = j + 1
                continue
            m = re.match(r"[A-Za-z0-9]+", word[k + 1:])
            if m:
                out.append(c + "{" + m.group() + "}")
                k += 1 + m.end()
                continue
            out.append(r"\_" if c == "_" else r"\^{}")
            k += 1
            continue
        if c in _SUBSCRIPT_DIGITS:
            digits = ""
            while k < len(word) and word[k] in _SUBSCRIPT_DIGITS:
                digits += _SUBSCRIPT_DIGITS[word[k]]
                k += 1
            out.append("_{" + digits + "}")
            continue
        if c.isascii() and c.isalpha():
            run = re.match(r"[A-Za-z]+", word[k:])
            assert run is not None
            name = run.group()
            if name in ("exp", "log"):
                out.append("\\" + name + " ")
            elif len(name) >= 3:  # a word inside a formula, e.g. (the per-sample gradient)/N
                out.append(r"\mathrm{" + name + "}")
            else:
                out.append(name)
            k += len(name)
            continue
        out.append(MATH.get(c, c if c.isascii() else _ascii_fallback(c)))
        k += 1
    return "".join(out).strip()


def _text(text: str) -> str:
    out = []
    for c in text:
        if c in TEXT:
            out.append(TEXT[c])
        elif c in MATH and not c.isascii():
            out.append("$" + MATH[c].strip() + "$")
        elif c in _SUBSCRIPT_DIGITS:
            out.append("$_{" + _SUBSCRIPT_DIGITS[c] + "}$")
        elif c.isascii():
            out.append(c)
        else:
            out.append(_ascii_fallback(c))
    return "".join(out)


def _breakable(tex: str) -> str:
    r"""A long word (a claim, a counterexample) with ``\allowbreak`` after operators and commas."""
    return "".join(c + (r"\allowbreak{}" if c in _BREAK_AFTER else "") for c in tex)


def _ascii_fallback(c: str) -> str:
    """A letter with an accent as its base letter; anything else as '?'."""
    base = "".join(ch for ch in unicodedata.normalize("NFKD", c) if ch.isascii() and ch.isprintable())
    return base or "?"
