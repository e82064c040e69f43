"""Tests for published reference rows: loading, validation, rendering (never ranked or tested).

Every number in these files is INVENTED TEST DATA, not a published result.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simcrop_bench.errors import UserError
from simcrop_bench.reporting.tables.build import paper_table
from simcrop_bench.reporting.tables.reference_rows import load_reference_rows
from tests.test_tables import md_cells, table_agg

TASKS = {"lung_seg", "ctrate_cls"}
HEADER = "method,task,fraction,metric,value,std,citation,protocol,note\n"
INVENTED = "mae,lung_seg,100,dice,0.990,0.001,Invented et al. (test data),invented protocol,NOT A REAL NUMBER\n"


def write(tmp_path: Path, text: str, name: str = "reported.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_and_yaml_load(tmp_path: Path) -> None:
    rows = load_reference_rows(write(tmp_path, HEADER + INVENTED), tasks=TASKS)
    assert len(rows) == 1 and rows[0].value == 0.99 and rows[0].std == 0.001
    assert rows[0].label == "mae (reported in Invented et al. (test data))"
    yaml_text = (
        "# invented test data\n- {method: clip, task: ctrate_cls, fraction: 10, metric: auc, value: 0.7,\n"
        "   citation: Invented 2099, protocol: invented}\n"
    )
    rows = load_reference_rows(write(tmp_path, yaml_text, "reported.yaml"), tasks=TASKS)
    assert rows[0].std is None and rows[0].fraction == 10.0


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("mae,lung_seg,100,dice,0.9,,,invented,\n", "row 2: missing citation"),
        ("mae,lung_seg,100,dice,0.9,,Invented 2099,,\n", "row 2: missing protocol"),
        ("mae,lung_sgm,100,dice,0.9,,Invented 2099,invented,\n", "row 2: unknown task 'lung_sgm'"),
        ("mae,lung_seg,100,dice,0.9x,,Invented 2099,invented,\n", "row 2: value '0.9x' is not a number"),
        ("mae,lung_seg,ten,dice,0.9,,Invented 2099,invented,\n", "row 2: fraction 'ten' is not a number"),
        ("mae,lung_seg,100,dice,0.9,n/a,Invented 2099,invented,\n", "row 2: std 'n/a' is not a number"),
    ],
)
def test_invalid_rows_name_file_and_row(tmp_path: Path, line: str, expected: str) -> None:
    path = write(tmp_path, HEADER + line)
    with pytest.raises(UserError) as info:
        load_reference_rows(path, tasks=TASKS)
    message = str(info.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message


def test_yaml_row_numbers_and_unknown_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "- {method: a, task: lung_seg, fraction: 1, metric: dice, value: 1, citation: x, protocol: y}\n"
        "- {method: a, task: lung_seg, fraction: 1, metric: dice, value: 1, citation: x}\n",
        "r.yml",
    )
    with pytest.raises(UserError, match=r"r\.yml row 2: missing protocol"):
        load_reference_rows(path, tasks=TASKS)
    with pytest.raises(UserError, match="unknown column 'cite'"):
        load_reference_rows(write(tmp_path, "method,cite\n"), tasks=TASKS)


def test_registry_tasks_are_the_default(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "a,btcv_seg,100,dice,0.5,,Invented,invented,\n")
    assert load_reference_rows(path)[0].task == "btcv_seg"


def test_reference_rows_are_italic_unranked_and_below_a_rule(tmp_path: Path) -> None:
    agg = table_agg([("mae", "lung_seg", 100, [0.80]), ("simcrop", "lung_seg", 100, [0.85])])
    rows = load_reference_rows(write(tmp_path, HEADER + INVENTED), tasks=TASKS)

    md = paper_table(agg, fmt="md", reference_rows=rows)
    cells = md_cells(md)
    assert cells["simcrop"] == ["**0.850**"]  # the invented 0.990 is higher but never ranked
    label = "*mae (reported in Invented et al. (test data)); invented protocol*"
    assert cells[label] == ["*0.990 ± 0.001*"] and "*Reported in the literature*" in cells
    assert "not re-run here" in md

    latex = paper_table(agg, fmt="latex", reference_rows=rows)
    assert latex.count(r"\midrule") == 2 and r"\textit{0.990 $\pm$ 0.001}" in latex
    html = paper_table(agg, fmt="html", reference_rows=rows)
    assert '<tr class="reported">' in html and "<em>0.990 ± 0.001</em>" in html


def test_reference_row_metric_must_match_column(tmp_path: Path) -> None:
    agg = table_agg([("mae", "lung_seg", 100, [0.80])])
    rows = load_reference_rows(write(tmp_path, HEADER + "mae,lung_seg,100,hd95,3,,Invented,invented,\n"), tasks=TASKS)
    with pytest.raises(UserError, match=r"row 2: metric 'hd95' but the table's lung_seg column shows dice"):
        paper_table(agg, fmt="md", reference_rows=rows)
