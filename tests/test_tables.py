"""Tests for paper tables: layout, best/second-best marks, ambiguity, LaTeX."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from simcrop_bench.errors import UserError
from simcrop_bench.reporting.leaderboard import aggregate, records_frame, to_latex
from simcrop_bench.reporting.tables.build import paper_table


def make_record(
    *,
    method: str,
    task: str,
    fraction: int = 100,
    seed: int = 1,
    value: float = 0.5,
    metric: str = "dice",
    higher_is_better: bool = True,
    profile: str = "demo",
    protocol: str = "heldout",
    synthetic: bool = True,
    cell_hash: str | None = None,
) -> dict:
    """The keys the leaderboard reads (test_leaderboard.py builds full records)."""
    cell_hash = cell_hash or f"{method}-{task}-{fraction}"
    return {
        "schema_version": 1,
        "run_id": f"{task}/{method}/f{fraction}/s{seed}/{cell_hash}",
        "method": method,
        "task": task,
        "fraction": fraction,
        "seed": seed,
        "profile": profile,
        "protocol": protocol,
        "synthetic": synthetic,
        "primary_metric": metric,
        "higher_is_better": higher_is_better,
        "metrics": {metric: value},
        "cell_hash": cell_hash,
    }


def table_agg(rows, **common):
    """rows: (method, task, fraction, [values per seed]) -> aggregated frame."""
    records = []
    for method, task, fraction, values, *extra in rows:
        options = {**common, **(extra[0] if extra else {})}
        records += [
            make_record(method=method, task=task, fraction=fraction, seed=seed, value=value, **options)
            for seed, value in enumerate(values, start=1)
        ]
    return aggregate(records_frame(records))


def md_cells(text: str, seeds: bool = False) -> dict[str, list[str]]:
    """Markdown table -> {method: [cell, ...]} (body rows only); without ``seeds`` the " (n=3)" and
    single-seed "§" after each value are dropped (tests of the seed marks pass ``seeds=True``)."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    out = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        out[cells[0]] = cells[1:] if seeds else [re.sub(r" \(n=\d+\)§?", "", c) for c in cells[1:]]
    return out


@pytest.fixture
def mixed_agg():
    """Two tasks (one lower-is-better), two fractions, three methods."""
    return table_agg(
        [
            ("scratch", "lung_seg", 10, [0.60, 0.62, 0.64]),
            ("mae", "lung_seg", 10, [0.70, 0.72, 0.74]),
            ("simcrop", "lung_seg", 10, [0.80, 0.82, 0.84]),
            ("scratch", "lung_seg", 100, [0.85]),
            ("mae", "lung_seg", 100, [0.90]),
            ("simcrop", "lung_seg", 100, [0.88]),
            ("scratch", "lung_hd", 100, [9.0], {"metric": "hd95", "higher_is_better": False}),
            ("mae", "lung_hd", 100, [7.0], {"metric": "hd95", "higher_is_better": False}),
            ("simcrop", "lung_hd", 100, [5.0], {"metric": "hd95", "higher_is_better": False}),
        ]
    )


def test_markdown_layout_and_marks(mixed_agg) -> None:
    text = paper_table(mixed_agg, fmt="md")
    lines = [line for line in text.splitlines() if line.startswith("|")]

    # Two-level header: tasks (alphabetical) in the header, fractions below.
    assert lines[0] == "| Method | lung_hd (hd95 ↓) | lung_seg (Dice ↑) |  |"
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
    assert r"\multicolumn{2}{c}{lung\_seg (Dice $\uparrow$)}" in text
    assert r"\cmidrule(lr){2-2} \cmidrule(lr){3-4}" in text
    assert r" & 100\% & 10\% & 100\% \\" in text
    assert r"\textbf{0.82 $\pm$ 0.02}" in text
    assert r"\underline{0.72 $\pm$ 0.02}" in text
    assert r"\textbf{5.00}" in text and r"\underline{7.00}" in text
    assert r"\caption{Main results. \S{} one seed (n=1): no spread over seeds. Note: synthetic data" in text


