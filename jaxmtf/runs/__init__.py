"""A run directory and what it holds: the run record, logs, checkpoints, the workdir lock, provenance."""
