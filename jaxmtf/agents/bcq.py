"""BCQ, continuous (Fujimoto, Meger & Precup 2019), following sfujim/BCQ continuous_BCQ/BCQ.py.

Batch-Constrained deep Q-learning acts only with actions that the data could
have produced: a conditional VAE G_omega(s) models the behaviour actions, a
perturbation model xi_phi(s, a) nudges a generated action by at most phi,
and the policy picks the best of n such candidates by Q1:

    pi(s) = argmax_{a_i + xi_phi(s, a_i)} Q1(s, a_i + xi_phi(s, a_i)),  a_i ~ G_omega(s)

Every update, in the reference's order (each step sees the previous one's
new parameters):
  VAE:    recon + 0.5 KL, latent log-std clamped to [-4, 15];
  critic: y = r + gamma (1 - d) max_{a_i} [lmbda min_j Q_j'(s', a_i) + (1 - lmbda) max_j Q_j'(s', a_i)],
          a_i = xi'(s', G(s')) for 10 samples per next state (the current VAE, the target actor);
  actor:  -Q1(s, xi(s, G(s)));
  targets: polyak tau on actor and critics, every update (no delay).

Reference defaults: VAE 750-750, latent 2 * act_dim, latent clipped to
[-0.5, 0.5] when sampling from the prior, VAE Adam lr 1e-3 (torch's default);
actor 400-300, phi 0.05; twin critics 400-300; actor and critic Adam 1e-3;
lmbda 0.75, tau 0.005, gamma 0.99, batch 100; select_action over 100 samples.
optax.adam's defaults (b1 0.9, b2 0.999, eps 1e-8) are torch's.

Deviations, each for the reason given:
- phi is an hparam (swept in one program), not a module attribute, so the
  perturbation actor takes it as an input, and the state carries the phi of
  its run (`BCQState.phi`): `act` gets no hparams but must perturb by the
  phi the actor was trained with.
- networks.VAE puts the latent mean and log-std in one Dense(2 * latent)
  head instead of two Dense(latent) heads: the same function and the same
  torch init (same fan_in); only the parameter layout differs.
- `act` draws its 100 VAE candidates from `key`: the policy is stochastic
  in the reference too (a fresh torch.randn per select_action); here it is
  deterministic given the key.
"""
from functools import partial
from typing import Any, Sequence

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxmtf import schema
from jaxmtf.agents import common, networks

HPARAMS = ("discount", "tau", "lmbda", "phi")
# The agent config's fields, checked by the driver before anything is built.
CONFIG_FIELDS = {
    "vae_hidden_dims": schema.widths(),
    "latent_dim": schema.integer(0),  # 0 = 2 * act_dim
    "actor_hidden_dims": schema.widths(),
    "critic_hidden_dims": schema.widths(),
    "num_critics": schema.integer(1),
    "vae_lr": schema.LEARNING_RATE,
    "actor_lr": schema.LEARNING_RATE,
    "critic_lr": schema.LEARNING_RATE,
    "num_target_samples": schema.integer(1),
    "num_act_samples": schema.integer(1),
    "discount": schema.DISCOUNT,
    "tau": schema.POLYAK,
    "lmbda": schema.real(0, 1),
    "phi": schema.real(0),
}


@flax.struct.dataclass
class BCQState:
    vae: Any
    actor: Any
    critic: Any
    actor_target: Any
    critic_target: Any
    vae_opt: Any
    actor_opt: Any
    critic_opt: Any
    phi: jax.Array  # the perturbation bound this run trains with, for `act` (see the module docstring)
    step: jax.Array  # number of updates taken


class PerturbationActor(nn.Module):
    """xi_phi(s, a) = clip(a + phi * tanh(MLP([s, a])), -1, 1): the reference's Actor (max_action 1)."""

    hidden_dims: Sequence[int]
    act_dim: int

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array, phi: jax.Array) -> jax.Array:
        perturbation = phi * jnp.tanh(networks.MLP(self.hidden_dims, self.act_dim)(jnp.concatenate([obs, action], -1)))
        return jnp.clip(action + perturbation, -1.0, 1.0)


# ----------------------------------------------------------------- losses


def bcq_target(actor_target_fn, critic_target_fn, sample_vae_fn, batch, key, hparams, num_samples):
    """y = r_t + gamma (1 - d_t) max_i [lmbda min_j Q'_j(s_t, a_i) + (1 - lmbda) max_j Q'_j(s_t, a_i)],

    a_i = xi'(s_t, G(s_t)) for `num_samples` VAE samples per next state.
    actor_target_fn(obs, action) -> perturbed action; critic_target_fn(obs, action) -> [num_critics, ...];
    sample_vae_fn(obs, key) -> action.
    """
    s_t = common.repeat_samples(batch.next_observations, num_samples)  # [B, n, obs_dim]
    a_t = actor_target_fn(s_t, sample_vae_fn(s_t, key))
    q_t = critic_target_fn(s_t, a_t)  # [num_critics, B, n]
    v_t = common.soft_clipped_max_over_samples(q_t, hparams["lmbda"])
    return common.td_target(batch.rewards, hparams["discount"], batch.terminals, v_t)


