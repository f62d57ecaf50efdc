"""TD3 / DDPG / TD3+BC: hand-computed targets and losses, the delayed update, learning."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import small_config

from jaxmtf.agents import common, make_agent, td3, td3_bc
from jaxmtf.core import training
from jaxmtf.data import one_step_dataset
from jaxmtf.data.synthetic import optimal_action
from jaxmtf.types import Transition


def test_polyak_update_by_hand():
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(4.0)}
    target = {"w": jnp.array([0.0, 2.0]), "b": jnp.array(0.0)}
    out = common.polyak_update(params, target, 0.005)
    np.testing.assert_allclose(out["w"], [0.005, 2.0 - 0.005 * 4.0], rtol=1e-6)
    np.testing.assert_allclose(out["b"], 0.02, rtol=1e-6)


def test_target_policy_smoothing_by_hand():
    pi_t = jnp.array([0.9, -0.2, 0.0, -0.8])
    noise = jnp.array([0.7, -0.3, -0.9, -0.1])
    # 0.9 + clip(0.7)=0.5 -> 1.4 -> 1.0 ; -0.2 - 0.3 = -0.5 ; 0 + clip(-0.9)=-0.5 ; -0.8 - 0.1 = -0.9
    out = td3.smoothed_target_action(pi_t, noise, 0.5)
    np.testing.assert_allclose(out, [1.0, -0.5, -0.5, -0.9], rtol=1e-6)


def test_clipped_double_q_target_by_hand():
    r = jnp.array([1.0, 0.5, -1.0])
    d = jnp.array([0.0, 1.0, 0.0])
    q_t = jnp.array([[2.0, 5.0, -3.0], [3.0, 1.0, -4.0]])  # [critic, batch]
    y = common.td_target(r, 0.99, d, common.clipped_double_q(q_t))
    # 1 + 0.99 * min(2, 3); terminal: 0.5 ; -1 + 0.99 * min(-3, -4)
    np.testing.assert_allclose(y, [1.0 + 0.99 * 2.0, 0.5, -1.0 - 0.99 * 4.0], rtol=1e-6)


def _constant_critic(params, values):
    """Critic params whose i-th critic outputs values[i] for every input."""
    zeroed = jax.tree.map(jnp.zeros_like, params)
    last = sorted(k for k in zeroed["params"]["VmapCritic_0"]["MLP_0"] if k.startswith("Dense"))[-1]
    zeroed["params"]["VmapCritic_0"]["MLP_0"][last]["bias"] = jnp.asarray(values, jnp.float32)[:, None]
    return zeroed


def test_td3_update_target_and_critic_loss_by_hand():
    """With constant critics the whole update's target and loss are computable by hand."""
    config = small_config("td3").agent
    agent = make_agent(small_config("td3"), obs_dim=3, act_dim=2)
    state = agent.init(jax.random.PRNGKey(0))
    state = state.replace(
        critic=_constant_critic(state.critic, [1.0, 1.5]),
        critic_target=_constant_critic(state.critic_target, [2.0, 3.0]),
    )
    batch = Transition(
        observations=jnp.ones((4, 3)),
        actions=jnp.zeros((4, 2)),
        rewards=jnp.array([1.0, 0.0, -1.0, 2.0]),
        next_observations=jnp.ones((4, 3)),
        terminals=jnp.array([0.0, 1.0, 0.0, 1.0]),
    )
    hparams = agent.default_hparams
    _, metrics = agent.update(state, batch, jax.random.PRNGKey(1), hparams)
    gamma = config.discount
    y = np.array([1.0 + gamma * 2.0, 0.0, -1.0 + gamma * 2.0, 2.0])  # min(2, 3) = 2; terminals cut
    expected_loss = np.mean((1.0 - y) ** 2) + np.mean((1.5 - y) ** 2)
    np.testing.assert_allclose(metrics["target_mean"], y.mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["critic_loss"], expected_loss, rtol=1e-5)


