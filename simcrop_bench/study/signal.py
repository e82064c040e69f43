"""The learning-signal study (issue #15; design in ``docs/study-signal.md``).

One CT-RATE twin of ``patients`` patients; every method pretrains on its training volumes and reports under the
same budget (``train.epochs``, so the same optimizer steps of the same batch for all), then ``ctrate_cls`` is
linear-probed (``lp-cached``) at each fraction and seed on its held-out patients. Everything goes through the
ordinary benchmark cell (:func:`simcrop_bench.run.cell.run_job`), into a results folder of the study's own; the
tables come from :func:`simcrop_bench.reporting.tables.build.build_table`, so they use the project's current
significance test.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from simcrop_bench.data.datasets import TWIN_SEED
from simcrop_bench.errors import UserError

STUDY = "signal"
TASK = "ctrate_cls"
METHODS = ("scratch", "mae", "simmim", "clip", "mrm", "simcrop", "simcrop-noalign", "simcrop-nofusion")
GROUNDED = ("simcrop", "simcrop-nofusion", "simcrop-noalign")  # methods with a sentence–patch similarity
PROBE_OVERRIDES = ("task.probe=cached",)  # lp-cached: one feature pass per encoder (design: docs/study-signal.md)
ENV_ROOT = "SIMCROP_BENCH_DATA_CTRATE"  # where pretraining finds CT-RATE (data.roots)


@dataclass
class SignalStudy:
    """The study's settings; the defaults are the design's (``docs/study-signal.md``)."""

    patients: int = 256
    twin_seed: int = TWIN_SEED
    methods: tuple[str, ...] = METHODS
    fractions: tuple[int, ...] = (1, 10, 100)
    seeds: tuple[int, ...] = (42, 43, 44, 45, 46)
    epochs: int = 2  # pretraining budget: the same epochs (so steps of batch 2) for every method
    results: Path = Path("results") / "study-signal"
    device: str = "auto"
    extra: list[str] = field(default_factory=list)  # further --set overrides for every cell

    @property
    def is_design(self) -> bool:
        """Whether these are the designed settings; anything else is a pilot."""
        design = SignalStudy()
        return (
            self.patients >= design.patients
            and self.epochs == design.epochs
            and set(self.methods) == set(design.methods)
            and set(self.fractions) == set(design.fractions)
            and len(self.seeds) >= len(design.seeds)
            and not self.extra
        )

    def twin_root(self) -> Path:
        from simcrop_bench.data.roots import cache_dir

        return cache_dir() / "twins" / f"ctrate-study-p{self.patients}-seed{self.twin_seed}"

    def overrides(self, method_cls: type) -> list[str]:
        budget = [f"method.train.epochs={self.epochs}"] if method_cls.pretrains else []
        return [*budget, *PROBE_OVERRIDES, *self.extra]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["results"] = str(self.results)
        return out


def check(study: SignalStudy) -> None:
    if study.patients < 8:
        raise UserError(f"--patients {study.patients}: the study needs at least 8 patients (2 held out)")
    if study.epochs < 1:
        raise UserError(f"--epochs {study.epochs}: the pretraining budget must be at least 1 epoch")
    if not study.methods or not study.seeds or not study.fractions:
        raise UserError("the study needs at least one method, seed and fraction")
    if len(set(study.seeds)) != len(study.seeds):
        raise UserError(f"--seeds {','.join(map(str, study.seeds))}: a seed is repeated")


def study_twin(study: SignalStudy) -> Path:
    """The study's CT-RATE twin (SimCroP layout), written once by the unchanged generator."""
    from simcrop_bench.data.synthetic.ctrate import MARKER, write_ctrate_twin
    from simcrop_bench.util.atomic import staged_dir

    root = study.twin_root()
    if not (root / MARKER).is_file():
        with staged_dir(root) as staging:
            write_ctrate_twin(staging, n_cases=study.patients, seed=study.twin_seed, layout="simcrop")
    return root


@contextlib.contextmanager
def pretraining_root(root: Path) -> Iterator[None]:
    """Point pretraining at ``root`` for the study (methods resolve CT-RATE through the environment)."""
    previous = os.environ.get(ENV_ROOT)
    os.environ[ENV_ROOT] = str(root)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ENV_ROOT, None)
        else:
            os.environ[ENV_ROOT] = previous


def requests(study: SignalStudy, twin: Path) -> list:
    """Every cell of the study, methods in order, as run requests (validated before any work starts)."""
    from simcrop_bench import registry
    from simcrop_bench.run.cell import RunRequest, plan_run

    registry.discover([])
    cells = []
    for method in study.methods:
        method_cls = registry.get_method(method)
        for fraction in study.fractions:
            for seed in study.seeds:
                cells.append(
                    RunRequest(
                        method=method,
                        task=TASK,
                        fraction=fraction,
                        seed=seed,
                        overrides=study.overrides(method_cls),
                        data_root=str(twin),
                        results=str(study.results),
                        device=study.device,
                    )
                )
    for cell in cells:
        plan_run(cell)
    return cells


def run_study(study: SignalStudy, echo: Callable[[str], None] = print) -> dict:
    """Run (or complete: cells with a record are reused) every cell; returns what the report needs."""
    from simcrop_bench.run.cell import run_job
    from simcrop_bench.util.atomic import write_json

    check(study)
    started = time.monotonic()
    twin = study_twin(study)
    echo(f"study {STUDY}: twin {twin} ({study.patients} patients, seed {study.twin_seed})")
    study.results.mkdir(parents=True, exist_ok=True)
    write_json(study.results / "STUDY.json", {"study": STUDY, "synthetic": True, **study.to_dict()})
    records = []
    with pretraining_root(twin):
        cells = requests(study, twin)
        for i, cell in enumerate(cells, 1):
            record = run_job(cell)
            records.append(record)
            name = record["primary_metric"]
            echo(
                f"[{i}/{len(cells)}] {cell.method} {cell.fraction}% seed {cell.seed}: {name} {record['metrics'][name]}"
            )
    return {"twin": twin, "records": records, "wall_s": time.monotonic() - started}


def collect(study: SignalStudy) -> dict:
    """What :func:`run_study` returns, from the study's results folder alone (cells not run yet are missing)."""
    import json

    check(study)
    folder = study.results / "runs"
    records = [json.loads(p.read_text()) for p in sorted(folder.rglob("record.json"))] if folder.is_dir() else []
    records = [r for r in records if r["method"] in study.methods and r["task"] == TASK]
    if not records:
        raise UserError(f"--report-only: no {TASK} records of the study's methods under {folder}")
    return {"twin": study.twin_root(), "records": records, "wall_s": float("nan")}
