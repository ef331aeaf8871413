"""The rich terminal view of a derivation: every line fits the console's width."""

from __future__ import annotations

from typing import Any


def print_derivation(derivation: Any, file: Any = None, width: int | None = None) -> None:
    from rich.console import Console
    from rich.text import Text

    from ..symbolic.documents import text_blocks

    console = Console(file=file, highlight=False, width=width)
    columns = max(20, console.width)

    def line(text: str, style: str = "") -> None:
        console.print(Text(text, style=style), no_wrap=True, overflow="ignore", crop=False)

    for kind, lines in text_blocks(derivation, columns, ("✓", "✗")):
        if kind == "title":
            if len(lines) == 1 and len(lines[0]) + 4 <= columns:
                console.rule(Text(lines[0], style="bold"))
            else:
                for ln in lines:
                    line(ln, "bold")
                console.rule()
        elif kind == "verdict":
            for ln in lines:
                line(ln, "bold green" if derivation.verified else "bold red")
        elif kind == "heading":
            console.print()
            for ln in lines:
                line(ln, "bold cyan")
        elif kind == "para":
            for ln in lines:
                line(ln)
        elif kind == "math":
            console.print()
            for ln in lines:
                line(ln)
            console.print()
        else:
            ok = kind == "check-ok"
            for k, ln in enumerate(lines):
                if k == 0:  # '  ✓ name: ...': the mark in colour
                    text = Text(ln[:4], style="green" if ok else "bold red") + Text(ln[4:], style="" if ok else "red")
                    console.print(text, no_wrap=True, overflow="ignore", crop=False)
                else:
                    line(ln, "" if ok else "red")
