"""Dataset validation, `.npz` + JSON sidecar I/O, and observation normalisation.

A dataset on disk is two files: `NAME.npz` (the arrays, written with
`np.savez`, read back with `allow_pickle=False`) and `NAME.json` (format
version, shapes, dtypes, a SHA-256 of every array, task names and the
provenance: which pipeline, policy, simulator and seed made it).

Every malformed input fails in `validate` or `load` with a `DatasetError`
whose message names the field and the problem, before anything is traced.

The episode structure (`check_episodes`) follows these rules:

- refused: a terminal or timeout on a row that is not the last row of its
  episode id (in dataset order). Either the flag is wrong (the agents would
  not bootstrap where they should) or the ids are (ids that restart, as
  when two datasets are concatenated without renumbering); jaxmtf cannot
  tell which, and either is a bug in the data.
- warned: a terminal and a timeout on the same row. Gymnasium allows both
  (terminated and truncated at once) and Minari stores both; the terminal
  wins (no bootstrap), because the MDP did end there.
- warned: a row whose `next_observations` differs from the observation of
  the next row of its episode: ids that restart without an end flag, or
  rows that are not one trajectory. Training samples single transitions and
  is unaffected, so it goes on; per-episode quantities (returns, OPE) would
  be wrong.

Episodes may interleave (a replay buffer of concurrent users) and the last
row of an episode need not carry a flag (a buffer that ends mid-session).
Discrete datasets (`num_actions` n >= 2, recorded in the sidecar) hold
integer actions [N] in [0, n), and their `behaviour_log_prob` is the log
probability of the logged action (so <= 0); integer actions without
`num_actions` are refused, as are float actions with it.

A batch larger than the dataset is the training config's to refuse
(`run_config.check_against_dataset`).
"""
import hashlib
import json
import os
import warnings
import zipfile
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from jaxmtf.types import OPTIONAL_FIELDS, REQUIRED_FIELDS, Dataset, to_numpy

FORMAT_VERSION = 1
# Two dimensions per transition for these, one for the rest.
_MATRIX_FIELDS = ("observations", "actions", "next_observations", "task_responses", "behaviour_centre")
_BINARY_FIELDS = ("terminals", "timeouts")
# Actions are fusion vectors in [-1, 1]; allow float round-off at the box edge.
_ACTION_TOLERANCE = 1e-5


class DatasetError(ValueError):
    """A dataset (arrays, sidecar or file) is malformed. The message names the field."""


class DatasetWarning(UserWarning):
    """A dataset is usable but odd (see the episode rules in the module docstring)."""


def _fail(field: str, problem: str) -> None:
    raise DatasetError(f"dataset field '{field}': {problem}")


def validate(arrays: Mapping[str, Any], task_names: Tuple[str, ...] = (), num_actions: int = 0) -> None:
    """Checks a dict of arrays against the dataset format; raises DatasetError.

    `num_actions` 0: continuous actions [N, A] in [-1, 1]; n >= 2: discrete actions [N] of an integer
    dtype in [0, n), whose `behaviour_log_prob` is a log probability (<= 0).
    """
    _check_num_actions(arrays, num_actions)
    _check_field_names(arrays)
    n = None  # the number of transitions, from the first field present
    for name in REQUIRED_FIELDS + OPTIONAL_FIELDS:
        if arrays.get(name) is not None:
            n = _check_field(name, np.asarray(arrays[name]), n, num_actions)

    obs, next_obs = np.asarray(arrays["observations"]), np.asarray(arrays["next_observations"])
    if obs.shape[1] != next_obs.shape[1]:
        _fail("next_observations", f"width {next_obs.shape[1]} differs from observations' {obs.shape[1]} "
              f"(expected {obs.shape[1]})")
    actions = np.asarray(arrays["actions"])
    if num_actions:
        _check_discrete(actions, arrays.get("behaviour_log_prob"), num_actions)
    elif np.abs(actions).max() > 1.0 + _ACTION_TOLERANCE:
        _fail("actions", f"outside [-1, 1] (max |a| = {np.abs(actions).max():.4g}), expected values in [-1, 1]; "
              "rescale actions to the box")
    _check_centre(arrays.get("behaviour_centre"), actions, num_actions)
    responses = arrays.get("task_responses")
    if responses is not None and task_names and np.asarray(responses).shape[1] != len(task_names):
        _fail("task_responses", f"{np.asarray(responses).shape[1]} columns but {len(task_names)} task names "
              f"(expected {len(task_names)} columns)")
    check_episodes(arrays)


