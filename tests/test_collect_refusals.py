"""Collection refuses a bad config or output in one line, before anything is simulated or written."""
import os
import subprocess
import sys

import pytest

from jaxmtf.configs.collect import base
from jaxmtf.core.run_config import ConfigError
from jaxmtf.data import collect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(pipeline="random", **changes):
    config = base.get_base_config(pipeline).to_dict()
    for name, value in changes.items():
        if name.startswith("online."):
            config["online"][name[len("online."):]] = value
        else:
            config[name] = value
    return config


# (case, config changes, the message's needles)
BAD_CONFIGS = [
    ("no users", dict(num_users=0), ("'num_users'", "got 0", "an integer >= 1")),
    ("negative users", dict(num_users=-5), ("'num_users'", "got -5", ">= 1")),
    ("float users", dict(num_users=2.5), ("'num_users'", "got 2.5", "an integer")),
    ("negative seed", dict(seed=-1), ("'seed'", "got -1", ">= 0")),
    ("negative sigma", dict(pipeline="mixed", noise_sigma=-0.1), ("'noise_sigma'", "got -0.1", "> 0")),
    ("zero sigma", dict(pipeline="noisy_expert", noise_sigma=0.0), ("'noise_sigma'", "got 0.0", "> 0")),
    ("nan sigma", dict(noise_sigma=float("nan")), ("'noise_sigma'", "got nan", "a finite number")),
    ("epsilon above 1", dict(simulator="notifications", pipeline="epsilon_greedy", epsilon=1.5),
     ("'epsilon'", "got 1.5", "in [0, 1]")),
    ("zero temperature", dict(simulator="notifications", pipeline="softmax", temperature=0.0),
     ("'temperature'", "got 0.0", "> 0")),
    ("negative box", dict(pipeline="exploration_box", box_half_width=-0.15),
     ("'box_half_width'", "got -0.15", "in (0, 1]")),
    ("box past the range", dict(pipeline="exploration_box", box_half_width=3.0),
     ("'box_half_width'", "got 3.0", "(0, 1]")),
    ("one eval user", dict(eval_users=1), ("'eval_users'", "got 1", ">= 2")),
    ("eval discount", dict(eval_discount=1.5), ("'eval_discount'", "got 1.5", "in [0, 1]")),
    ("unknown pipeline", dict(pipeline="mixd"), ("'pipeline'", "got 'mixd'", "did you mean 'mixed'")),
    ("continuous pipeline, notifications", dict(simulator="notifications", pipeline="mixed"),
     ("'pipeline'", "got 'mixed'", "with simulator 'notifications'")),
    ("unknown simulator", dict(simulator="notifs"), ("'simulator'", "got 'notifs'", "one of")),
    ("unknown expert", dict(pipeline="expert", expert="oracle"), ("'expert'", "got 'oracle'", "one of")),
    ("unknown field", dict(num_user=3), ("'num_user'", "unknown", "did you mean 'num_users'")),
    ("unknown simulator parameter", dict(env={"slate_sise": 8}), ("'env.slate_sise'", "unknown")),
    ("unknown online algo", {"pipeline": "final_buffer", "online.algo": "sac"},
     ("'online.algo'", "got 'sac'", "one of")),
    ("online chunks", {"pipeline": "final_buffer", "online.iterations": 250},
     ("'online.iterations' and 'online.log_every'", "got 250 and 500", "a multiple of log_every")),
    ("online batch", {"pipeline": "final_buffer", "online.num_envs": 1, "online.iterations": 100,
                      "online.log_every": 100, "online.batch_size": 256},
     ("'online.batch_size'", "got 1 and 100 and 256")),
    ("negative exploration", {"pipeline": "final_buffer", "online.exploration_sigma": -1.0},
     ("'online.exploration_sigma'", "got -1.0", ">= 0")),
]


@pytest.mark.parametrize("case,changes,needles", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_collection_config_is_one_line_and_writes_nothing(case, changes, needles, tmp_path):
    import ml_collections

    output = tmp_path / "data" / "out.npz"
    with pytest.raises(ConfigError) as err:
        collect.collect_and_save(ml_collections.ConfigDict(_config(**changes)), str(output), overwrite=False)
    message = str(err.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (case, needle, message)
    assert not (tmp_path / "data").exists()


def test_bad_outputs_are_refused_before_collecting(tmp_path):
    import ml_collections

    config = ml_collections.ConfigDict(_config(num_users=4, eval_users=4))
    existing = tmp_path / "old.npz"
    existing.write_bytes(b"keep me")
    with pytest.raises(ConfigError, match=r"flag '--output': .*which exists .*--overwrite"):
        collect.collect_and_save(config, str(existing), overwrite=False)
    assert existing.read_bytes() == b"keep me"
    (tmp_path / "adir.npz").mkdir()
    with pytest.raises(ConfigError, match="is a directory, expected a file path"):
        collect.collect_and_save(config, str(tmp_path / "adir.npz"), overwrite=True)
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match="'.*afile' is a file, expected a folder there"):
        collect.collect_and_save(config, str(tmp_path / "afile" / "sub" / "x.npz"), overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["adir.npz", "afile", "old.npz"]  # nothing written, no .tmp


def _launch(*args):
    return subprocess.run([sys.executable, "-m", "launch.collect", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_launcher_refusals_are_one_line_and_exit_2(tmp_path):
    out = str(tmp_path / "x.npz")
    typo = _launch("--config=launch/configs/collect/random.py", "--config.num_user=3", f"--output={out}")
    assert typo.returncode == 2 and "Traceback" not in typo.stderr
    assert "flag --config.num_user=3: config field 'num_user' unknown, expected a known field; did you mean " \
           "'num_users'?" in typo.stderr
    negative = _launch("--config=launch/configs/collect/random.py", "--config.num_users=-5", f"--output={out}")
    assert negative.returncode == 2 and "Traceback" not in negative.stderr
    assert "config field 'num_users': got -5, expected an integer >= 1" in negative.stderr
    assert os.listdir(tmp_path) == []