def test_ties_share_best_and_leave_no_second() -> None:
    agg = table_agg(
        [
            ("a", "t", 100, [0.9]),
            ("b", "t", 100, [0.9]),
            ("c", "t", 100, [0.5]),
        ]
    )

    cells = md_cells(paper_table(agg, fmt="md"))

    assert cells["a"] == ["**0.900**"] and cells["b"] == ["**0.900**"]
    assert cells["c"] == ["0.500"]  # third place is not "second best"


def test_tie_for_second_underlines_both() -> None:
    agg = table_agg(
        [
            ("a", "t", 100, [0.9]),
            ("b", "t", 100, [0.7]),
            ("c", "t", 100, [0.7]),
            ("d", "t", 100, [0.1]),
        ]
    )

    cells = md_cells(paper_table(agg, fmt="md"))

    assert [cells[m][0] for m in "abcd"] == ["**0.900**", "<u>0.700</u>", "<u>0.700</u>", "0.100"]


def test_values_equal_when_printed_are_tied() -> None:
    agg = table_agg([("a", "t", 100, [0.90001]), ("b", "t", 100, [0.90004])])

    cells = md_cells(paper_table(agg, fmt="md"))

    assert cells["a"] == cells["b"] == ["**0.900**"]


def test_single_value_column_is_not_marked_and_missing_cells_dashed() -> None:
    agg = table_agg(
        [
            ("a", "t", 10, [0.5]),
            ("a", "t", 100, [0.6]),
            ("b", "t", 100, [0.7]),
        ]
    )

    md = md_cells(paper_table(agg, fmt="md"))
    latex = paper_table(agg, fmt="latex")

    assert md["a"] == ["0.500", "<u>0.600</u>"]  # alone in its column: nothing to be best against
    assert md["b"] == ["–", "**0.700**"]
    assert r"b & -- & \textbf{0.700}$_{n=1}$\S{} \\" in latex
    assert "underline{0.500}" not in latex and "textbf{0.500}" not in latex


def test_method_order() -> None:
    agg = table_agg([("a", "t", 100, [0.5]), ("b", "t", 100, [0.6]), ("c", "t", 100, [0.7])])

    assert list(md_cells(paper_table(agg, fmt="md", method_order=["c", "x"]))) == ["", "c", "a", "b"]


def test_ambiguous_cell_raises_naming_cell_and_filter() -> None:
    agg = table_agg(
        [
            ("a", "lung_seg", 10, [0.5], {"profile": "demo"}),
            ("a", "lung_seg", 10, [0.6], {"profile": "full"}),
        ]
    )

    with pytest.raises(UserError) as info:
        paper_table(agg, fmt="latex")

    message = str(info.value)
    assert "ambiguous cell" in message and "'a'" in message and "'lung_seg'" in message
    assert "10%" in message and "profile (demo, full)" in message
    assert "--profile" in message and "\n" not in message


def test_ambiguous_cell_from_changed_config() -> None:
    agg = table_agg(
        [
            ("a", "t", 100, [0.5], {"cell_hash": "old"}),
            ("a", "t", 100, [0.6], {"cell_hash": "new"}),
        ]
    )

    with pytest.raises(UserError, match=r"cell_hash \(new, old\).*outdated config"):
        paper_table(agg, fmt="md")


def test_column_mixing_profiles_across_methods_raises() -> None:
    agg = table_agg(
        [
            ("a", "t", 100, [0.5], {"profile": "demo"}),
            ("b", "t", 100, [0.6], {"profile": "full"}),
        ]
    )

    with pytest.raises(UserError, match=r"mixes profile values \(demo, full\)"):
        paper_table(agg, fmt="md")


def test_empty_and_unknown_format() -> None:
    with pytest.raises(UserError, match="no results"):
        paper_table(aggregate(records_frame([])), fmt="md")
    agg = table_agg([("a", "t", 100, [0.5])])
    with pytest.raises(UserError, match="unknown table format"):
        paper_table(agg, fmt="docx")  # type: ignore[arg-type]


