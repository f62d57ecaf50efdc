"""CQL, continuous actions (Kumar et al. 2020), following aviralkumar2907/CQL (rlkit `cql.py`).

SAC (the losses of `sac.py`) with a conservative penalty on each critic i:

    min_q_weight * ( temp * E_s[ log sum_j exp(Q_i(s, a_j) / temp) ] - E_(s,a)~D[ Q_i(s, a) ] )

where the a_j are num_random = 10 actions of each of three kinds, ALL scored
at the current state s: uniform on [-1, 1]^A, pi(.|s) and pi(.|s'). With
min_q_version 3 (CQL(H), importance sampled) each sample's Q has its log
density subtracted: log(0.5^A) for the uniform ones, log pi for the others.
The Lagrange variant scales the penalty by alpha' = clamp(exp(log alpha'), 0,
1e6) after subtracting the threshold (target_action_gap), and learns alpha'
to keep the penalty near that threshold.

Reference defaults (examples/cql_mujoco_new.py and the README's Gym MuJoCo
command): 256x3 nets, policy lr 1e-4, Q lr 3e-4, gamma 0.99, tau 0.005 every
step, auto entropy with target -|A| (log alpha at the policy lr), min_q_weight
5 without Lagrange (README: `--lagrange_thresh=-1 --min_q_weight=5.0`; the
argparse defaults are min_q_weight 1 WITH Lagrange, threshold 5), deterministic
backup, max_q_backup off, policy_eval_start 40000 (behaviour cloning first),
temp 1, batch 256.

The order of the reference's updates is kept: alpha first (the policy loss and
the target use the new alpha), then the critics, then the policy against the
critics as they were before this step's critic update, then the targets.

Deviations, each for the reason given:
- The policy's gradient flows through the pre-update critics. The reference
  calls policy_loss.backward() after the Q optimisers stepped in place, which
  old PyTorch let through (mixing old activations with new weights) and new
  PyTorch rejects as an in-place modification; the consistent choice is kept.
- num_critics N: the reference has twin Q (torch.min(qf1, qf2)); for any N the
  target and the policy use the min over the ensemble (SAC-N), and each critic
  gets its own penalty. One Adam over the ensemble equals one Adam per critic
  (Adam is elementwise and critic i's loss reaches only critic i's weights).
- Policy samples for the penalty come from the (mean, log_std) of one forward
  pass, repeated, instead of a forward pass of repeated states: same values.
- reward_scale (1 in the reference's runs) is left out; log alpha and log
  alpha' are scalars instead of shape-(1,) tensors.

Initialisation is rlkit's (networks.rlkit_hidden / rlkit_output): hidden
weights U(+-1/sqrt(fan_out)) by fanin_init's size[0] quirk, biases 0.1, the
Q-functions' last layer U(+-3e-3), the policy's heads U(+-1e-3).
"""
from functools import partial
from typing import Any

import chex
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmtf import schema
from jaxmtf.agents import common, networks, sac

HPARAMS = ("discount", "tau", "min_q_weight")
LAGRANGE_HPARAMS = ("lagrange_threshold",)  # sweepable only when with_lagrange is on
# The agent config's fields, checked by the driver before anything is built.
CONFIG_FIELDS = {
    "actor_hidden_dims": schema.widths(),
    "critic_hidden_dims": schema.widths(),
    "num_critics": schema.integer(1),
    "actor_lr": schema.LEARNING_RATE,
    "critic_lr": schema.LEARNING_RATE,
    "automatic_entropy_tuning": schema.boolean(),
    "num_random": schema.integer(1),
    "temperature": schema.real(0, lo_open=True),
    "deterministic_backup": schema.boolean(),
    "max_q_backup": schema.boolean(),
    "with_lagrange": schema.boolean(),
    "policy_eval_start": schema.integer(0),
    "discount": schema.DISCOUNT,
    "tau": schema.POLYAK,
    "min_q_weight": schema.real(0),
    "lagrange_threshold": schema.real(),
}

