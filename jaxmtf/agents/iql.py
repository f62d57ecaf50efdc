"""IQL, Implicit Q-Learning (Kostrikov et al. 2022), following ikostrikov/implicit_q_learning.

Never queries Q at an action outside the data. Each update, in the reference's order:

    value   L_V(psi)   = E_(s,a)~D[ L2_tau( min_i Q'_i(s, a) - V_psi(s) ) ],   L2_tau(u) = |tau - 1(u < 0)| u^2
    actor   L_pi(phi)  = -E_(s,a)~D[ w log pi_phi(a|s) ],   w = min(exp(beta (min_i Q'_i(s, a) - V_psi(s))), 100)
    critic  L_Q(theta) = sum_i E[ (Q_i(s, a) - y)^2 ],       y = r + gamma (1 - d) V_psi(s')
    target  theta' <- tau theta + (1 - tau) theta'

Q' is the target critics (before this step's polyak), V_psi the value network
after this step's value update (the actor's advantage and the critic's
target both use the new V), tau the expectile and beta the temperature.

Reference defaults (configs/mujoco_config.py, learner.py): expectile 0.7,
temperature 3.0, actor / twin critics / value all 256-256 with ReLU, Adam
3e-4 for each, the actor's learning rate on a cosine decay from 3e-4 to 0
over the run's max_steps, tau 0.005, gamma 0.99, no dropout, batch 256.
The policy is NormalTanhPolicy(state_dependent_std=False,
tanh_squash_distribution=False): N(tanh(MLP(s)), exp(log_std)^2) with one
learned log_std vector (starting at 0, clipped to [-5, 2]); the data action's
log density is the unsquashed Gaussian's. `act` is its mean tanh(MLP(s)),
clipped to [-1, 1] (the reference evaluates with temperature 0, i.e. the
mean, and clips). Every layer starts orthogonal with gain sqrt(2) and zero
biases (the reference's default_init, the output layers too); the target
critics start as copies of the critics (same init key in the reference).

Deviations and choices, each with its reason:
- The cosine schedule's length is the agent field `max_steps`, not the
  driver's num_updates: agents see only `config.agent`, and num_updates may
  grow when a run is resumed and extended, which must not change the updates
  already taken (the driver's resume check covers the agent's fields, not
  num_updates). Set it to num_updates (the launch config starts it equal to
  the default); `run_length_warning` warns when they differ.
- num_critics N generalises the twin critics: the value target and the
  advantage use the min over the N target critics, each critic's TD loss is
  summed (the reference's (q1 - y)^2 + (q2 - y)^2 averaged).
- No dropout (the mujoco config's None; the kitchen config's 0.1 actor
  dropout is not offered), so an update draws nothing random and ignores its key.
- The reference rescales D4RL locomotion rewards by 1000 / (return range)
  and shifts antmaze rewards by -1 in its training script; that is dataset
  preprocessing, not the agent, and is not applied here.
"""
from functools import partial
from typing import Any

import chex
import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxmtf import schema
from jaxmtf.agents import common, networks

HPARAMS = ("discount", "tau", "expectile", "temperature")
# The agent config's fields, checked by the driver before anything is built.
CONFIG_FIELDS = {
    "actor_hidden_dims": schema.widths(),
    "critic_hidden_dims": schema.widths(),
    "value_hidden_dims": schema.widths(),
    "num_critics": schema.integer(1),
    "actor_lr": schema.LEARNING_RATE,
    "critic_lr": schema.LEARNING_RATE,
    "value_lr": schema.LEARNING_RATE,
    "actor_lr_schedule": schema.choice(("cosine", "constant")),
    "max_steps": schema.integer(1),
    "max_weight": schema.real(0, lo_open=True),
    "discount": schema.DISCOUNT,
    "tau": schema.POLYAK,
    # 0.5 is a mean (plain MSE); towards 1 an upper expectile, the max over in-data actions.
    "expectile": schema.real(0, 1, lo_open=True, hi_open=True),
    "temperature": schema.real(0),  # 0: every weight 1, behaviour cloning
}