def test_latex_escaping_and_real_data_has_no_note() -> None:
    agg = table_agg(
        [
            ("sim_crop & co", "lung_seg#1", 100, [0.5]),
            ("100%~x", "lung_seg#1", 100, [0.4]),
        ],
        synthetic=False,
    )

    text = paper_table(agg, fmt="latex", caption="R_1 {draft} $x$")

    assert r"sim\_crop \& co" in text and r"100\%\textasciitilde{}x" in text
    assert r"lung\_seg\#1" in text
    assert r"\caption{R\_1 \{draft\} \$x\$. \S{} one seed (n=1): no spread over seeds.}" in text
    assert "synthetic" not in text
    assert r"\textbf{0.500}$_{n=1}$\S{}" in text


def test_synthetic_note_without_caption(mixed_agg) -> None:
    assert "Note: synthetic data" in paper_table(mixed_agg, fmt="md").split("\n")[0]
    assert r"no spread over seeds. Note: synthetic data" in paper_table(mixed_agg, fmt="latex")


def test_every_cell_shows_its_seeds_and_only_comparable_cells_are_ranked() -> None:
    """Reproducer: a 1-seed 1.000 was ranked above 0.857 ± 0.124 over 3 seeds, with no n shown;
    a column with one method marked it bold."""
    agg = table_agg(
        [
            ("scratch", "ctrate_cls", 1, [1.0]),
            ("mae", "ctrate_cls", 1, [0.8, 0.9, 0.85]),
            ("simcrop", "ctrate_cls", 1, [0.7, 0.8, 0.75]),
            ("simcrop", "ctrate_cls", 10, [0.9, 0.95, 0.92]),
        ]
    )
    text = paper_table(agg, fmt="md")
    cells = md_cells(text, seeds=True)
    assert cells["scratch"][0] == "1.000 (n=1)§"  # not bold although the highest
    assert cells["mae"][0] == "**0.850 ± 0.050** (n=3)" and cells["simcrop"][0] == "<u>0.750 ± 0.050</u> (n=3)"
    assert cells["simcrop"][1] == "0.923 ± 0.025 (n=3)"  # alone in its column: no mark
    assert "§ one seed (n=1)" in text and "compare only the cells with their column's largest n" in text
    html = paper_table(agg, fmt="html")
    assert '<sub class="n" title="seeds">n=3</sub>' in html and "<strong>0.850 ± 0.050</strong>" in html


def test_markdown_escapes_pipes() -> None:
    agg = table_agg([("a|b", "t", 100, [0.5])])

    assert r"| a\|b |" in paper_table(agg, fmt="md")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_compiles(tmp_path: Path, mixed_agg) -> None:
    board = aggregate(
        records_frame(
            make_record(method=method, task="lung_seg", value=value)
            for method, value in (("sim_crop & co", 0.9), ("50%~#1", 0.8), ("x^2 {y} <a>", 0.7))
        )
    )
    body = "\n".join(
        [
            paper_table(mixed_agg, fmt="latex", caption="Main results on lung_seg {v1}"),
            paper_table(board, fmt="latex"),
            to_latex(board),
        ]
    )
    document = "\n".join(
        [
            r"\documentclass{article}",
            r"\usepackage{booktabs}",
            r"\begin{document}",
            body,
            r"\end{document}",
        ]
    )
    (tmp_path / "table.tex").write_text(document, encoding="utf-8")

    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "table.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "table.pdf").stat().st_size > 0
    log = (tmp_path / "table.log").read_text(errors="replace")
    assert "Undefined control sequence" not in log


# ------------------------------------------------ tables from a results folder (layouts, significance)

import json  # noqa: E402

import numpy as np  # noqa: E402

from simcrop_bench.reporting.tables.build import build_table, render_table  # noqa: E402
from simcrop_bench.run.records import write_per_case  # noqa: E402
from tests.test_leaderboard import make_record as full_record  # noqa: E402
from tests.test_leaderboard import write_record  # noqa: E402

N_CASES = 40