# rlkit policies.py: LOG_SIG_MIN, LOG_SIG_MAX; MEAN_MIN/MAX clamp the mean in
# TanhGaussianPolicy.log_prob only (the BC loss), not when sampling.
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
MEAN_MIN, MEAN_MAX = -9.0, 9.0
ALPHA_PRIME_MAX = 1e6  # torch.clamp(self.log_alpha_prime.exp(), min=0.0, max=1000000.0)


@flax.struct.dataclass
class CQLState:
    actor: Any
    critic: Any
    critic_target: Any  # rlkit's target_qf1, target_qf2 (the policy has no target)
    log_alpha: jax.Array  # SAC temperature, log scale; rlkit starts it at 0
    log_alpha_prime: jax.Array  # Lagrange multiplier of the penalty, log scale (unused without Lagrange)
    actor_opt: Any
    critic_opt: Any
    alpha_opt: Any
    alpha_prime_opt: Any
    step: jax.Array  # number of updates taken


# ----------------------------------------------------------------- losses


def penalty_action_values(q_fn, dist_fn, obs_tm1, obs_t, key, num_random):
    """Q of the penalty's three action sets, all scored at the transition's state s_tm1.

    q_fn(obs, action) -> [N, ...]; dist_fn(obs) -> (mean, log_std) of the
    policy's pre-tanh Gaussian. The actions drawn from pi(.|s_t) are scored
    with Q(s_tm1, .), not Q(s_t, .): the reference calls
    `_get_tensor_values(obs, new_curr_actions_tensor)` with the current obs.
    Returns q_rand, q_pi_tm1, q_pi_t [N, B, M] and log_pi_tm1, log_pi_t [B, M]
    (log densities without gradient, as the reference detaches them).
    """
    k_rand, k_tm1, k_t = jax.random.split(key, 3)
    repeat = common.repeat_samples  # [B, d] -> [B, m, d], rlkit's obs.unsqueeze(1).repeat(1, m, 1)

    def policy_samples(obs, k):
        # Sampling from the repeated (mean, log_std) equals the reference's repeated
        # forward pass of the policy, for a tenth of the policy's cost.
        mean, log_std = dist_fn(obs)
        return common.tanh_gaussian_sample(repeat(mean, num_random), repeat(log_std, num_random), k)

    a_pi_tm1, log_pi_tm1 = policy_samples(obs_tm1, k_tm1)
    a_pi_t, log_pi_t = policy_samples(obs_t, k_t)
    a_rand = jax.random.uniform(k_rand, a_pi_tm1.shape, minval=-1.0, maxval=1.0)
    # One critic pass over the 3M actions of each state.
    actions = jax.lax.stop_gradient(jnp.concatenate([a_rand, a_pi_tm1, a_pi_t], axis=1))
    q = q_fn(repeat(obs_tm1, 3 * num_random), actions)  # [N, B, 3M]
    q_rand, q_pi_tm1, q_pi_t = jnp.split(q, 3, axis=-1)
    return q_rand, q_pi_tm1, q_pi_t, jax.lax.stop_gradient(log_pi_tm1), jax.lax.stop_gradient(log_pi_t)


def conservative_penalty(q_tm1, q_rand, q_pi_tm1, log_pi_tm1, q_pi_t, log_pi_t, act_dim, min_q_weight, temperature):
    """CQL(H) with importance sampling (min_q_version 3), one value per critic: [N].

        min_q_weight * (temp * mean_s logsumexp_j(cat_j / temp) - mean_(s,a)~D Q(s, a))
        cat = [Q(s, a_unif) - log 0.5^A,  Q(s, a~pi(s')) - log pi(a|s'),  Q(s, a~pi(s)) - log pi(a|s)]

    q_tm1 [N, B] (the data's Q(s, a)); q_* [N, B, M]; log_pi_* [B, M].
    """
    chex.assert_rank(q_tm1, 2)
    chex.assert_equal_shape([q_rand, q_pi_tm1, q_pi_t])
    chex.assert_equal_shape([log_pi_tm1, log_pi_t, q_rand[0]])
    random_density = act_dim * np.log(0.5)  # log of the uniform density on [-1, 1]^A
    cat_q = jnp.concatenate([q_rand - random_density, q_pi_t - log_pi_t, q_pi_tm1 - log_pi_tm1], axis=-1)
    logsumexp = jnp.mean(jax.scipy.special.logsumexp(cat_q / temperature, axis=-1), axis=-1) * temperature
    return min_q_weight * logsumexp - min_q_weight * jnp.mean(q_tm1, axis=-1)


