"""OPE's policy specs are refused in one line before anything is built: names (with the nearest known one),
checkpoint steps, static weights (length, finiteness, the action box) and run directories of another shape."""
import json
import os

import ml_collections
import pytest

from jaxmtf.ope import targets
from jaxmtf.ope.targets import PolicySpecError
from jaxmtf.runs import record as record_lib
from jaxmtf.sim.mtf import env as sim_env

ENV = sim_env.default_params()
OBS, ACT = sim_env.obs_dim(ENV), sim_env.act_dim(ENV)
CONFIG = ml_collections.ConfigDict({"noisy_switch_sigma": 0.1})


def _load(spec, num_actions=0):
    return targets.load_policies(spec, ENV, CONFIG, OBS, ACT, num_actions)


def _static(tmp_path, content, name="static_weights.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_named_policies(tmp_path):
    with pytest.raises(PolicySpecError, match=r"'basline' is neither .* did you mean 'baseline'\?"):
        _load("basline")
    with pytest.raises(PolicySpecError, match=r"'rul' is neither .*did you mean 'rule'\?"):
        _load("rul", num_actions=5)
    with pytest.raises(PolicySpecError, match="empty"):
        _load(" , ")
    assert [g.labels[0]["policy"] for g in _load("baseline")] == ["baseline"]


@pytest.mark.parametrize("content,needle", [
    ("{not json", "unreadable (JSONDecodeError"),
    ([0.1, 0.2], "no 'action' field"),
    ({"action": [0.1, 0.2]}, f"action of shape (2,), expected ({ACT},)"),
    ({"action": [float("nan")] * ACT}, "outside [-1, 1] or not finite"),
    ({"action": [5.0] + [0.0] * (ACT - 1)}, "outside [-1, 1] or not finite"),
    ({"action": ["a"] * ACT}, "is not a list of numbers"),
])
def test_static_weights_are_checked(tmp_path, content, needle):
    path = _static(tmp_path, content)
    with pytest.raises(PolicySpecError) as err:
        _load(path)
    assert needle in str(err.value) and path in str(err.value) and "\n" not in str(err.value)


def test_run_directories(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"algo": "td3_bc"}))
    (run / record_lib.RECORD_FILE).write_text(json.dumps({"obs_dim": OBS + 1, "act_dim": ACT}))
    with pytest.raises(PolicySpecError, match=f"trained with obs_dim {OBS + 1}, expected {OBS}"):
        _load(str(run))
    with pytest.raises(PolicySpecError, match="checkpoint step 'abc' is not a number"):
        _load(f"{run}@abc")
    assert sorted(os.listdir(run)) == sorted(["config.json", record_lib.RECORD_FILE])  # nothing written
