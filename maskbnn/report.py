"""Markdown tables of the stages' reports, built one way."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def md_table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> list[str]:
    """The lines of a Markdown table: header, rule, one line per row. `align` holds one letter per
    column, "r" to right-align it (default left). Cells are str()'d; a "|" in a cell (mean|W|) is
    escaped, so it does not split the cell."""
    rule = "|".join("---:" if a == "r" else "---" for a in align.ljust(len(header), "l"))
    return [_row(header), f"|{rule}|", *(_row(r) for r in rows)]


def _row(cells: Iterable[object]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