def alpha_prime_of(log_alpha_prime):
    return jnp.clip(jnp.exp(log_alpha_prime), 0.0, ALPHA_PRIME_MAX)


def lagrange_loss(log_alpha_prime, penalty, threshold):
    """The reference's alpha_prime_loss = (-min_qf1_loss - min_qf2_loss) * 0.5, the mean over critics.

    alpha' grows while the penalty (the gap between pushed-down and data Q)
    exceeds the threshold. No gradient reaches the critics through it.
    """
    return -jnp.mean(alpha_prime_of(log_alpha_prime) * (jax.lax.stop_gradient(penalty) - threshold))


def scaled_penalty(penalty, alpha_prime, hparams, with_lagrange: bool):
    """The penalty as the critic loss adds it: alpha' (penalty - threshold) with Lagrange, else itself."""
    if with_lagrange:
        return alpha_prime * (penalty - hparams["lagrange_threshold"])
    return penalty


def max_q_backup_target(dist_fn, critic_target_fn, batch, key, discount, num_samples=10):
    """The max_q_backup option: y = r_t + gamma (1 - d_t) min_i max_{j<10} Q'_i(s_t, a_j), a_j ~ pi(s_t).

    The max over policy actions per target critic, then the min over critics;
    the reference subtracts no entropy here and hard-codes the 10.
    """
    mean_t, log_std_t = dist_fn(batch.next_observations)
    repeat = lambda x: common.repeat_samples(x, num_samples)
    a_t, _ = common.tanh_gaussian_sample(repeat(mean_t), repeat(log_std_t), key)
    q_t = critic_target_fn(repeat(batch.next_observations), a_t)  # [N, B, 10]
    return common.td_target(batch.rewards, discount, batch.terminals, common.clipped_double_q(jnp.max(q_t, axis=-1)))


def cql_critic_loss(q_fn, dist_fn, batch, y, key, hparams, alpha_prime, with_lagrange, act_dim, num_random,
                    temperature):
    """TD loss + the sum over critics of the penalty (`scaled_penalty`); returns the loss and (metrics, penalty [N])."""
    td_loss, q_tm1 = common.critic_loss(q_fn, batch, y)  # q_tm1 [N, B]
    q_rand, q_pi_tm1, q_pi_t, log_pi_tm1, log_pi_t = penalty_action_values(
        q_fn, dist_fn, batch.observations, batch.next_observations, key, num_random
    )
    penalty = conservative_penalty(
        q_tm1, q_rand, q_pi_tm1, log_pi_tm1, q_pi_t, log_pi_t, act_dim, hparams["min_q_weight"], temperature
    )
    aux = {
        "td_loss": td_loss,
        "cql_penalty": jnp.mean(penalty),
        "q_data": jnp.mean(q_tm1),
        "q_random": jnp.mean(q_rand),
        "q_pi_s": jnp.mean(q_pi_tm1),
        "q_pi_next_s": jnp.mean(q_pi_t),
    }
    return td_loss + jnp.sum(scaled_penalty(penalty, alpha_prime, hparams, with_lagrange)), (aux, penalty)