def _check_field_names(arrays: Mapping[str, Any]) -> None:
    """Every required field present, no unknown one."""
    for name in REQUIRED_FIELDS:
        if name not in arrays or arrays[name] is None:
            _fail(name, "missing, expected an array (required fields: " + ", ".join(REQUIRED_FIELDS) + ")")
    unknown = set(arrays) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS)
    if unknown:
        _fail(sorted(unknown)[0], "unknown field, expected one of the known fields (known: "
              + ", ".join(REQUIRED_FIELDS + OPTIONAL_FIELDS) + ")")


def _check_field(name: str, value: np.ndarray, n: Optional[int], num_actions: int) -> int:
    """One field's rank, length (against `n`, the transitions seen so far; None for the first), dtype,
    finiteness and binary values; returns the number of transitions."""
    want_ndim = 2 if name in _MATRIX_FIELDS and not (num_actions and name == "actions") else 1
    if value.ndim != want_ndim:
        _fail(name, f"expected {want_ndim} dimensions, got {value.ndim} (shape {value.shape})")
    if n is None:
        n = value.shape[0]
        if n == 0:
            _fail(name, "empty dataset (0 transitions), expected at least 1")
    elif value.shape[0] != n:
        _fail(name, f"length {value.shape[0]} does not match {n} transitions of 'observations' "
              f"(expected {n} rows)")
    if name == "episode_ids" or (num_actions and name == "actions"):
        if not np.issubdtype(value.dtype, np.integer):
            what = f" (discrete actions, num_actions={num_actions})" if name == "actions" else ""
            _fail(name, f"expected an integer dtype{what}, got {value.dtype}")
        return n
    if not np.issubdtype(value.dtype, np.floating):
        _fail(name, f"expected a floating dtype, got {value.dtype}")
    if not np.all(np.isfinite(value)):
        bad = int(np.argmax(~np.isfinite(value).reshape(n, -1).all(axis=1)))
        _fail(name, f"contains NaN or Inf (first at transition {bad}), expected finite values")
    if name in _BINARY_FIELDS and not np.all((value == 0) | (value == 1)):
        bad = int(np.argmax((value != 0) & (value != 1)))
        _fail(name, f"must be 0 or 1, got {value[bad]} (first at transition {bad})")
    return n


def _check_centre(centre, actions: np.ndarray, num_actions: int) -> None:
    """The exploration centre: continuous datasets only, one action-wide row per transition, in [-1, 1]."""
    if centre is None:
        return
    centre = np.asarray(centre)
    if num_actions:
        _fail("behaviour_centre", f"present in a discrete dataset (num_actions={num_actions}), expected it only "
              "with continuous actions (the centre of a box or Gaussian exploration)")
    if centre.shape[1] != actions.shape[1]:
        _fail("behaviour_centre", f"width {centre.shape[1]} differs from actions' {actions.shape[1]} "
              f"(expected {actions.shape[1]})")
    if np.abs(centre).max() > 1.0 + _ACTION_TOLERANCE:
        _fail("behaviour_centre", f"outside [-1, 1] (max |c| = {np.abs(centre).max():.4g}), expected a fusion "
              "vector in [-1, 1]")


def _check_num_actions(arrays: Mapping[str, Any], num_actions) -> None:
    """num_actions an integer: 0 (continuous) or >= 2; integer actions need it (they are discrete)."""
    if isinstance(num_actions, bool) or not isinstance(num_actions, (int, np.integer)) or num_actions == 1 \
            or num_actions < 0:
        _fail("num_actions", f"got {num_actions!r}, expected 0 (continuous actions) or an integer >= 2")
    actions = arrays.get("actions")
    if not num_actions and actions is not None and np.issubdtype(np.asarray(actions).dtype, np.integer):
        _fail("num_actions", f"missing for integer actions (dtype {np.asarray(actions).dtype}), expected the number "
              "of discrete actions (the sidecar's 'num_actions'; from_arrays(..., num_actions=n))")


