"""IQL: the expectile loss, the advantage weights, the critic target and one whole update by hand;
the actor's cosine schedule; a learning check on a one-step task.

One small compiled agent is shared by the tests (compiling dominates the
runtime on CPU); its cosine schedule lasts 3 updates, so that the schedule
test sees it end (the first update's rate is actor_lr whatever the length).
"""
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import CompiledAgent, small_config

from jaxmtf.agents import iql, make_agent, networks
from jaxmtf.configs import iql as iql_config
from jaxmtf.data.synthetic import one_step_dataset, optimal_action
from jaxmtf.types import Transition

OBS_DIM, ACT_DIM, BATCH = 3, 2, 64
HIDDEN = (32, 32)


def _config(**agent_overrides):
    config = small_config("iql", hidden=HIDDEN)
    config.agent.update(agent_overrides)
    return config


def Compiled(config):  # noqa: N802 (reads as the class it builds)
    return CompiledAgent(config, OBS_DIM, ACT_DIM)


@pytest.fixture(scope="module")
def compiled():
    return Compiled(_config(max_steps=3))


def _batch(seed=0):
    return one_step_dataset(BATCH, OBS_DIM, ACT_DIM, seed=seed).as_transitions()


# ----------------------------------------------------------------- the losses by hand


def test_expectile_loss_by_hand():
    diff = jnp.array([-1.0, 2.0])
    # tau 0.7: 1 - tau = 0.3 below (Q < V), tau = 0.7 above.
    np.testing.assert_allclose(iql.expectile_loss(diff, 0.7), [0.3 * 1.0, 0.7 * 4.0], rtol=1e-6)
    # tau 0.5 is half the squared error, symmetric.
    np.testing.assert_allclose(iql.expectile_loss(diff, 0.5), [0.5, 2.0], rtol=1e-6)
    np.testing.assert_allclose(iql.expectile_loss(jnp.array([0.0]), 0.9), [0.0])

    # The value loss: V(s) = [1, 0] regressed on Q = [0, 2]: diffs [-1, 2], mean (0.3 + 2.8) / 2.
    value_fn = lambda obs: obs[:, 0]
    obs = jnp.array([[1.0], [0.0]])
    q_tm1 = jnp.array([0.0, 2.0])
    loss, aux = iql.value_loss(value_fn, obs, q_tm1, 0.7)
    np.testing.assert_allclose(loss, 1.55, rtol=1e-6)
    np.testing.assert_allclose(aux["v_mean"], 0.5, rtol=1e-6)
    # d/dV_j of mean_j w_j (q_j - V_j)^2 = -w_j (q_j - V_j): [-0.3 * -1, -0.7 * 2] / 2 per state, through obs.
    grad = jax.grad(lambda o: iql.value_loss(value_fn, o, q_tm1, 0.7)[0])(obs)
    np.testing.assert_allclose(grad[:, 0], [0.3, -1.4], rtol=1e-6)
    # No gradient reaches Q.
    assert float(jax.grad(lambda q: iql.value_loss(value_fn, obs, q, 0.7)[0])(q_tm1).sum()) == 0.0


def test_advantage_weights_by_hand_and_the_clip():
    q = jnp.array([1.0, 2.0, 3.0, 0.0, 5.0])
    v = jnp.array([1.0, 1.0, 1.0, 1.0, 0.0])  # advantages [0, 1, 2, -1, 5]
    w = iql.advantage_weights(q, v, 3.0, 100.0)
    # exp(0), exp(3), exp(6) = 403.4 -> 100, exp(-3), exp(15) -> 100
    np.testing.assert_allclose(w, [1.0, np.exp(3.0), 100.0, np.exp(-3.0), 100.0], rtol=1e-6)
    # Temperature 0: every weight 1 (behaviour cloning); no gradient through the weights.
    np.testing.assert_allclose(iql.advantage_weights(q, v, 0.0, 100.0), np.ones(5))
    assert float(jnp.abs(jax.grad(lambda q: iql.advantage_weights(q, v, 1.0, 100.0).sum())(q)).sum()) == 0.0