def cql_actor_loss(dist_fn, critic_fn, batch, key, alpha, behaviour_cloning):
    """SAC's E[alpha log pi(a|s) - min_i Q_i(s, a)], or during the warm-up E[alpha log pi(a|s) - log pi(a_data|s)].

    `behaviour_cloning` is a traced bool (the step is below policy_eval_start).
    """
    mean, log_std = dist_fn(batch.observations)
    a_pi, log_pi = common.tanh_gaussian_sample(mean, log_std, key)  # the temperature loss's sample
    # log pi(a_data|s): the BC loss, and on the other steps a diagnostic (no extra network pass).
    # rlkit's TanhGaussianPolicy.log_prob clamps the mean to [-9, 9]; sampling does not.
    log_prob_data = common.tanh_gaussian_log_prob(jnp.clip(mean, MEAN_MIN, MEAN_MAX), log_std, batch.actions)
    loss = jax.lax.cond(
        behaviour_cloning,
        lambda: sac.actor_loss(log_prob_data, log_pi, alpha),
        lambda: sac.actor_loss(common.clipped_double_q(critic_fn(batch.observations, a_pi)), log_pi, alpha),
    )
    return loss, {"entropy": -jnp.mean(log_pi), "data_log_likelihood": jnp.mean(log_prob_data)}


def run_length_warning(agent_config, num_updates: int):
    """A warning when the whole run is the behaviour-cloning warm-up (None otherwise)."""
    start = int(agent_config.policy_eval_start)
    if num_updates <= start:
        return (
            f"CQL trains its policy by behaviour cloning for the first policy_eval_start={start} updates "
            f"(the reference's 40000): this run of {num_updates} updates never uses the critics in the policy; "
            "lower agent.policy_eval_start for a short run"
        )
    return None


# ----------------------------------------------------------------- agent