def per_case_rows(task: str, quality: str, seed: int, cases: list[str] | None = None) -> list[dict]:
    """Saved predictions in each task's per_case.csv schema; 'good' separates the classes, 'bad' is noise."""
    rng = np.random.default_rng(seed + (0 if quality == "good" else 1000))
    rows = []
    for i in range(N_CASES):
        case = (cases or [f"case{i:02d}" for i in range(N_CASES)])[i]
        y = i % 2
        if task.endswith("_seg"):
            rows.append({"case": case, "dice": (0.9 if quality == "good" else 0.6) + rng.normal(0, 0.02)})
        elif task == "ccccii_cls":
            label = i % 3
            probs = np.eye(3)[label] * 0.8 + 0.1 if quality == "good" else rng.dirichlet(np.ones(3))
            rows.append(
                {
                    "case": case,
                    "group": f"p{i // 2}",
                    "label": label,
                    **{f"p:{n}": float(p) for n, p in zip(("Normal", "CP", "NCP"), probs)},
                }
            )
        else:
            p = 0.2 + 0.6 * y + rng.normal(0, 0.05) if quality == "good" else rng.random()
            rows.append({"case": case, "group": f"p{i // 2}", "y:nodule": y, "p:nodule": float(p)})
    return rows


METRIC = {"ccccii_cls": "accuracy", "lung_seg": "dice", "btcv_seg": "dice"}


def write_run(
    results: Path, method: str, task: str, fraction: int, seed: int, quality: str, value: float, **record_options
) -> Path:
    """One fake run folder: a full record (test_leaderboard.make_record) plus per_case.csv."""
    metric = METRIC.get(task, "auc")
    record = full_record(
        method=method, task=task, fraction=fraction, seed=seed, value=value, metric=metric, **record_options
    )
    record["intervals"] = {metric: {"low": value - 0.05, "high": value + 0.05}}
    path = write_record(results, record)
    write_per_case(path.parent / "per_case.csv", per_case_rows(task, quality, seed))
    return path


@pytest.fixture
def cls_results(tmp_path: Path) -> Path:
    """luna16_cls 100 % and ccccii_cls 10 %: simcrop good, mae bad, clip identical to simcrop, scratch bad."""
    results = tmp_path / "results"
    for task, fraction in (("luna16_cls", 100), ("ccccii_cls", 10)):
        for seed in (42, 43, 44):
            write_run(results, "simcrop", task, fraction, seed, "good", 0.95 + seed / 1e4)
            write_run(results, "clip", task, fraction, seed, "good", 0.90 + seed / 1e4)
            write_run(results, "mae", task, fraction, seed, "bad", 0.55 + seed / 1e4)
        write_run(results, "scratch", task, fraction, 42, "bad", 0.50)
    write_run(results, "simcrop", "lung_seg", 100, 42, "good", 0.9)  # not in the cls layout
    return results


def test_cls_layout_groups_families_and_marks_significance(cls_results: Path) -> None:
    built = build_table(cls_results, layout="cls", n_resamples=300)
    md = built.render("md")
    cells = md_cells(md)

    assert list(cells) == [
        "",
        "*No pretraining*",
        "scratch",
        "*Self-supervised (image only)*",
        "mae",
        "*Vision-language*",
        "clip",
        "*SimCroP*",
        "simcrop",
    ]
    header = md.splitlines()[2]
    assert "LUNA16 (AUROC ↑)" in header and "CC-CCII (Accuracy ↑)" in header
    assert header.index("CC-CCII") < header.index("LUNA16")  # paper column order
    assert "lung_seg" not in md and "LUNA16 lungs" not in md
    assert all(c.endswith("†") for c in cells["mae"]) and all(c.endswith("†") for c in cells["scratch"])
    assert not any("†" in c for c in cells["clip"] + cells["simcrop"])  # identical predictions: not testable
    assert (
        "† significantly different from SimCroP (paired permutation test swapping the two methods' predictions "
        "within patients, exact or B=10000 random swaps, Holm-corrected, p ≤ α=0.05, over the 4 comparisons in "
        "this table; per-patient differences averaged over the shared seeds). 2 cell(s) not tested against "
        "simcrop: the two methods differ on 0 or fewer patients"
    ) in md
    assert md.startswith("† significantly") and "Note: synthetic data" in md

    explained = {(c["method"], c["column"]): c for c in built.explain()["cells"]}
    clip = explained[("clip", "luna16_cls 100%")]["significance"]
    assert clip["p_raw"] is None and clip["significant"] is False and clip["n_discordant"] == 0
    assert clip["reason"].startswith("the methods differ on 0 patient(s)")
    mae = explained[("mae", "luna16_cls 100%")]["significance"]
    assert mae["p_holm"] < 0.05 and mae["shared_seeds"] == [42, 43, 44] and mae["diff"] < 0
    assert explained[("simcrop", "luna16_cls 100%")]["significance"] is None

    latex = built.render("latex")
    assert latex.count(r"\midrule") == 4 and r"\multicolumn{3}{l}{\textit{Vision-language}} \\" in latex
    assert r"$^\dagger$" in latex and r"Holm-corrected, p $\le$ $\alpha$=0.05" in latex


