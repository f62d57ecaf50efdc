"""CQL: the conservative penalty, Lagrange and temperature updates by hand, and a learning check.

Two compiled agents are shared by the tests (compiling dominates the runtime
on CPU): the reference's setting with twin critics, and a Lagrange variant
with an ensemble of 4.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import CompiledAgent, small_config

from jaxmtf.agents import cql, networks, sac
from jaxmtf.configs import cql as cql_config
from jaxmtf.data.synthetic import one_step_dataset, optimal_action

OBS_DIM, ACT_DIM, BATCH = 4, 2, 128
HIDDEN = (64, 64)


def _config(**agent_overrides):
    config = small_config("cql", hidden=HIDDEN)
    config.agent.policy_eval_start = 2  # one BC update (update 1), then SAC
    config.agent.update(agent_overrides)
    return config


def Compiled(config):  # noqa: N802 (reads as the class it builds)
    return CompiledAgent(config, OBS_DIM, ACT_DIM)


@pytest.fixture(scope="module")
def twin():
    return Compiled(_config())


@pytest.fixture(scope="module")
def lagrange4():
    return Compiled(_config(num_critics=4, with_lagrange=True))


def _batch(seed=0, next_shift=0.0):
    data = one_step_dataset(BATCH, OBS_DIM, ACT_DIM, seed=seed, behaviour_noise=0.2).as_transitions()
    return data.replace(next_observations=data.observations + next_shift)


# ----------------------------------------------------------------- the penalty by hand


def test_conservative_penalty_hand_computed():
    # One critic, B = 2 states, M = 1 sample of each kind, |A| = 2: log 0.5^2 = -log 4.
    q_data = jnp.array([[3.0, 1.0]])
    q_rand = jnp.array([[[1.0], [0.0]]])
    q_pi_tm1, log_pi_tm1 = jnp.array([[[2.0], [1.0]]]), jnp.array([[0.5], [-1.0]])
    q_pi_t, log_pi_t = jnp.array([[[0.0], [2.0]]]), jnp.array([[-1.0], [0.5]])
    penalty = cql.conservative_penalty(q_data, q_rand, q_pi_tm1, log_pi_tm1, q_pi_t, log_pi_t, ACT_DIM, 5.0, 1.0)
    # state 0: [1 + log 4, 0 + 1, 2 - 0.5]; state 1: [0 + log 4, 2 - 0.5, 1 + 1]
    lse0 = np.log(4 * np.e + np.e + np.exp(1.5))  # 2.894425
    lse1 = np.log(4 + np.exp(1.5) + np.exp(2.0))  # 2.764477
    expected = 5.0 * (lse0 + lse1) / 2 - 5.0 * 2.0  # 4.147255
    np.testing.assert_allclose(penalty, [expected], rtol=1e-6)
    np.testing.assert_allclose(expected, 4.147255, rtol=1e-6)

    # Temperature 2: 2 * logsumexp(cat / 2); and the penalty is per critic and
    # invariant to a constant shift of one critic's Q-values.
    two = lambda x, c: jnp.concatenate([x, x + c])
    penalty = cql.conservative_penalty(
        two(q_data, 10.0), two(q_rand, 10.0), two(q_pi_tm1, 10.0), log_pi_tm1, two(q_pi_t, 10.0), log_pi_t,
        ACT_DIM, 5.0, 2.0,
    )
    cat = np.array([[1 + np.log(4), 1.0, 1.5], [np.log(4), 1.5, 2.0]])
    expected = 5.0 * np.mean(2.0 * np.log(np.sum(np.exp(cat / 2.0), axis=1))) - 5.0 * 2.0
    np.testing.assert_allclose(penalty, [expected, expected], rtol=1e-5)


def test_penalty_actions_of_next_state_are_scored_at_current_state():
    """pi(.|s') actions come from s' but are scored with Q(s, .), as the reference does."""
    obs = jnp.zeros((3, OBS_DIM))
    next_obs = jnp.full((3, OBS_DIM), 0.5)
    # A near-deterministic policy whose action reveals the state it was drawn at.
    dist_fn = lambda o: (o[:, :ACT_DIM], jnp.full((o.shape[0], ACT_DIM), -20.0))
    # A critic whose value reveals the state it is evaluated at: 100 sum(s) + sum(a).
    q_fn = lambda o, a: (100.0 * jnp.sum(o, -1) + jnp.sum(a, -1))[None]
    values = jax.jit(cql.penalty_action_values, static_argnums=(0, 1, 5))
    q_rand, q_pi_tm1, q_pi_t, log_pi_tm1, log_pi_t = values(q_fn, dist_fn, obs, next_obs, jax.random.PRNGKey(0), 5)
    assert q_rand.shape == q_pi_tm1.shape == q_pi_t.shape == (1, 3, 5)
    assert log_pi_tm1.shape == log_pi_t.shape == (3, 5)
    np.testing.assert_allclose(q_pi_t, ACT_DIM * np.tanh(0.5), atol=1e-5)  # at s' it would be 200 + 0.92
    np.testing.assert_allclose(q_pi_tm1, 0.0, atol=1e-5)  # tanh(0) at s
    assert np.all(np.abs(q_rand) <= ACT_DIM)  # uniform actions at s, obs term 0


def test_update_scores_next_state_actions_at_current_state(twin):
    """Through the real update: the s' actions' mean Q is Q at s, not at s' (which differs a lot here)."""
    state = twin.init(jax.random.PRNGKey(0))
    # rlkit's output layer starts at U(+-3e-3): scale it up so that Q tells states apart.
    critic = jax.tree.map(lambda x: x, state.critic)  # a copy of the nested dicts
    mlp = critic["params"]["VmapCritic_0"]["MLP_0"]
    mlp["Dense_2"] = jax.tree.map(lambda x: 1000.0 * x, mlp["Dense_2"])
    state = state.replace(critic=critic)
    batch = _batch(next_shift=50.0)
    _, metrics = twin.update(state, batch, jax.random.PRNGKey(1), twin.agent.default_hparams)
    q_at_s = float(jnp.mean(twin.agent.q_values(state, batch.observations, batch.actions)))
    q_at_next_s = float(jnp.mean(twin.agent.q_values(state, batch.next_observations, batch.actions)))
    gap = abs(q_at_next_s - q_at_s)
    assert gap > 5.0, "precondition: Q at s' must differ from Q at s"
    assert abs(float(metrics["q_pi_next_s"]) - q_at_s) < 0.1 * gap
    assert abs(float(metrics["q_pi_s"]) - q_at_s) < 0.1 * gap


# ----------------------------------------------------------------- temperature and Lagrange


def test_temperature_loss_sign():
    # log pi + target = [-2, -1]: entropy above target, so the loss's gradient is
    # positive and gradient descent lowers alpha.
    log_pi, target = jnp.array([1.0, 2.0]), -3.0
    np.testing.assert_allclose(sac.temperature_loss(0.5, log_pi, target), 0.75, rtol=1e-6)
    np.testing.assert_allclose(jax.grad(sac.temperature_loss)(0.5, log_pi, target), 1.5, rtol=1e-6)
    # Entropy below target (log pi + target = [2, 3]): alpha must grow.
    np.testing.assert_allclose(jax.grad(sac.temperature_loss)(0.5, jnp.array([5.0, 6.0]), target), -2.5, rtol=1e-6)


def test_first_update_alpha_and_bc_warmup(twin):
    state = twin.init(jax.random.PRNGKey(0))
    # Away from +-1, where float32's 1 - a^2 loses the digits the float64 formula below keeps.
    batch = _batch().replace(actions=jnp.clip(_batch().actions, -0.95, 0.95))
    new_state, metrics = twin.update(state, batch, jax.random.PRNGKey(1), twin.agent.default_hparams)
    # The fresh policy (std ~ 1) has entropy above -|A|: Adam's first step moves
    # log alpha by exactly -lr, and this step's losses already use the new alpha.
    assert float(metrics["entropy"]) > -ACT_DIM
    np.testing.assert_allclose(new_state.log_alpha, -1e-4, rtol=1e-3)
    np.testing.assert_allclose(metrics["alpha"], np.exp(-1e-4), rtol=1e-6)
    assert int(new_state.step) == 1

    # Update 1 < policy_eval_start = 2 is behaviour cloning: log pi(a_data|s) by a numpy formula.
    actor_net = networks.TanhGaussianActor(HIDDEN, ACT_DIM, log_std_min=-5.0, log_std_max=2.0)
    mean, log_std = map(np.asarray, actor_net.apply(state.actor, batch.observations))
    mean = np.clip(mean, -9.0, 9.0)
    a = np.asarray(batch.actions, np.float64)
    u = np.arctanh(np.clip(a, -1 + 1e-6, 1 - 1e-6))
    log_prob = -0.5 * ((u - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi) - np.log(1 - a**2 + 1e-6)
    data_ll = np.mean(np.sum(log_prob, -1))
    np.testing.assert_allclose(metrics["data_log_likelihood"], data_ll, rtol=1e-4)
    # BC loss = alpha E[log pi(a|s)] - E[log pi(a_data|s)], with E[log pi] = -entropy.
    np.testing.assert_allclose(metrics["actor_loss"], -metrics["alpha"] * metrics["entropy"] - data_ll, rtol=1e-4)

    # Update 2 is not (2 < 2 is false): alpha log pi - min Q, and Q is ~0 at rlkit's init.
    _, metrics = twin.update(new_state, batch, jax.random.PRNGKey(2), twin.agent.default_hparams)
    bc_value = -metrics["alpha"] * metrics["entropy"] - metrics["data_log_likelihood"]
    assert abs(metrics["actor_loss"] - bc_value) > 1.0  # the data log-likelihood term is gone
    np.testing.assert_allclose(metrics["actor_loss"], -metrics["alpha"] * metrics["entropy"], atol=0.1)


def test_lagrange_loss_by_hand():
    # alpha' = 2, penalties [3, 5] of two critics, threshold 1: -(2*2 + 2*4) / 2.
    np.testing.assert_allclose(cql.lagrange_loss(np.log(2.0), jnp.array([3.0, 5.0]), 1.0), -6.0, rtol=1e-6)
    # alpha' = clamp(exp(20), 0, 1e6).
    np.testing.assert_allclose(cql.lagrange_loss(20.0, jnp.array([2.0]), 1.0), -1e6, rtol=1e-6)


@pytest.mark.parametrize("threshold, direction", [(-1e3, 1.0), (1e3, -1.0)])
def test_lagrange_update(lagrange4, threshold, direction):
    """alpha' rises while the penalty exceeds the threshold and falls below it; the Q loss uses the old alpha'."""
    state = lagrange4.init(jax.random.PRNGKey(0))
    hparams = dict(lagrange4.agent.default_hparams, lagrange_threshold=jnp.float32(threshold))
    new_state, metrics = lagrange4.update(state, _batch(), jax.random.PRNGKey(1), hparams)
    # Adam's first step is lr * sign(gradient): +-3e-4 (the Q lr).
    np.testing.assert_allclose(new_state.log_alpha_prime, direction * 3e-4, rtol=1e-3)
    penalty = float(metrics["cql_penalty"])  # mean over the 4 critics, before the Lagrange scaling
    np.testing.assert_allclose(metrics["alpha_prime"], 1.0)
    np.testing.assert_allclose(metrics["alpha_prime_loss"], -(penalty - threshold), rtol=1e-4)
    np.testing.assert_allclose(metrics["critic_loss"] - metrics["td_loss"], 4 * (penalty - threshold), rtol=1e-4)


# ----------------------------------------------------------------- shapes, init, act


@pytest.mark.parametrize("which, num_critics", [("twin", 2), ("lagrange4", 4)])
def test_shapes_and_finiteness(request, which, num_critics):
    compiled = request.getfixturevalue(which)
    state = compiled.init(jax.random.PRNGKey(0))
    batch = _batch()
    for i in range(3):
        state, metrics = compiled.update(state, batch, jax.random.PRNGKey(i), compiled.agent.default_hparams)
    assert state.step.shape == () and state.step.dtype == jnp.int32 and int(state.step) == 3
    assert compiled.agent.q_values(state, batch.observations, batch.actions).shape == (num_critics, BATCH)
    assert jax.tree.leaves(state.critic)[0].shape[0] == num_critics
    for name, value in metrics.items():
        assert value.shape == () and value.dtype == jnp.float32 and np.isfinite(value), name
    expected_hparams = {"discount", "tau", "min_q_weight"} | ({"lagrange_threshold"} if num_critics == 4 else set())
    assert set(compiled.agent.default_hparams) == expected_hparams


def test_rlkit_init(twin):
    state = twin.init(jax.random.PRNGKey(0))
    critic = state.critic["params"]["VmapCritic_0"]["MLP_0"]
    assert np.all(critic["Dense_0"]["bias"] == 0.1) and np.all(critic["Dense_1"]["bias"] == 0.1)
    assert np.max(np.abs(critic["Dense_0"]["kernel"])) <= 1 / np.sqrt(HIDDEN[0])  # fan = output features
    assert np.max(np.abs(critic["Dense_0"]["kernel"])) > 0.8 / np.sqrt(HIDDEN[0])
    assert np.max(np.abs(critic["Dense_2"]["kernel"])) <= 3e-3 and np.max(np.abs(critic["Dense_2"]["bias"])) <= 3e-3
    actor = state.actor["params"]
    assert np.all(actor["Dense_1"]["bias"] == 0.1)
    for head in ("Dense_2", "Dense_3"):  # mean and log-std heads
        assert np.max(np.abs(actor[head]["kernel"])) <= 1e-3 and np.max(np.abs(actor[head]["bias"])) <= 1e-3


def test_act_is_deterministic_tanh_mean(twin):
    states = jax.tree.map(lambda *x: jnp.stack(x), twin.init(jax.random.PRNGKey(0)), twin.init(jax.random.PRNGKey(1)))
    obs = _batch().observations
    actions = jax.jit(jax.vmap(twin.agent.act, in_axes=(0, None, None)))(states, obs, jax.random.PRNGKey(0))
    assert actions.shape == (2, BATCH, ACT_DIM)
    state0 = jax.tree.map(lambda x: x[0], states)
    np.testing.assert_array_equal(twin.act(state0, obs, jax.random.PRNGKey(5)), actions[0])
    actor_net = networks.TanhGaussianActor(HIDDEN, ACT_DIM, log_std_min=-5.0, log_std_max=2.0)
    np.testing.assert_allclose(actions[0], np.tanh(actor_net.apply(state0.actor, obs)[0]), rtol=1e-6)


# ----------------------------------------------------------------- learning


def test_learns_optimal_action_of_one_step_task(twin):
    """Expert-like data (a*(s) + N(0, 0.2^2)): the deterministic policy lands near a*(s).

    The behaviour policy's RMS distance to a* is 0.2 * sqrt(2) = 0.28 and a
    random one's about 0.8; after 1000 updates CQL's is below 0.15 (0.08-0.09
    measured over 4 seeds).
    """
    data = one_step_dataset(2000, OBS_DIM, ACT_DIM, seed=0, behaviour_noise=0.2).as_transitions()
    state = twin.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    for i in range(1000):
        idx = rng.integers(0, 2000, BATCH)
        batch = jax.tree.map(lambda x: x[idx], data)
        state, metrics = twin.update(state, batch, jax.random.PRNGKey(i), twin.agent.default_hparams)
    assert all(np.isfinite(v) for v in metrics.values())
    test_obs = one_step_dataset(500, OBS_DIM, ACT_DIM, seed=1).observations
    actions = np.asarray(twin.act(state, test_obs, jax.random.PRNGKey(0)))
    rms = np.sqrt(np.mean(np.sum((actions - optimal_action(test_obs, ACT_DIM)) ** 2, -1)))
    assert rms < 0.15, rms


def test_run_length_warning_when_the_run_is_all_behaviour_cloning():
    config = cql_config.get_config()  # policy_eval_start 40000, the reference's
    assert "policy_eval_start=40000" in cql.run_length_warning(config.agent, 40_000)
    assert cql.run_length_warning(config.agent, 40_001) is None
