"""The agent interface and the pieces every algorithm shares.

An agent is a NamedTuple of pure functions over pytrees:

    init(key) -> state
    update(state, batch, key, hparams) -> (state, metrics)
    act(state, obs, key) -> action          # deterministic unless asked
    q_values(state, obs, action) -> q       # [num_critics, ...] per critic

`hparams` is a dict of float scalars that the training driver may vmap over
(a sweep); everything else (sizes, counts, learning rates, booleans) is
static config closed over by the functions. Every state carries an integer
`step`; the driver keeps it unbatched across seeds and hparams (all runs of
one program take their updates in lockstep), so `lax.cond` on it stays a real
branch under vmap and delayed updates cost nothing on the other steps.

Time indices (rlax's convention, used by every agent, OPE and the tests): a
transition is (s_tm1, a_tm1, r_t, discount_t, s_t). So `_tm1` names what is
computed at the transition's state and action (q_tm1 = Q(s, a), the
policy's log_pi_tm1 at s), `_t` what is computed at the next state s'
(a_t ~ pi'(s'), q_t = Q'(s', a_t), v_t), and `r_t`, `terminal_t` belong to
the transition. The batch keeps D4RL's field names: `observations` is s_tm1,
`next_observations` s_t.

Every agent module reads top to bottom: its state dataclass, one pure
function per loss (explicit arguments, the paper's equation in the
docstring, chex shape checks at the boundary), then `make_agent`, whose
`update` only sequences the gradient steps and the target updates.
"""
from typing import Any, Callable, Dict, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from jaxmtf.types import Array, Metrics, PRNGKey, Transition

HParams = Dict[str, Array]


class Agent(NamedTuple):
    init: Callable[[PRNGKey], Any]
    update: Callable[[Any, Transition, PRNGKey, HParams], "tuple[Any, Metrics]"]
    act: Callable[[Any, Array, PRNGKey], Array]
    q_values: Callable[[Any, Array, Array], Array]
    default_hparams: HParams  # the config's values of the sweepable scalars


def hparams_from_config(config, names) -> HParams:
    """The sweepable scalars named `names`, read from `config`, as float32 arrays."""
    return {name: jnp.asarray(config[name], jnp.float32) for name in names}


def agent_axes(agent_state, batched=0):
    """An agent state's tree with `batched` at every leaf and None for the shared `step`.

    Its vmap axes (batched=0), or with a sharding for `batched`, its layout:
    the training driver and the evaluator map over runs with it.
    """
    return jax.tree.map(lambda _: batched, agent_state).replace(step=None)


def polyak_update(params, target_params, tau):
    """target <- tau * params + (1 - tau) * target, leaf by leaf (optax's incremental update)."""
    return optax.incremental_update(params, target_params, tau)


def td_target(r_t, discount, terminal_t, v_t):
    """y = r_t + discount * (1 - terminal_t) * v_t, v_t the value at s'; no gradient flows into it."""
    chex.assert_equal_shape([r_t, terminal_t, v_t])
    return jax.lax.stop_gradient(r_t + discount * (1.0 - terminal_t) * v_t)


def clipped_double_q(q):
    """min over the critic ensemble (axis 0): the TD3 / SAC-N pessimistic value."""
    return jnp.min(q, axis=0)


def soft_clipped_double_q(q, lmbda):
    """lmbda * min + (1 - lmbda) * max over the ensemble (axis 0): BCQ, BEAR, UWAC."""
    return lmbda * jnp.min(q, axis=0) + (1.0 - lmbda) * jnp.max(q, axis=0)


def repeat_samples(x, num_samples):
    """[..., D] -> [..., num_samples, D]: each row repeated, its copies kept together.

    The layout of torch's repeat_interleave / unsqueeze(1).repeat(1, n, 1) in the
    references, for evaluating n sampled actions per state.
    """
    return jnp.broadcast_to(x[..., None, :], x.shape[:-1] + (num_samples, x.shape[-1]))


def soft_clipped_max_over_samples(q_t, lmbda):
    """v_t from Q' at n sampled actions per next state [num_critics, B, n]: soft clipped double Q, then max over n.

    The target of BCQ (VAE samples) and of BEAR / UWAC (policy samples).
    """
    chex.assert_rank(q_t, 3)
    return jnp.max(soft_clipped_double_q(q_t, lmbda), axis=-1)


