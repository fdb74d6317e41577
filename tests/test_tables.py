"""Plain-text tables of the CLI: columns padded to their widest cell, no trailing spaces."""

from __future__ import annotations

from conductor.cli.tables import table


def test_columns_align_to_the_widest_cell() -> None:
    """Each column is as wide as its widest cell, header included; lines end without spaces."""
    text = table(["NAME", "LAYER"], [["code-worker", "built-in"], ["ui", "repo"]])
    assert text.splitlines() == [
        "NAME         LAYER",
        "code-worker  built-in",
        "ui           repo",
    ]


def test_header_only_and_empty() -> None:
    """Without rows the header is printed alone; with neither, nothing."""
    assert table(["A", "BB"], []) == "A  BB"
    assert table([], []) == ""


def test_indent_and_no_header() -> None:
    """Rows can be printed without a header, indented."""
    assert table([], [["a", "1"], ["bbb", "22"]], indent="  ") == "  a    1\n  bbb  22"