def test_reference_none_and_explicit_reference(cls_results: Path) -> None:
    plain = build_table(cls_results, layout="cls", reference="none").render("md")
    assert "†" not in plain and "Holm" not in plain
    vs_mae = build_table(cls_results, layout="cls", reference="mae", n_resamples=200).render("md")
    assert "different from mae" in vs_mae and md_cells(vs_mae)["simcrop"][0].endswith("†")
    with pytest.raises(UserError, match="--reference 'mrm' is not a row"):
        build_table(cls_results, layout="cls", reference="mrm")


def test_explain_lists_exactly_the_three_seed_records(cls_results: Path, tmp_path: Path) -> None:
    from simcrop_bench.cli import app as cli

    sidecar, out = tmp_path / "explain.json", tmp_path / "t.md"
    argv = [
        "simcrop-bench",
        "table",
        "--results",
        str(cls_results),
        "--layout",
        "cls",
        "--format",
        "md",
        "--resamples",
        "200",
        "--out",
        str(out),
        "--explain",
        str(sidecar),
    ]
    with pytest.MonkeyPatch.context() as patch, pytest.raises(SystemExit) as exit_info:
        patch.setattr("sys.argv", argv)
        cli.main()
    assert exit_info.value.code == 0 and out.read_text().count("†") >= 4

    data = json.loads(sidecar.read_text())
    cell = next(c for c in data["cells"] if c["method"] == "mae" and c["task"] == "luna16_cls")
    runs = cell["runs"]
    assert [r["seed"] for r in runs] == [42, 43, 44]
    expected = sorted((cls_results / "runs" / "luna16_cls" / "mae").rglob("record.json"))
    assert sorted(Path(r["record"]) for r in runs) == expected and len(expected) == 3
    for run in runs:
        record = json.loads(Path(run["record"]).read_text())
        assert run["run_id"] == record["run_id"] and run["value"] == record["metrics"]["auc"]
        assert run["git_commit"] == "abc" and run["config_hash"] == record["config_hash"]
        assert run["cell_hash"] == record["cell_hash"]
    assert cell["significance"]["p_raw"] <= cell["significance"]["p_holm"] < 0.05
    assert data["significance"]["correction"] == "holm" and data["significance"]["family_size"] == 4


def test_cell_ci_uses_record_interval_for_one_seed_and_bootstrap_for_several(cls_results: Path) -> None:
    cells = md_cells(build_table(cls_results, layout="cls", cell="ci", reference="none", n_resamples=200).render("md"))
    assert cells["scratch"][0] == "0.500 [0.450, 0.550]"  # one seed: the record's interval
    mean, interval = cells["mae"][1].strip("*<u>/").split(" [")
    low, high = (float(v) for v in interval.rstrip("]").split(", "))
    assert 0.2 < low < high < 0.8 and high - low > 0.1  # seed-averaged patient bootstrap of AUROC
    assert cells["simcrop"][1].endswith(" [1.000, 1.000]**")  # perfect separation in every resample


