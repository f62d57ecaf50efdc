"""The soft actor-critic losses (Haarnoja et al. 2018, rlkit's SACTrainer) that CQL builds on.

With an ensemble of N critics the value is the min over the ensemble (SAC-N,
An et al. 2021; the twin Q of SAC for N = 2):

    temperature  J(alpha) = -E[log alpha * (log pi(a|s) + target_entropy)],  a ~ pi(s)
    target       y = r_t + gamma (1 - d_t) [min_i Q'_i(s_t, a_t) - alpha log pi(a_t|s_t)],  a_t ~ pi(s_t)
                 (the deterministic backup drops the entropy term, as CQL's reference runs do)
    actor        J(pi) = E[alpha log pi(a|s) - min_i Q_i(s, a)],  a ~ pi(s) (reparameterised)

`dist_fn(obs) -> (mean, log_std)` is the tanh-Gaussian policy
(networks.TanhGaussianActor); critic functions return [num_critics, B].
"""
import chex
import jax
import jax.numpy as jnp

from jaxmtf.agents import common


def temperature_loss(log_alpha, log_pi, target_entropy):
    """-E[log alpha * (log pi + target_entropy)]: alpha grows when the entropy is below target."""
    return -jnp.mean(log_alpha * jax.lax.stop_gradient(log_pi + target_entropy))


def soft_target(dist_fn, critic_target_fn, batch, key, discount, alpha, deterministic_backup: bool):
    """y = r_t + gamma (1 - d_t) [min_i Q'_i(s_t, a_t) - alpha log pi(a_t|s_t)], a_t ~ pi(s_t)."""
    mean_t, log_std_t = dist_fn(batch.next_observations)
    a_t, log_pi_t = common.tanh_gaussian_sample(mean_t, log_std_t, key)
    v_t = common.clipped_double_q(critic_target_fn(batch.next_observations, a_t))
    if not deterministic_backup:  # the entropy bonus of the soft value
        v_t = v_t - alpha * log_pi_t
    return common.td_target(batch.rewards, discount, batch.terminals, v_t)


def actor_loss(q_pi, log_pi, alpha):
    """E[alpha log pi(a|s) - min_i Q_i(s, a)], given min_i Q_i(s, a) and log pi(a|s) of a ~ pi(s)."""
    chex.assert_equal_shape([q_pi, log_pi])
    return jnp.mean(alpha * log_pi - q_pi)
