"""Jobs: sweeps, the job ledger, executors (inline, local, SLURM via submitit) and cluster profiles."""
