"""The dataset format: validation errors name the field, I/O round trips, no pickle."""
import json
import os

import numpy as np
import pytest

from jaxmtf import data
from jaxmtf.data import DatasetError
from jaxmtf.types import to_numpy


def _arrays(n=20, obs_dim=3, act_dim=2, k=4):
    rng = np.random.default_rng(0)
    return {
        "observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "next_observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "terminals": (np.arange(n) % 5 == 4).astype(np.float32),
        "timeouts": np.zeros(n, np.float32),
        "episode_ids": (np.arange(n) // 5).astype(np.int32),
        "behaviour_log_prob": np.full(n, np.log(0.25), np.float32),
        "task_responses": rng.integers(0, 3, size=(n, k)).astype(np.float32),
    }


TASKS = ("click", "long_view", "like", "follow")


def _broken(field, value):
    arrays = _arrays()
    if value is None:
        del arrays[field]
    else:
        arrays[field] = value(arrays[field]) if callable(value) else value
    return arrays


@pytest.mark.parametrize(
    "field, corrupt, message",
    [
        ("rewards", None, "missing"),
        ("observations", lambda a: a[:, :, None], "expected 2 dimensions"),
        ("actions", lambda a: a[:, 0], "expected 2 dimensions"),
        ("rewards", lambda a: a[:-1], "length 19 does not match 20"),
        ("terminals", lambda a: a.astype(np.int64), "floating dtype"),
        ("episode_ids", lambda a: a.astype(np.float32), "integer dtype"),
        ("rewards", lambda a: np.where(np.arange(20) == 7, np.nan, a).astype(np.float32),
         "NaN or Inf (first at transition 7)"),
        ("next_observations", lambda a: np.where(a > 1.5, np.inf, a).astype(np.float32), "NaN or Inf"),
        ("actions", lambda a: a * 1.5, "outside [-1, 1]"),
        ("terminals", lambda a: a * 0.5, "must be 0 or 1"),
        ("timeouts", lambda a: a + 2, "must be 0 or 1"),
        ("next_observations", lambda a: a[:, :2], "width 2 differs"),
        ("task_responses", lambda a: a[:, :3], "3 columns but 4 task names"),
    ],
)
def test_validate_names_field_and_problem(field, corrupt, message):
    with pytest.raises(DatasetError) as err:
        data.validate(_broken(field, corrupt), TASKS)
    assert f"'{field}'" in str(err.value)
    assert message in str(err.value)


def test_empty_dataset_is_rejected():
    arrays = {k: v[:0] for k, v in _arrays().items()}
    with pytest.raises(DatasetError, match="empty dataset"):
        data.validate(arrays)


def test_unknown_field_is_rejected():
    arrays = _arrays()
    arrays["reward"] = arrays["rewards"]
    with pytest.raises(DatasetError, match="'reward': unknown field"):
        data.validate(arrays)


def test_dataset_error_is_a_value_error():
    assert issubclass(DatasetError, ValueError)


def test_save_load_round_trip(tmp_path):
    ds = data.from_arrays(_arrays(), TASKS)
    path = data.save(str(tmp_path / "d.npz"), ds, {"pipeline": "unit-test", "seed": 3})
    loaded = data.load(path)
    for name, value in to_numpy(ds).items():
        np.testing.assert_array_equal(getattr(loaded, name), value)
    assert loaded.task_names == TASKS
    sidecar = data.read_sidecar(path)
    assert sidecar["provenance"] == {"pipeline": "unit-test", "seed": 3}
    assert sidecar["num_transitions"] == 20
    assert sidecar["fields"]["observations"]["shape"] == [20, 3]


def test_optional_fields_may_be_absent(tmp_path):
    arrays = _arrays()
    del arrays["behaviour_log_prob"], arrays["task_responses"]
    path = data.save(str(tmp_path / "d"), data.from_arrays(arrays), {})
    loaded = data.load(path)
    assert loaded.behaviour_log_prob is None and loaded.task_responses is None


def test_load_never_unpickles(tmp_path):
    path = str(tmp_path / "d.npz")
    data.save(path, data.from_arrays(_arrays(), TASKS), {})
    np.savez(path, **{**_arrays(), "rewards": np.array([object()] * 20, dtype=object)})
    with pytest.raises(DatasetError, match="not a readable .npz"):
        data.load(path)


def test_missing_sidecar(tmp_path):
    path = data.save(str(tmp_path / "d.npz"), data.from_arrays(_arrays(), TASKS), {})
    os.remove(path[:-4] + ".json")
    with pytest.raises(DatasetError, match="sidecar .* missing"):
        data.load(path)


def test_sidecar_not_matching_arrays(tmp_path):
    path = data.save(str(tmp_path / "d.npz"), data.from_arrays(_arrays(), TASKS), {})
    arrays = _arrays()
    arrays["rewards"] = arrays["rewards"] + 1.0  # same shape, other content
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match="'rewards': checksum does not match"):
        data.load(path)
    np.savez(path, **{**arrays, "rewards": arrays["rewards"][:10]})
    with pytest.raises(DatasetError, match="'rewards': shape/dtype"):
        data.load(path)
    del arrays["task_responses"]
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match="'task_responses': listed in the sidecar but missing"):
        data.load(path)


def test_sidecar_wrong_version_and_bad_json(tmp_path):
    path = data.save(str(tmp_path / "d.npz"), data.from_arrays(_arrays(), TASKS), {})
    json_path = path[:-4] + ".json"
    sidecar = json.load(open(json_path))
    sidecar["format_version"] = 99
    json.dump(sidecar, open(json_path, "w"))
    with pytest.raises(DatasetError, match="'format_version': 99 is not supported"):
        data.load(path)
    open(json_path, "w").write("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        data.load(path)


@pytest.mark.parametrize("content", [b"", b"this is not a zip file", None])
def test_truncated_or_non_npz_file(tmp_path, content):
    path = data.save(str(tmp_path / "d.npz"), data.from_arrays(_arrays(), TASKS), {})
    if content is None:  # truncated: the first half of a real archive
        raw = open(path, "rb").read()
        content = raw[: len(raw) // 2]
    open(path, "wb").write(content)
    with pytest.raises(DatasetError, match="not a readable .npz archive"):
        data.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        data.load(str(tmp_path / "nothing.npz"))


def test_normalization_stats_match_td3_bc():
    obs = np.random.default_rng(1).normal(3.0, 2.0, size=(1000, 3)).astype(np.float32)
    stats = data.normalization_stats(obs)
    np.testing.assert_allclose(stats["mean"], obs.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["std"], obs.std(0) + 1e-3, rtol=1e-5)
    ds = data.normalize(data.from_arrays({**_arrays(1000, 3), "observations": obs}), stats)
    np.testing.assert_allclose(np.asarray(ds.observations).mean(0), 0.0, atol=1e-4)


def test_actions_within_round_off_of_the_box_are_clipped_into_it():
    arrays = _arrays()
    arrays["actions"][0, 0] = 1.0 + 5e-6  # round-off: accepted, then stored inside [-1, 1]
    ds = data.from_arrays(arrays)
    assert float(np.max(np.abs(np.asarray(ds.actions)))) == 1.0