def test_misaligned_test_cases_refuse_the_paired_test(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_run(results, "simcrop", "lung_seg", 100, 42, "good", 0.9)
    path = write_run(results, "mae", "lung_seg", 100, 42, "bad", 0.6)
    write_per_case(
        path.parent / "per_case.csv", per_case_rows("lung_seg", "bad", 42, [f"other{i}" for i in range(N_CASES)])
    )
    with pytest.raises(UserError, match="rows misaligned.*different test cases.*--reference none"):
        build_table(results, layout="seg")
    assert "†" not in render_table(results, fmt="md", layout="seg", reference="none")


def test_seg_and_ablation_layouts(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for method, quality, value in (
        ("simcrop", "good", 0.9),
        ("simcrop-noalign", "bad", 0.6),
        ("simcrop-k8", "good", 0.9),
        ("scratch", "bad", 0.6),
    ):
        for task in ("lung_seg", "btcv_seg"):
            write_run(results, method, task, 100, 42, quality, value)
    seg = md_cells(build_table(results, layout="seg", n_resamples=200).render("md"))
    assert list(seg) == ["", "*No pretraining*", "scratch", "*SimCroP*", "simcrop"]  # ablations left out
    ablation = build_table(results, layout="ablation", n_resamples=200).render("md")
    rows = md_cells(ablation)
    assert list(rows) == ["", "*Full model*", "simcrop", "*Ablations*", "simcrop-noalign", "simcrop-k8"]
    assert rows["simcrop-noalign"][0].endswith("†") and not rows["simcrop-k8"][0].endswith("†")
    with pytest.raises(UserError, match="no results for the cls layout"):
        build_table(results, layout="cls")
    with pytest.raises(UserError, match="unknown table layout 'main'"):
        build_table(results, layout="main")
    write_run(results, "simcrop", "luna16_cls", 100, 42, "good", 0.9)  # no ablation there: no column
    assert "LUNA16 (" not in build_table(results, layout="ablation", n_resamples=200).render("md")


def _protocol_results(tmp_path: Path, other: dict) -> Path:
    results = tmp_path / "results"
    write_run(results, "simcrop", "lung_seg", 100, 42, "good", 0.9)
    write_run(results, "mae", "lung_seg", 100, 42, "bad", 0.6, **other)
    return results


def _with_variant(results: Path) -> None:
    path = next((results / "runs" / "lung_seg" / "mae").rglob("record.json"))
    record = json.loads(path.read_text())
    record["variant"] = "lp-cached"
    path.write_text(json.dumps(record))


@pytest.mark.parametrize("kind", ["legacy", "variant"])
def test_mixed_protocol_column_names_both_and_the_fix(tmp_path: Path, kind: str) -> None:
    results = _protocol_results(tmp_path, {"protocol": "legacy"} if kind == "legacy" else {})
    if kind == "variant":
        _with_variant(results)
    other = "legacy" if kind == "legacy" else "heldout+lp-cached"

    with pytest.raises(UserError) as info:
        build_table(results)
    message = str(info.value)
    assert "mixes protocols" in message and "heldout" in message and other in message
    assert "--split-by protocol" in message and "\n" not in message

    built = build_table(results, split_by="protocol", n_resamples=100)
    md = built.render("md")
    assert f"100% ({other})" in md and "100% (heldout)" in md and "split by protocol" in md
    assert "†" not in md  # mae and simcrop sit in different sub-columns: nothing to compare


def test_split_by_profile_in_one_method_cell(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_run(results, "mae", "lung_seg", 100, 42, "bad", 0.6)
    write_run(results, "mae", "lung_seg", 100, 42, "good", 0.9, profile="paper")
    with pytest.raises(UserError, match=r"ambiguous cell.*profile \(demo, paper\).*--split-by profile"):
        build_table(results)
    assert r"100\% (paper)" in build_table(results, split_by="profile").render("latex")


def test_html_and_csv_formats(cls_results: Path) -> None:
    built = build_table(cls_results, layout="cls", n_resamples=200)
    html = built.render("html", caption="Linear probing <draft>")
    assert html.startswith('<table class="simcrop-table">') and html.rstrip().endswith("</table>")
    assert "<caption>Linear probing &lt;draft&gt;. † significantly different from SimCroP" in html
    assert "<strong>" in html and "<u>" in html and "<sup" in html and "†</sup>" in html
    assert '<th colspan="3" scope="rowgroup">Vision-language</th>' in html

    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(built.render("csv"))))
    mae = [r for r in rows if r["method"] == "mae"]
    assert len(mae) == 2 and all(r["significant"] == "True" and float(r["p_holm"]) < 0.05 for r in mae)
    assert {r["section"] for r in rows} == {
        "No pretraining",
        "Self-supervised (image only)",
        "Vision-language",
        "SimCroP",
    }
    assert render_table(cls_results, layout="cls", reference="none").startswith("<table")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_every_layout_compiles_with_daggers_and_reference_rows(tmp_path: Path, cls_results: Path) -> None:
    from simcrop_bench.reporting.tables.reference_rows import load_reference_rows

    for method, quality, value in (("simcrop-noalign", "bad", 0.6), ("scratch", "bad", 0.6)):
        write_run(cls_results, method, "lung_seg", 100, 42, quality, value)
    invented = tmp_path / "invented.csv"  # INVENTED TEST DATA, not published numbers
    invented.write_text(
        "method,task,fraction,metric,value,std,citation,protocol,note\n"
        "mae,luna16_cls,100,auc,0.9,0.01,Invented & Co. 2099 (test data),probe_x 10%,fake\n"
        "mae,lung_seg,100,dice,0.8,,Invented & Co. 2099 (test data),UNETR,fake\n"
    )
    rows = load_reference_rows(invented)
    bodies = [
        build_table(cls_results, layout=layout, reference_rows=rows, n_resamples=100, cell=cell).render(
            "latex", caption=f"{layout} results_1 {{v}}"
        )
        for layout, cell in (("cls", "std"), ("seg", "ci"), ("ablation", "std"))
    ]
    assert all(r"$^\dagger$" in body for body in bodies[:2]) and r"\textit{Reported" in bodies[0]
    document = "\n".join(
        [r"\documentclass{article}", r"\usepackage{booktabs}", r"\begin{document}", *bodies, r"\end{document}"]
    )
    (tmp_path / "layouts.tex").write_text(document, encoding="utf-8")
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "layouts.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    log = (tmp_path / "layouts.log").read_text(errors="replace")
    assert "Undefined control sequence" not in log and "Missing character" not in log


@pytest.mark.parametrize("n_patients, marked", [(5, False), (6, True)])
def test_too_few_patients_are_not_tested(tmp_path: Path, n_patients: int, marked: bool) -> None:
    """One method better on every patient: with 5 the bootstrap said p = 0, yet no test can reach 0.05 (2/32)."""
    results = tmp_path / "results"
    for method, dice in (("simcrop", 0.9), ("mae", 0.5)):
        path = write_run(results, method, "lung_seg", 100, 42, "good", dice)
        write_per_case(
            path.parent / "per_case.csv", [{"case": f"case{i}", "dice": dice + i / 100} for i in range(n_patients)]
        )
    built = build_table(results, layout="seg", n_resamples=200)
    md = built.render("md")
    assert md_cells(md)["mae"][0].endswith("†") is marked
    significance = {c["method"]: c["significance"] for c in built.explain()["cells"]}["mae"]
    if marked:
        assert significance["p_holm"] == pytest.approx(2 / 64) and significance["test_method"] == "exact"
    else:
        assert significance["p_raw"] is None and "differ on 5 patient(s): fewer than the 6" in significance["reason"]
        assert "1 cell(s) not tested against simcrop: the two methods differ on 5 or fewer patients" in md
    assert significance["n_discordant"] == n_patients


def test_families_read_the_renamed_kind_and_the_one_older_records_store() -> None:
    from simcrop_bench.reporting.tables.layouts import row_groups

    kinds = {"scratch": "no-pretraining", "old-scratch": "baseline", "mae": "self-supervised", "mine": ""}
    groups = row_groups("cls", ["mine", "old-scratch", "scratch", "mae"], kinds)
    assert [(g.label, g.methods) for g in groups] == [
        ("No pretraining", ("scratch", "old-scratch")),
        ("Self-supervised (image only)", ("mae",)),
        ("Other", ("mine",)),
    ]


def test_intervals_from_few_patients_carry_a_caption_warning(tmp_path: Path) -> None:
    """Reproducer: an interval was printed for 2 test patients without a warning."""
    results = tmp_path / "results"
    for seed in (42, 43):
        path = write_run(results, "simcrop", "lung_seg", 100, seed, "good", 0.9)
        write_per_case(path.parent / "per_case.csv", [{"case": f"case{i}", "dice": 0.8 + i / 100} for i in range(5)])
    md = build_table(results, layout="seg", cell="ci", reference="none", n_resamples=100).render("md")
    assert "Intervals of 1 cell(s) (lung_seg 100%) rest on 5 patients, fewer than 10" in md
