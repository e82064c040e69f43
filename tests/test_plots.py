"""Tests for the paper figures: data-efficiency curves and pretraining loss curves."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simcrop_bench.errors import UserError
from simcrop_bench.reporting.leaderboard import aggregate, records_frame
from simcrop_bench.reporting.loss_curves import loss_figure, plot_losses, pretraining_folders, read_loss_run
from simcrop_bench.reporting.plots import (
    FIG_WIDTH_IN,
    efficiency_data,
    efficiency_figure,
    metric_board,
    plot_efficiency,
)
from tests.conftest import run_cli
from tests.test_leaderboard import make_record, write_record

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_runs(results: Path, rows) -> None:
    """rows: (method, fraction, [values per seed], extra record fields) -> records under results/runs."""
    for method, fraction, values, *extra in rows:
        for seed, value in enumerate(values, start=42):
            fields = dict(extra[0]) if extra else {}
            details = fields.pop("details", None)
            record = make_record(method=method, fraction=fraction, seed=seed, value=value, **fields)
            if details is not None:
                record["details"] = details
            record["intervals"] = {"dice": {"low": value - 0.05, "high": value + 0.04}}
            write_record(results, record)


def write_losses(
    results: Path, method: str, key: str, steps: int = 5, *, synthetic: bool = True, partial: bool = False
) -> Path:
    folder = results / "checkpoints" / method / (f".{key}.partial" if partial else key)
    folder.mkdir(parents=True)
    if not partial:
        (folder / "meta.json").write_text(json.dumps({"method": method, "synthetic": synthetic}))
    lines = [
        json.dumps(
            {
                "step": s,
                "epoch": s / 5,
                "lr": 1e-4,
                "loss": 3.0 / s,
                "loss_mim": 1.0 / s,
                "loss_mlm": 2.0 / s,
                "logit_scale": 14.0,
            }
        )
        for s in range(1, steps + 1)
    ]
    (folder / "metrics.jsonl").write_text("\n".join(reversed(lines)) + "\n")  # order must not matter
    return folder


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    write_runs(
        root,
        [
            ("scratch", 10, [0.60, 0.64]),
            ("scratch", 100, [0.80, 0.84, 0.82]),
            ("simcrop", 1, [0.70]),
            ("simcrop", 10, [0.75]),
            ("simcrop", 100, [0.90]),
        ],
    )
    return root


# ----------------------------------------------------------------------- data preparation


def test_efficiency_data_one_line_per_method_with_bands(results: Path) -> None:
    data = efficiency_data(metric_board(results, "lung_seg"), "lung_seg")

    assert (data.metric, data.higher_is_better, data.synthetic) == ("dice", True, True)
    assert (data.profile, data.protocol) == ("demo", "heldout")
    assert data.fractions == [1.0, 10.0, 100.0]
    by_method = {s.method: s for s in data.series}
    assert list(by_method) == ["scratch", "simcrop"]

    scratch = by_method["scratch"]  # several seeds: mean ± sample std
    assert scratch.fractions == [10.0, 100.0]
    assert scratch.mean == pytest.approx([0.62, 0.82])
    assert scratch.n_seeds == [2, 3]
    assert scratch.band == ["std", "std"]
    std10 = math.sqrt(((0.60 - 0.62) ** 2 + (0.64 - 0.62) ** 2) / 1)
    assert scratch.low[0] == pytest.approx(0.62 - std10)
    assert scratch.high[1] == pytest.approx(0.84)  # std of .80/.84/.82 is .02

    simcrop = by_method["simcrop"]  # one seed: the record's bootstrap interval
    assert simcrop.fractions == [1.0, 10.0, 100.0]
    assert simcrop.mean == pytest.approx([0.70, 0.75, 0.90])
    assert simcrop.band == ["ci", "ci", "ci"]
    assert simcrop.low == pytest.approx([0.65, 0.70, 0.85])
    assert simcrop.high == pytest.approx([0.74, 0.79, 0.94])


def test_figure_has_one_line_per_method_with_the_data(results: Path) -> None:
    import matplotlib.text

    data = efficiency_data(metric_board(results, "lung_seg"), "lung_seg")
    fig = efficiency_figure(data)
    ax = fig.axes[0]

    lines = {line.get_label(): line for line in ax.get_lines()}
    assert sorted(lines) == ["scratch (n=2–3)", "simcrop (n=1)"]  # legend: method and its seeds
    for series in data.series:
        assert list(lines[f"{series.method} ({series.seeds_text})"].get_xdata()) == series.fractions
        assert list(lines[f"{series.method} ({series.seeds_text})"].get_ydata()) == pytest.approx(series.mean)
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1%", "10%", "100%"]
    assert ax.get_title() == "LUNA16 lungs (synthetic twin)" and ax.get_ylabel() == "Dice ↑"  # the tables' names
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "band: ± 1 std over seeds (n ≥ 2)" in legend and "band: 95 % patient-bootstrap CI (n = 1)" in legend
    # A paper column: 3.5 in wide, nothing smaller than 7 pt.
    assert fig.get_figwidth() == pytest.approx(FIG_WIDTH_IN)
    sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]
    assert sizes and min(sizes) >= 7


def test_secondary_metric_and_unknown_metric(results: Path) -> None:
    board = metric_board(results, "lung_seg", "loss")  # make_record also stores metrics["loss"] = 0.1
    data = efficiency_data(board, "lung_seg")
    assert data.metric == "loss" and data.higher_is_better is None
    assert all(m == pytest.approx(0.1) for s in data.series for m in s.mean)
    assert "↑" not in efficiency_figure(data).axes[0].get_ylabel()

    with pytest.raises(UserError, match="no numeric metric 'hd95'"):
        metric_board(results, "lung_seg", "hd95")
    with pytest.raises(UserError, match="no run records for task 'btcv_seg'"):
        metric_board(results, "btcv_seg")


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"protocol": "legacy"}, "protocol values"),
        ({"profile": "paper"}, "profile values"),
        ({"synthetic": False}, "synthetic twin and real data"),
    ],
)
def test_mixed_cells_are_refused(results: Path, extra: dict, message: str) -> None:
    write_runs(results, [("simcrop", 10, [0.5], {"cell_hash": "other", **extra})])
    board = metric_board(results, "lung_seg")
    with pytest.raises(UserError, match=message) as info:
        efficiency_data(board, "lung_seg")
    assert "\n" not in str(info.value)


def test_filter_resolves_the_mix(results: Path) -> None:
    write_runs(results, [("mae", 10, [0.5], {"protocol": "legacy"}), ("mae", 100, [0.6], {"protocol": "legacy"})])
    data = efficiency_data(metric_board(results, "lung_seg", protocol="legacy"), "lung_seg")
    assert [s.method for s in data.series] == ["mae"]
    assert data.protocol == "legacy"


def test_two_configs_at_one_point_are_ambiguous(results: Path) -> None:
    write_runs(results, [("simcrop", 10, [0.5], {"cell_hash": "newconfig"})])
    with pytest.raises(UserError, match="several configs"):
        efficiency_data(metric_board(results, "lung_seg"), "lung_seg")


def test_aggregate_board_without_records_of_task() -> None:
    board = aggregate(records_frame([make_record(task="ctrate_cls")]))
    with pytest.raises(UserError, match="no results for task 'lung_seg'"):
        efficiency_data(board, "lung_seg")


# -------------------------------------------------------------------------------- files


def test_png_and_pdf_are_written(results: Path, tmp_path: Path) -> None:
    from PIL import Image

    png, pdf = tmp_path / "fig" / "eff.png", tmp_path / "eff.pdf"
    plot_efficiency(results, "lung_seg", png)
    plot_efficiency(results, "lung_seg", pdf)

    assert png.read_bytes()[:8] == PNG_MAGIC
    assert pdf.read_bytes()[:5] == b"%PDF-"
    with Image.open(png) as image:
        assert image.size[0] == round(FIG_WIDTH_IN * 300)
        assert image.info["dpi"][0] == pytest.approx(300, abs=1)
    assert sorted(p.name for p in png.parent.iterdir()) == ["eff.png"]  # no temporary left
    mask = os.umask(0)
    os.umask(mask)
    assert png.stat().st_mode & 0o777 == 0o666 & ~mask  # not the temporary file's 0600


def test_unsupported_format_writes_nothing(results: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"eff\.svg: unsupported figure format"):
        plot_efficiency(results, "lung_seg", tmp_path / "eff.svg")
    assert not (tmp_path / "eff.svg").exists()


def test_no_half_written_file_on_error(results: Path, tmp_path: Path, monkeypatch) -> None:
    from matplotlib.figure import Figure

    out = tmp_path / "plots" / "eff.png"
    out.parent.mkdir()
    out.write_bytes(b"previous figure")

    def broken_savefig(self, fname, **kwargs):
        Path(fname).write_bytes(PNG_MAGIC + b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        plot_efficiency(results, "lung_seg", out)
    assert out.read_bytes() == b"previous figure"  # untouched
    assert [p.name for p in out.parent.iterdir()] == ["eff.png"]  # temporary removed

    with pytest.raises(UserError):  # refused before anything is drawn
        efficiency_data(metric_board(results, "lung_seg", profile="paper"), "lung_seg")


# --------------------------------------------------------------------------------- losses


def test_loss_run_reads_every_loss_component(tmp_path: Path) -> None:
    folder = write_losses(tmp_path, "simcrop", "0123456789ab")
    run = read_loss_run(folder)

    assert run.label == "simcrop/01234567"
    assert run.synthetic is True
    assert run.steps == [1, 2, 3, 4, 5]
    assert list(run.components) == ["loss", "loss_mim", "loss_mlm"]  # not lr, epoch, logit_scale
    assert run.components["loss_mim"] == pytest.approx([1, 1 / 2, 1 / 3, 1 / 4, 1 / 5])
    assert list(read_loss_run(folder, ["logit_scale"]).components) == ["logit_scale"]
    with pytest.raises(UserError, match="no column"):
        read_loss_run(folder, ["loss_nope"])


def test_loss_figure_lines(tmp_path: Path) -> None:
    runs = [read_loss_run(write_losses(tmp_path, "mae", key)) for key in ("aaaa1111", "bbbb2222")]
    ax = loss_figure(runs).axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert len(labels) == 6 and "masked image modelling (run 1)" in labels and "total loss (run 2)" in labels
    first = ax.get_lines()[0]
    assert list(first.get_xdata()) == [1, 2, 3, 4, 5]
    assert list(first.get_ydata()) == pytest.approx([3, 1.5, 1, 0.75, 0.6])
    assert ax.get_title() == "mae pretraining (synthetic twin)"  # no hash in the title: it is in the footnote
    assert ax.get_ylabel() == "loss (each component, unweighted)"
    assert [t.get_text() for t in loss_figure(runs).texts] == ["run 1: mae/aaaa1111\nrun 2: mae/bbbb2222"]
    assert not loss_figure(runs, footnote=False).texts


def test_loss_smoothing_is_a_trailing_nan_aware_mean(tmp_path: Path) -> None:
    from simcrop_bench.reporting.loss_curves import smoothed

    assert smoothed([1.0, 3.0, math.nan, 5.0], 2) == pytest.approx([1.0, 2.0, 3.0, 5.0])
    run = read_loss_run(write_losses(tmp_path, "mae", "aaaa1111"))
    ax = loss_figure([run], smooth=3).axes[0]
    labelled = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert [line.get_label() for line in labelled] == [
        "total loss",
        "masked image modelling",
        "masked report modelling",
    ]
    assert list(labelled[0].get_ydata()) == pytest.approx([3, 2.25, 11 / 6, 13 / 12, 2.35 / 3])
    assert len(ax.get_lines()) == 6  # the raw curves stay, faint and unlabelled
    assert ax.get_ylabel().endswith("3-step moving average")


def test_efficiency_band_is_clipped_and_styles_do_not_depend_on_the_other_methods(tmp_path: Path) -> None:
    """Reproducers: a ± std band drawn above AUROC 1.0; scratch blue in one figure, orange in the next."""
    import numpy as np

    root = tmp_path / "results"
    write_runs(root, [("scratch", 10, [0.90, 0.99, 1.0]), ("scratch", 100, [0.95, 1.0, 0.93])])
    write_runs(root, [("mae", 10, [0.5, 0.6]), ("mae", 100, [0.7, 0.8])])
    both = efficiency_data(metric_board(root, "lung_seg"), "lung_seg")
    alone = efficiency_data(metric_board(root, "lung_seg").query("method == 'scratch'"), "lung_seg")

    def drawn(data):
        ax = efficiency_figure(data).axes[0]
        lines = {line.get_label().split(" ")[0]: (line.get_color(), line.get_marker()) for line in ax.get_lines()}
        tops = [np.max(c.get_paths()[0].vertices[:, 1]) for c in ax.collections]
        return lines, tops, ax.get_ylim()

    lines_both, tops, ylim = drawn(both)
    lines_alone, _, _ = drawn(alone)
    assert lines_both["scratch"] == lines_alone["scratch"] == ("#7f7f7f", "v")  # kind "" in the test records: "other"
    assert lines_both["mae"] != lines_both["scratch"]
    assert max(tops) <= 1.0 and ylim[1] <= 1.0  # the 0.963 ± 0.055 band stops at 1


def test_no_footnote_and_identical_training_lists(tmp_path: Path) -> None:
    from simcrop_bench.reporting.plots import decorate

    root = tmp_path / "results"
    write_runs(
        root,
        [
            ("scratch", 1, [0.6], {"details": {"train_ids_sha256": "same"}}),
            ("scratch", 10, [0.6], {"details": {"train_ids_sha256": "same"}}),
            ("scratch", 100, [0.8], {"details": {"train_ids_sha256": "all"}}),
        ],
    )
    out = tmp_path / "curve.png"
    data = plot_efficiency(root, "lung_seg", out, footnote=False)
    assert data.identical_lists == [(1.0, 10.0)]
    fig = efficiency_figure(data, footnote=False)
    assert not fig.texts and efficiency_figure(data).texts  # the footnote is optional
    assert fig.axes[0].get_xlabel() == "training fraction\n1% = 10%: same training cases"
    from simcrop_bench.reporting.leaderboard import load_records

    decorate(data, [r for r in load_records(root) if r["fraction"] != 10])
    assert data.identical_lists == []


def test_pretraining_folders_and_errors(tmp_path: Path) -> None:
    done = write_losses(tmp_path, "simcrop", "aaaa1111")
    running = write_losses(tmp_path, "simcrop", "bbbb2222", partial=True)
    (tmp_path / "checkpoints" / "simcrop" / "cccc3333").mkdir()  # no loss log (imported weights)

    assert pretraining_folders(tmp_path, "simcrop") == [done]
    assert pretraining_folders(tmp_path, "simcrop", partial=True) == [running, done]
    assert pretraining_folders(tmp_path, "simcrop", pretrain_hash="bbbb", partial=True) == [running]
    assert read_loss_run(running).label == "simcrop/bbbb2222 (in progress)"
    with pytest.raises(UserError, match="no pretraining matching 'ffff'"):
        pretraining_folders(tmp_path, "simcrop", pretrain_hash="ffff")
    with pytest.raises(UserError, match="no pretrainings stored for method 'mae'"):
        pretraining_folders(tmp_path, "mae")

    (done / "metrics.jsonl").write_text('{"step": 1, "loss": 1}\n{"step": 2, "lo\n')
    with pytest.raises(UserError, match=r"metrics\.jsonl:2: not valid JSON"):
        read_loss_run(done)


def test_plot_losses_writes_pdf(tmp_path: Path) -> None:
    write_losses(tmp_path, "simcrop", "aaaa1111")
    out = tmp_path / "losses.pdf"
    runs = plot_losses(tmp_path, "simcrop", out, log_y=True)
    assert [r.label for r in runs] == ["simcrop/aaaa1111"]
    assert out.read_bytes()[:5] == b"%PDF-"


# ------------------------------------------------------------------------------------ CLI


def test_cli_plot_verbs(results: Path, tmp_path: Path) -> None:
    write_losses(results, "simcrop", "aaaa1111")
    eff = run_cli(
        "plot",
        "efficiency",
        "--task",
        "lung_seg",
        "--out",
        str(tmp_path / "e.png"),
        "--results",
        str(results),
        "--no-footnote",
    )
    assert eff.returncode == 0, eff.stderr
    assert "2 methods" in eff.stdout and "synthetic twin" in eff.stdout
    assert (tmp_path / "e.png").read_bytes()[:8] == PNG_MAGIC
    losses = run_cli(
        "plot",
        "losses",
        "--method",
        "simcrop",
        "--out",
        str(tmp_path / "l.png"),
        "--results",
        str(results),
        "--smooth",
        "3",
        "--no-footnote",
    )
    assert losses.returncode == 0, losses.stderr
    assert (tmp_path / "l.png").is_file()

    write_runs(results, [("simcrop", 10, [0.5], {"cell_hash": "legacy1", "protocol": "legacy"})])
    mixed = run_cli(
        "plot", "efficiency", "--task", "lung_seg", "--out", str(tmp_path / "m.png"), "--results", str(results)
    )
    assert mixed.returncode == 2
    assert mixed.stderr.startswith("error: ") and mixed.stderr.count("\n") == 1
    assert "protocol" in mixed.stderr
    assert not (tmp_path / "m.png").exists()


def test_modules_import_cheaply() -> None:
    code = (
        "import sys, simcrop_bench.cli, simcrop_bench.reporting.plots, simcrop_bench.reporting.loss_curves; "
        "import simcrop_bench.reporting.report; "
        "print('HEAVY', [m for m in ('torch', 'monai', 'transformers', 'pandas', 'matplotlib') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
