"""TD3 (Fujimoto et al. 2018), following sfujim/TD3; DDPG is a config of it.

Reference defaults: actor and critics 256-256, Adam 3e-4, target policy
smoothing noise 0.2 clipped at 0.5, policy delay 2 (the actor and BOTH target
networks update on the delayed steps only), tau 0.005, gamma 0.99, batch 256,
target min(Q1', Q2'), actor loss -Q1(s, pi(s)).

DDPG (sfujim's OurDDPG): one critic, no smoothing noise, delay 1; same
network sizes and learning rates. See jaxmtf/configs/ddpg.py.

The actor loss is a parameter of `make_td3_family`, so TD3+BC (td3_bc.py) is
this module with another actor loss; the target and the actor objective are
parameters too (IntegratedRL-MTF, integrated_rl.py: a decayed-discount target
and an objective over the whole critic ensemble).
"""
from functools import partial
from typing import Any, Callable

import chex
import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxmtf import schema
from jaxmtf.agents import common, networks

HPARAMS = ("discount", "tau", "policy_noise", "noise_clip")
# The agent config's fields (DDPG's too), checked by the driver before anything is built.
CONFIG_FIELDS = {
    "actor_hidden_dims": schema.widths(),
    "critic_hidden_dims": schema.widths(),
    "num_critics": schema.integer(1),
    "actor_lr": schema.LEARNING_RATE,
    "critic_lr": schema.LEARNING_RATE,
    "policy_delay": schema.integer(1),  # 0 would divide by zero in the delayed-step test
    "discount": schema.DISCOUNT,
    "tau": schema.POLYAK,
    "policy_noise": schema.real(0),
    "noise_clip": schema.real(0),
}


@flax.struct.dataclass
class TD3State:
    actor: Any
    critic: Any
    actor_target: Any
    critic_target: Any
    actor_opt: Any
    critic_opt: Any
    step: jax.Array  # number of updates taken


# ----------------------------------------------------------------- losses


def smoothed_target_action(pi_t, noise, noise_clip):
    """Target policy smoothing: a_t = clip(pi'(s') + clip(noise, -c, c), -1, 1)."""
    return jnp.clip(pi_t + jnp.clip(noise, -noise_clip, noise_clip), -1.0, 1.0)


def td3_target(actor_target_fn, critic_target_fn, batch, key, hparams):
    """y = r_t + gamma (1 - d_t) min_i Q'_i(s_t, a_t),  a_t = clip(pi'(s_t) + clip(eps, -c, c), -1, 1),
    eps ~ N(0, sigma^2).

    actor_target_fn(obs) -> action; critic_target_fn(obs, action) -> [num_critics, B].
    """
    noise = jax.random.normal(key, batch.actions.shape) * hparams["policy_noise"]
    a_t = smoothed_target_action(actor_target_fn(batch.next_observations), noise, hparams["noise_clip"])
    q_t = critic_target_fn(batch.next_observations, a_t)
    return common.td_target(batch.rewards, hparams["discount"], batch.terminals, common.clipped_double_q(q_t))


def td3_actor_loss(q_pi, pi, batch, hparams):
    """-mean Q1(s, pi(s)), the deterministic policy gradient objective."""
    del pi, batch, hparams
    loss = -jnp.mean(q_pi)
    return loss, {}


def actor_objective(actor_fn, critic_fn, batch, hparams, actor_loss_fn, q1_fn):
    """actor_loss_fn(Q1(s, pi(s)), pi(s), batch, hparams): Q1 only, as sfujim's actor_loss.

    critic_fn(obs, action) -> [num_critics, B] is the whole ensemble (for objectives over all of it);
    q1_fn(obs, action) -> [B] runs the first member alone, as sfujim's critic.Q1 (the ensemble's
    batched forward and backward passes would compute Q2 for nothing: XLA cannot drop half of a
    batched dot; benchmarks/README.md, issue 24's ladder).
    """
    del critic_fn
    pi = actor_fn(batch.observations)
    q_pi = q1_fn(batch.observations, pi)
    chex.assert_equal_shape([q_pi, batch.rewards])
    return actor_loss_fn(q_pi, pi, batch, hparams)