def test_awr_actor_loss_by_hand():
    # mean 0, log_std 0 (N(0, 1)) in 2-d; actions a: log pi(a) = -|a|^2 / 2 - log(2 pi).
    dist_fn = lambda obs: (jnp.zeros((obs.shape[0], 2)), jnp.zeros((obs.shape[0], 2)))
    actions = jnp.array([[0.0, 0.0], [1.0, -1.0]])
    batch = Transition(jnp.zeros((2, 1)), actions, jnp.zeros(2), jnp.zeros((2, 1)), jnp.zeros(2))
    weights = jnp.array([2.0, 0.5])
    loss, aux = iql.awr_actor_loss(dist_fn, batch, weights)
    log_prob = np.array([0.0, -1.0]) - np.log(2 * np.pi)
    np.testing.assert_allclose(aux["data_log_likelihood"], log_prob.mean(), rtol=1e-6)
    np.testing.assert_allclose(loss, -np.mean([2.0, 0.5] * log_prob), rtol=1e-6)


def test_critic_target_by_hand_with_terminal_masking():
    # V(s') = 10 * s'[0]; terminal transitions do not bootstrap.
    value_fn = lambda obs: 10.0 * obs[:, 0]
    batch = Transition(
        observations=jnp.zeros((3, 1)),
        actions=jnp.zeros((3, 2)),
        rewards=jnp.array([1.0, -2.0, 0.5]),
        next_observations=jnp.array([[1.0], [2.0], [-0.5]]),
        terminals=jnp.array([0.0, 1.0, 0.0]),
    )
    y = iql.iql_target(value_fn, batch, 0.9)
    np.testing.assert_allclose(y, [1.0 + 0.9 * 10.0, -2.0, 0.5 - 0.9 * 5.0], rtol=1e-6)


def _constant(params, values):
    """Critic (values [N]) or value network (values a scalar) params that output `values` everywhere."""
    zeroed = jax.tree.map(jnp.zeros_like, params)
    inner = zeroed["params"]["VmapCritic_0"] if "VmapCritic_0" in zeroed["params"] else zeroed["params"]
    last = sorted(k for k in inner["MLP_0"] if k.startswith("Dense"))[-1]
    inner["MLP_0"][last]["bias"] = jnp.reshape(jnp.asarray(values, jnp.float32), inner["MLP_0"][last]["bias"].shape)
    return zeroed


def test_whole_update_by_hand(compiled):
    """Constant networks: V's target is the min of the TARGET critics; the actor and the critic use the NEW V.

    With zero hidden weights only the value net's output bias has a gradient,
    and Adam's first step moves it by lr = 3e-4 in the gradient's direction.
    """
    state = compiled.init(jax.random.PRNGKey(0))
    state = state.replace(
        critic=_constant(state.critic, [1.0, 1.5]),
        critic_target=_constant(state.critic_target, [2.0, 3.0]),
        value=_constant(state.value, 1.0),
    )
    batch = Transition(
        observations=jnp.ones((4, OBS_DIM)),
        actions=jnp.zeros((4, ACT_DIM)),
        rewards=jnp.array([1.0, 0.0, -1.0, 2.0]),
        next_observations=jnp.ones((4, OBS_DIM)),
        terminals=jnp.array([0.0, 1.0, 0.0, 1.0]),
    )
    new, metrics = compiled.update(state, batch, jax.random.PRNGKey(1), compiled.agent.default_hparams)
    # Value: min(2, 3) - 1 = 1 > 0 everywhere: 0.7 * 1^2 (the online critics' min, 1, would give 0).
    np.testing.assert_allclose(metrics["value_loss"], 0.7, rtol=1e-6)
    np.testing.assert_allclose(metrics["v_mean"], 1.0, rtol=1e-6)
    v_new = 1.0 + 3e-4  # V rose toward its target by one Adam step
    value_net = networks.ValueNet(HIDDEN)
    np.testing.assert_allclose(value_net.apply(new.value, batch.observations), v_new, rtol=1e-6)
    # Actor: advantage min Q' - V_new, weight exp(3 * adv).
    np.testing.assert_allclose(metrics["adv_mean"], 2.0 - v_new, rtol=1e-5)
    np.testing.assert_allclose(metrics["weight_mean"], np.exp(3.0 * (2.0 - v_new)), rtol=1e-5)
    # Critic: y = r + 0.99 (1 - d) V_new(s'), the twins' squared errors summed.
    y = np.array([1.0 + 0.99 * v_new, 0.0, -1.0 + 0.99 * v_new, 2.0])
    np.testing.assert_allclose(metrics["target_mean"], y.mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["critic_loss"], np.mean((1.0 - y) ** 2) + np.mean((1.5 - y) ** 2), rtol=1e-5)
    np.testing.assert_allclose(metrics["q_mean"], 1.25, rtol=1e-6)
    # Target: polyak from the NEW critics, tau 0.005.
    new_q = compiled.agent.q_values(new, batch.observations, batch.actions)
    new_target_q = compiled.agent.q_values(new.replace(critic=new.critic_target), batch.observations, batch.actions)
    np.testing.assert_allclose(new_target_q, 0.995 * np.array([[2.0], [3.0]]) + 0.005 * new_q, rtol=1e-5)