def ensemble_mse(q_tm1, y):
    """sum_i mean_B (Q_i(s, a) - y)^2: the references sum their twin critics' losses.

    q_tm1 [num_critics, B], y [B].
    """
    chex.assert_rank(q_tm1, 2)
    chex.assert_equal_shape([q_tm1[0], y])
    return jnp.sum(jnp.mean((q_tm1 - y[None]) ** 2, axis=-1))


def critic_loss(q_fn, batch, y):
    """The TD loss sum_i mean (Q_i(s_tm1, a_tm1) - y)^2 of q_fn(obs, action) -> [num_critics, B]; aux: q_tm1."""
    q_tm1 = q_fn(batch.observations, batch.actions)
    return ensemble_mse(q_tm1, y), q_tm1


def apply_gradients(optimizer, loss_fn, params, opt_state):
    """One optimiser step on loss_fn(params) -> (loss, aux); returns params, opt_state, loss, aux."""
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, aux


def with_obs_normalization(agent: Agent, stats) -> Agent:
    """The agent seen from raw observations: act and q_values standardise obs first.

    Training runs on a normalised dataset (TD3+BC's state normalisation), so
    the learned functions expect normalised inputs; evaluation, OPE and
    deployment call this wrapper with raw observations. `stats` None = identity.
    """
    if stats is None:
        return agent
    mean, std = jnp.asarray(stats["mean"]), jnp.asarray(stats["std"])

    def act(state, obs, key):
        return agent.act(state, (obs - mean) / std, key)

    def q_values(state, obs, action):
        return agent.q_values(state, (obs - mean) / std, action)

    return agent._replace(act=act, q_values=q_values)


# ------------------------------------------------ Gaussian (IQL) and tanh-Gaussian policies (SAC, CQL, BEAR, UWAC)

# rlkit's TanhNormal adds this inside log(1 - tanh(u)^2 + eps).
TANH_EPS = 1e-6


def _gaussian_log_prob(u, mean, log_std):
    return -0.5 * ((u - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)


def gaussian_log_prob(mean, log_std, x):
    """log N(x; mean, diag(exp(log_std))^2), summed over action dims: an unsquashed Gaussian policy (IQL)."""
    return jnp.sum(_gaussian_log_prob(x, mean, log_std), axis=-1)


def tanh_gaussian_rsample(mean, log_std, key):
    """a = tanh(u), u = mean + std * eps (reparameterised): the action and its pre-tanh value u."""
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    return jnp.tanh(u), u


def tanh_gaussian_sample(mean, log_std, key):
    """a = tanh(mean + std * eps) (reparameterised) and its log density, summed over action dims."""
    action, u = tanh_gaussian_rsample(mean, log_std, key)
    log_prob = _gaussian_log_prob(u, mean, log_std) - jnp.log(1.0 - action**2 + TANH_EPS)
    return action, jnp.sum(log_prob, axis=-1)


def tanh_gaussian_log_prob(mean, log_std, action):
    """log density of a given action under tanh(N(mean, std)), with rlkit's atanh clamp."""
    one_plus = jnp.clip(1.0 + action, 1e-6)
    one_minus = jnp.clip(1.0 - action, 1e-6)
    u = 0.5 * jnp.log(one_plus / one_minus)
    log_prob = _gaussian_log_prob(u, mean, log_std) - jnp.log(1.0 - action**2 + TANH_EPS)
    return jnp.sum(log_prob, axis=-1)


def vae_loss(recon, action, mean, std):
    """BCQ's VAE loss: MSE reconstruction + 0.5 * KL(N(mean, std) || N(0, I)), batch means."""
    chex.assert_equal_shape([recon, action])
    chex.assert_equal_shape([mean, std])
    recon_loss = jnp.mean((recon - action) ** 2)
    kl = -0.5 * jnp.mean(1.0 + jnp.log(std**2) - mean**2 - std**2)
    return recon_loss + 0.5 * kl, {"vae_recon_loss": recon_loss, "vae_kl": kl}


def behaviour_vae_loss(vae_fn, batch, key):
    """`vae_loss` of the behaviour model vae_fn(obs, action, key) -> (recon, mean, std) on the batch
    (BCQ, BEAR, UWAC)."""
    recon, mean, std = vae_fn(batch.observations, batch.actions, key)
    return vae_loss(recon, batch.actions, mean, std)
