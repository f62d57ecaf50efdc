"""The discrete track: the dataset format's discrete actions, hand-computed targets and losses of DQN,
Double DQN, CQL-DQN and discrete BCQ, their wiring in the update, and a learning check."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import small_config

from jaxmtf import data
from jaxmtf.agents import bcq_discrete, cql_dqn, dqn, make_agent
from jaxmtf.core import chunk as chunk_lib
from jaxmtf.core import run_config
from jaxmtf.core.run_config import ConfigError, check_action_space
from jaxmtf.data import DatasetError
from jaxmtf.data.synthetic import optimal_discrete_action


def _discrete_arrays(n=10, num_actions=3):
    obs = np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32)
    return {
        "observations": obs,
        "actions": (np.arange(n) % num_actions).astype(np.int32),
        "rewards": np.ones(n, np.float32),
        "next_observations": np.roll(obs, -1, axis=0),  # each row leads to the next (episodes of 5)
        "terminals": (np.arange(n) % 5 == 4).astype(np.float32),
        "timeouts": np.zeros(n, np.float32),
        "episode_ids": (np.arange(n) // 5).astype(np.int32),
        "behaviour_log_prob": np.full(n, np.log(1 / 3), np.float32),
    }


# ----------------------------------------------------------------- the dataset format


@pytest.mark.parametrize(
    "field, corrupt, num_actions, message",
    [
        ("actions", lambda a: np.where(np.arange(10) == 4, 3, a), 3,
         "got 3 at transition 4, expected discrete actions in [0, 3)"),
        ("actions", lambda a: a - 1, 3, "got -1 at transition 0"),
        ("actions", lambda a: a.astype(np.float32), 3, "expected an integer dtype (discrete actions, num_actions=3)"),
        ("actions", lambda a: a[:, None], 3, "expected 1 dimensions"),
        ("actions", lambda a: a, 0, "'num_actions': missing for integer actions"),
        ("actions", lambda a: a, 1, "'num_actions': got 1, expected 0 (continuous actions) or an integer >= 2"),
        ("behaviour_log_prob", lambda a: a + 2.0, 3, "expected the log of a probability (<= 0)"),
    ],
)
def test_malformed_discrete_datasets_name_the_field(field, corrupt, num_actions, message):
    arrays = _discrete_arrays()
    arrays[field] = corrupt(arrays[field])
    with pytest.raises(DatasetError) as err:
        data.from_arrays(arrays, num_actions=num_actions)
    assert message in str(err.value)
    assert ("'num_actions'" if "num_actions'" in message else f"'{field}'") in str(err.value)


def test_discrete_round_trip_and_a_sidecar_without_num_actions(tmp_path):
    dataset = data.from_arrays(_discrete_arrays(), num_actions=3)
    assert dataset.is_discrete and dataset.act_dim == 3 and dataset.actions.dtype == np.int32
    path = data.save(str(tmp_path / "d.npz"), dataset)
    again = data.load(path)
    assert again.num_actions == 3 and again.actions.dtype == np.int32
    np.testing.assert_array_equal(again.actions, dataset.actions)
    # A sidecar that lost num_actions: the integer actions are refused, naming the field.
    import json

    sidecar_path = str(tmp_path / "d.json")
    sidecar = json.load(open(sidecar_path))
    del sidecar["num_actions"]
    json.dump(sidecar, open(sidecar_path, "w"))
    with pytest.raises(DatasetError, match="'num_actions': missing for integer actions"):
        data.load(path)


def test_agent_and_dataset_action_spaces_must_match(tiny_dataset, tiny_discrete_dataset):
    with pytest.raises(ConfigError, match="config field 'algo': got 'cql_dqn', which is discrete, "
                                          "but the dataset has continuous"):
        check_action_space(small_config("cql_dqn"), tiny_dataset)  # ... and it names what would fit
    with pytest.raises(ConfigError, match="expected a continuous agent"):
        check_action_space(small_config("cql_dqn"), tiny_dataset)
    with pytest.raises(ConfigError, match="got 'td3', which is continuous, but the dataset has discrete"):
        check_action_space(small_config("td3"), tiny_discrete_dataset)
    check_action_space(small_config("bcq_discrete"), tiny_discrete_dataset)  # matching: no error


# ----------------------------------------------------------------- hand-computed targets and losses

# Q at s_t: online critic (argmax mean: actions 1 and 0) and a 2-critic target.
Q_T_ONLINE = jnp.array([[[1.0, 3.0, 2.0], [0.5, 0.1, 0.2]], [[1.0, 3.0, 2.0], [0.5, 0.1, 0.2]]])
Q_T_TARGET = jnp.array([[[10.0, 20.0, 30.0], [4.0, 5.0, 6.0]], [[12.0, 18.0, 33.0], [3.0, 7.0, 1.0]]])
R_T, TERMINAL_T, GAMMA = jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0]), 0.9


def test_double_dqn_and_dqn_targets_by_hand():
    # Double DQN: a_t by the online mean [1, 0]; value = min over target critics: row 0 min(20, 18) = 18,
    # row 1 min(4, 3) = 3; y = r + 0.9 v.
    a_t = dqn.greedy_actions(Q_T_ONLINE)
    np.testing.assert_array_equal(a_t, [1, 0])
    y = dqn.dqn_target(Q_T_TARGET, a_t, R_T, GAMMA, TERMINAL_T)
    np.testing.assert_allclose(y, [1.0 + 0.9 * 18.0, 2.0 + 0.9 * 3.0], rtol=1e-6)
    # DQN: a_t by the target's mean: row 0 [11, 19, 31.5] -> 2, row 1 [3.5, 6, 3.5] -> 1; min: 30 and 5.
    a_t = dqn.greedy_actions(Q_T_TARGET)
    y = dqn.dqn_target(Q_T_TARGET, a_t, R_T, GAMMA, jnp.array([0.0, 1.0]))
    np.testing.assert_allclose(y, [1.0 + 0.9 * 30.0, 2.0], rtol=1e-6)  # row 1 terminal: no bootstrap


def test_huber_and_conservative_penalty_by_hand():
    # Huber, delta 1: |0 - 0.5| -> 0.125, |3 - 1| = 2 -> 2 - 0.5 = 1.5; mean 0.8125, summed over one critic.
    np.testing.assert_allclose(dqn.ensemble_huber(jnp.array([[0.0, 3.0]]), jnp.array([0.5, 1.0])), 0.8125, rtol=1e-6)
    # CQL: row 0 logsumexp(1, 2, 3) - Q(a=2) = log(e + e^2 + e^3) - 3; row 1 log 3 - 0; times alpha 2.
    q = jnp.array([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]])
    expected = 2.0 * 0.5 * ((np.log(np.e + np.e**2 + np.e**3) - 3.0) + np.log(3.0))
    np.testing.assert_allclose(cql_dqn.conservative_penalty(q, jnp.array([2, 1]), 2.0), [expected], rtol=1e-6)
    np.testing.assert_allclose(expected, 1.5062183, rtol=1e-6)


def test_bcq_action_filter_and_imitation_loss():
    # G = (0.5, 0.3, 0.2): ratios to the max 1, 0.6, 0.4. Q prefers the least likely action.
    logits = jnp.log(jnp.array([0.5, 0.3, 0.2]))
    q = jnp.array([[1.0, 5.0, 9.0]])
    np.testing.assert_array_equal(bcq_discrete.action_mask(logits, 0.3), [True, True, True])
    np.testing.assert_array_equal(bcq_discrete.action_mask(logits, 0.5), [True, True, False])
    assert int(bcq_discrete.filtered_greedy(q, logits, 0.3)) == 2  # all kept: the argmax of Q
    assert int(bcq_discrete.filtered_greedy(q, logits, 0.5)) == 1  # action 2 (ratio 0.4) filtered out
    assert int(bcq_discrete.filtered_greedy(q, logits, 0.7)) == 0  # only the behaviour's mode remains
    # Equal logits (0, 0), data action 1: NLL log 2, no logits penalty.
    loss, nll = bcq_discrete.imitation_loss(jnp.zeros((1, 2)), jnp.array([1]), 0.5)
    np.testing.assert_allclose([loss, nll], [np.log(2.0), np.log(2.0)], rtol=1e-6)
    loss, _ = bcq_discrete.imitation_loss(jnp.array([[1.0, -1.0]]), jnp.array([0]), 0.5)
    np.testing.assert_allclose(loss, np.log(1.0 + np.exp(-2.0)) + 0.5 * 1.0, rtol=1e-6)


@pytest.mark.parametrize("algo", ["dqn", "double_dqn"])
def test_update_bootstraps_from_the_right_critic(algo, tiny_discrete_dataset):
    """The update's target: Q'(s_t, .) at a_t chosen by Q' (DQN) or by the online Q (Double DQN)."""
    config = small_config(algo)
    agent = make_agent(config, tiny_discrete_dataset.obs_dim, tiny_discrete_dataset.act_dim)
    state = agent.init(jax.random.PRNGKey(0))
    other = agent.init(jax.random.PRNGKey(1))
    state = state.replace(critic_target=other.params["q"])  # online and target networks now differ
    batch = jax.tree.map(lambda x: x[:16], tiny_discrete_dataset.as_transitions())
    batch = batch.replace(terminals=jnp.zeros_like(batch.terminals), next_observations=batch.observations[::-1])
    n = tiny_discrete_dataset.num_actions
    all_q = lambda s: jnp.stack([agent.q_values(s, batch.next_observations, jnp.full((16,), a)) for a in range(n)], -1)
    q_online, q_target = all_q(state), all_q(other)  # [1, 16, n]
    chooser = q_target if algo == "dqn" else q_online
    a_t = np.argmax(np.asarray(chooser[0]), axis=-1)
    expected = np.asarray(batch.rewards) + 0.99 * np.asarray(q_target[0])[np.arange(16), a_t]
    _, metrics = jax.jit(agent.update)(state, batch, jax.random.PRNGKey(2), agent.default_hparams)
    np.testing.assert_allclose(metrics["target_mean"], expected.mean(), rtol=1e-5)
    # And the two choices really differ on this batch (else the test could not tell DQN from Double DQN).
    assert np.any(np.argmax(np.asarray(q_online[0]), -1) != np.argmax(np.asarray(q_target[0]), -1))


