"""The run record (`run_record.json`): everything that changes what a run's checkpoints mean.

Built here for every kind of run (a training run, a progressive round); a resume whose record differs is
refused naming the field and its two values (`checkpoint.check_record`). `checksum` is the one fingerprint
of named arrays (datasets, normalisation statistics, FQE inputs).
"""
import hashlib
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from jaxmtf.runs import provenance

RECORD_FILE = "run_record.json"
NORMALIZATION_FILE = "normalization.json"


def checksum(arrays: Mapping[str, Any]) -> str:
    """sha256 over the arrays' names and bytes, in name order (the same data gives the same hex digest)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(np.asarray(arrays[name])).tobytes())
    return digest.hexdigest()


def training_record(config, obs_dim: int, act_dim: int, num_transitions, seeds: Sequence[int],
                    hparam_labels: Optional[Sequence[dict]] = None,
                    dataset_arrays: Optional[Mapping[str, np.ndarray]] = None,
                    stats: Optional[Mapping[str, np.ndarray]] = None, **extra) -> Dict[str, Any]:
    """The record of a training run: algorithm, agent settings, data shapes, seeds, settings, batch and chunk.

    `num_transitions` is the dataset's size, or one size per seed (progressive rounds); `dataset_arrays`
    (when the data is one dataset) and `stats` (when observations are normalised) are fingerprinted;
    `extra` adds run-kind fields (a progressive round's warm start). num_updates, eval_every and
    checkpoint_every are not recorded: they extend or re-time a run without changing its updates.
    dataset_path is recorded but a change only warns (the same data moved elsewhere is the same run);
    provenance is never compared on resume.
    """
    dataset_path = config.get("dataset", "")
    record = {
        "algo": config.algo,
        "agent": config.agent.to_dict(),
        "obs_dim": int(obs_dim),
        "act_dim": int(act_dim),
        "num_transitions": num_transitions,
        "seeds": [int(s) for s in seeds],
        "batch_size": int(config.batch_size),
        "chunk_size": int(config.chunk_size),
    }
    if hparam_labels is not None:
        record["hparam_settings"] = list(hparam_labels)
    if dataset_arrays is not None:
        record["dataset_checksum"] = checksum(dataset_arrays)
        record["dataset_path"] = dataset_path
        record["normalize_observations"] = bool(config.get("normalize_observations", False))
        record["normalization_checksum"] = None if stats is None else checksum(stats)
    record.update(extra)
    record["provenance"] = provenance.describe(dataset_path)  # not compared on resume
    return record
