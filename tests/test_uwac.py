"""UWAC: hand-computed weights, MMD, targets, losses and multiplier clamp; the warm-up; the critics' spectral
norm (power iterations per update, polyak on params only); a checkpoint round trip; learning."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import small_config

from jaxmtf.agents import make_agent, networks, uwac
from jaxmtf.core import chunk as chunk_lib
from jaxmtf.core import run_config
from jaxmtf.data import one_step_dataset
from jaxmtf.data.synthetic import optimal_action
from jaxmtf.runs import checkpoint
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
    step = lambda log_alpha, mmd: uwac.lagrange_step(opt, jnp.float32(log_alpha), opt.init(jnp.float32(log_alpha)),
                                                     jnp.array(mmd), 0.07)[0]
    # Adam's first step moves by lr = 1e-3 against the sign of the gradient -alpha (MMD - eps).
    np.testing.assert_allclose(step(0.0, [0.5, 0.3]), 1e-3, rtol=1e-3)  # MMD above eps: alpha grows
    np.testing.assert_allclose(step(0.0, [0.01, 0.02]), -1e-3, rtol=1e-3)  # below: alpha shrinks
    np.testing.assert_allclose(step(9.9995, [0.5]), 10.0, rtol=1e-7)  # 10.0005 clamped to 10
    np.testing.assert_allclose(step(-4.9995, [0.0]), -5.0, rtol=1e-7)  # -5.0005 clamped to -5


def test_target_of_scores_each_next_state_at_its_policy_actions():
    # Stubs: the policy's 3 actions at s_t = 10 are 1, 2, 3, at s_t = 20 they are 2, 3, 4; the target critics
    # return test_target_and_variance_by_hand's moments, so y and Var are those computed there.
    batch = Transition(observations=jnp.zeros((2, 1)), actions=jnp.zeros((2, 1)), rewards=jnp.array([1.0, 0.5]),
                       next_observations=jnp.array([[10.0], [20.0]]), terminals=jnp.array([0.0, 1.0]))
    q_t = jnp.array([[1.0, 4.0, 2.0, -1.0, 0.0, -2.0], [3.0, 0.0, 2.0, -3.0, 1.0, -2.0]])
    var_t = jnp.array([[0.1, 0.5, 0.2, 0.3, 0.0, 0.1], [0.1, 0.0, 0.6, 0.3, 0.4, 0.0]])

    def sample_fn(actor, obs, key, num):
        a_t = obs[:, None] / 10.0 + jnp.arange(num, dtype=jnp.float32)[None, :, None]
        return a_t, a_t

    def moments_fn(critic, obs, action, key, update_stats):
        np.testing.assert_array_equal(obs[:, 0], [10.0, 10.0, 10.0, 20.0, 20.0, 20.0])  # state b's rows together
        np.testing.assert_array_equal(action[:, 0], [1.0, 2.0, 3.0, 2.0, 3.0, 4.0])
        assert update_stats  # the targets' one power iteration of the update
        return q_t, var_t, "target after its pass"

    keys = tuple(jax.random.split(jax.random.PRNGKey(0)))
    y, var, after = uwac.target_of(sample_fn, moments_fn, None, "target", batch, keys, 0.9, 3)
    np.testing.assert_allclose(y, [1.0 + 0.9 * 2.0, 0.5], rtol=1e-6)
    np.testing.assert_allclose(var, [0.8, 0.6], rtol=1e-6)
    assert after == "target after its pass"


def test_critic_loss_of_one_pass_by_hand():
    # A stub critic: Q_i = w_i at every row, and its pass adds 1 to the stored u.
    def critic_apply(variables, obs, action, deterministic, update_stats, rngs, mutable):
        assert not deterministic and update_stats and mutable == ["batch_stats"]  # qf.sample in train mode
        q = variables["params"]["w"][:, None] * jnp.ones(obs.shape[0])
        return q, {"batch_stats": {"u": variables["batch_stats"]["u"] + 1.0}}

    batch = Transition(observations=jnp.zeros((2, 1)), actions=jnp.zeros((2, 1)), rewards=jnp.zeros(2),
                       next_observations=jnp.zeros((2, 1)), terminals=jnp.zeros(2))
    critic = {"params": {"w": jnp.zeros(2)}, "batch_stats": {"u": jnp.float32(5.0)}}  # the pre-step variables
    y, weight, var_y = jnp.array([1.5, 1.0]), jnp.array([1.0, 0.5]), jnp.array([2.0, 1.0])
    loss, (q_tm1, after) = uwac.critic_loss_of({"w": jnp.array([1.0, 3.0])}, critic_apply, critic, batch, y, var_y,
                                               weight, jax.random.PRNGKey(0), q_penalty=0.1)
    np.testing.assert_array_equal(q_tm1, [[1.0, 1.0], [3.0, 3.0]])
    # critic 1: ((1 - 1.5) 1)^2 = 0.25, ((1 - 1) 0.5)^2 = 0 -> 0.125; critic 2: 2.25, 1 -> 1.625;
    # penalty 0.1 * ((2 + 1)/2 + (6 + 3)/2) = 0.6
    np.testing.assert_allclose(loss, 0.125 + 1.625 + 0.6, rtol=1e-6)
    np.testing.assert_array_equal(after["params"]["w"], [0.0, 0.0])  # the pre-step params, for the actor's pass
    assert float(after["batch_stats"]["u"]) == 6.0  # with the iterated u


def test_actor_loss_by_hand():
    q_pi = jnp.array([[1.0, 0.0], [3.0, -2.0]])  # [critic, batch] -> min over critics [1, -2]
    var_pi = jnp.array([[0.5, 1.0], [0.5, 3.0]])  # summed over critics [1, 4]
    mmd, alpha, eps = jnp.array([0.3, 0.1]), 2.0, 0.07  # alpha (MMD - eps) = [0.46, 0.06]
    loss = lambda q, rl_on, weight_fn=None: uwac.actor_loss(q, var_pi, mmd, alpha, rl_on, 0.5, eps, weight_fn)
    # warm-up: the MMD term alone, and no gradient reaches Q
    warm, aux = loss(q_pi, False)
    np.testing.assert_allclose(warm, (0.46 + 0.06) / 2, rtol=1e-6)
    np.testing.assert_array_equal(jax.grad(lambda q: loss(q, False)[0])(q_pi), np.zeros((2, 2)))
    np.testing.assert_allclose(aux["q_pi"], -0.5, rtol=1e-6)
    # after it, without var_Pi: mean(-min Q + alpha (MMD - eps)) = ((-1 + 0.46) + (2 + 0.06)) / 2
    np.testing.assert_allclose(loss(q_pi, True)[0], 0.76, rtol=1e-6)
    assert float(loss(q_pi, True)[1]["weight_pi"]) == 1.0
    # with var_Pi: w_pi = exp(-0.5 [1, 4]) multiplies -min Q
    weighted, aux = loss(q_pi, True, uwac.uncertainty_weight)
    w = [math.exp(-0.5), math.exp(-2.0)]
    np.testing.assert_allclose(weighted, ((-w[0] + 0.46) + (2 * w[1] + 0.06)) / 2, rtol=1e-6)
    np.testing.assert_allclose(aux["weight_pi"], sum(w) / 2, rtol=1e-6)
    # the gradient flows into the smaller critic only, scaled by w_pi / B
    np.testing.assert_allclose(jax.grad(lambda q: loss(q, True, uwac.uncertainty_weight)[0])(q_pi),
                               [[-w[0] / 2, 0.0], [0.0, -w[1] / 2]], rtol=1e-6)


def test_actor_loss_of_scores_the_first_policy_sample():
    # Stubs: 2 states x 2 samples of a 1-d action; the critics' moments are read off the action.
    obs = jnp.array([[0.0], [1.0]])
    a_pi = jnp.array([[[0.1], [0.2]], [[0.3], [0.4]]])
    raw_beta = jnp.array([[[0.0], [1.0]], [[0.5], [0.5]]])
    sample_fn = lambda actor, obs, key, num: (actor * a_pi[:, :num], 2.0 * actor * a_pi[:, :num])

    def moments_fn(critic, obs, action, key, update_stats):
        assert update_stats and action.shape == (2, 1)  # the critics' second power iteration, one action per state
        q = jnp.stack([action[:, 0], 2.0 * action[:, 0]])
        return q, jnp.ones_like(q), critic + 1

    mmd_fn = lambda x, y: uwac.mmd_gaussian(x, y, 1.0)
    hparams = {"beta": 0.5, "target_mmd_thresh": 0.07}
    keys = tuple(jax.random.split(jax.random.PRNGKey(0)))
    loss, (aux, critic) = uwac.actor_loss_of(1.0, sample_fn, moments_fn, mmd_fn, 7, raw_beta, obs, keys, 2.0, True,
                                             hparams, uwac.uncertainty_weight)
    mmd = mmd_fn(raw_beta, 2.0 * a_pi)  # MMD on the pre-tanh samples
    q = jnp.stack([a_pi[:, 0, 0], 2.0 * a_pi[:, 0, 0]])
    expected, _ = uwac.actor_loss(q, jnp.ones_like(q), mmd, 2.0, True, 0.5, 0.07, uwac.uncertainty_weight)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(aux["mmd"], mmd, rtol=1e-6)
    assert critic == 8


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


def _critic_layers(variables):
    """(kernel [2, in, out], u [2, 1, out], sigma [2]) of each Dense layer of the twin critics."""
    params = variables["params"]["VmapCritic_0"]["MLP_0"]
    stats = variables["batch_stats"]["VmapCritic_0"]["MLP_0"]
    for i in range(len(params)):
        layer = stats[f"SpectralNorm_{i}"]
        yield (np.asarray(params[f"Dense_{i}"]["kernel"]), np.asarray(layer[f"Dense_{i}/kernel/u"]),
               np.asarray(layer[f"Dense_{i}/kernel/sigma"]))


def _power_step(u, kernel):
    """One power iteration of torch's spectral_norm (flax's with a [in, out] kernel): new u and sigma = u.(W v)."""
    normalize = lambda x: x / np.sqrt(np.sum(x**2) + 1e-12)
    v = normalize(u @ kernel.T)
    u = normalize(v @ kernel)
    return u, float((v @ kernel @ u.T)[0, 0])


def test_critics_are_rlkit_mlps_with_spectral_norm_on_every_layer(small):
    agent, _, _, state = small
    for variables in (state.critic, state.critic_target):
        params = variables["params"]["VmapCritic_0"]["MLP_0"]
        for i in (0, 1):  # hidden: fanin_init U(+-1/sqrt(32 output features)), bias 0.1
            assert np.all(np.abs(params[f"Dense_{i}"]["kernel"]) <= 1.0 / math.sqrt(32))
            np.testing.assert_array_equal(params[f"Dense_{i}"]["bias"], np.float32(0.1))
        for leaf in params["Dense_2"].values():  # last layer U(+-3e-3), weight and bias
            assert np.all(np.abs(leaf) <= 3e-3) and np.any(leaf != 0.0)
    # target_qf1/2 are initialised independently of qf1/2
    assert not np.allclose(state.critic["params"]["VmapCritic_0"]["MLP_0"]["Dense_0"]["kernel"],
                           state.critic_target["params"]["VmapCritic_0"]["MLP_0"]["Dense_0"]["kernel"])

    # 50 training passes (update_stats) from the initial weights: sigma converges to each layer's top singular value.
    # the agent's structure (init aside)
    apply = networks.EnsembleCritic((32, 32), num_critics=2, spectral_norm=True).apply
    obs, action = _batch().observations, _batch().actions

    def one_pass(_, critic):
        return {**critic, **uwac.dropout_pass(apply, critic, obs, action, jax.random.PRNGKey(0), update_stats=True)[1]}

    critic = jax.jit(lambda c: jax.lax.fori_loop(0, 50, one_pass, c))(state.critic)
    layers = list(_critic_layers(critic))
    for kernel, _, sigma in layers:
        top = np.linalg.svd(kernel, compute_uv=False)[:, 0]
        np.testing.assert_allclose(sigma, top, rtol=1e-4)
        normalized = kernel / sigma[:, None, None]  # the effective kernel: largest singular value 1
        np.testing.assert_allclose(np.linalg.svd(normalized, compute_uv=False)[:, 0], 1.0, rtol=1e-4)
    # q_values = the MLP with EVERY layer's kernel divided by its sigma (the output layer too)
    x = np.concatenate([obs, action], -1)
    h = [x, x]
    for i, (kernel, _, sigma) in enumerate(layers):
        bias = np.asarray(critic["params"]["VmapCritic_0"]["MLP_0"][f"Dense_{i}"]["bias"])
        h = [h[m] @ (kernel[m] / sigma[m]) + bias[m] for m in range(2)]
        h = [np.maximum(z, 0.0) for z in h] if i < len(layers) - 1 else h
    np.testing.assert_allclose(agent.q_values(state.replace(critic=critic), obs, action), np.stack(h)[..., 0],
                               rtol=1e-4, atol=1e-6)


def test_update_threads_the_power_iterations_and_polyaks_params_only(small):
    agent, update, _, state = small
    new, _ = update(state, _batch(), jax.random.PRNGKey(1), agent.default_hparams)
    # The critics' u: two iterations (their loss pass, then the actor's MC-dropout pass), both on the pre-step
    # kernels; the targets' u: one (the target's pass), on their pre-polyak kernels.
    for before, after, iterations in ((state.critic, new.critic, 2), (state.critic_target, new.critic_target, 1)):
        for (kernel, u0, _), (_, u1, sigma1) in zip(_critic_layers(before), _critic_layers(after), strict=True):
            assert not np.allclose(u0, u1)
            for member in range(2):
                u = u0[member]
                for _ in range(iterations):
                    u, sigma = _power_step(u, kernel[member])
                np.testing.assert_allclose(u1[member], u, rtol=1e-4, atol=1e-6)
                np.testing.assert_allclose(sigma1[member], sigma, rtol=1e-4)
    # The targets' params move by polyak only: tau * the stepped critics + (1 - tau) * themselves.
    tau = float(agent.default_hparams["tau"])
    expected = jax.tree.map(lambda c, t: tau * c + (1.0 - tau) * t, new.critic["params"], state.critic_target["params"])
    for x, y in zip(jax.tree.leaves(new.critic_target["params"]), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-8)
    # The optimiser holds and steps the params only, never the batch_stats.
    adam = new.critic_opt[0]
    assert jax.tree.structure(adam.mu) == jax.tree.structure(new.critic["params"])
    assert not np.allclose(jax.tree.leaves(new.critic["params"])[0], jax.tree.leaves(state.critic["params"])[0])


def test_mc_dropout_takes_one_power_iteration_for_all_its_passes(small):
    critic = small[3].critic  # the agent's twin critics, here with dropout 0.5
    apply = networks.EnsembleCritic((32, 32), num_critics=2, dropout_rate=0.5, spectral_norm=True).apply
    obs, action = _batch().observations, _batch().actions
    key = jax.random.PRNGKey(1)
    mean, var, after = jax.jit(lambda c: uwac.mc_dropout(apply, c, obs, action, key, 6, 4, update_stats=True))(critic)
    one_pass = jax.jit(lambda c, k: uwac.dropout_pass(apply, c, obs, action, k, update_stats=True))
    passes = np.stack([one_pass(critic, k)[0] for k in jax.random.split(key, 6)])
    np.testing.assert_allclose(mean, passes.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, passes.var(0, ddof=1), rtol=1e-4, atol=1e-7)
    assert var.shape == (2, 8) and np.all(np.asarray(var) > 0)
    # 6 passes, one iteration: the u of a single pass, not of 6 in a row
    u_leaves = lambda tree: [x for p, x in jax.tree_util.tree_leaves_with_path(tree)
                             if jax.tree_util.keystr(p).endswith("/u']")]
    for x, y, u0 in zip(u_leaves(after), u_leaves(one_pass(critic, key)[1]), u_leaves(critic), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6)
        assert not np.allclose(x, u0)

def test_checkpoint_round_trip_of_a_run_state(small, tmp_path):
    # Flax's spectral-norm vectors sit under keys with slashes ("Dense_0/kernel/u"): orbax keeps them.
    agent, update, _, state = small
    state, _ = update(state, _batch(), jax.random.PRNGKey(1), agent.default_hparams)  # u iterated, Adam moments set
    runs = chunk_lib.RunState(  # a run state of 1 seed x 1 setting, as chunk_lib.init_run_state lays it out
        agent=jax.tree.map(lambda x: x[None, None], state.replace(step=None)).replace(step=state.step),
        key=jax.random.split(jax.random.PRNGKey(0), 1)[None],
    )
    ckpt = checkpoint.Checkpointer(str(tmp_path))
    ckpt.save(10, runs, {"algo": "uwac"})
    step, restored = ckpt.restore_latest(jax.tree.map(np.zeros_like, runs), {"algo": "uwac"})
    ckpt.close()
    assert step == 10 and type(restored) is type(runs)
    paths = lambda tree: [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)]
    assert paths(restored) == paths(runs) and any("Dense_0/kernel/u" in p for p in paths(runs))
    for x, y in zip(jax.tree.leaves(restored), jax.tree.leaves(runs), strict=True):
        np.testing.assert_array_equal(x, y)

def test_run_length_warning():
    config = small_config("uwac").agent
    assert config.warmup == 40_000  # the reference's
    message = uwac.run_length_warning(config, 40_000)
    assert "warmup=40000" in message and "40000 updates" in message and "never uses the critics" in message
    assert uwac.run_length_warning(config, 40_001) is None
    config.warmup = 3
    assert uwac.run_length_warning(config, 2) is not None and uwac.run_length_warning(config, 4) is None


def test_hashed_dropout_masks_are_fair_independent_bits():
    """networks.hashed_keep_mask: keep rate round(0.9 * 65536) / 65536 within 5 sigma, no correlation
    between neighbours (the two 16-bit halves of one hash), between keys, or between rows; the layer
    (x / keep where kept) unbiased."""
    n = 1 << 20
    mask, keep = networks.hashed_keep_mask(jax.random.PRNGKey(0), (1024, 1024), 0.9)
    assert keep == 58982 / 65536 and mask.shape == (1024, 1024) and mask.dtype == jnp.bool_
    bits = np.asarray(mask, np.float64).reshape(-1)
    sigma = np.sqrt(keep * (1 - keep) / n)
    assert abs(bits.mean() - keep) < 5 * sigma
    other = np.asarray(networks.hashed_keep_mask(jax.random.PRNGKey(1), (1024, 1024), 0.9)[0], np.float64)
    bound = 5 / np.sqrt(n)  # the correlation of independent indicators is ~N(0, 1/n)
    assert abs(np.corrcoef(bits, other.reshape(-1))[0, 1]) < bound
    assert abs(np.corrcoef(bits[:-1], bits[1:])[0, 1]) < bound
    assert abs(np.corrcoef(bits[:-1024], bits[1024:])[0, 1]) < bound
    layer = networks.Dropout(0.1, "hash")
    x = jnp.full((64, 1024), 2.0)
    keys = jax.random.split(jax.random.PRNGKey(2), 8)
    outputs = jnp.stack([layer.apply({}, x, False, rngs={"dropout": k}) for k in keys])
    np.testing.assert_allclose(np.unique(np.asarray(outputs)), [0.0, 2.0 / keep], rtol=1e-6)
    assert abs(float(outputs.mean()) - 2.0) < 5 * 2.0 / keep * sigma * np.sqrt(n / outputs.size)
    np.testing.assert_array_equal(layer.apply({}, x, True), x)


@pytest.mark.parametrize("masks", networks.DROPOUT_MASKS)
def test_learns_the_optimal_action_on_expert_data(masks):
    """One-step task, data a*(s) + N(0, 0.2^2): the policy acts a*(s) and Q ranks a* above a* + 0.3,
    with either generator of the dropout masks."""
    config = small_config("uwac", hidden=(64, 64))
    agent_config = config.agent
    agent_config.dropout_masks = masks
    agent_config.num_dropout_samples = 10  # the reference's 100 passes cost 10x here
    agent_config.num_target_actions = 2  # terminal transitions: the target value is never used
    agent_config.num_eval_actions = 10
    agent_config.warmup = 500
    dataset = one_step_dataset(num_transitions=4096, obs_dim=4, act_dim=2, seed=0, behaviour_noise=0.2)
    agent = make_agent(config, obs_dim=4, act_dim=2)
    hparams, _ = run_config.hparam_grid(agent.default_hparams, {})
    run_state = chunk_lib.init_run_state(agent, [0], 1)
    chunk = chunk_lib.make_chunk_fn(agent, batch_size=64, chunk_size=750)
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
