"""Import local Minari datasets, so the algorithms run on community offline-RL data.

`from_minari("pendulum/random-v0")` loads a dataset id from the local Minari
root (MINARI_DATASETS_PATH; nothing is downloaded), and
`from_minari("/path/to/dataset/data")` loads a dataset directory directly.

Minari stores episodes with T + 1 observations and T actions; each step
becomes a transition (s_t, a_t, r_t, s_{t+1}) with terminals = terminations
and timeouts = truncations. Box actions are rescaled linearly from
[low, high] to jaxmtf's [-1, 1] (the scale is returned with the provenance,
to map actions back). Discrete actions and dict observations are rejected.
"""
import os
from typing import Any, Dict, Tuple

import numpy as np

from jaxmtf.data import dataset as dataset_lib
from jaxmtf.types import Dataset


def _open(path_or_id: str):
    import minari  # optional dependency: pip install "minari[hdf5]"

    if os.path.isdir(path_or_id):
        return minari.MinariDataset(path_or_id)
    return minari.load_dataset(path_or_id, download=False)


def from_minari(path_or_id: str) -> Tuple[Dataset, Dict[str, Any]]:
    """(Dataset, provenance) of a local Minari dataset (an id or a data directory)."""
    import gymnasium as gym

    source = _open(path_or_id)
    action_space = source.action_space
    if not isinstance(action_space, gym.spaces.Box):
        raise dataset_lib.DatasetError(
            f"dataset field 'actions': Minari action space {action_space} is not a Box (jaxmtf agents are continuous)"
        )
    if not isinstance(source.observation_space, gym.spaces.Box):
        raise dataset_lib.DatasetError(
            f"dataset field 'observations': Minari observation space {source.observation_space} is not a flat Box"
        )
    low = np.asarray(action_space.low, np.float64).reshape(-1)
    high = np.asarray(action_space.high, np.float64).reshape(-1)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise dataset_lib.DatasetError("dataset field 'actions': the Minari action space is unbounded; "
                                       "cannot rescale to [-1, 1]")

    fields = {k: [] for k in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts",
                              "episode_ids")}
    for episode in source.iterate_episodes():
        obs = np.asarray(episode.observations, np.float32).reshape(len(episode.observations), -1)
        steps = len(episode.actions)
        actions = np.asarray(episode.actions, np.float64).reshape(steps, -1)
        fields["observations"].append(obs[:-1])
        fields["next_observations"].append(obs[1:])
        fields["actions"].append((2.0 * (actions - low) / (high - low) - 1.0).astype(np.float32))
        fields["rewards"].append(np.asarray(episode.rewards, np.float32))
        fields["terminals"].append(np.asarray(episode.terminations, np.float32))
        fields["timeouts"].append(np.asarray(episode.truncations, np.float32))
        fields["episode_ids"].append(np.full(steps, episode.id, np.int32))
    if not fields["rewards"]:
        raise dataset_lib.DatasetError(f"dataset field 'observations': the Minari dataset {path_or_id!r} "
                                       "has no episodes")
    arrays = {k: np.concatenate(v) for k, v in fields.items()}
    # Float round-off of the rescale can leave |a| a hair above 1.
    arrays["actions"] = np.clip(arrays["actions"], -1.0, 1.0)
    provenance = {
        "pipeline": "minari_import",
        "source": path_or_id,
        "minari_dataset_id": getattr(source.spec, "dataset_id", None),
        "env_spec": str(getattr(source.spec, "env_spec", None)),
        "action_low": low.tolist(),
        "action_high": high.tolist(),
        "action_rescale": "a_jaxmtf = 2 (a - low) / (high - low) - 1",
    }
    return dataset_lib.from_arrays(arrays), provenance
