"""Tests for paper tables: layout, best/second-best marks, ambiguity, LaTeX."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from simcrop_bench.errors import UserError
from simcrop_bench.leaderboard import aggregate, records_frame, to_latex
from simcrop_bench.tables import paper_table


def make_record(*, method: str, task: str, fraction: int = 100, seed: int = 1,
                value: float = 0.5, metric: str = "dice", higher_is_better: bool = True,
                profile: str = "demo", protocol: str = "heldout", synthetic: bool = True,
                cell_hash: str | None = None) -> dict:
    """The keys the leaderboard reads (test_leaderboard.py builds full records)."""
    cell_hash = cell_hash or f"{method}-{task}-{fraction}"
    return {
        "schema_version": 1, "run_id": f"{task}/{method}/f{fraction}/s{seed}/{cell_hash}",
        "method": method, "task": task, "fraction": fraction, "seed": seed,
        "profile": profile, "protocol": protocol, "synthetic": synthetic,
        "primary_metric": metric, "higher_is_better": higher_is_better,
        "metrics": {metric: value}, "cell_hash": cell_hash,
    }


def table_agg(rows, **common):
    """rows: (method, task, fraction, [values per seed]) -> aggregated frame."""
    records = []
    for method, task, fraction, values, *extra in rows:
        options = {**common, **(extra[0] if extra else {})}
        records += [make_record(method=method, task=task, fraction=fraction, seed=seed,
                                value=value, **options)
                    for seed, value in enumerate(values, start=1)]
    return aggregate(records_frame(records))


def md_cells(text: str) -> dict[str, list[str]]:
    """Markdown table -> {method: [cell, ...]} (body rows only)."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    out = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        out[cells[0]] = cells[1:]
    return out


@pytest.fixture
def mixed_agg():
    """Two tasks (one lower-is-better), two fractions, three methods."""
    return table_agg([
        ("scratch", "lung_seg", 10, [0.60, 0.62, 0.64]),
        ("mae", "lung_seg", 10, [0.70, 0.72, 0.74]),
        ("simcrop", "lung_seg", 10, [0.80, 0.82, 0.84]),
        ("scratch", "lung_seg", 100, [0.85]),
        ("mae", "lung_seg", 100, [0.90]),
        ("simcrop", "lung_seg", 100, [0.88]),
        ("scratch", "lung_hd", 100, [9.0], {"metric": "hd95", "higher_is_better": False}),
        ("mae", "lung_hd", 100, [7.0], {"metric": "hd95", "higher_is_better": False}),
        ("simcrop", "lung_hd", 100, [5.0], {"metric": "hd95", "higher_is_better": False}),
    ])


def test_markdown_layout_and_marks(mixed_agg) -> None:
    text = paper_table(mixed_agg, fmt="md")
    lines = [line for line in text.splitlines() if line.startswith("|")]

    # Two-level header: tasks (alphabetical) in the header, fractions below.
    assert lines[0] == "| Method | lung_hd (hd95 ↓) | lung_seg (dice ↑) |  |"
    assert lines[2] == "|  | 100% | 10% | 100% |"
    cells = md_cells(text)
    assert list(cells) == ["", "mae", "scratch", "simcrop"]
    # lung_hd 100% (lower is better): simcrop 5 best, mae 7 second.
    assert cells["simcrop"][0] == "**5.000**"
    assert cells["mae"][0] == "<u>7.000</u>"
    assert cells["scratch"][0] == "9.000"
    # lung_seg 10%: mean ± sample std over three seeds.
    assert cells["simcrop"][1] == "**0.820 ± 0.020**"
    assert cells["mae"][1] == "<u>0.720 ± 0.020</u>"
    assert cells["scratch"][1] == "0.620 ± 0.020"
    # lung_seg 100%: mae best, simcrop second.
    assert (cells["mae"][2], cells["simcrop"][2]) == ("**0.900**", "<u>0.880</u>")


def test_latex_layout_and_marks(mixed_agg) -> None:
    text = paper_table(mixed_agg, fmt="latex", caption="Main results", digits=2)

    assert text.startswith(r"\begin{table}") and text.rstrip().endswith(r"\end{table}")
    assert r"\begin{tabular}{lccc}" in text
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert text.count(rule) == 1
    assert r"\multicolumn{1}{c}{lung\_hd (hd95 $\downarrow$)}" in text
    assert r"\multicolumn{2}{c}{lung\_seg (dice $\uparrow$)}" in text
    assert r"\cmidrule(lr){2-2} \cmidrule(lr){3-4}" in text
    assert r" & 100\% & 10\% & 100\% \\" in text
    assert r"\textbf{0.82 $\pm$ 0.02}" in text
    assert r"\underline{0.72 $\pm$ 0.02}" in text
    assert r"\textbf{5.00}" in text and r"\underline{7.00}" in text
    assert r"\caption{Main results. Note: synthetic data" in text


def test_ties_share_best_and_leave_no_second() -> None:
    agg = table_agg([
        ("a", "t", 100, [0.9]), ("b", "t", 100, [0.9]), ("c", "t", 100, [0.5]),
    ])

    cells = md_cells(paper_table(agg, fmt="md"))

    assert cells["a"] == ["**0.900**"] and cells["b"] == ["**0.900**"]
    assert cells["c"] == ["0.500"]  # third place is not "second best"