def test_target_network_is_a_hard_copy_every_interval(tiny_discrete_dataset):
    config = small_config("dqn")
    config.agent.target_update_interval = 3
    agent = make_agent(config, tiny_discrete_dataset.obs_dim, tiny_discrete_dataset.act_dim)
    state = agent.init(jax.random.PRNGKey(0))
    batch = jax.tree.map(lambda x: x[:16], tiny_discrete_dataset.as_transitions())
    update = jax.jit(agent.update)
    same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    copied = []
    for _ in range(4):  # d3rlpy: copy after the update whose grad_step (from 0) % interval == 0: steps 0 and 3
        state, _ = update(state, batch, jax.random.PRNGKey(0), agent.default_hparams)
        copied.append(same(state.params["q"], state.critic_target))
    assert copied == [True, False, False, True]


# ----------------------------------------------------------------- learning


def test_cql_dqn_learns_the_optimal_discrete_policy():
    """One-step task with a known optimal action a*(s) = argmax W s, uniform behaviour: greedy = a*."""
    dataset = data.discrete_one_step_dataset(num_transitions=4096, obs_dim=4, num_actions=3, seed=1)
    config = small_config("cql_dqn", hidden=(64, 64))
    config.agent.learning_rate = 1e-3  # a short run: d3rlpy's 6.25e-5 is tuned for millions of updates
    config.agent.target_update_interval = 100
    agent = make_agent(config, dataset.obs_dim, dataset.act_dim)
    chunk = chunk_lib.make_chunk_fn(agent, batch_size=64, chunk_size=500)
    state = chunk_lib.init_run_state(agent, [0], 1)
    hparams, _ = run_config.hparam_grid(agent.default_hparams, {})
    for _ in range(4):
        state, metrics = chunk(state, dataset.as_transitions(), hparams)
    one = jax.tree.map(lambda x: x[0, 0], state.agent.replace(step=None)).replace(step=state.agent.step)
    obs = np.random.default_rng(7).normal(size=(2000, 4)).astype(np.float32)  # fresh states
    accuracy = np.mean(np.asarray(agent.act(one, jnp.asarray(obs), None)) == optimal_discrete_action(obs, 3))
    assert accuracy > 0.9, accuracy
    assert float(metrics["cql_penalty"][0, 0]) > 0.0  # the penalty is active (logsumexp > data Q)