def _check_discrete(actions: np.ndarray, log_prob, num_actions: int) -> None:
    """Discrete actions in [0, num_actions); behaviour log probabilities <= 0 (probabilities, not densities)."""
    bad = (actions < 0) | (actions >= num_actions)
    if bad.any():
        i = int(np.argmax(bad))
        _fail("actions", f"got {actions[i]} at transition {i}, expected discrete actions in [0, {num_actions}) "
              f"(num_actions={num_actions})")
    if log_prob is not None and np.any(np.asarray(log_prob) > _ACTION_TOLERANCE):
        i = int(np.argmax(np.asarray(log_prob) > _ACTION_TOLERANCE))
        _fail("behaviour_log_prob", f"got {float(np.asarray(log_prob)[i]):.4g} at transition {i}, expected the log "
              "of a probability (<= 0) for discrete actions")


def check_episodes(arrays: Mapping[str, Any]) -> None:
    """The episode rules of the module docstring: refuses a mid-episode end, warns on the two odd cases."""
    ids = np.asarray(arrays["episode_ids"])
    terminals, timeouts = np.asarray(arrays["terminals"]) > 0, np.asarray(arrays["timeouts"]) > 0
    order = np.argsort(ids, kind="stable")  # rows of each episode, in dataset order
    same_episode = ids[order][:-1] == ids[order][1:]
    ended = (terminals | timeouts)[order][:-1] & same_episode
    if ended.any():
        row, after = order[np.argmax(ended)], order[np.argmax(ended) + 1]
        _fail("episode_ids", f"got episode id {ids[row]} again at row {after} after its end (terminal or timeout) "
              f"at row {row}, expected an episode's rows to stop at its end flag (ids that restart, or a terminal "
              "in mid-episode)")
    both = terminals & timeouts
    if both.any():
        warnings.warn(DatasetWarning(
            f"dataset fields 'terminals' and 'timeouts': {int(both.sum())} rows have both (first at row "
            f"{int(np.argmax(both))}); the terminal wins (no bootstrap)"), stacklevel=3)
    _warn_on_breaks(arrays, order[:-1][same_episode], order[1:][same_episode], ids)


def _warn_on_breaks(arrays, rows, next_rows, ids) -> None:
    """Warns where an episode's next observation is not the observation of its next row."""
    next_obs, obs = np.asarray(arrays["next_observations"]), np.asarray(arrays["observations"])
    broken = ~np.all(next_obs[rows] == obs[next_rows], axis=1)
    if broken.any():
        i = int(np.argmax(broken))
        warnings.warn(DatasetWarning(
            f"dataset field 'next_observations': row {rows[i]} of episode {ids[rows[i]]} does not lead to row "
            f"{next_rows[i]}, the episode's next row ({int(broken.sum())} such rows): episode ids that restart, "
            "or rows that are not one trajectory; training is unaffected, per-episode returns are not"),
            stacklevel=3)


def from_arrays(arrays: Mapping[str, Any], task_names: Tuple[str, ...] = (), num_actions: int = 0) -> Dataset:
    """Validates numpy arrays and builds a `Dataset` (float32 floats, int32 ids and discrete actions)."""
    validate(arrays, task_names, num_actions)
    fields = {}
    for name in REQUIRED_FIELDS + OPTIONAL_FIELDS:
        value = arrays.get(name)
        if value is None:
            continue
        dtype = np.int32 if name == "episode_ids" or (num_actions and name == "actions") else np.float32
        fields[name] = np.asarray(value, dtype=dtype)
    if not num_actions:
        # Validation admits float round-off past the box edge; agents take
        # log(1 - a^2) (tanh-Gaussian densities), so store actions inside it.
        fields["actions"] = np.clip(fields["actions"], -1.0, 1.0)
    return Dataset(task_names=tuple(task_names), num_actions=int(num_actions), **fields)


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def paths(path: str) -> Tuple[str, str]:
    """(the .npz, its .json sidecar) of a dataset path given with or without .npz."""
    stem = path[:-4] if path.endswith(".npz") else path
    return stem + ".npz", stem + ".json"