def test_tie_for_second_underlines_both() -> None:
    agg = table_agg([
        ("a", "t", 100, [0.9]), ("b", "t", 100, [0.7]), ("c", "t", 100, [0.7]),
        ("d", "t", 100, [0.1]),
    ])

    cells = md_cells(paper_table(agg, fmt="md"))

    assert [cells[m][0] for m in "abcd"] == ["**0.900**", "<u>0.700</u>", "<u>0.700</u>", "0.100"]


def test_values_equal_when_printed_are_tied() -> None:
    agg = table_agg([("a", "t", 100, [0.90001]), ("b", "t", 100, [0.90004])])

    cells = md_cells(paper_table(agg, fmt="md"))

    assert cells["a"] == cells["b"] == ["**0.900**"]


def test_single_value_column_is_bold_and_missing_cells_dashed() -> None:
    agg = table_agg([
        ("a", "t", 10, [0.5]),
        ("a", "t", 100, [0.6]), ("b", "t", 100, [0.7]),
    ])

    md = md_cells(paper_table(agg, fmt="md"))
    latex = paper_table(agg, fmt="latex")

    assert md["a"] == ["**0.500**", "<u>0.600</u>"]
    assert md["b"] == ["–", "**0.700**"]
    assert r"b & -- & \textbf{0.700} \\" in latex
    assert "underline{0.500}" not in latex


def test_method_order() -> None:
    agg = table_agg([("a", "t", 100, [0.5]), ("b", "t", 100, [0.6]), ("c", "t", 100, [0.7])])

    assert list(md_cells(paper_table(agg, fmt="md", method_order=["c", "x"]))) == ["", "c", "a", "b"]


def test_ambiguous_cell_raises_naming_cell_and_filter() -> None:
    agg = table_agg([
        ("a", "lung_seg", 10, [0.5], {"profile": "demo"}),
        ("a", "lung_seg", 10, [0.6], {"profile": "full"}),
    ])

    with pytest.raises(UserError) as info:
        paper_table(agg, fmt="latex")

    message = str(info.value)
    assert "ambiguous cell" in message and "'a'" in message and "'lung_seg'" in message
    assert "10%" in message and "profile (demo, full)" in message
    assert "--profile" in message and "\n" not in message


def test_ambiguous_cell_from_changed_config() -> None:
    agg = table_agg([
        ("a", "t", 100, [0.5], {"cell_hash": "old"}),
        ("a", "t", 100, [0.6], {"cell_hash": "new"}),
    ])

    with pytest.raises(UserError, match=r"cell_hash \(new, old\).*outdated config"):
        paper_table(agg, fmt="md")


def test_column_mixing_profiles_across_methods_raises() -> None:
    agg = table_agg([
        ("a", "t", 100, [0.5], {"profile": "demo"}),
        ("b", "t", 100, [0.6], {"profile": "full"}),
    ])

    with pytest.raises(UserError, match=r"mixes profile values \(demo, full\)"):
        paper_table(agg, fmt="md")


def test_empty_and_unknown_format() -> None:
    with pytest.raises(UserError, match="no results"):
        paper_table(aggregate(records_frame([])), fmt="md")
    agg = table_agg([("a", "t", 100, [0.5])])
    with pytest.raises(UserError, match="unknown table format"):
        paper_table(agg, fmt="html")  # type: ignore[arg-type]


def test_latex_escaping_and_real_data_has_no_note() -> None:
    agg = table_agg([
        ("sim_crop & co", "lung_seg#1", 100, [0.5]),
        ("100%~x", "lung_seg#1", 100, [0.4]),
    ], synthetic=False)

    text = paper_table(agg, fmt="latex", caption="R_1 {draft} $x$")

    assert r"sim\_crop \& co" in text and r"100\%\textasciitilde{}x" in text
    assert r"lung\_seg\#1" in text
    assert r"\caption{R\_1 \{draft\} \$x\$}" in text
    assert "synthetic" not in text
    assert "\\caption" not in paper_table(agg, fmt="latex")


def test_synthetic_note_without_caption(mixed_agg) -> None:
    assert paper_table(mixed_agg, fmt="md").startswith("Note: synthetic data")
    assert r"\caption{Note: synthetic data" in paper_table(mixed_agg, fmt="latex")


def test_markdown_escapes_pipes() -> None:
    agg = table_agg([("a|b", "t", 100, [0.5])])

    assert r"| a\|b |" in paper_table(agg, fmt="md")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_compiles(tmp_path: Path, mixed_agg) -> None:
    board = aggregate(records_frame(
        make_record(method=method, task="lung_seg", value=value)
        for method, value in (("sim_crop & co", 0.9), ("50%~#1", 0.8), ("x^2 {y} <a>", 0.7))
    ))
    body = "\n".join([
        paper_table(mixed_agg, fmt="latex", caption="Main results on lung_seg {v1}"),
        paper_table(board, fmt="latex"),
        to_latex(board),
    ])
    document = "\n".join([
        r"\documentclass{article}", r"\usepackage{booktabs}", r"\begin{document}",
        body, r"\end{document}",
    ])
    (tmp_path / "table.tex").write_text(document, encoding="utf-8")

    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "table.tex"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "table.pdf").stat().st_size > 0
    log = (tmp_path / "table.log").read_text(errors="replace")
    assert "Undefined control sequence" not in log