def bcq_actor_loss(actor_fn, q1_fn, obs, a_sampled):
    """-mean Q1(s, xi_phi(s, a)), a ~ G(s) given (no gradient reaches the VAE).

    q1_fn(obs, action) -> [B]: the first critic alone, as the reference's critic.q1 (not the whole
    ensemble's forward and backward passes, td3.actor_objective)."""
    chex.assert_equal_shape_prefix([obs, a_sampled], 1)
    q_pi = q1_fn(obs, actor_fn(obs, a_sampled))
    return -jnp.mean(q_pi), {}


# ----------------------------------------------------------------- agent


def make_agent(config, obs_dim: int, act_dim: int) -> common.Agent:
    latent_dim = int(config.latent_dim) or 2 * act_dim
    vae_net = networks.VAE(act_dim, latent_dim, tuple(config.vae_hidden_dims))
    actor_net = PerturbationActor(tuple(config.actor_hidden_dims), act_dim)
    critic_net = networks.EnsembleCritic(tuple(config.critic_hidden_dims), num_critics=config.num_critics)
    vae_opt = optax.adam(config.vae_lr)
    actor_opt = optax.adam(config.actor_lr)
    critic_opt = optax.adam(config.critic_lr)
    num_target_samples = int(config.num_target_samples)
    num_act_samples = int(config.num_act_samples)
    default_hparams = common.hparams_from_config(config, HPARAMS)

    def sample_vae(vae, obs, key):
        return vae_net.apply(vae, obs, key, method=networks.VAE.sample)

    def init(key):
        k_vae, k_vae_noise, k_actor, k_critic = jax.random.split(key, 4)
        obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
        vae = vae_net.init(k_vae, obs, act, k_vae_noise)
        actor = actor_net.init(k_actor, obs, act, default_hparams["phi"])
        critic = critic_net.init(k_critic, obs, act)
        return BCQState(
            vae=vae,
            actor=actor,
            critic=critic,
            actor_target=actor,
            critic_target=critic,
            vae_opt=vae_opt.init(vae),
            actor_opt=actor_opt.init(actor),
            critic_opt=critic_opt.init(critic),
            # act() gets no hparams, so phi lives in the state; it is the
            # config's value until the first update writes the run's swept one.
            phi=default_hparams["phi"],
            step=jnp.zeros((), jnp.int32),
        )

    def update(state: BCQState, batch, key, hparams):
        k_vae, k_target, k_actor = jax.random.split(key, 3)
        phi = hparams["phi"]

        # --- VAE: recon + 0.5 KL, the generative model G_omega(a | s) of the behaviour actions ---
        vae, vae_opt_state, vae_loss, vae_aux = common.apply_gradients(
            vae_opt, lambda v: common.behaviour_vae_loss(partial(vae_net.apply, v), batch, k_vae), state.vae,
            state.vae_opt,
        )

        # --- critic: sum_j mean (Q_j(s, a) - y)^2; the target samples the just-updated VAE and the target actor ---
        y = bcq_target(
            lambda o, a: actor_net.apply(state.actor_target, o, a, phi), partial(critic_net.apply, state.critic_target),
            partial(sample_vae, vae), batch, k_target, hparams, num_target_samples,
        )
        critic, critic_opt_state, critic_loss, q_tm1 = common.apply_gradients(
            critic_opt, lambda c: common.critic_loss(partial(critic_net.apply, c), batch, y), state.critic,
            state.critic_opt,
        )

        # --- actor: -Q1(s, xi_phi(s, a)), a ~ G(s), through the just-updated critic ---
        # No gradient reaches the VAE or the critic (the reference's leaked
        # grads are zeroed before their optimisers next step).
        a_sampled = jax.lax.stop_gradient(sample_vae(vae, batch.observations, k_actor))
        actor, actor_opt_state, actor_loss, _ = common.apply_gradients(
            actor_opt,
            lambda actor: bcq_actor_loss(lambda o, a: actor_net.apply(actor, o, a, phi),
                                         partial(critic_net.member_apply, critic, 0), batch.observations,
                                         a_sampled),
            state.actor, state.actor_opt,
        )

        # --- targets: polyak tau on the actor and the critics, every update ---
        state = state.replace(
            vae=vae,
            actor=actor,
            critic=critic,
            actor_target=common.polyak_update(actor, state.actor_target, hparams["tau"]),
            critic_target=common.polyak_update(critic, state.critic_target, hparams["tau"]),
            vae_opt=vae_opt_state,
            actor_opt=actor_opt_state,
            critic_opt=critic_opt_state,
            phi=phi,
            step=state.step + 1,
        )
        metrics = {
            "vae_loss": vae_loss,
            **vae_aux,
            "critic_loss": critic_loss,
            "actor_loss": actor_loss,
            "q_mean": jnp.mean(q_tm1),
            "target_mean": jnp.mean(y),
        }
        return state, metrics

    def act(state: BCQState, obs, key):
        """select_action: the best by Q1 of `num_act_samples` perturbed VAE actions, per observation row."""
        s = common.repeat_samples(obs, num_act_samples)  # [..., n, obs_dim]
        candidates = actor_net.apply(state.actor, s, sample_vae(state.vae, s, key), state.phi)
        q1 = critic_net.apply(state.critic, s, candidates)[0]  # [..., n]
        best = jnp.argmax(q1, axis=-1)
        return jnp.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]

    def q_values(state: BCQState, obs, action):
        return critic_net.apply(state.critic, obs, action)

    return common.Agent(init, update, act, q_values, default_hparams)