# ----------------------------------------------------------------- agent


def make_td3_family(config, obs_dim: int, act_dim: int, actor_loss_fn: Callable, hparam_names,
                    target_fn: Callable = td3_target, objective_fn: Callable = actor_objective,
                    critic_loss_fn: Callable = common.critic_loss) -> common.Agent:
    """TD3's update with its pieces injected: the actor loss, the target (y, or (y, metrics)), the actor
    objective and the critic loss (critic_loss_fn(q_fn, batch, y) -> (loss, q_tm1))."""
    actor_net = networks.DeterministicActor(tuple(config.actor_hidden_dims), act_dim)
    critic_net = networks.EnsembleCritic(tuple(config.critic_hidden_dims), num_critics=config.num_critics)
    actor_opt = optax.adam(config.actor_lr)
    critic_opt = optax.adam(config.critic_lr)
    policy_delay = int(config.policy_delay)

    def init(key):
        k_actor, k_critic = jax.random.split(key)
        obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
        actor = actor_net.init(k_actor, obs)
        critic = critic_net.init(k_critic, obs, act)
        return TD3State(
            actor=actor,
            critic=critic,
            actor_target=actor,
            critic_target=critic,
            actor_opt=actor_opt.init(actor),
            critic_opt=critic_opt.init(critic),
            step=jnp.zeros((), jnp.int32),
        )

    def update(state: TD3State, batch, key, hparams):
        # --- critic: sum_i mean (Q_i(s, a) - y)^2 against the smoothed clipped double-Q target ---
        y = target_fn(partial(actor_net.apply, state.actor_target), partial(critic_net.apply, state.critic_target),
                       batch, key, hparams)
        y, target_aux = y if isinstance(y, tuple) else (y, {})
        critic, critic_opt_state, critic_loss, q_tm1 = common.apply_gradients(
            critic_opt, lambda c: critic_loss_fn(partial(critic_net.apply, c), batch, y), state.critic,
            state.critic_opt,
        )
        state = state.replace(critic=critic, critic_opt=critic_opt_state)

        # --- actor and targets, every `policy_delay` updates ---
        def actor_loss_of(actor):
            return objective_fn(partial(actor_net.apply, actor), partial(critic_net.apply, state.critic), batch,
                                hparams, actor_loss_fn, partial(critic_net.member_apply, state.critic, 0))

        def delayed_update(state):
            actor, actor_opt_state, actor_loss, aux = common.apply_gradients(
                actor_opt, actor_loss_of, state.actor, state.actor_opt
            )
            return state.replace(
                actor=actor,
                actor_opt=actor_opt_state,
                actor_target=common.polyak_update(actor, state.actor_target, hparams["tau"]),
                critic_target=common.polyak_update(state.critic, state.critic_target, hparams["tau"]),
            ), (actor_loss, aux)

        def skip(state):
            # Actor metrics exist only on delayed steps: NaN here, and the
            # driver averages them with nanmean (no wasted forward pass).
            shapes = jax.eval_shape(actor_loss_of, state.actor)
            return state, jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), shapes)

        # sfujim counts total_it from 1 and updates when total_it % freq == 0.
        is_delayed_step = (state.step + 1) % policy_delay == 0
        state, (actor_loss, aux) = jax.lax.cond(is_delayed_step, delayed_update, skip, state)
        metrics = {
            "critic_loss": critic_loss,
            "actor_loss": actor_loss,
            "q_mean": jnp.mean(q_tm1),
            "target_mean": jnp.mean(y),
            **target_aux,
            **aux,
        }
        return state.replace(step=state.step + 1), metrics

    def act(state: TD3State, obs, key):
        del key  # deterministic policy
        return actor_net.apply(state.actor, obs)

    def q_values(state: TD3State, obs, action):
        return critic_net.apply(state.critic, obs, action)

    return common.Agent(init, update, act, q_values, common.hparams_from_config(config, hparam_names))


def make_agent(config, obs_dim: int, act_dim: int) -> common.Agent:
    return make_td3_family(config, obs_dim, act_dim, td3_actor_loss, HPARAMS)