# ----------------------------------------------------------------- shapes, init, act


def test_shapes_and_finiteness(compiled):
    state = compiled.init(jax.random.PRNGKey(0))
    for a, b in zip(jax.tree.leaves(state.critic), jax.tree.leaves(state.critic_target)):
        np.testing.assert_array_equal(a, b)  # the targets start as copies (the reference's same init key)
    np.testing.assert_array_equal(state.actor["params"]["log_std"], np.zeros(ACT_DIM))
    batch = _batch()
    for i in range(3):
        state, metrics = compiled.update(state, batch, jax.random.PRNGKey(i), compiled.agent.default_hparams)
    assert state.step.shape == () and state.step.dtype == jnp.int32 and int(state.step) == 3
    assert compiled.agent.q_values(state, batch.observations, batch.actions).shape == (2, BATCH)
    for name, value in metrics.items():
        assert value.shape == () and value.dtype == jnp.float32 and np.isfinite(value), name
    for leaf in jax.tree.leaves(state):
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert set(compiled.agent.default_hparams) == {"discount", "tau", "expectile", "temperature"}
    np.testing.assert_allclose(compiled.agent.default_hparams["expectile"], 0.7)
    np.testing.assert_allclose(compiled.agent.default_hparams["temperature"], 3.0)

    # act: the policy's mean tanh(MLP(s)), whatever the key.
    actions = compiled.act(state, batch.observations, jax.random.PRNGKey(5))
    assert actions.shape == (BATCH, ACT_DIM) and np.all(np.abs(np.asarray(actions)) <= 1.0)
    np.testing.assert_array_equal(actions, compiled.act(state, batch.observations, jax.random.PRNGKey(6)))
    actor_net = networks.TanhMeanGaussianActor(HIDDEN, ACT_DIM)
    mean, log_std = actor_net.apply(state.actor, batch.observations)
    np.testing.assert_allclose(actions, mean, rtol=1e-6)
    assert log_std.shape == mean.shape and np.all(log_std == log_std[0])  # one std for every state


def test_log_std_is_clipped():
    actor_net = networks.TanhMeanGaussianActor(HIDDEN, ACT_DIM, log_std_min=-5.0, log_std_max=2.0)
    params = actor_net.init(jax.random.PRNGKey(0), jnp.zeros((1, OBS_DIM)))
    params["params"]["log_std"] = jnp.array([-9.0, 7.0])
    _, log_std = actor_net.apply(params, jnp.zeros((4, OBS_DIM)))
    np.testing.assert_array_equal(log_std, np.tile([-5.0, 2.0], (4, 1)))


# ----------------------------------------------------------------- the actor's learning-rate schedule


def test_cosine_schedule_values():
    schedule = iql.actor_lr_schedule(_config(max_steps=4).agent)
    expected = [3e-4 * 0.5 * (1 + np.cos(np.pi * k / 4)) for k in range(4)] + [0.0, 0.0]
    np.testing.assert_allclose([float(schedule(k)) for k in range(6)], expected, rtol=1e-5, atol=1e-12)
    constant = iql.actor_lr_schedule(_config(actor_lr_schedule="constant").agent)
    assert float(constant(0)) == float(constant(10**6)) == pytest.approx(3e-4)


