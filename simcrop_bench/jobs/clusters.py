"""Cluster profiles: one YAML file per SLURM cluster, selected with ``--cluster NAME``.

A profile names what a site needs (partition, account, qos, GPUs, CPUs, memory, time limit,
constraint, setup lines such as ``module load`` or a venv activation) and is translated into
submitit's ``update_parameters`` keywords here, so the rest of the harness never sees submitit
parameter names. Profiles are looked up, in order, in ``./slurm/``,
``~/.config/simcrop-bench/slurm/`` and the project's own ``slurm/`` folder; ``--cluster`` may
also be a path to a YAML file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from simcrop_bench.errors import ConfigError

PROJECT_SLURM = Path(__file__).resolve().parent.parent / "slurm"
SEARCH_PATH = (Path("slurm"), Path("~/.config/simcrop-bench/slurm").expanduser(), PROJECT_SLURM)


@dataclass
class ClusterProfile:
    name: str
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus_per_node: int = 0  # GPUs per job; `--gpus N` overrides it for pretraining (0: a CPU cluster)
    cpus_per_task: int = 1
    mem_gb: float = 4
    timeout_min: int = 60  # SLURM time limit; checkpointable jobs are requeued when it is hit
    constraint: str | None = None
    setup: list[str] = field(default_factory=list)  # lines run before the job (module load, activate)
    array_parallelism: int = 16  # at most this many cells of one array run at once
    signal_delay_s: int = 90  # USR2 arrives this long before the time limit (checkpoint window)
    max_num_timeout: int = 10  # requeues after a time limit before the job counts as failed
    gpu_hours_per_pretraining: float | None = None  # for `sweep --dry-run` estimates, when known
    gpu_hours_per_cell: float | None = None

    def submitit_parameters(self, gpus: int | None = None) -> dict[str, Any]:
        """Keywords for ``AutoExecutor.update_parameters`` (``gpus``: tasks = GPUs per node)."""
        # On a CPU profile (gpus_per_node 0) `--gpus N` means N processes (gloo) and asks for no GPU.
        n_gpus = (self.gpus_per_node if gpus is None else gpus) if self.gpus_per_node else 0
        params: dict[str, Any] = {
            "timeout_min": self.timeout_min,
            "cpus_per_task": self.cpus_per_task,
            "mem_gb": self.mem_gb,
            "slurm_array_parallelism": self.array_parallelism,
            "slurm_signal_delay_s": self.signal_delay_s,
        }
        if n_gpus:
            params["gpus_per_node"] = n_gpus
        if gpus and gpus > 1:
            params["tasks_per_node"] = gpus  # one process per GPU; ranks come from submitit's environment
        optional = {
            "slurm_partition": self.partition,
            "slurm_account": self.account,
            "slurm_qos": self.qos,
            "slurm_constraint": self.constraint,
        }
        params.update({k: v for k, v in optional.items() if v})
        if self.setup:
            params["slurm_setup"] = list(self.setup)
        return params


def profile_path(name: str) -> Path:
    candidate = Path(name).expanduser()
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise ConfigError(f"--cluster {name}: no such file")
        return candidate
    for folder in SEARCH_PATH:
        for suffix in (".yaml", ".yml"):
            if (folder / f"{name}{suffix}").is_file():
                return folder / f"{name}{suffix}"
    known = sorted({p.stem for folder in SEARCH_PATH if folder.is_dir() for p in folder.glob("*.y*ml")})
    raise ConfigError(
        f"--cluster {name}: no profile {name}.yaml in {', '.join(map(str, SEARCH_PATH))} "
        f"(known: {', '.join(known) or 'none'})"
    )


def load_profile(name: str) -> ClusterProfile:
    import yaml

    path = profile_path(name)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    allowed = {f.name: f for f in fields(ClusterProfile) if f.name != "name"}
    unknown = sorted(set(doc) - set(allowed))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; expected {', '.join(allowed)}")
    if isinstance(doc.get("setup"), str):
        doc["setup"] = doc["setup"].splitlines()
    for key in (
        "gpus_per_node",
        "cpus_per_task",
        "timeout_min",
        "array_parallelism",
        "signal_delay_s",
        "max_num_timeout",
    ):
        if key in doc and (not isinstance(doc[key], int) or isinstance(doc[key], bool) or doc[key] < 0):
            raise ConfigError(f"{path}: {key} must be a non-negative integer, not {doc[key]!r}")
    if doc.get("timeout_min", 1) < 1:
        raise ConfigError(f"{path}: timeout_min must be at least 1")
    return ClusterProfile(name=path.stem, **doc)