def make_agent(config, obs_dim: int, act_dim: int) -> common.Agent:
    actor_net = networks.TanhGaussianActor(
        tuple(config.actor_hidden_dims), act_dim, log_std_min=LOG_STD_MIN, log_std_max=LOG_STD_MAX, init_w=1e-3
    )
    critic_net = networks.EnsembleCritic(
        tuple(config.critic_hidden_dims), num_critics=config.num_critics, hidden_init=networks.rlkit_hidden,
        output_init=networks.rlkit_output(3e-3),
    )
    actor_opt = optax.adam(config.actor_lr)
    critic_opt = optax.adam(config.critic_lr)
    alpha_opt = optax.adam(config.actor_lr)  # the reference's alpha_optimizer uses policy_lr
    alpha_prime_opt = optax.adam(config.critic_lr)  # and alpha_prime_optimizer qf_lr
    num_random = int(config.num_random)
    temperature = float(config.temperature)
    target_entropy = -float(act_dim)  # -np.prod(action_space.shape)
    policy_eval_start = int(config.policy_eval_start)
    with_lagrange = bool(config.with_lagrange)
    hparam_names = HPARAMS + (LAGRANGE_HPARAMS if with_lagrange else ())

    def init(key):
        k_actor, k_critic, k_target = jax.random.split(key, 3)
        obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
        actor = actor_net.init(k_actor, obs)
        critic = critic_net.init(k_critic, obs, act)
        zero = jnp.zeros((), jnp.float32)  # ptu.zeros(1): log alpha = log alpha' = 0 at the start
        return CQLState(
            actor=actor,
            critic=critic,
            # cql_mujoco_new.py builds target_qf1/2 as separately initialised
            # networks and never copies the critics into them: so do we (as UWAC).
            critic_target=critic_net.init(k_target, obs, act),
            log_alpha=zero,
            log_alpha_prime=zero,
            actor_opt=actor_opt.init(actor),
            critic_opt=critic_opt.init(critic),
            alpha_opt=alpha_opt.init(zero),
            alpha_prime_opt=alpha_prime_opt.init(zero),
            step=jnp.zeros((), jnp.int32),
        )

    def temperature_step(state, dist_fn, obs, key):
        """alpha's Adam step on a ~ pi(s); returns log alpha, its optimiser state, the loss, alpha."""
        if not config.automatic_entropy_tuning:  # the reference's alpha = 1
            return state.log_alpha, state.alpha_opt, 0.0, 1.0
        _, log_pi = common.tanh_gaussian_sample(*dist_fn(obs), key)
        loss_fn = lambda la: (sac.temperature_loss(la, log_pi, target_entropy), None)
        log_alpha, opt_state, loss, _ = common.apply_gradients(alpha_opt, loss_fn, state.log_alpha, state.alpha_opt)
        return log_alpha, opt_state, loss, jnp.exp(log_alpha)

    def update(state: CQLState, batch, key, hparams):
        k_pi, k_t, k_penalty = jax.random.split(key, 3)
        dist_fn = partial(actor_net.apply, state.actor)
        critic_target_fn = partial(critic_net.apply, state.critic_target)

        # --- temperature first: this step's target and policy loss use the new alpha ---
        log_alpha, alpha_opt_state, alpha_loss, alpha = temperature_step(state, dist_fn, batch.observations, k_pi)

        # --- critic: TD error against the SAC target + the conservative penalty, per critic ---
        if config.max_q_backup:
            y = max_q_backup_target(dist_fn, critic_target_fn, batch, k_t, hparams["discount"])
        else:
            y = sac.soft_target(dist_fn, critic_target_fn, batch, k_t, hparams["discount"], alpha,
                                config.deterministic_backup)
        alpha_prime = alpha_prime_of(state.log_alpha_prime)  # before its update, as the reference's Q loss
        critic_loss_fn = lambda critic: cql_critic_loss(
            partial(critic_net.apply, critic), dist_fn, batch, y, k_penalty, hparams, alpha_prime, with_lagrange,
            act_dim, num_random, temperature,
        )
        critic, critic_opt_state, critic_loss, (critic_aux, penalty) = common.apply_gradients(
            critic_opt, critic_loss_fn, state.critic, state.critic_opt
        )
        metrics = {"critic_loss": critic_loss, "target_mean": jnp.mean(y), **critic_aux}

        # --- Lagrange multiplier: a step on the penalty of the pre-update critics ---
        log_alpha_prime, alpha_prime_opt_state = state.log_alpha_prime, state.alpha_prime_opt
        if with_lagrange:
            log_alpha_prime, alpha_prime_opt_state, alpha_prime_loss, _ = common.apply_gradients(
                alpha_prime_opt, lambda lap: (lagrange_loss(lap, penalty, hparams["lagrange_threshold"]), None),
                state.log_alpha_prime, state.alpha_prime_opt,
            )
            metrics.update(alpha_prime=alpha_prime, alpha_prime_loss=alpha_prime_loss)

        # --- actor: SAC's loss through the pre-update critics (see the module docstring), BC at first ---
        # rlkit increments _current_epoch (per update, despite the name) before the test
        # `_current_epoch < policy_eval_start`, so the BC steps are updates 1 .. start-1.
        behaviour_cloning = state.step + 1 < policy_eval_start
        actor_loss_fn = lambda actor: cql_actor_loss(
            partial(actor_net.apply, actor), partial(critic_net.apply, state.critic), batch, k_pi, alpha,
            behaviour_cloning,
        )
        actor, actor_opt_state, actor_loss, actor_aux = common.apply_gradients(
            actor_opt, actor_loss_fn, state.actor, state.actor_opt
        )
        metrics.update(actor_loss=actor_loss, alpha=alpha, alpha_loss=alpha_loss, **actor_aux)

        # --- targets: polyak every step (rlkit's soft_update_from_to) ---
        state = state.replace(
            actor=actor,
            critic=critic,
            critic_target=common.polyak_update(critic, state.critic_target, hparams["tau"]),
            log_alpha=log_alpha,
            log_alpha_prime=log_alpha_prime,
            actor_opt=actor_opt_state,
            critic_opt=critic_opt_state,
            alpha_opt=alpha_opt_state,
            alpha_prime_opt=alpha_prime_opt_state,
            step=state.step + 1,
        )
        return state, {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}

    def act(state: CQLState, obs, key):
        del key  # rlkit's MakeDeterministic: tanh(mean)
        mean, _ = actor_net.apply(state.actor, obs)
        return jnp.tanh(mean)

    def q_values(state: CQLState, obs, action):
        return critic_net.apply(state.critic, obs, action)

    return common.Agent(init, update, act, q_values, common.hparams_from_config(config, hparam_names))