def test_td3_bc_actor_loss_by_hand():
    q_pi = jnp.array([2.0, -4.0])
    pi = jnp.array([[0.5, 0.0], [0.0, 0.0]])
    batch = Transition(jnp.zeros((2, 1)), jnp.array([[0.0, 0.0], [1.0, 0.0]]), jnp.zeros(2), jnp.zeros((2, 1)),
                       jnp.zeros(2))
    loss, aux = td3_bc.td3_bc_actor_loss(q_pi, pi, batch, {"alpha": jnp.array(2.5)})
    lmbda = 2.5 / 3.0  # alpha / mean|Q| = 2.5 / ((2 + 4) / 2)
    bc = (0.25 + 1.0) / 4.0  # mean over 2 x 2 entries
    np.testing.assert_allclose(aux["lambda"], lmbda, rtol=1e-6)
    np.testing.assert_allclose(aux["bc_loss"], bc, rtol=1e-6)
    np.testing.assert_allclose(loss, -lmbda * (-1.0) + bc, rtol=1e-6)


@pytest.mark.parametrize("algo, delay", [("td3", 2), ("ddpg", 1)])
def test_actor_and_targets_update_on_delayed_steps_only(algo, delay, tiny_dataset):
    agent = make_agent(small_config(algo), tiny_dataset.obs_dim, tiny_dataset.act_dim)
    state = agent.init(jax.random.PRNGKey(0))
    batch = jax.tree.map(lambda x: x[:16], tiny_dataset.as_transitions())
    update = jax.jit(agent.update)
    same = lambda a, b: all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(jnp.all(x == y)), a, b)))
    for step in range(1, 5):
        new, metrics = update(state, batch, jax.random.PRNGKey(step), agent.default_hparams)
        delayed = step % delay == 0
        assert not same(new.critic, state.critic)  # the critic learns every step
        assert same(new.actor, state.actor) != delayed
        assert same(new.actor_target, state.actor_target) != delayed
        assert same(new.critic_target, state.critic_target) != delayed
        assert np.isnan(metrics["actor_loss"]) != delayed
        assert int(new.step) == step
        state = new


def test_ddpg_is_td3_with_one_critic_and_no_smoothing():
    config = small_config("ddpg").agent
    assert (config.num_critics, config.policy_delay, config.policy_noise) == (1, 1, 0.0)
    agent = make_agent(small_config("ddpg"), 3, 2)
    q = agent.q_values(agent.init(jax.random.PRNGKey(0)), jnp.zeros((5, 3)), jnp.zeros((5, 2)))
    assert q.shape == (1, 5)


def _action_error(agent, run_state, obs, seed_index=0):
    states = jax.tree.map(lambda x: x[seed_index, 0], run_state.agent.replace(step=None))
    actions = agent.act(states.replace(step=run_state.agent.step), jnp.asarray(obs), None)
    return float(np.mean(np.abs(np.asarray(actions) - optimal_action(obs, actions.shape[-1]))))


def test_td3_recovers_the_optimal_action_from_uniform_data(tmp_path):
    """One-step task, reward -||a - a*(s)||^2, uniformly random logged actions.

    A uniformly random action is off by E|a - a*| ~ 0.6 per dimension; TD3
    must get within 0.15 in 3000 updates (measured 0.066).
    """
    dataset = one_step_dataset(num_transitions=5000, obs_dim=3, act_dim=2, seed=0)
    config = small_config("td3", hidden=(64, 64), num_seeds=1, num_updates=3000, chunk_size=1000,
                          batch_size=128, checkpoint_every=0)
    summary = training.train(config, dataset, str(tmp_path))
    agent = make_agent(config, dataset.obs_dim, dataset.act_dim)
    obs = np.random.default_rng(5).normal(size=(500, 3)).astype(np.float32)
    error = _action_error(agent, summary["state"], obs)
    print("mean |a - a*| =", error)
    assert error < 0.15, error
