"""TD3+BC (Fujimoto & Gu 2021), following sfujim/TD3_BC.

TD3 with one change to the actor loss:

    lambda = alpha / mean|Q1(s, pi(s))|        (no gradient through lambda)
    loss   = -lambda * mean Q1(s, pi(s)) + mean (pi(s) - a)^2

and states normalised with the dataset's mean and std + 1e-3 (the config's
`normalize_observations`, applied by the training driver). Defaults: alpha
2.5, everything else as TD3.
"""
import chex
import jax
import jax.numpy as jnp

from jaxmtf import schema
from jaxmtf.agents import td3

HPARAMS = td3.HPARAMS + ("alpha",)
CONFIG_FIELDS = {**td3.CONFIG_FIELDS, "alpha": schema.real(0)}


def td3_bc_actor_loss(q_pi, pi, batch, hparams):
    """-lambda mean Q1(s, pi(s)) + mean (pi(s) - a)^2, lambda = alpha / mean|Q1(s, pi(s))| (no gradient)."""
    chex.assert_equal_shape([pi, batch.actions])
    lmbda = jax.lax.stop_gradient(hparams["alpha"] / jnp.mean(jnp.abs(q_pi)))
    # F.mse_loss in the reference: the mean over batch AND action dimensions.
    bc_loss = jnp.mean((pi - batch.actions) ** 2)
    loss = -lmbda * jnp.mean(q_pi) + bc_loss
    return loss, {"lambda": lmbda, "bc_loss": bc_loss}


def make_agent(config, obs_dim: int, act_dim: int):
    return td3.make_td3_family(config, obs_dim, act_dim, td3_bc_actor_loss, HPARAMS)
