"""What `run` prints when a cell finishes, and across its seeds (rich only; records are plain dicts)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from simcrop_bench.cli.options import console


def _digits(*values: float) -> int:
    """3 decimals for metrics in [0, 1], fewer for larger magnitudes (mm, seconds)."""
    magnitude = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    return 3 if magnitude <= 1 else 2 if magnitude < 100 else 1 if magnitude < 1000 else 0


def interval_text(record: dict, metric: str) -> str:
    """`` [low, high]``: the record's 95 % bootstrap interval of ``metric``, or '' when it has none."""
    ci = (record.get("intervals") or {}).get(metric) or {}
    low, high = ci.get("low"), ci.get("high")
    if not (isinstance(low, (int, float)) and isinstance(high, (int, float))):
        return ""
    digits = _digits(record["metrics"][metric])
    return f" [{low:.{digits}f}, {high:.{digits}f}]"


def run_line(record: dict) -> str:
    """One line that says what finished, its primary metric with interval, and where the results are."""
    metric = record["primary_metric"]
    value = record["metrics"][metric]
    checkpoint = record.get("checkpoint") or {}
    encoder = checkpoint.get("path") or "none (random initialisation)"
    verb = "exists" if record.get("skipped") else "done"
    return (
        f"{verb}: {record['method']} → {record['task']} f{record['fraction']} s{record['seed']}: "
        f"{metric} {value:.{_digits(value)}f}{interval_text(record, metric)} (95 % interval over patients)"
        f"{' SYNTHETIC' if record.get('synthetic') else ''}; "
        f"encoder {encoder}; record {record['record_dir']}/record.json"
    )


def seed_summary_lines(records: Sequence[dict]) -> list[str]:
    """One line per metric over the runs' seeds: mean ± sample std (ddof 1) and n, primary metric first."""
    if len(records) < 2:
        return []
    primary = records[0]["primary_metric"]
    names = [primary, *(name for name in records[0]["metrics"] if name != primary)]
    seeds = ", ".join(str(r["seed"]) for r in records)
    lines = []
    for name in names:
        values = [float(r["metrics"][name]) for r in records if name in r["metrics"]]
        finite = [v for v in values if math.isfinite(v)]
        if len(finite) < 2:
            continue
        mean, std = statistics.fmean(finite), statistics.stdev(finite)
        digits = _digits(mean, std)
        lines.append(
            f"{records[0]['method']} → {records[0]['task']} f{records[0]['fraction']}: "
            f"{name} {mean:.{digits}f} ± {std:.{digits}f} (mean ± std over seeds {seeds}, n={len(finite)})"
        )
    return lines


def print_record(record: dict) -> None:
    """The finished cell's metrics table, then its one-line summary."""
    from rich.table import Table

    out = console()
    metric = record["primary_metric"]
    if record.get("skipped"):
        out.print(f"[dim]exists, skipped (use --force to rerun):[/dim] {record['record_dir']}")
    out.print(
        f"[bold]{record['method']} → {record['task']}[/bold]  fraction {record['fraction']}%  "
        f"seed {record['seed']}  ({record['profile']} profile, {record['protocol']} protocol"
        f"{', [yellow]SYNTHETIC data[/yellow]' if record['synthetic'] else ''})"
    )
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95 % interval", justify="right")
    table.add_row(
        f"[bold]{metric}[/bold]",
        f"[bold]{record['metrics'][metric]:.4f}[/bold]",
        interval_text(record, metric).strip(),
    )
    for name, value in record.get("per_class", {}).get(metric, {}).items():
        table.add_row(f"  {name}", f"{value:.4f}", "")
    for name, value in record["metrics"].items():
        if name != metric:
            table.add_row(name, f"{value:.4f}", interval_text(record, name).strip())
    table.add_row("wall time", f"{record['wall_time_s']:.0f} s", "")
    table.add_row("peak memory", f"{record['peak_memory_mb']:.0f} MB", "")
    out.print(table)
    out.print(run_line(record), highlight=False, soft_wrap=True)


def print_seed_summary(records: Sequence[dict]) -> None:
    for line in seed_summary_lines(records):
        console().print(f"[bold]{line}[/bold]", highlight=False, soft_wrap=True)
