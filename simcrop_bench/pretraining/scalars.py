"""Per-step scalar logs: ``metrics.jsonl`` (always) and TensorBoard (rank 0).

``metrics.jsonl`` has one JSON object per optimizer step — ``step``, ``epoch``
(fractional, where the lr was evaluated), ``lr`` and every loss component — so that
loss curves can be compared exactly in tests. TensorBoard gets ``lr`` and
``loss/<name>``; when the ``tensorboard`` package is missing, a ``scalars.csv`` in
long format (step, tag, value) replaces it.

Monitors (evaluations of the model during training, e.g. the grounding score) go to
``monitor.jsonl`` (``step`` + their scalars) and to TensorBoard under their own tags.

On resume, lines after the checkpoint's step (logged before a kill) are dropped and
TensorBoard is opened with ``purge_step`` so that the curves have no duplicates.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

METRICS_NAME = "metrics.jsonl"
MONITOR_NAME = "monitor.jsonl"


def read_metrics(workdir: str | Path, name: str = METRICS_NAME) -> list[dict[str, Any]]:
    """All records of ``workdir/metrics.jsonl`` (or of ``name``, e.g. :data:`MONITOR_NAME`; empty when absent)."""
    path = Path(workdir) / name
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class ScalarLog:
    """Appends step records; only rank 0 creates one."""

    def __init__(self, workdir: Path, resume_step: int | None) -> None:
        self.path = workdir / METRICS_NAME
        self.monitor_path = workdir / MONITOR_NAME
        if resume_step is not None:
            for path in (self.path, self.monitor_path):
                kept = [r for r in read_metrics(workdir, path.name) if r["step"] <= resume_step]
                path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self._file = self.path.open("a", encoding="utf-8")
        self._writer = _tensorboard(workdir / "tensorboard", resume_step)
        self._csv = None
        if self._writer is None:
            csv_path = workdir / "scalars.csv"
            if resume_step is not None and csv_path.exists():
                rows = list(csv.reader(csv_path.read_text().splitlines()))
                kept = [rows[0], *(row for row in rows[1:] if int(row[0]) <= resume_step)]
                with csv_path.open("w", newline="", encoding="utf-8") as file:
                    csv.writer(file).writerows(kept)
            new = not csv_path.exists()
            self._csv_file = csv_path.open("a", newline="", encoding="utf-8")
            self._csv = csv.writer(self._csv_file)
            if new:
                self._csv.writerow(["step", "tag", "value"])

    def write(self, step: int, epoch: float, lr: float, losses: dict[str, float]) -> None:
        record = {"step": step, "epoch": epoch, "lr": lr, **losses}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()  # a killed run keeps every step it logged
        tags = {"lr": lr, **{f"loss/{name}": value for name, value in losses.items()}}
        for tag, value in tags.items():
            if self._writer is not None:
                self._writer.add_scalar(tag, value, step)
            else:
                self._csv.writerow([step, tag, value])

    def write_monitor(self, step: int, values: dict[str, float]) -> None:
        """A monitor's scalars at ``step`` (0: before the first update); tags as given (e.g. ``grounding/lift``)."""
        with self.monitor_path.open("a", encoding="utf-8") as file:
            file.write(json.dumps({"step": step, **values}) + "\n")
        for tag, value in values.items():
            if self._writer is not None:
                self._writer.add_scalar(tag, value, step)
            else:
                self._csv.writerow([step, tag, value])

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()
        if self._csv is not None:
            self._csv_file.close()


def _tensorboard(logdir: Path, resume_step: int | None) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: CSV fallback
        return None
    purge = None if resume_step is None else resume_step + 1
    return SummaryWriter(log_dir=str(logdir), purge_step=purge)
