"""UWAC: hand-computed weights, MMD, targets, losses and multiplier clamp; the warm-up; learning."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import small_config

from jaxmtf import training
from jaxmtf.agents import make_agent, uwac
from jaxmtf.data import one_step_dataset
from jaxmtf.data.synthetic import optimal_action
from jaxmtf.types import Transition


def test_uncertainty_weight_by_hand():
    var = jnp.array([0.0, 1.0, 4.0, 0.25])
    # exp(-0.5 Var), clamped to [0, 1]
    expected = [1.0, math.exp(-0.5), math.exp(-2.0), math.exp(-0.125)]
    np.testing.assert_allclose(uwac.uncertainty_weight(var, 0.5), expected, rtol=1e-6)
    # clip_top below 1 caps the small-variance weights
    np.testing.assert_allclose(uwac.uncertainty_weight(var, 0.5, 0.0, 0.7), [0.7, 0.6065307, 0.1353353, 0.7], rtol=1e-6)
    # beta / Var, clamped to [0, 1.5]: 0.5/0.25 = 2 -> 1.5; 0.5/1; 0.5/4
    inv = uwac.uncertainty_weight(jnp.array([0.25, 1.0, 4.0]), 0.5, 0.0, 1.5, use_exp_weight=False)
    np.testing.assert_allclose(inv, [1.5, 0.5, 0.125], rtol=1e-6)


def _numpy_mmd(x, y, sigma, kernel):
    def k(a, b):
        d = a[:, None] - b[None]
        dist = np.sum(d**2, -1) if kernel == "gaussian" else np.sum(np.abs(d), -1)
        return np.mean(np.exp(-dist / (2.0 * sigma)))

    return math.sqrt(k(x, x) + k(y, y) - 2.0 * k(x, y) + 1e-6)


def test_mmd_by_hand():
    # x = {0, 1}, y = {0, 2}, sigma 1, Gaussian kernel exp(-d^2 / 2):
    # k(x,x) = (2 + 2e^-.5)/4, k(y,y) = (2 + 2e^-2)/4, k(x,y) = (1 + e^-2 + 2e^-.5)/4
    # -> MMD^2 = (2 - 2e^-.5)/4 = 0.5 (1 - e^-.5)
    x = jnp.array([[[0.0], [1.0]]])
    y = jnp.array([[[0.0], [2.0]]])
    np.testing.assert_allclose(uwac.mmd_gaussian(x, y, 1.0), [math.sqrt(0.5 * (1 - math.exp(-0.5)) + 1e-6)], rtol=1e-5)
    # two rows of 2-d samples, both kernels, against a numpy double loop
    xs = np.array([[[0.1, -0.4], [0.7, 0.2], [-1.0, 0.5]], [[0.0, 0.0], [0.3, 0.3], [2.0, -1.0]]], np.float32)
    ys = np.array([[[0.5, 0.5], [-0.2, 0.1], [0.0, 1.0]], [[1.0, 1.0], [0.0, -0.5], [0.4, 0.2]]], np.float32)
    for kernel, fn in uwac.MMD_KERNELS.items():
        for sigma in (0.2, 20.0):
            expected = [_numpy_mmd(xs[b], ys[b], sigma, kernel) for b in range(2)]
            np.testing.assert_allclose(fn(jnp.asarray(xs), jnp.asarray(ys), sigma), expected, rtol=1e-5)


def test_target_and_variance_by_hand():
    # 2 states x 3 target actions, twin critics: rows 0-2 are state 0's, 3-5 state 1's.
    q_t = jnp.array([[1.0, 4.0, 2.0, -1.0, 0.0, -2.0], [3.0, 0.0, 2.0, -3.0, 1.0, -2.0]])
    var_t = jnp.array([[0.1, 0.5, 0.2, 0.3, 0.0, 0.1], [0.1, 0.0, 0.6, 0.3, 0.4, 0.0]])
    r = jnp.array([1.0, 0.5])
    d = jnp.array([0.0, 1.0])
    y, var = uwac.uwac_target(r, 0.9, d, q_t, var_t, 3)
    # state 0: 0.75 min + 0.25 max per action = [1.5, 1.0, 2.0] -> max 2.0; y = 1 + 0.9 * 2
    # state 1 is terminal: y = 0.5
    np.testing.assert_allclose(y, [1.0 + 0.9 * 2.0, 0.5], rtol=1e-6)
    # summed variances [0.2, 0.5, 0.8] -> 0.8 (not the argmax action's); [0.6, 0.4, 0.1] -> 0.6
    np.testing.assert_allclose(var, [0.8, 0.6], rtol=1e-6)


def test_weighted_critic_loss_by_hand():
    q_tm1 = jnp.array([[1.0, 2.0], [0.0, 3.0]])  # [critic, batch]: Q(s, a)
    y = jnp.array([1.5, 1.0])
    w = jnp.array([1.0, 0.5])
    # critic 1: ((1 - 1.5) 1)^2 = 0.25, ((2 - 1) 0.5)^2 = 0.25 -> 0.25
    # critic 2: ((0 - 1.5) 1)^2 = 2.25, ((3 - 1) 0.5)^2 = 1.0  -> 1.625
    np.testing.assert_allclose(uwac.weighted_critic_loss(q_tm1, y, w), 1.875, rtol=1e-6)
    # the penalty: 0.1 * sum_i mean relu(Q_i) Var, Var = [2, 1]: (2 + 2)/2 + (0 + 3)/2 = 3.5
    np.testing.assert_allclose(uwac.q_penalty_loss(q_tm1, jnp.array([2.0, 1.0]), 0.1, False), 0.35, rtol=1e-6)


def test_lagrange_multiplier_direction_and_clamp():
    opt = optax.adam(1e-3)
    step = lambda log_alpha, mmd: uwac.lagrange_step(opt, jnp.float32(log_alpha), opt.init(jnp.float32(log_alpha)), jnp.array(mmd), 0.07)[0]
    # Adam's first step moves by lr = 1e-3 against the sign of the gradient -alpha (MMD - eps).
    np.testing.assert_allclose(step(0.0, [0.5, 0.3]), 1e-3, rtol=1e-3)  # MMD above eps: alpha grows
    np.testing.assert_allclose(step(0.0, [0.01, 0.02]), -1e-3, rtol=1e-3)  # below: alpha shrinks
    np.testing.assert_allclose(step(9.9995, [0.5]), 10.0, rtol=1e-7)  # 10.0005 clamped to 10
    np.testing.assert_allclose(step(-4.9995, [0.0]), -5.0, rtol=1e-7)  # -5.0005 clamped to -5


def _batch(n=8, obs_dim=3, act_dim=2):
    rng = np.random.default_rng(0)
    return Transition(
        observations=jnp.asarray(rng.normal(size=(n, obs_dim)), jnp.float32),
        actions=jnp.asarray(rng.uniform(-1, 1, size=(n, act_dim)), jnp.float32),
        rewards=jnp.asarray(rng.normal(size=n), jnp.float32),
        next_observations=jnp.asarray(rng.normal(size=(n, obs_dim)), jnp.float32),
        terminals=jnp.zeros(n, jnp.float32),
    )


@pytest.fixture(scope="module")
def small():
    """One small agent for the unit checks, compiled once: warm-up 1, no var_Pi, no dropout."""
    config = small_config("uwac")
    config.agent.num_dropout_samples = 8
    config.agent.num_eval_actions = 5
    config.agent.warmup = 1
    config.agent.var_pi = False
    config.agent.dropout_rate = 0.0
    agent = make_agent(config, obs_dim=3, act_dim=2)
    return agent, jax.jit(agent.update), jax.jit(agent.act), jax.jit(agent.init)(jax.random.PRNGKey(0))


def test_shapes_and_finiteness(small):
    agent, update, act, state = small
    batch = _batch()
    new_state, metrics = update(state, batch, jax.random.PRNGKey(1), agent.default_hparams)
    assert int(new_state.step) == 1 and new_state.step.dtype == jnp.int32
    assert new_state.log_alpha.shape == ()
    for name, value in metrics.items():
        assert value.shape == (), name
        assert np.isfinite(value), name
    assert act(new_state, batch.observations, jax.random.PRNGKey(2)).shape == (8, 2)
    assert agent.q_values(new_state, batch.observations, batch.actions).shape == (2, 8)
    # deterministic given the key; in [-1, 1]
    a1 = act(new_state, batch.observations, jax.random.PRNGKey(3))
    np.testing.assert_array_equal(a1, act(new_state, batch.observations, jax.random.PRNGKey(3)))
    assert np.all(np.abs(a1) <= 1.0)


def test_no_dropout_means_no_variance_and_full_weight(small):
    agent, update, _, state = small
    _, metrics = update(state, _batch(), jax.random.PRNGKey(1), agent.default_hparams)
    assert abs(float(metrics["target_var_mean"])) < 1e-12  # float rounding of identical passes
    assert float(metrics["weight_mean"]) == 1.0


def test_policy_trains_on_mmd_alone_during_warmup(small):
    # In warm-up (step 0 < warmup 1) actor_loss = mean alpha (MMD - eps) = -alpha_loss;
    # afterwards it adds mean(-min Q * w_pi), w_pi = 1 without var_Pi.
    agent, update, _, state = small
    state, m0 = update(state, _batch(), jax.random.PRNGKey(1), agent.default_hparams)
    np.testing.assert_allclose(m0["actor_loss"], -m0["alpha_loss"], rtol=1e-6)
    _, m1 = update(state, _batch(), jax.random.PRNGKey(2), agent.default_hparams)
    assert abs(float(m1["q_pi"])) > 1e-4
    np.testing.assert_allclose(m1["actor_loss"], -m1["alpha_loss"] - m1["q_pi"], rtol=1e-4, atol=1e-6)


def test_learns_the_optimal_action_on_expert_data():
    """One-step task, data a*(s) + N(0, 0.2^2): the policy acts a*(s) and Q ranks a* above a* + 0.3."""
    config = small_config("uwac", hidden=(64, 64))
    agent_config = config.agent
    agent_config.num_dropout_samples = 10  # the reference's 100 passes cost 10x here
    agent_config.num_target_actions = 2  # terminal transitions: the target value is never used
    agent_config.num_eval_actions = 10
    agent_config.warmup = 500
    dataset = one_step_dataset(num_transitions=4096, obs_dim=4, act_dim=2, seed=0, behaviour_noise=0.2)
    agent = make_agent(config, obs_dim=4, act_dim=2)
    hparams, _ = training.hparam_grid(agent.default_hparams, {})
    run_state = training.init_run_state(agent, [0], 1)
    chunk = training.make_chunk_fn(agent, batch_size=64, chunk_size=750)
    data = dataset.as_transitions()
    for _ in range(2):
        run_state, metrics = chunk(run_state, data, hparams)
    assert int(run_state.agent.step) == 1500
    assert all(np.all(np.isfinite(v)) for v in metrics.values())

    state = jax.tree.map(lambda x: x[0, 0], run_state.agent.replace(step=None)).replace(step=run_state.agent.step)
    obs = np.random.default_rng(1).normal(size=(256, 4)).astype(np.float32)
    best = optimal_action(obs, 2)
    action = jax.jit(agent.act)(state, jnp.asarray(obs), jax.random.PRNGKey(0))
    # The data's own actions are 0.2 * 0.8 = 0.16 from a* on average per dimension.
    assert float(np.mean(np.abs(action - best))) < 0.06
    q_best = agent.q_values(state, obs, best)
    q_off = agent.q_values(state, obs, np.clip(best + 0.3, -1.0, 1.0))
    assert float(np.mean(q_best > q_off)) > 0.9