def save(path: str, dataset: Dataset, provenance: Optional[Dict[str, Any]] = None) -> str:
    """Writes `path` (.npz) and its JSON sidecar; returns the .npz path."""
    arrays = to_numpy(dataset)
    validate(arrays, dataset.task_names, dataset.num_actions)
    npz_path, json_path = paths(path)
    os.makedirs(os.path.dirname(os.path.abspath(npz_path)), exist_ok=True)
    # Write to temporary names and rename, so a crash never leaves a half file under the real name; a failed
    # write (a full disk, a read-only folder) leaves no temporary file behind either.
    sidecar = {
        "format_version": FORMAT_VERSION,
        "num_transitions": dataset.size,
        "task_names": list(dataset.task_names),
        "num_actions": dataset.num_actions,  # 0: continuous; absent in older files (continuous)
        "fields": {
            name: {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": _sha256(a)}
            for name, a in arrays.items()
        },
        "provenance": provenance or {},
    }
    try:
        with open(npz_path + ".tmp", "wb") as f:
            np.savez(f, **arrays)
        with open(json_path + ".tmp", "w") as f:
            json.dump(sidecar, f, indent=2, sort_keys=True, default=str)
        os.replace(npz_path + ".tmp", npz_path)
        os.replace(json_path + ".tmp", json_path)
    finally:
        for leftover in (npz_path + ".tmp", json_path + ".tmp"):
            if os.path.exists(leftover):
                os.remove(leftover)
    return npz_path


def read_sidecar(path: str) -> Dict[str, Any]:
    """The JSON sidecar of a dataset, checked for its required keys."""
    _, json_path = paths(path)
    if not os.path.exists(json_path):
        raise DatasetError(f"dataset sidecar '{json_path}': missing (every .npz needs its .json)")
    try:
        with open(json_path) as f:
            sidecar = json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetError(f"dataset sidecar '{json_path}': not valid JSON ({e})") from e
    for key in ("format_version", "fields", "task_names", "provenance"):
        if key not in sidecar:
            raise DatasetError(f"dataset sidecar field '{key}': missing in {json_path}")
    if sidecar["format_version"] != FORMAT_VERSION:
        raise DatasetError(
            f"dataset sidecar field 'format_version': {sidecar['format_version']} is not supported "
            f"(this jaxmtf reads version {FORMAT_VERSION})"
        )
    return sidecar


def load(path: str, verify_checksums: bool = True) -> Dataset:
    """Reads and validates a dataset written by `save` (no pickle)."""
    npz_path, _ = paths(path)
    if not os.path.exists(npz_path):
        raise DatasetError(f"dataset file '{npz_path}': does not exist")
    sidecar = read_sidecar(path)
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DatasetError(f"dataset file '{npz_path}': not a readable .npz archive ({e})") from e
    expected = sidecar["fields"]
    for name in sorted(set(expected) - set(arrays)):
        _fail(name, f"listed in the sidecar but missing from {npz_path}")
    for name in sorted(set(arrays) - set(expected)):
        _fail(name, f"present in {npz_path} but not listed in the sidecar")
    for name in sorted(expected):
        a, e = arrays[name], expected[name]
        if list(a.shape) != list(e["shape"]) or str(a.dtype) != e["dtype"]:
            _fail(name, f"shape/dtype {a.shape} {a.dtype} does not match the sidecar's "
                        f"{tuple(e['shape'])} {e['dtype']}")
        if verify_checksums and _sha256(a) != e["sha256"]:
            _fail(name, f"checksum does not match the sidecar (file modified or corrupted): got "
                  f"{_sha256(a)[:12]}..., expected {e['sha256'][:12]}...")
    return from_arrays(arrays, tuple(sidecar["task_names"]), sidecar.get("num_actions", 0))


def normalization_stats(observations, eps: float = 1e-3) -> Dict[str, np.ndarray]:
    """Observation mean and std + eps over the dataset, as TD3+BC computes them."""
    obs = np.asarray(observations, dtype=np.float64)
    return {
        "mean": obs.mean(axis=0).astype(np.float32),
        "std": (obs.std(axis=0) + eps).astype(np.float32),
    }


def normalize(dataset: Dataset, stats: Mapping[str, np.ndarray]) -> Dataset:
    """Standardises observations and next observations with `stats`."""
    mean, std = stats["mean"], stats["std"]
    return dataset.replace(
        observations=(dataset.observations - mean) / std,
        next_observations=(dataset.next_observations - mean) / std,
    )