# ----------------------------------------------------------------- OPE on discrete actions


def _greedy_group(num_actions=3, obs_dim=4):
    from jaxmtf.ope import targets
    from jaxmtf.sim.policies import Policy, _nan_log_prob

    w = jnp.asarray(np.random.default_rng(20_011).normal(size=(obs_dim, num_actions)), jnp.float32)  # a*(s)'s W
    greedy = Policy(lambda p, o, k: jnp.argmax(o @ w).astype(jnp.int32), _nan_log_prob)
    return targets.PolicyGroup([{"policy": "greedy"}], greedy, jnp.zeros((1,)), False)


def test_importance_sampling_of_a_greedy_discrete_target():
    """IS with epsilon-greedy probabilities: pi(a|s) = 0.9 + 0.1/3 for a*(s), 0.1/3 otherwise; uniform behaviour.
    The one-step task pays 1 for a*(s), so the smoothed target's true value is 0.9 + 0.1 / 3."""
    from jaxmtf.ope import importance, targets
    from jaxmtf.ope.episodes import episodes_from_dataset, gather

    dataset = data.discrete_one_step_dataset(num_transitions=4096, obs_dim=4, num_actions=3, seed=3)
    lp = targets.target_log_prob(_greedy_group(), dataset.observations, dataset.actions, 0.2, num_actions=3,
                                 target_epsilon=0.1)[0]
    hit = dataset.actions == optimal_discrete_action(dataset.observations, 3)
    np.testing.assert_allclose(np.asarray(lp), np.where(hit, np.log(0.9 + 0.1 / 3), np.log(0.1 / 3)), rtol=1e-5)
    episodes = episodes_from_dataset(dataset)
    log_w = importance.log_cumulative_weights(importance.log_ratios(episodes, gather(episodes, lp)))
    estimates = importance.estimate_all(episodes, log_w, 0.99, jnp.ones((episodes.num_episodes,)))
    for name in ("tis", "wis"):
        assert abs(float(estimates[name]) - (0.9 + 0.1 / 3)) < 0.05, (name, estimates[name])


