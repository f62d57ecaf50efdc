"""BCQ (continuous): hand-computed target, VAE loss and select_action, the latent clip, phi's bound, learning."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import small_config

from jaxmtf.agents import bcq, common, make_agent, networks
from jaxmtf.core import training
from jaxmtf.data import one_step_dataset
from jaxmtf.data.synthetic import optimal_action
from jaxmtf.types import Transition

OBS_DIM, ACT_DIM = 3, 2


@pytest.fixture(scope="module")
def agent():
    return make_agent(small_config("bcq"), OBS_DIM, ACT_DIM)


def test_soft_clipped_target_with_max_over_samples_by_hand():
    # q_t[critic, state, sample]
    q_t = jnp.array(
        [
            [[1.0, 4.0, 2.0], [-1.0, -3.0, 0.0]],
            [[3.0, 0.0, 2.0], [-2.0, 1.0, 5.0]],
        ]
    )
    # lmbda 0.75: 0.75 min + 0.25 max per sample, then max over the samples
    # state 0: (1, 3) -> 1.5, (0, 4) -> 1.0, (2, 2) -> 2.0          -> 2.0
    # state 1: (-2, -1) -> -1.75, (-3, 1) -> -2.0, (0, 5) -> 1.25    -> 1.25
    np.testing.assert_allclose(common.soft_clipped_max_over_samples(q_t, 0.75), [2.0, 1.25], rtol=1e-6)
    # lmbda 1 is the plain clipped double Q: max_i min_j = [2, 0]
    np.testing.assert_allclose(common.soft_clipped_max_over_samples(q_t, 1.0), [2.0, 0.0], rtol=1e-6)
    r, d = jnp.array([1.0, -0.5]), jnp.array([0.0, 1.0])
    y = common.td_target(r, 0.99, d, common.soft_clipped_max_over_samples(q_t, 0.75))
    np.testing.assert_allclose(y, [1.0 + 0.99 * 2.0, -0.5], rtol=1e-6)


def test_repeat_samples_groups_the_samples_of_a_state_together():
    # torch.repeat_interleave(s, n, 0).reshape(B, n, ...) in the reference.
    out = common.repeat_samples(jnp.array([[1.0, 2.0], [3.0, 4.0]]), 3)
    np.testing.assert_array_equal(out, [[[1, 2]] * 3, [[3, 4]] * 3])


def test_vae_loss_by_hand():
    recon = jnp.array([[0.5, -1.0]])
    action = jnp.array([[0.0, 0.0]])
    mean = jnp.array([[1.0, 0.0]])
    std = jnp.array([[1.0, 2.0]])
    loss, aux = common.vae_loss(recon, action, mean, std)
    # -0.5 * mean(1 + log std^2 - mean^2 - std^2) = -0.5 * mean(-1, -3 + log 4)
    kl = -0.5 * (-1.0 + (-3.0 + np.log(4.0))) / 2.0  # = 0.6534264
    np.testing.assert_allclose(aux["vae_recon_loss"], 0.625, rtol=1e-6)  # mean over the 2 entries: (0.25 + 1) / 2
    np.testing.assert_allclose(aux["vae_kl"], kl, rtol=1e-6)
    np.testing.assert_allclose(loss, 0.625 + 0.5 * 0.6534264, rtol=1e-6)


def test_latent_is_clipped_when_sampling_from_the_prior(agent):
    """The z that act() decodes lies in [-0.5, 0.5], and the clip binds (N(0, 1) often exceeds it)."""
    state = agent.init(jax.random.PRNGKey(0))

    def act_and_latents(state, obs, key):
        latents = []

        def record_decode_z(next_fun, args, kwargs, context):
            if isinstance(context.module, networks.VAE) and context.method_name == "decode":
                latents.append(args[1])
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(record_decode_z):
            action = agent.act(state, obs, key)
        return action, latents[0]

    _, z = jax.jit(act_and_latents)(state, jnp.zeros((8, OBS_DIM)), jax.random.PRNGKey(1))
    z = np.asarray(z)
    assert z.shape == (8, 100, 2 * ACT_DIM)  # 100 samples per state, latent 2 * act_dim
    assert z.min() == -0.5 and z.max() == 0.5
    assert np.mean(np.abs(z) == 0.5) > 0.5  # P(|N(0,1)| > 0.5) = 0.62


@pytest.mark.parametrize("phi", [0.05, 0.3])
def test_perturbation_is_bounded_by_phi(phi):
    actor = bcq.PerturbationActor((32, 32), ACT_DIM)
    k_obs, k_act, k_init = jax.random.split(jax.random.PRNGKey(0), 3)
    obs = jax.random.normal(k_obs, (1000, OBS_DIM))
    action = jax.random.uniform(k_act, (1000, ACT_DIM), minval=-1.0, maxval=1.0)
    params = actor.init(k_init, obs, action, phi)
    params = jax.tree.map(lambda p: 30.0 * p, params)  # saturate the tanh so the bound is reached
    out = actor.apply(params, obs, action, phi)
    delta = np.abs(np.asarray(out - action))
    assert np.all(np.abs(out) <= 1.0)
    assert delta.max() <= phi + 1e-6
    inside = np.all(np.abs(np.asarray(action)) < 1.0 - phi, axis=-1)  # no clip at +-1 possible
    assert delta[inside].max() > 0.9 * phi


def _set_critics(params, sign):
    """Critic j computes Q_j(s, a) = sign[j] * a_0 for a in [-1, 1]: relu(a_0 * sign + 2) - 2."""
    p = jax.tree.map(jnp.zeros_like, params)
    mlp = p["params"]["VmapCritic_0"]["MLP_0"]
    for j, s in enumerate(sign):
        mlp["Dense_0"]["kernel"] = mlp["Dense_0"]["kernel"].at[j, OBS_DIM, 0].set(s)
        mlp["Dense_0"]["bias"] = mlp["Dense_0"]["bias"].at[j, 0].set(2.0)
        mlp["Dense_1"]["kernel"] = mlp["Dense_1"]["kernel"].at[j, 0, 0].set(1.0)
        mlp["Dense_2"]["kernel"] = mlp["Dense_2"]["kernel"].at[j, 0, 0].set(1.0)
        mlp["Dense_2"]["bias"] = mlp["Dense_2"]["bias"].at[j, 0].set(-2.0)
    return p


def test_act_picks_the_candidate_with_the_highest_q1(agent):
    """Q1 = a_0 and Q2 = -a_0: select_action must take the candidate with the largest a_0 (Q1 only)."""
    state = agent.init(jax.random.PRNGKey(0))
    state = state.replace(critic=_set_critics(state.critic, [1.0, -1.0]))
    a = jnp.linspace(-1.0, 1.0, 5)[:, None] * jnp.ones(ACT_DIM)
    np.testing.assert_allclose(agent.q_values(state, jnp.zeros((5, OBS_DIM)), a), [a[:, 0], -a[:, 0]], atol=1e-6)

    obs = jax.random.normal(jax.random.PRNGKey(2), (6, OBS_DIM))
    key = jax.random.PRNGKey(3)
    chosen = jax.jit(agent.act)(state, obs, key)
    # The candidates act() chose among: the same key's 100 VAE samples per state, perturbed.
    s = common.repeat_samples(obs, 100)
    vae = networks.VAE(ACT_DIM, 2 * ACT_DIM, (32, 32))
    actor = bcq.PerturbationActor((32, 32), ACT_DIM)
    sampled = vae.apply(state.vae, s, key, method=networks.VAE.sample)
    candidates = np.asarray(actor.apply(state.actor, s, sampled, state.phi))
    expected = candidates[np.arange(6), np.argmax(candidates[..., 0], axis=1)]
    np.testing.assert_allclose(chosen, expected, rtol=1e-6)
    assert chosen.shape == (6, ACT_DIM)
    assert np.all(chosen[:, 0] > np.median(candidates[..., 0], axis=1))  # not the min (Q2's choice)


def _constant_critic(params, values):
    """Critic params whose j-th critic outputs values[j] for every input."""
    zeroed = jax.tree.map(jnp.zeros_like, params)
    zeroed["params"]["VmapCritic_0"]["MLP_0"]["Dense_2"]["bias"] = jnp.asarray(values, jnp.float32)[:, None]
    return zeroed


def test_update_target_critic_loss_and_polyak_by_hand(agent):
    state = agent.init(jax.random.PRNGKey(0))
    state = state.replace(
        critic=_constant_critic(state.critic, [1.0, 1.5]),
        critic_target=_constant_critic(state.critic_target, [2.0, 3.0]),
    )
    batch = Transition(
        observations=jnp.ones((4, OBS_DIM)),
        actions=jnp.zeros((4, ACT_DIM)),
        rewards=jnp.array([1.0, 0.0, -1.0, 2.0]),
        next_observations=jnp.ones((4, OBS_DIM)),
        terminals=jnp.array([0.0, 1.0, 0.0, 1.0]),
    )
    hparams = dict(agent.default_hparams, lmbda=jnp.float32(0.5), phi=jnp.float32(0.2))
    new, metrics = jax.jit(agent.update)(state, batch, jax.random.PRNGKey(1), hparams)
    v = 0.5 * 2.0 + 0.5 * 3.0  # every sample: lmbda min + (1 - lmbda) max = 2.5
    y = np.array([1.0 + 0.99 * v, 0.0, -1.0 + 0.99 * v, 2.0])
    np.testing.assert_allclose(metrics["target_mean"], y.mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["critic_loss"], np.mean((1.0 - y) ** 2) + np.mean((1.5 - y) ** 2), rtol=1e-5)
    # Both targets track their networks every update (no delay), at rate tau.
    tau = 0.005
    for net, target, old_target in [
        (new.actor, new.actor_target, state.actor_target),
        (new.critic, new.critic_target, state.critic_target),
    ]:
        expected = jax.tree.map(lambda p, t: tau * p + (1 - tau) * t, net, old_target)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), target, expected)
    changed = lambda a, b: any(jax.tree.leaves(jax.tree.map(lambda x, y: bool(jnp.any(x != y)), a, b)))
    assert changed(new.vae, state.vae)  # (the actor has no gradient through constant critics)
    assert int(new.step) == 1 and float(new.phi) == pytest.approx(0.2)  # act() perturbs by this run's phi
    assert all(np.isfinite(float(m)) for m in metrics.values())


def test_bcq_recovers_the_optimal_action_from_expert_data(tmp_path):
    """One-step task, reward -||a - a*(s)||^2, logged actions a* + N(0, 0.2^2) (expert-like).

    The logged actions are off by E|a - a*| ~ 0.15 per dimension and a
    uniformly random action by ~0.58; BCQ's greedy action must be within
    0.075 (half the logger's error) after 2000 updates (measured ~0.02).
    """
    dataset = one_step_dataset(num_transitions=5000, obs_dim=OBS_DIM, act_dim=ACT_DIM, seed=0, behaviour_noise=0.2)
    config = small_config("bcq", hidden=(64, 64), num_seeds=1, num_updates=2000, chunk_size=1000,
                          batch_size=100, checkpoint_every=0)
    summary = training.train(config, dataset, str(tmp_path))
    agent = make_agent(config, OBS_DIM, ACT_DIM)
    run_state = summary["state"]
    state = jax.tree.map(lambda x: x[0, 0], run_state.agent.replace(step=None)).replace(step=run_state.agent.step)
    obs = np.random.default_rng(5).normal(size=(500, OBS_DIM)).astype(np.float32)
    actions = np.asarray(jax.jit(agent.act)(state, jnp.asarray(obs), jax.random.PRNGKey(0)))
    error = float(np.mean(np.abs(actions - optimal_action(obs, ACT_DIM))))
    assert error < 0.075, error