def test_actor_stops_after_max_steps_and_the_critics_do_not(compiled):
    agent, update = compiled.agent, compiled.update  # max_steps 3
    state = compiled.init(jax.random.PRNGKey(0))
    batch = _batch()
    rates, moved_actor, moved_critic = [], [], []
    changed = lambda a, b: any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    for i in range(5):
        new, metrics = update(state, batch, jax.random.PRNGKey(i), agent.default_hparams)
        rates.append(float(metrics["actor_lr"]))
        moved_actor.append(changed(new.actor, state.actor))
        moved_critic.append(changed(new.critic, state.critic))
        if i == 0:  # Adam's first step: at most lr per parameter, about lr for most
            steps = np.concatenate([np.abs(np.ravel(x - y)) for x, y in
                                    zip(jax.tree.leaves(new.actor), jax.tree.leaves(state.actor))])
            assert steps.max() <= 3e-4 * (1 + 1e-3) and np.median(steps) > 2e-4
        state = new
    np.testing.assert_allclose(rates, [3e-4, 2.25e-4, 0.75e-4, 0.0, 0.0], rtol=1e-5, atol=1e-12)
    assert moved_actor == [True, True, True, False, False]
    assert all(moved_critic)


def test_run_length_warning():
    agent_config = _config(max_steps=1000).agent
    assert iql.run_length_warning(agent_config, 1000) is None
    assert "policy stops changing" in iql.run_length_warning(agent_config, 2000)
    assert "50% of actor_lr" in iql.run_length_warning(agent_config, 500)
    assert "--config.agent.max_steps=500" in iql.run_length_warning(agent_config, 500)
    assert iql.run_length_warning(_config(max_steps=1000, actor_lr_schedule="constant").agent, 500) is None
    # The launch config starts the schedule as long as the run.
    config = iql_config.get_config()
    assert config.agent.max_steps == config.num_updates


# ----------------------------------------------------------------- learning


def test_advantage_weighting_beats_behaviour_cloning_on_mixed_data():
    """One-step task, reward -||a - a*(s)||^2; half the data near a* (noise 0.1), half uniform.

    Behaviour cloning (temperature 0) learns the mixture's mean, pulled toward
    0 by the uniform half (measured RMS |a - a*| 0.36-0.37 over keys 0-3);
    IQL's weights exp(3 A) favour the near-optimal half (measured 0.045).
    """
    expert = one_step_dataset(1000, OBS_DIM, ACT_DIM, seed=0, behaviour_noise=0.1).as_transitions()
    uniform = one_step_dataset(1000, OBS_DIM, ACT_DIM, seed=1).as_transitions()
    data = jax.tree.map(lambda x, y: jnp.concatenate([x, y]), expert, uniform)
    agent = make_agent(_config(actor_hidden_dims=(64, 64), critic_hidden_dims=(64, 64), value_hidden_dims=(64, 64),
                               max_steps=1500), OBS_DIM, ACT_DIM)

    @partial(jax.jit, static_argnums=2)
    def train(key, hparams, num_updates):
        def body(state, k):
            idx = jax.random.randint(k, (128,), 0, 2000)
            state, metrics = agent.update(state, jax.tree.map(lambda x: x[idx], data), k, hparams)
            return state, metrics
        k_init, k_run = jax.random.split(key)
        return jax.lax.scan(body, agent.init(k_init), jax.random.split(k_run, num_updates))

    test_obs = one_step_dataset(500, OBS_DIM, ACT_DIM, seed=2).observations
    best = optimal_action(test_obs, ACT_DIM)

    def rms(temperature):
        hparams = dict(agent.default_hparams, temperature=jnp.float32(temperature))
        state, metrics = train(jax.random.PRNGKey(0), hparams, 1500)
        assert all(np.all(np.isfinite(v)) for v in metrics.values())
        actions = np.asarray(agent.act(state, test_obs, None))
        return float(np.sqrt(np.mean(np.sum((actions - best) ** 2, -1))))

    iql_rms, bc_rms = rms(3.0), rms(0.0)
    print(f"RMS |a - a*|: IQL {iql_rms:.3f}, BC {bc_rms:.3f}")
    assert iql_rms < 0.15, iql_rms
    assert iql_rms < 0.5 * bc_rms, (iql_rms, bc_rms)
