"""Regenerate the figures that the README quotes from the runs that produce them (`make readme-figures`).

Each figure block of README.md lies between ``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->``.
This script runs the block's jobs with ``simcrop-bench run`` (a job whose record is already in
``--results`` is not run again, so point it at a fresh folder to re-measure the minutes), reads the
records and rewrites the block. The minutes are the records' wall time on the machine that ran them,
which the block names.

    python scripts/readme_figures.py                       # every block, results in ./results
    python scripts/readme_figures.py --only main-job --results /tmp/fresh/results
    python scripts/readme_figures.py --check               # exit 1 if README.md differs from the records
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Job:
    method: str
    task: str
    seeds: tuple[int, ...]

    def command(self) -> str:
        seeds = "".join(f" --seed {s}" for s in self.seeds) if self.seeds != (42,) else ""
        return f"simcrop-bench run --method {self.method} --task {self.task}{seeds}"


def cli(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "simcrop_bench.cli", *args], check=True, stdout=subprocess.PIPE, text=True
    ).stdout


def records(results: Path, job: Job) -> list[dict]:
    """The job's records, one per seed, found by the config hash the job resolves to today."""
    found = []
    for seed in job.seeds:
        config = json.loads(cli("run", "-m", job.method, "-t", job.task, "-s", str(seed), "--print-config"))
        settings = config["run"]
        cell = results / "runs" / job.task / job.method / f"f{settings['fraction']}" / f"s{seed}"
        path = cell / f"{settings['profile']}-{config['config_hash']}" / "record.json"
        if not path.is_file():
            raise SystemExit(f"error: no record of `{job.command()}` seed {seed}: {path} is missing")
        found.append(json.loads(path.read_text()))
    return found


def run(results: Path, job: Job) -> None:
    args = ["run", "--method", job.method, "--task", job.task, "--results", str(results)]
    for seed in job.seeds:
        args += ["--seed", str(seed)]
    subprocess.run([sys.executable, "-m", "simcrop_bench.cli", *args], check=True)


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} minutes"


def machine(record: dict) -> str:
    prov = record["provenance"]
    return f"{prov['device']}, {prov['torch_threads']} threads"


def pretrain_seconds(record: dict) -> float | None:
    info = Path(record["checkpoint"]["path"]).with_name("pretrain_info.json") if record.get("checkpoint") else None
    if info is None or not info.is_file():
        return None
    return json.loads(info.read_text())["wall_s_all_segments"]


def main_job_block(results: Path) -> str:
    job = Job("simcrop", "lung_seg", (42,))
    (record,) = records(results, job)
    ci = record["intervals"]["dice"]
    dice = record["per_class"]["dice"]
    pretrain = pretrain_seconds(record)
    return (
        f"`{job.command()}` took {minutes(record['wall_time_s'])} ({machine(record)}"
        + (f"; {pretrain:.0f} s of it pretraining" if pretrain is not None else "")
        + f"); seed 42 gave foreground Dice {record['metrics']['dice']:.3f}, 95 % interval over test cases "
        f"[{ci['low']:.3f}, {ci['high']:.3f}] (lungs {dice['left lung']:.2f} / {dice['right lung']:.2f}, "
        f"trachea {dice['trachea']:.2f})."
    )


def baseline_block(results: Path) -> str:
    job = Job("scratch", "lung_seg", (42, 43, 44))
    found = records(results, job)
    walls = [r["wall_time_s"] for r in found]
    per_seed = " / ".join(f"{r['metrics']['dice']:.2f}" for r in found)
    trachea = " / ".join(f"{r['per_class']['dice']['trachea']:.2f}" for r in found)
    lungs = [v for r in found for k, v in r["per_class"]["dice"].items() if k.endswith("lung")]
    return (
        f"`{job.command()}` took {min(walls) / 60:.1f}–{minutes(max(walls))} per seed "
        f"({machine(found[0])}); seeds 42/43/44 gave Dice {per_seed} (lungs {min(lungs):.2f}–{max(lungs):.2f} "
        f"for every seed, trachea {trachea})."
    )


BLOCKS = {
    "main-job": (main_job_block, Job("simcrop", "lung_seg", (42,))),
    "baseline": (baseline_block, Job("scratch", "lung_seg", (42, 43, 44))),
}


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- figures:{name} -->\n).*?(\n<!-- /figures:{name} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"error: README.md has no block <!-- figures:{name} --> … <!-- /figures:{name} -->")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="results folder (default: results)")
    parser.add_argument("--only", choices=sorted(BLOCKS), action="append", help="only this block (repeatable)")
    parser.add_argument("--check", action="store_true", help="run nothing; exit 1 if README.md is not up to date")
    args = parser.parse_args()
    readme = REPO / "README.md"
    text = original = readme.read_text()
    for name in args.only or sorted(BLOCKS):
        render, job = BLOCKS[name]
        if not args.check:
            run(args.results, job)
        text = replace_block(text, name, render(args.results))
    if args.check:
        if text != original:
            print("README.md figures differ from the records; run `make readme-figures`", file=sys.stderr)
            return 1
        return 0
    tmp = readme.with_name(f".{readme.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(readme)
    print(f"README.md: {', '.join(args.only or sorted(BLOCKS))} figures from {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
