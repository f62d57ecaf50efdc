"""jaxmtf.policy: a trained run's policy loaded by seed and setting, exported through jax.export and back, and
its fusion weights in the simulator's terms."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import small_config

from jaxmtf import policy
from jaxmtf.configs.collect import base as collect_base
from jaxmtf.core import sharding, training
from jaxmtf.core.run_config import ConfigError
from jaxmtf.data import collect
from jaxmtf.data import dataset as dataset_lib
from jaxmtf.sim.mtf import env as sim_env


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """TD3+BC (observations normalised), 2 seeds x alpha (2.5, 5) on a small simulator dataset."""
    root = tmp_path_factory.mktemp("policy")
    config = collect_base.get_base_config("random")
    config.num_users, config.eval_users = 6, 4
    collect.collect_and_save(config, str(root / "random.npz"))
    data = dataset_lib.load(str(root / "random.npz"))
    train = small_config("td3_bc", hidden=(16, 16), sweep="alpha=2.5,5")
    summary = training.train(train, data, str(root / "run"))
    return str(root / "run"), summary, data


def test_load_acts_as_the_trained_state(trained):
    workdir, summary, data = trained
    observations = np.asarray(data.observations[:5])
    run = policy.restore_run(workdir, data.obs_dim, data.act_dim)
    for seed, setting in ((0, 0), (1, 1)):
        pi = policy.load(workdir, seed=seed, setting=setting)
        assert pi.label["seed"] == seed and pi.label["setting"] == setting and pi.label["checkpoint_step"] == 20
        assert pi.label["alpha"] == (2.5, 5.0)[setting]
        state = summary["state"].agent  # every leaf [S, H, ...], as training ended
        one = jax.tree.map(lambda x: x[seed, setting], state.replace(step=None)).replace(step=state.step)
        want = run.agent.act(one, observations, jax.random.PRNGKey(1))
        np.testing.assert_allclose(np.asarray(pi(observations)), np.asarray(want), rtol=1e-6, atol=1e-6)
    assert not np.allclose(np.asarray(policy.load(workdir, 0, 0)(observations)),
                           np.asarray(policy.load(workdir, 1, 1)(observations)))  # two runs, two policies


def test_export_round_trip(trained, tmp_path):
    workdir, _, data = trained
    pi = policy.load(workdir, seed=1, setting=0)
    path = str(tmp_path / "pi.jaxexport")
    policy.export(pi, path)
    act = policy.load_exported(path)
    for n in (3, 7):  # the batch dimension is symbolic
        observations = np.asarray(data.observations[:n])
        np.testing.assert_allclose(np.asarray(act(observations)), np.asarray(pi(observations)), rtol=1e-6, atol=1e-6)


def test_fusion_weights_are_the_simulators_mapping(trained):
    workdir, _, data = trained
    pi = policy.load(workdir)
    env = sim_env.default_params()
    out = policy.fusion_weights(pi, data.observations[:4], env)
    k = env.num_tasks
    assert out["powers"].shape == (4, k) and out["biases"].shape == (4, k) and out["task_names"] == list(env.task_names)
    assert len(out["observation_names"]) == data.obs_dim and "position" in " ".join(out["observation_names"])
    # powers = max_power * (a + 1) / 2 on the first K action dimensions (sim/env.fusion_from_action)
    np.testing.assert_allclose(out["powers"], env.max_power * (np.clip(out["actions"][:, :k], -1, 1) + 1) / 2,
                               rtol=1e-6)


def test_bad_requests_are_named(trained):
    workdir, _, _ = trained
    with pytest.raises(ConfigError, match=r"seed: got 7, expected one of the run's seeds \[0, 1\]"):
        policy.load(workdir, seed=7)
    with pytest.raises(ConfigError, match=r"setting: got 2, expected 0..1"):
        policy.load(workdir, setting=2)
    with pytest.raises(ConfigError, match=r"trained with obs_dim"):
        policy.restore_run(workdir, 3, 2)


def test_a_diverged_run_is_refused_naming_it(trained, tmp_path):
    """A checkpoint whose seed-1 parameters hold NaN (a diverged run): loading that seed, or evaluating the run
    in OPE, is refused naming the run; seed 0 still loads."""
    import shutil

    from jaxmtf.ope import targets
    from jaxmtf.runs import checkpoint

    workdir, _, data = trained
    copy = str(tmp_path / "run")
    shutil.copytree(workdir, copy)
    run = policy.restore_run(copy, data.obs_dim, data.act_dim)
    like = sharding.init_on_devices(run.agent, run.seeds, len(run.settings), None, None)
    ckpt = checkpoint.Checkpointer(os.path.join(copy, "checkpoints"))
    _, state = ckpt.restore_for_evaluation(like)
    nan_seed_1 = jax.tree.map(lambda x: x.at[1].set(np.nan) if jnp.issubdtype(x.dtype, jnp.inexact) else x,
                              state.agent.replace(step=None)).replace(step=state.agent.step)
    ckpt.save(40, state.replace(agent=nan_seed_1), {})
    ckpt.close()
    with pytest.raises(ConfigError, match=r"checkpoint 40 of .* non-finite parameters \(seed 1 setting 0\b"):
        policy.load(copy, seed=1)
    assert policy.load(copy, seed=0).label["checkpoint_step"] == 40
    with pytest.raises(targets.PolicySpecError, match=r"policy '.*run': checkpoint 40 .*seed 1 setting 0, seed 1 "
                                                      r"setting 1: a diverged run"):
        targets.load_policies(copy, None, None, data.obs_dim, data.act_dim)
