"""The rich terminal view of a derivation (SymPy's unicode pretty printing inside)."""

from __future__ import annotations

from typing import Any


def print_derivation(derivation: Any, file: Any = None) -> None:
    from rich.console import Console
    from rich.text import Text

    from ..symbolic.documents import text_blocks

    console = Console(file=file, highlight=False)
    for kind, text in text_blocks(derivation):
        if kind == "title":
            console.rule(Text(text, style="bold"))
        elif kind == "verdict":
            style = "bold green" if derivation.verified else "bold red"
            console.print(Text(text, style=style))
        elif kind == "heading":
            console.print()
            console.print(Text(text, style="bold cyan"))
        elif kind == "para":
            console.print(text)
        elif kind == "math":
            console.print()
            for line in text.splitlines():
                console.print(Text("    " + line), no_wrap=True, overflow="ignore", crop=False)
            console.print()
        elif kind == "check-ok":
            console.print(Text("  ✓ ", style="green") + Text(text))
        else:
            console.print(Text("  ✗ ", style="bold red") + Text(text, style="red"))
