"""The reliability suite (issue #18): nothing lost, nothing leaked, nothing escapes.

Every bad input of ``BAD_INPUTS`` is replayed through the command line as a user types it, and must give
exit 2, one ``error:`` line naming the file or option and the cause, no traceback, no record, and no
folder or file left behind (no skeleton folders, no staging folders). The count of these cases is the
"bad inputs passed / tried" figure of ``docs/reliability.md``; the stores are in ``test_stores.py``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from simcrop_bench.data.synthetic.ctrate import write_ctrate_twin
from simcrop_bench.data.synthetic.luna16 import write_luna16_twin


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """Tiny clean twins every damaged root is copied from."""
    base = tmp_path_factory.mktemp("clean")
    write_luna16_twin(base / "luna16", n_cases=4)
    write_ctrate_twin(base / "ctrate", n_cases=4, layout="simcrop")
    import torch

    from simcrop_bench.models.config import EncoderConfig
    from simcrop_bench.models.vit3d import ViT3D, export_released

    torch.save(
        export_released(ViT3D(EncoderConfig(img_size=(32, 32, 16), embed_dim=32, depth=1, num_heads=1))),
        base / "good.pth",
    )

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"model": Evil()}, base / "evil.pth")
    return base


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """The CLI in this process (no interpreter start-up per case): exit code and stderr."""
    import contextlib
    import io

    from simcrop_bench.cli import main

    err, out = io.StringIO(), io.StringIO()
    saved_env, saved_argv, saved_term = dict(os.environ), sys.argv, signal.getsignal(signal.SIGTERM)
    os.environ.update(env or {})
    sys.argv = ["simcrop-bench", *args]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
        signal.signal(signal.SIGTERM, saved_term)
    return code, err.getvalue()


def snapshot(*folders: Path) -> dict[str, int]:
    """Every path under ``folders`` (files with their size): what a refused command must leave unchanged."""
    seen = {}
    for folder in folders:
        for path in [folder, *folder.rglob("*")] if folder.exists() else []:
            seen[str(path)] = path.stat().st_size if path.is_file() else -1
    return seen


# --- damage to copies of the clean twins -------------------------------------------------------------------


def luna(clean, tmp: Path) -> Path:
    root = tmp / "luna16"
    shutil.copytree(clean / "luna16", root)
    return root


def ctrate(clean, tmp: Path) -> Path:
    root = tmp / "ctrate"
    shutil.copytree(clean / "ctrate", root)
    return root


def first_case(root: Path, split_file="dataset_100.json") -> tuple[Path, Path]:
    entry = json.loads((root / split_file).read_text())["training"][0]
    return root / entry["image"], root / entry["label"]


def resave(path: Path, array: np.ndarray, affine=None) -> None:
    nib.save(nib.Nifti1Image(array, nib.load(str(path)).affine if affine is None else affine), str(path))


def json_leak(root: Path) -> None:
    doc = json.loads((root / "dataset_100.json").read_text())
    doc["testing"].append(doc["training"][0])
    (root / "dataset_100.json").write_text(json.dumps(doc))


def csv_leak(root: Path, train="train_list.csv", test="test_list.csv", row=None) -> None:
    rows = list(csv.reader((root / train).open()))
    text = (root / test).read_text()
    with (root / test).open("a", newline="") as handle:
        handle.write("" if text.endswith("\n") else "\n")
        csv.writer(handle, lineterminator="\n").writerow(row or rows[1])


def short_mask(root: Path) -> None:
    _, label = first_case(root)
    resave(label, np.asanyarray(nib.load(str(label)).dataobj)[:, :, :16])


def label_seven(root: Path) -> None:
    _, label = first_case(root)
    mask = np.asanyarray(nib.load(str(label)).dataobj).copy()
    mask[0, 0, 0] = 7  # outside the body: a crop to the foreground would have cut it away
    resave(label, mask)


def nan_voxels(root: Path) -> None:
    image, _ = first_case(root)
    hu = np.asanyarray(nib.load(str(image)).dataobj).astype(np.float32)
    hu[10:12, 10:12, 10:12] = np.nan
    resave(image, hu)


def shifted_mask(root: Path) -> None:
    _, label = first_case(root)
    affine = nib.load(str(label)).affine.copy()
    affine[:3, 3] += 25.0
    resave(label, np.asanyarray(nib.load(str(label)).dataobj), affine)


def report_bytes(root: Path, old: bytes, new: bytes) -> None:
    path = root / "radiology_text_reports" / "train_reports.csv"
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new, 1))


def non_utf8_report(root: Path) -> None:
    report_bytes(root, b"Chest pain.", b"Chest pain\xff.")


def empty_report(root: Path) -> None:
    path = root / "radiology_text_reports" / "train_reports.csv"
    rows = list(csv.reader(path.open(encoding="utf-8")))
    rows[1][3] = ""  # Findings_EN
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)


def ctrate_patient_leak(root: Path) -> None:
    rows = list(csv.reader((root / "train_list.csv").open()))
    other_scan = rows[1][0].replace("_a_", "_z_")  # another scan of a training patient
    csv_leak(root, row=[other_scan, *rows[1][1:]])


# --- the bad inputs -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    name: str
    args: tuple[str, ...]  # {luna} {ctrate} {R} {T} {good} {evil} are filled in
    message: str  # a fragment the error line must hold (the cause, and the file or option)
    damage: object = None  # applied to the copied twin(s)
    ctrate_env: bool = False  # the copied CT-RATE root is the configured pretraining root


RUN = ("run", "-m", "scratch", "-t", "luna16_cls", "--data-root", "{luna}", "--results", "{R}", "--device", "cpu")
SEG = ("run", "-m", "scratch", "-t", "lung_seg", "--data-root", "{luna}", "--results", "{R}", "--device", "cpu")
PRETRAIN = ("run", "-m", "simcrop", "-t", "luna16_cls", "--data-root", "{luna}", "--results", "{R}", "--device", "cpu")
BAD_INPUTS = [
    # refused while the run is planned
    Bad("negative seed", (*RUN, "--seed", "-1"), "--seed -1: expected an integer from 0"),
    Bad("seed past 2**32", (*RUN, "--seed", "4294967296"), "--seed 4294967296"),
    Bad("unknown device", (*RUN[:-2], "--device", "tpu"), "--device tpu: expected auto, cpu, cuda or cuda:N"),
    Bad("device via --set", (*RUN, "--set", "run.device=tpu"), "run.device tpu"),
    Bad("absent CUDA device", (*RUN[:-2], "--device", "cuda:7"), "run.device=cuda:7: "),
    Bad("results is a file", (*RUN[:-4], "--results", "{T}/file", "--device", "cpu"), "is not a folder"),
    Bad("results under a file", (*RUN[:-4], "--results", "{T}/file/sub", "--device", "cpu"), "cannot be created"),
    Bad("unknown profile", (*RUN, "--profile", "huge"), "--profile huge"),
    Bad("unknown protocol", (*RUN, "--protocol", "x"), "--protocol x"),
    Bad("unknown fraction", (*RUN, "--fraction", "7"), "--fraction 7"),
    Bad("unknown method", ("run", "-m", "nope", "-t", "luna16_cls", "--results", "{R}"), "nope"),
    Bad("unknown task", ("run", "-m", "scratch", "-t", "nope", "--results", "{R}"), "nope"),
    Bad("unknown --set key", (*RUN, "--set", "task.nope=1"), "nope"),
    Bad(
        "missing data root",
        ("run", "-m", "scratch", "-t", "luna16_cls", "--data-root", "{T}/absent", "--results", "{R}"),
        "does not exist",
    ),
    Bad(
        "twin of another dataset",
        ("run", "-m", "scratch", "-t", "luna16_cls", "--data-root", "{ctrate}", "--results", "{R}", "--device", "cpu"),
        "holds a synthetic CT-RATE twin, not LUNA16",
    ),
    Bad(
        "malicious --weights",
        (
            "run",
            "--weights",
            "{evil}",
            "-t",
            "luna16_cls",
            "--data-root",
            "{luna}",
            "--results",
            "{R}",
            "--device",
            "cpu",
        ),
        "posix.system",
    ),
    # data integrity, on the raw files
    Bad(
        "case in training and testing (dataset_100.json)",
        SEG,
        "is in both 'training' and 'testing' (train/test leakage)",
        json_leak,
    ),
    Bad("row in train_list.csv and test_list.csv", RUN, "is also in train_list.csv (train/test leakage)", csv_leak),
    Bad("mask of another shape", SEG, "shape (64, 64, 16) differs from its image (64, 64, 32)", short_mask),
    Bad("label 7 outside the body", SEG, "unknown label values [7]", label_seven),
    Bad("NaN voxels", RUN, "8 NaN or infinite voxels", nan_voxels),
    Bad("mask affine off its image", SEG, "affine differs from its image's", shifted_mask),
    Bad(
        "non-UTF-8 report (pretraining)",
        PRETRAIN,
        "not UTF-8 text (byte 0xff); re-save it as UTF-8",
        non_utf8_report,
        True,
    ),
    Bad("empty report (pretraining)", PRETRAIN, "empty report (Findings_EN is blank)", empty_report, True),
    Bad(
        "patient in training and test (CT-RATE)",
        ("run", "-m", "scratch", "-t", "ctrate_cls", "--data-root", "{ctrate}", "--results", "{R}", "--device", "cpu"),
        "patient-level train/test leakage",
        ctrate_patient_leak,
    ),
    # user-given names and --out targets
    Bad(
        "weights import --name absolute",
        ("weights", "import", "{good}", "--name", "{T}/keep", "--results", "{R}"),
        "--name",
    ),
    Bad(
        "weights import --name ..",
        ("weights", "import", "{good}", "--name", "../../../escape", "--results", "{R}"),
        "expected a plain name",
    ),
    Bad(
        "weights import --name .",
        ("weights", "import", "{good}", "--name", ".", "--results", "{R}"),
        "expected a plain name",
    ),
    Bad(
        "weights import --name empty",
        ("weights", "import", "{good}", "--name", "", "--results", "{R}"),
        "expected a plain name",
    ),
    Bad(
        "weights import into a file",
        ("weights", "import", "{good}", "--name", "ok", "--results", "{T}/file"),
        "is not a folder",
    ),
    Bad(
        "weights import of a malicious file",
        ("weights", "import", "{evil}", "--name", "ok", "--results", "{R}"),
        "posix.system",
    ),
    Bad("weights inspect of a malicious file", ("weights", "inspect", "{evil}"), "would call posix.system"),
    Bad(
        "data synth over a folder",
        ("data", "synth", "-d", "luna16", "-o", "{T}/keep", "-n", "2"),
        "not a synthetic twin; refusing to replace it",
    ),
    Bad("data synth --seed -5", ("data", "synth", "-d", "luna16", "-o", "{T}/new", "--seed", "-5"), "--seed -5"),
    Bad("data synth --cases 0", ("data", "synth", "-d", "luna16", "-o", "{T}/new", "--cases", "0"), "--cases 0"),
    Bad("twin over a folder", ("twin", "luna16", "--out", "{T}/keep"), "not a synthetic twin"),
    Bad(
        "table --out over a record",
        ("table", "--results", "{R}", "--out", "{R}/runs/lung_seg/record.json"),
        "lies inside the results store",
    ),
    Bad(
        "table --explain over the results index",
        ("table", "--results", "{R}", "--explain", "{R}/.index.sqlite"),
        "lies inside the results store",
    ),
    Bad(
        "plot --out into the encoder store",
        ("plot", "efficiency", "-t", "lung_seg", "--results", "{R}", "--out", "{R}/checkpoints/x.png"),
        "lies inside the results store",
    ),
    Bad("report --out over the runs", ("report", "--results", "{R}", "--out", "{R}/runs"), "lies inside"),
]


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[b.name for b in BAD_INPUTS])
def test_bad_input_is_refused_before_work(bad, clean, tmp_path):
    tmp = tmp_path
    roots = {"luna": luna(clean, tmp), "ctrate": ctrate(clean, tmp)}
    if bad.damage is not None:
        bad.damage(roots["ctrate" if bad.ctrate_env or "ctrate_cls" in bad.args else "luna"])
    (tmp / "file").write_text("not a folder")
    (tmp / "keep").mkdir()
    (tmp / "keep" / "important.txt").write_text("keep me")
    fill = {"luna": roots["luna"], "ctrate": roots["ctrate"], "R": tmp / "R", "T": tmp, "good": clean / "good.pth"}
    fill["evil"] = clean / "evil.pth"
    args = [a.format(**{k: str(v) for k, v in fill.items()}) for a in bad.args]
    env = {"SIMCROP_BENCH_DATA_CTRATE": str(roots["ctrate"])} if bad.ctrate_env else {}
    cache = Path(os.environ["SIMCROP_BENCH_CACHE"])
    before = snapshot(tmp)

    code, err = cli(*args, env=env)

    assert code == 2, err
    lines = err.splitlines()
    assert lines and lines[0].startswith("error: ") and not any(line.startswith("error: ") for line in lines[1:]), err
    assert bad.message in err, err
    assert "Traceback" not in err
    after = snapshot(tmp)
    assert after == before, sorted(set(after) ^ set(before))  # no record, no skeleton, nothing touched
    assert not [p for p in cache.rglob("*") if ".partial" in p.name or ".replaced-" in p.name]


def test_weights_export_never_writes_over_its_input_or_into_a_results_store(clean, tmp_path):
    import shutil

    source = tmp_path / "encoder.pth"
    shutil.copy(clean / "good.pth", source)
    stored = tmp_path / "results" / "checkpoints" / "simcrop" / "abc123"
    stored.mkdir(parents=True)
    (tmp_path / "results" / "runs").mkdir()
    shutil.copy(clean / "good.pth", stored / "encoder.pth")
    before = snapshot(tmp_path)
    for out, message in (
        (source, "is the checkpoint being exported"),
        (stored / "encoder.pth", "lies inside the results store"),
        (tmp_path / "results" / "runs" / "x.pth", "lies inside the results store"),
    ):
        code, err = cli("weights", "export", str(source), "--out", str(out))
        assert code == 2 and message in err and "Traceback" not in err, err
    assert snapshot(tmp_path) == before
    code, err = cli("weights", "export", str(source), "--out", str(tmp_path / "results" / "released.pth"))
    assert code == 0, err  # beside the store's folders is the user's own space, as for table --out


def test_refused_results_root_that_is_read_only(tmp_path):
    """A read-only --results, as an unprivileged user meets it (root ignores permissions: a forked child
    drops to `nobody` first, with the modules already loaded)."""
    from simcrop_bench.errors import ConfigError
    from simcrop_bench.run.preflight import check_results_root

    folder = Path(tempfile.mkdtemp(prefix="simcrop-ro-"))
    try:
        folder.chmod(0o555)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report the refusal (or its absence) through the pipe
            try:
                if os.geteuid() == 0:
                    os.setuid(65534)
                for target in (folder, folder / "results"):
                    try:
                        check_results_root(target)
                        os.write(write, b"accepted\n")
                    except ConfigError as exc:
                        os.write(write, f"{exc}\n".encode())
            finally:
                os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        with os.fdopen(read) as pipe:
            lines = pipe.read().splitlines()
        assert lines == [
            f"--results {folder}: the folder is not writable",
            f"--results {folder / 'results'}: cannot be created, {folder} is not writable",
        ]
        assert list(folder.iterdir()) == []
    finally:
        shutil.rmtree(folder)


def test_data_check_reports_what_run_refuses(clean, tmp_path):
    """`data check` and `run` share the checks: the report names each problem with its file."""
    from simcrop_bench.data.check.ctrate import check_ctrate_simcrop
    from simcrop_bench.data.check.luna16 import check_luna16_simcrop

    root = luna(clean, tmp_path)
    json_leak(root)
    csv_leak(root)
    found = [str(p) for p in check_luna16_simcrop(root).problems]
    assert any(p.startswith(str(root / "dataset_100.json")) and "train/test leakage" in p for p in found), found
    assert any(p.startswith(str(root / "test_list.csv")) and "train/test leakage" in p for p in found), found
    ct = ctrate(clean, tmp_path)
    non_utf8_report(ct)
    found = [str(p) for p in check_ctrate_simcrop(ct).problems]
    reports = ct / "radiology_text_reports" / "train_reports.csv"
    line = reports.read_bytes().split(b"\xff")[0].count(b"\n") + 1  # the line an editor shows
    assert found == [f"{reports}: line {line}: not UTF-8 text (byte 0xff); re-save it as UTF-8"]


def test_gate_verdict_is_remembered_until_a_file_changes(clean, tmp_path):
    from simcrop_bench.data.check.gate import root_problems

    root, cache = luna(clean, tmp_path), tmp_path / "cache"
    assert root_problems("luna16", root, cache) == []
    assert len(list((cache / "data-checks").iterdir())) == 1
    assert root_problems("luna16", root, cache) == []  # read back
    nan_voxels(root)  # same names, new content: checked again
    assert any("NaN" in str(p) for p in root_problems("luna16", root, cache))
    assert len(list((cache / "data-checks").iterdir())) == 2


def test_purging_test_patients_waives_split_leakage_only(clean, tmp_path):
    """protocol.md §5.3: with `task.purge_test_patients_from_train` the task removes the leaking rows itself."""
    from simcrop_bench.data.check.gate import require_clean_root
    from simcrop_bench.data.check.root import PURGEABLE
    from simcrop_bench.errors import DataError

    root, cache = luna(clean, tmp_path), tmp_path / "cache"
    csv_leak(root)
    with pytest.raises(DataError, match="train/test leakage"):
        require_clean_root("luna16", root, cache)
    require_clean_root("luna16", root, cache, waived=frozenset({PURGEABLE}))
    json_leak(root)  # the segmentation lists have no purge: still refused
    with pytest.raises(DataError, match=r"'training' and 'testing'.*1 problem\(s\)"):
        require_clean_root("luna16", root, cache, waived=frozenset({PURGEABLE}))