# The reference's NormalTanhPolicy(log_std_min=-5.0), log_std_max its module default 2.0.
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@flax.struct.dataclass
class IQLState:
    actor: Any
    critic: Any
    critic_target: Any  # the reference's target_critic; V and the actor have no target
    value: Any
    actor_opt: Any
    critic_opt: Any
    value_opt: Any
    step: jax.Array  # number of updates taken


# ----------------------------------------------------------------- losses


def expectile_loss(diff, expectile):
    """L2_tau(u) = |tau - 1(u < 0)| u^2, elementwise: weight tau where Q exceeds V, 1 - tau where it does not."""
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return weight * diff**2


def value_loss(value_fn, obs_tm1, q_tm1, expectile):
    """E[ L2_tau(q_tm1 - V(s_tm1)) ], q_tm1 = min_i Q'_i(s, a) of the target critics (no gradient); aux: metrics."""
    v_tm1 = value_fn(obs_tm1)
    chex.assert_equal_shape([q_tm1, v_tm1])
    loss = jnp.mean(expectile_loss(jax.lax.stop_gradient(q_tm1) - v_tm1, expectile))
    return loss, {"value_loss": loss, "v_mean": jnp.mean(v_tm1)}


def advantage_weights(q_tm1, v_tm1, temperature, max_weight):
    """w = min(exp(beta (Q(s, a) - V(s))), max_weight), no gradient: the AWR weights of the data actions."""
    chex.assert_equal_shape([q_tm1, v_tm1])
    return jax.lax.stop_gradient(jnp.minimum(jnp.exp(temperature * (q_tm1 - v_tm1)), max_weight))


def awr_actor_loss(dist_fn, batch, weights):
    """-E[ w log pi(a|s) ], the weighted log-likelihood of the data actions under N(mean(s), exp(log_std)^2)."""
    mean, log_std = dist_fn(batch.observations)
    chex.assert_equal_shape([mean, batch.actions])
    log_prob = common.gaussian_log_prob(mean, log_std, batch.actions)
    chex.assert_equal_shape([log_prob, weights])
    loss = -jnp.mean(weights * log_prob)
    return loss, {"data_log_likelihood": jnp.mean(log_prob), "log_std_mean": jnp.mean(log_std)}


def iql_target(value_fn, batch, discount):
    """y = r_t + gamma (1 - d_t) V(s_t): the value network, not a max over actions, bootstraps Q."""
    return common.td_target(batch.rewards, discount, batch.terminals, value_fn(batch.next_observations))


def actor_lr_schedule(config):
    """The actor's learning rate per update: cosine from actor_lr to 0 over max_steps, or constant."""
    if config.actor_lr_schedule == "cosine":
        # The reference: chain(scale_by_adam(), scale_by_schedule(cosine_decay_schedule(-actor_lr, max_steps))).
        return optax.cosine_decay_schedule(float(config.actor_lr), int(config.max_steps))
    return optax.constant_schedule(float(config.actor_lr))


def run_length_warning(agent_config, num_updates: int):
    """A warning when the cosine schedule's length differs from the run's (None otherwise)."""
    max_steps = int(agent_config.max_steps)
    if agent_config.actor_lr_schedule != "cosine" or max_steps == num_updates:
        return None
    if num_updates > max_steps:
        effect = f"the actor's learning rate is 0 after update {max_steps}: the policy stops changing there"
    else:
        final = float(actor_lr_schedule(agent_config)(num_updates)) / float(agent_config.actor_lr)
        effect = f"the run ends with the actor's learning rate at {final:.0%} of actor_lr"
    return (
        f"IQL decays the actor's learning rate over agent.max_steps={max_steps} updates but this run has "
        f"num_updates={num_updates}: {effect}; set --config.agent.max_steps={num_updates} to decay over the run"
    )


# ----------------------------------------------------------------- agent


