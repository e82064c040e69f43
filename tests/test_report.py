"""Tests for the static HTML report, including a look at it through headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from simcrop_bench.errors import UserError
from simcrop_bench.reporting import report as report_module
from simcrop_bench.reporting.report import build_report, git_commit
from simcrop_bench.run.records import write_per_case
from tests.test_leaderboard import make_record, write_record
from tests.test_plots import write_losses

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def build_results(root: Path) -> Path:
    """Two tasks with 2-3 fractions, three methods, 1-2 seeds, per-case files and two pretrainings."""
    values = {"scratch": 0.60, "mae": 0.68, "simcrop": 0.74}
    for method, base in values.items():
        for task, metric, fractions in (("lung_seg", "dice", (10, 100)), ("ctrate_cls", "auroc", (1, 10, 100))):
            for i, fraction in enumerate(fractions):
                for seed in (42, 43) if method != "mae" else (42,):
                    value = base + 0.05 * i + 0.01 * (seed - 42)
                    record = make_record(
                        method=method, task=task, fraction=fraction, seed=seed, value=value, metric=metric
                    )
                    record["intervals"] = {metric: {"low": value - 0.04, "high": value + 0.03}}
                    path = write_record(root, record)
                    write_per_case(
                        path.parent / "per_case.csv", [{"case": f"case{c}", metric: value + 0.01 * c} for c in range(3)]
                    )
    # One fraction only: listed, no curve.
    write_record(root, make_record(method="simcrop", task="btcv_seg", fraction=100, value=0.7))
    for method in ("simcrop", "mae"):
        write_losses(root, method, f"{method}0123456789", steps=20)
    return root


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.images: list[dict] = []
        self.th: list[str] = []
        self._in_th = False
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag in ("link", "script") or (tag == "a" and "href" in attrs):
            self.links.append(tag)
        if tag == "th":
            self._in_th = True
            self.th.append("")

    def handle_endtag(self, tag):
        if tag == "th":
            self._in_th = False

    def handle_data(self, data):
        if self._in_th:
            self.th[-1] += data


def parse(html: str) -> _Dom:
    dom = _Dom()
    dom.feed(html)
    return dom


# ------------------------------------------------------------------------------- content


def test_report_contents(tmp_path: Path) -> None:
    results = build_results(tmp_path / "results")
    out = tmp_path / "report"
    built = build_report(results, out, generated=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))

    html = built.index.read_text(encoding="utf-8")
    dom = parse(html)
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "efficiency-ctrate_cls-demo-heldout-synthetic.png",
        "efficiency-lung_seg-demo-heldout-synthetic.png",
        "index.html",
        "losses-mae.png",
        "losses-simcrop.png",
    ]
    assert sorted(img["src"] for img in dom.images) == [n for n in names if n.endswith(".png")]
    assert all(img.get("alt") for img in dom.images)
    assert dom.tags["table"] >= 2  # leaderboard + paper table(s)
    assert {"task", "method", "mean ± std (n)"} <= set(dom.th)
    assert "Synthetic data" in html and 'class="banner"' in html
    assert "btcv_seg" in html and "single training fraction: btcv_seg" in html
    assert "2026-01-02 03:04:05 UTC" in html
    assert str(results.resolve()) in html
    assert not dom.links  # offline: no stylesheets, scripts or links out
    assert not re.search(r"(src|href)=\"(https?:)?//", html)


def test_footer_names_dirty_flag_versions_and_devices(tmp_path: Path) -> None:
    from simcrop_bench.run.provenance import package_versions

    results = build_results(tmp_path / "results")
    record = make_record(method="scratch", task="luna16_cls", fraction=100, value=0.7, metric="auc")
    record["provenance"] = {
        "git_commit": "f" * 40,
        "git_dirty": True,
        "device": "NVIDIA H100 (cuda)",
        "packages": {"torch": "2.9.0", "monai": "1.5.1"},
    }
    write_record(results, record)
    html = build_report(results, tmp_path / "report").index.read_text(encoding="utf-8")
    footer = html[html.index("<footer>") :]
    assert re.search(r"<dt>git commit</dt><dd>[0-9a-f]{40} \((clean|dirty: uncommitted changes)\)</dd>", footer)
    here = package_versions()
    assert f"<dt>torch / MONAI</dt><dd>{here['torch']} / {here['monai']}</dd>" in footer
    assert "<dt>run devices</dt><dd>NVIDIA H100 (cuda) (1 runs); cpu (26 runs)</dd>" in footer
    assert "2.9.0 / 1.5.1 (1 runs)" in footer and "ffffffffffff (dirty) (1 runs)" in footer


def test_mixed_protocols_split_the_table_and_identical_lists_are_named(tmp_path: Path) -> None:
    """Reproducers: the report dropped the classification table when a column mixed probe protocols;
    two fractions trained on one list were drawn as two points without a word."""
    results = tmp_path / "results"
    for method, protocol in (("scratch", "heldout"), ("mae", "legacy")):
        for fraction in (1, 10):
            record = make_record(
                method=method, task="luna16_cls", fraction=fraction, value=0.6, metric="auc", protocol=protocol
            )
            record["details"] = {"train_ids_sha256": "one list"}
            write_record(results, record)
    html = build_report(results, tmp_path / "report").index.read_text(encoding="utf-8")
    classification = html[html.index("<h3>Classification</h3>") : html.index("<h3>Segmentation</h3>")]
    assert classification.startswith('<h3>Classification</h3>\n<table class="simcrop-table">')
    assert "1% (heldout)" in classification and "1% (legacy)" in classification
    assert "Columns are split by protocol" in classification
    for protocol in ("heldout", "legacy"):  # the table names them too
        assert f"LUNA16 1% and 10% ({protocol}): identical training lists, so these columns do not" in classification
    assert (
        html.count(
            "Fractions 1% and 10% trained on identical case lists: "
            "their points do not compare two amounts of training data."
        )
        == 2
    )


def test_text_is_escaped(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for fraction in (10, 100):
        write_record(results, make_record(method="a<b>&c", fraction=fraction, cell_hash=f"x{fraction}"))
    build_report(results, tmp_path / "out")
    html = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "a&lt;b&gt;&amp;c" in html
    assert "a<b>" not in html


def test_table_sections_render_real_tables_and_note_what_they_cannot_show(tmp_path: Path) -> None:
    sections = dict(report_module._table_sections(build_results(tmp_path / "results")))
    assert list(sections) == ["Classification", "Segmentation", "SimCroP ablations"]
    # The fake CT-RATE predictions hold no labels: the table is shown, without a test, and says why.
    assert sections["Classification"].startswith('<table class="simcrop-table">')
    assert "No significance marks:" in sections["Classification"] and "†" not in sections["Classification"]
    # Three test cases per segmentation run: too few patients for any test, and the caption says so.
    assert "not tested against simcrop: the two methods differ on 3 or fewer patients" in sections["Segmentation"]
    assert sections["SimCroP ablations"].startswith('<p class="note">No simcrop ablations table:')


def test_errors_and_overwrite(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        build_report(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty" / "runs").mkdir(parents=True)
    with pytest.raises(UserError, match="no run records"):
        build_report(tmp_path / "empty", tmp_path / "out")
    results = build_results(tmp_path / "results")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        build_report(results, tmp_path / "file")
    build_report(results, tmp_path / "out")
    build_report(results, tmp_path / "out")  # a second report replaces the first in place
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_git_commit_reads_the_checkout_without_git(tmp_path: Path) -> None:
    dot_git = tmp_path / "repo" / ".git"
    (dot_git / "refs" / "heads").mkdir(parents=True)
    (dot_git / "HEAD").write_text("ref: refs/heads/main\n")
    assert git_commit(tmp_path / "repo") is None
    (dot_git / "packed-refs").write_text("# pack-refs\n" + "a" * 40 + " refs/heads/main\n")
    assert git_commit(tmp_path / "repo") == "a" * 40
    (dot_git / "refs" / "heads" / "main").write_text("b" * 40 + "\n")
    assert git_commit(tmp_path / "repo") == "b" * 40
    (dot_git / "HEAD").write_text("c" * 40 + "\n")
    assert git_commit(tmp_path / "repo") == "c" * 40
    assert git_commit(tmp_path / "nothing") is None


def test_cli_report(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from simcrop_bench.cli.app import app

    results = build_results(tmp_path / "results")
    result = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "site"), "--results", str(results)])
    assert result.exit_code == 0, result.output
    assert "(4 figures)" in result.output
    assert (tmp_path / "site" / "index.html").is_file()


# ------------------------------------------------------------------------------- browser


@pytest.mark.browser
@pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (Debian: apt-get update && apt-get install -y chromium)"
)
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    results = build_results(tmp_path / "results")
    built = build_report(results, tmp_path / "report")
    url = built.index.resolve().as_uri()
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,2000",
    ]
    shot = tmp_path / "screenshot.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120)
    dumped = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)

    assert shot.is_file() and shot.stat().st_size > 10_000
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[:2] == (2000, 1200)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # text, tables and plots, not a blank page

    dom = parse(dumped.stdout)
    assert dom.tags.get("table", 0) >= 2, dumped.stderr[-2000:]
    headers = " | ".join(dom.th)
    # Paper tables head their columns with the task (or its dataset label, tables.py's choice).
    for names in (("ctrate_cls", "CT-RATE"), ("lung_seg", "LUNA16 lungs")):
        assert any(name in headers for name in names), headers
    assert len(dom.images) == 4
    for img in dom.images:
        assert (built.index.parent / img["src"]).is_file(), img["src"]
    keep = os.environ.get("SIMCROP_BENCH_KEEP_SCREENSHOT")  # a path, to look at the page by eye
    if keep:
        shutil.copy(shot, keep)
