"""The one Markdown table builder the reports share."""

from maskbnn.report import md_table


def test_md_table_lines_alignment_and_escaped_pipes():
    lines = md_table(("class", "train", "test"), [("a", 1, 2), ("mean|W|", 3, 4.5)], align="lrr")
    assert lines == [
        "| class | train | test |",
        "|---|---:|---:|",
        "| a | 1 | 2 |",
        "| mean\\|W\\| | 3 | 4.5 |",
    ]
    assert md_table(("x",), []) == ["| x |", "|---|"]