def make_agent(config, obs_dim: int, act_dim: int) -> common.Agent:
    init_fn = networks.orthogonal()  # the reference's default_init, every layer
    actor_net = networks.TanhMeanGaussianActor(
        tuple(config.actor_hidden_dims), act_dim, log_std_min=LOG_STD_MIN, log_std_max=LOG_STD_MAX, layer_init=init_fn
    )
    critic_net = networks.EnsembleCritic(
        tuple(config.critic_hidden_dims), num_critics=config.num_critics, hidden_init=init_fn, output_init=init_fn
    )
    value_net = networks.ValueNet(tuple(config.value_hidden_dims), layer_init=init_fn)
    lr_schedule = actor_lr_schedule(config)
    actor_opt = optax.adam(lr_schedule)
    critic_opt = optax.adam(config.critic_lr)
    value_opt = optax.adam(config.value_lr)
    max_weight = float(config.max_weight)

    def init(key):
        k_actor, k_critic, k_value = jax.random.split(key, 3)
        obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
        actor = actor_net.init(k_actor, obs)
        critic = critic_net.init(k_critic, obs, act)
        value = value_net.init(k_value, obs)
        return IQLState(
            actor=actor,
            critic=critic,
            critic_target=critic,
            value=value,
            actor_opt=actor_opt.init(actor),
            critic_opt=critic_opt.init(critic),
            value_opt=value_opt.init(value),
            step=jnp.zeros((), jnp.int32),
        )

    def update(state: IQLState, batch, key, hparams):
        del key  # no dropout: nothing in an update is random
        # min_i Q'_i(s, a) at the data's actions, from the target critics: the value's and the actor's Q.
        q_tm1 = common.clipped_double_q(critic_net.apply(state.critic_target, batch.observations, batch.actions))

        # --- value: expectile regression of V(s) on min_i Q'_i(s, a) ---
        value, value_opt_state, _, value_aux = common.apply_gradients(
            value_opt, lambda v: value_loss(partial(value_net.apply, v), batch.observations, q_tm1,
                                            hparams["expectile"]),
            state.value, state.value_opt,
        )
        value_fn = partial(value_net.apply, value)  # the new V, as the reference's actor and critic use

        # --- actor: advantage-weighted regression on the data's actions ---
        v_tm1 = value_fn(batch.observations)
        weights = advantage_weights(q_tm1, v_tm1, hparams["temperature"], max_weight)
        actor, actor_opt_state, actor_loss, actor_aux = common.apply_gradients(
            actor_opt, lambda a: awr_actor_loss(partial(actor_net.apply, a), batch, weights), state.actor,
            state.actor_opt,
        )

        # --- critic: TD regression on r + gamma (1 - d) V(s') ---
        y = iql_target(value_fn, batch, hparams["discount"])
        critic, critic_opt_state, critic_loss, q_data = common.apply_gradients(
            critic_opt, lambda c: common.critic_loss(partial(critic_net.apply, c), batch, y), state.critic,
            state.critic_opt,
        )

        # --- targets: polyak every update, from the new critics ---
        step = state.step
        state = state.replace(
            actor=actor,
            critic=critic,
            critic_target=common.polyak_update(critic, state.critic_target, hparams["tau"]),
            value=value,
            actor_opt=actor_opt_state,
            critic_opt=critic_opt_state,
            value_opt=value_opt_state,
            step=state.step + 1,
        )
        metrics = {
            **value_aux,
            "actor_loss": actor_loss,
            **actor_aux,
            "adv_mean": jnp.mean(q_tm1 - v_tm1),
            "weight_mean": jnp.mean(weights),
            "weight_clipped_fraction": jnp.mean(weights >= max_weight),
            "actor_lr": lr_schedule(step),  # this update's rate (optax's count, like step, starts at 0)
            "critic_loss": critic_loss,
            "q_mean": jnp.mean(q_data),
            "target_mean": jnp.mean(y),
        }
        return state, {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}

    def act(state: IQLState, obs, key):
        del key  # the policy's mean, as the reference evaluates (temperature 0)
        mean, _ = actor_net.apply(state.actor, obs)
        return jnp.clip(mean, -1.0, 1.0)

    def q_values(state: IQLState, obs, action):
        return critic_net.apply(state.critic, obs, action)

    return common.Agent(init, update, act, q_values, common.hparams_from_config(config, HPARAMS))
