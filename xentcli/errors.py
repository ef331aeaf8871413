"""Typed errors and warnings raised by the xentcli library.

The library never prints and never exits: it raises these, and the command
line layer turns them into one line on stderr and an exit code
(``XentInputError`` -> 2, ``XentMathError`` -> 1).

Errors about array contents carry ``operand`` (``"logits"``, ``"target"``,
``"weight"``, ...) and ``index`` (the 0-based position in the array the
caller passed), so that a caller who read the array from a file can name the
file, row and column instead. Errors about an option carry ``option`` (its
Python name, ``label_smoothing``): the library's message names it so, the
command line's names it ``--label-smoothing``.
"""

from __future__ import annotations


def _where(operand: str | None, index: tuple[int, ...] | None) -> str:
    if operand is None:
        return ""
    if index is None:
        return operand
    return f"{operand}[{', '.join(str(i) for i in index)}]"


def option_flag(option: str) -> str:
    """The command-line spelling of a library option name: ``label_smoothing`` -> ``--label-smoothing``."""
    return "--" + option.replace("_", "-")


class XentError(Exception):
    """Base class of every error xentcli raises on purpose."""


class XentInputError(XentError, ValueError):
    """Bad input: a file, a value or an option that cannot be used.

    ``source`` names where the bad value came from when it is a file or a
    command-line option (``logits.csv``, ``<stdin>``, ``--claim``); ``row``
    and ``column`` are 1-based positions in that source. ``option`` names a
    library option (``weight``). ``operand`` and ``index`` locate the value
    in the array handed to the library (0-based).
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        row: int | None = None,
        column: int | None = None,
        operand: str | None = None,
        index: tuple[int, ...] | None = None,
        option: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.row = row
        self.column = column
        self.operand = operand
        self.index = None if index is None else tuple(int(i) for i in index)
        self.option = option
        super().__init__(self._format(cli=False))

    def _format(self, *, cli: bool) -> str:
        source = self.source
        if source is None and self.option is not None:
            source = option_flag(self.option) if cli else self.option
        if source is None:
            where = _where(self.operand, self.index)
            return f"{where}: {self.message}" if where else self.message
        parts = [f"row {self.row}"] if self.row is not None else []
        if self.column is not None:
            parts.append(f"column {self.column}")
        return f"{source}: {', '.join(parts)}: {self.message}" if parts else f"{source}: {self.message}"

    def cli_message(self) -> str:
        """The message as the command line prints it (options spelled ``--like-this``)."""
        return self._format(cli=True)

    def at(self, source: str, row: int | None = None, column: int | None = None) -> XentInputError:
        """The same error, placed in a file or option at a 1-based row/column."""
        return XentInputError(
            self.message,
            source=source,
            row=row,
            column=column,
            operand=self.operand,
            index=self.index,
        )


class XentMathError(XentError):
    """A mathematical check failed: a proof did not close or a result disagreed."""


class XentWarning(UserWarning):
    """Something the caller should know about a result that is still exact.

    Examples: probability rows that do not sum to 1, a loss that is infinite
    because a target class is masked with ``-inf``, a mean over zero weight.
    ``operand``/``index`` locate the first offending value when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        operand: str | None = None,
        index: tuple[int, ...] | None = None,
    ) -> None:
        self.message = message
        self.operand = operand
        self.index = None if index is None else tuple(int(i) for i in index)
        where = _where(operand, self.index)
        super().__init__(f"{where}: {message}" if where else message)
