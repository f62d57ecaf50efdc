"""Every agent under one contract: shapes, finiteness, determinism, one compilation,
vmapped seeds equal to separate runs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import registered_algorithms, small_config

from jaxmtf.agents import ALGORITHMS, is_discrete, make_agent, transition_fields
from jaxmtf.core import chunk, run_config

# Sample counts cut for CI speed (the references' values are the configs' defaults).
FAST = {
    "bcq": {"num_act_samples": 8, "num_target_samples": 4},
    "cql": {"policy_eval_start": 3},
    "uwac": {"num_dropout_samples": 4, "num_eval_actions": 4, "num_target_actions": 4, "warmup": 3},
    "integrated_rl": {"num_critics": 3, "reward_groups": ()},  # the synthetic data has no task responses
    "dqn": {"num_critics": 2, "target_update_interval": 4},  # an ensemble, and copies inside the 9 updates
    "double_dqn": {"target_update_interval": 4},
    "cql_dqn": {"num_critics": 2, "target_update_interval": 4},
    "bcq_discrete": {"target_update_interval": 4},
}
# Updates that draw no randomness at all: the same batch gives the same step whatever the key.
# IntegratedRL-MTF: the paper's deterministic target action (no smoothing noise); IQL: no dropout.
NOISELESS = ("ddpg", "integrated_rl", "dqn", "double_dqn", "cql_dqn", "bcq_discrete", "iql")


def _config(algo):
    config = small_config(algo)
    for name, value in FAST.get(algo, {}).items():
        config.agent[name] = value
    return config


def test_every_algorithm_is_tested():
    assert sorted(registered_algorithms()) == sorted(ALGORITHMS)


def _data(algo, tiny_dataset, tiny_discrete_dataset):
    """The tiny dataset of the algorithm's action space."""
    return tiny_discrete_dataset if is_discrete(algo) else tiny_dataset


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_agent_contract(algo, tiny_dataset, tiny_discrete_dataset):
    config = _config(algo)
    tiny_dataset = _data(algo, tiny_dataset, tiny_discrete_dataset)
    agent = make_agent(config, tiny_dataset.obs_dim, tiny_dataset.act_dim)
    data = tiny_dataset.as_transitions(**transition_fields(config))
    hparams, _ = run_config.hparam_grid(agent.default_hparams, {})

    traces = []

    def counted_update(*args):
        traces.append(1)
        return agent.update(*args)

    counted = agent._replace(update=counted_update)
    chunk_fn = chunk.make_chunk_fn(counted, batch_size=16, chunk_size=3)
    state = chunk.init_run_state(counted, [0, 1], 1)
    for _ in range(3):  # 9 updates: crosses delays and warm-ups of the small configs
        state, metrics = chunk_fn(state, data, hparams)
    assert len(traces) == 1, "the chunk retraced"
    assert int(state.agent.step) == 9

    # Metrics: a flat dict of finite [S, H] arrays.
    assert metrics and all(np.asarray(v).shape == (2, 1) for v in metrics.values())
    for name, value in metrics.items():
        assert np.all(np.isfinite(np.asarray(value))), f"{algo} metric {name} not finite: {value}"
    for leaf in jax.tree.leaves(state.agent):
        assert np.all(np.isfinite(np.asarray(leaf)))

    # Seed 1 of the vmapped pair equals seed 1 trained alone (all of its noise comes from its key).
    alone = chunk.init_run_state(agent, [1], 1)
    alone_fn = chunk.make_chunk_fn(agent, batch_size=16, chunk_size=3)
    for _ in range(3):
        alone, _ = alone_fn(alone, data, hparams)
    for x, y in zip(jax.tree.leaves(state.agent.replace(step=None)), jax.tree.leaves(alone.agent.replace(step=None))):
        np.testing.assert_allclose(np.asarray(x)[1], np.asarray(y)[0], rtol=1e-5, atol=1e-6)

    # One run's state: act and q_values on a batch.
    one = jax.tree.map(lambda x: x[0, 0], state.agent.replace(step=None)).replace(step=state.agent.step)
    obs = jnp.asarray(tiny_dataset.observations[:5])
    action = jax.jit(agent.act)(one, obs, jax.random.PRNGKey(0))
    if tiny_dataset.is_discrete:  # one integer action per row, in [0, num_actions)
        assert action.shape == (5,) and jnp.issubdtype(action.dtype, jnp.integer)
        assert np.all((np.asarray(action) >= 0) & (np.asarray(action) < tiny_dataset.num_actions))
    else:
        assert action.shape == (5, tiny_dataset.act_dim)
        assert np.all(np.abs(np.asarray(action)) <= 1.0)
    np.testing.assert_array_equal(action, jax.jit(agent.act)(one, obs, jax.random.PRNGKey(0)))  # same key, same action
    q = agent.q_values(one, obs, action)
    assert q.shape == (config.agent.get("num_critics", 2), 5) and np.all(np.isfinite(np.asarray(q)))


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_update_is_deterministic_given_the_key(algo, tiny_dataset, tiny_discrete_dataset):
    tiny_dataset = _data(algo, tiny_dataset, tiny_discrete_dataset)
    agent = make_agent(_config(algo), tiny_dataset.obs_dim, tiny_dataset.act_dim)
    state = agent.init(jax.random.PRNGKey(0))
    batch = jax.tree.map(lambda x: x[:16], tiny_dataset.as_transitions(**transition_fields(_config(algo))))
    batch = batch.replace(terminals=jnp.zeros_like(batch.terminals))  # bootstrap, so target noise matters
    update = jax.jit(agent.update)
    a, _ = update(state, batch, jax.random.PRNGKey(1), agent.default_hparams)
    b, _ = update(state, batch, jax.random.PRNGKey(1), agent.default_hparams)
    c, _ = update(state, batch, jax.random.PRNGKey(2), agent.default_hparams)
    leaves = lambda s: [np.asarray(x) for x in jax.tree.leaves(s)]
    for x, y in zip(leaves(a), leaves(b)):
        np.testing.assert_array_equal(x, y)
    if algo not in NOISELESS:
        assert any(not np.array_equal(x, y) for x, y in zip(leaves(a), leaves(c)))