def test_discrete_fqe_reads_its_head_at_the_targets_actions():
    """y_t = r_t + gamma Q'(s_t, a_t) with Q' the discrete head at the target's integer action."""
    import ml_collections

    from jaxmtf.ope import fqe as fqe_lib

    config = ml_collections.ConfigDict(dict(hidden_dims=(8,), num_critics=1, learning_rate=1e-3,
                                            target_update_interval=1))
    fqe = fqe_lib.make_fqe(config, 2, 3, num_actions=3)
    state = fqe.init(jax.random.PRNGKey(0))
    dataset = data.from_arrays(_discrete_arrays(), num_actions=3)
    batch = jax.tree.map(lambda x: x[:4], fqe_lib.fqe_data(dataset))
    next_actions = jnp.array([[0], [2], [1], [2]])  # one draw (a greedy target) per next state
    y = fqe_lib.fqe_target(lambda o, a: fqe.q_values(state, o, a), batch, next_actions, 0.5)
    q_t = fqe.q_values(state, batch.next_observations, next_actions[:, 0])[0]
    np.testing.assert_allclose(y, batch.rewards + 0.5 * (1.0 - batch.terminals) * q_t, rtol=1e-6)
    assert fqe.q_values(state, batch.observations, batch.actions).shape == (1, 4)
