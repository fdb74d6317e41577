"""Plain-text tables for the CLI: columns padded to their widest cell, two spaces apart."""

from __future__ import annotations

from collections.abc import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, indent: str = "") -> str:
    """``headers`` and ``rows`` as aligned lines (no trailing spaces); every row has one cell
    per header. Without ``headers`` (an empty sequence) only the rows are printed."""
    lines = [headers, *rows] if headers else list(rows)
    if not lines:
        return ""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        indent
        + "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )
