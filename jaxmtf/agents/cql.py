"""CQL, continuous actions (Kumar et al. 2020), following aviralkumar2907/CQL (rlkit `cql.py`).

SAC with a conservative penalty on each critic i:

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
"""
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmtf import networks
from jaxmtf.agents import common

HPARAMS = ("discount", "tau", "min_q_weight")
LAGRANGE_HPARAMS = ("lagrange_threshold",)  # sweepable only when with_lagrange is on

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


def temperature_loss(log_alpha, log_pi, target_entropy):
    """-E[log alpha * (log pi + target_entropy)]: alpha grows when the entropy is below target."""
    return -jnp.mean(log_alpha * jax.lax.stop_gradient(log_pi + target_entropy))


def penalty_action_values(q_fn, dist_fn, obs, next_obs, key, num_random):
    """Q of the penalty's three action sets, all scored at the CURRENT state s.

    q_fn(obs, action) -> [N, ...]; dist_fn(obs) -> (mean, log_std) of the
    policy's pre-tanh Gaussian. The actions drawn from pi(.|s') are scored
    with Q(s, .), not Q(s', .): the reference calls
    `_get_tensor_values(obs, new_curr_actions_tensor)` with the current obs.
    Returns q_rand, q_pi_t, q_pi_tp1 [N, B, M] and log_pi_t, log_pi_tp1 [B, M]
    (log densities without gradient, as the reference detaches them).
    """
    k_rand, k_t, k_tp1 = jax.random.split(key, 3)

    repeat = common.repeat_samples  # [B, d] -> [B, m, d], rlkit's obs.unsqueeze(1).repeat(1, m, 1)

    # Sampling from the repeated (mean, log_std) equals the reference's repeated
    # forward pass of the policy, for a tenth of the policy's cost.
    mean_t, log_std_t = dist_fn(obs)
    mean_tp1, log_std_tp1 = dist_fn(next_obs)
    a_pi_t, log_pi_t = common.tanh_gaussian_sample(repeat(mean_t, num_random), repeat(log_std_t, num_random), k_t)
    a_pi_tp1, log_pi_tp1 = common.tanh_gaussian_sample(
        repeat(mean_tp1, num_random), repeat(log_std_tp1, num_random), k_tp1
    )
    a_rand = jax.random.uniform(k_rand, a_pi_t.shape, minval=-1.0, maxval=1.0)
    # One critic pass over the 3M actions of each state.
    actions = jax.lax.stop_gradient(jnp.concatenate([a_rand, a_pi_t, a_pi_tp1], axis=1))
    q = q_fn(repeat(obs, 3 * num_random), actions)  # [N, B, 3M]
    q_rand, q_pi_t, q_pi_tp1 = jnp.split(q, 3, axis=-1)
    return q_rand, q_pi_t, q_pi_tp1, jax.lax.stop_gradient(log_pi_t), jax.lax.stop_gradient(log_pi_tp1)


def conservative_penalty(q_data, q_rand, q_pi_t, log_pi_t, q_pi_tp1, log_pi_tp1, act_dim, min_q_weight, temperature):
    """CQL(H) with importance sampling (min_q_version 3), one value per critic: [N].

        min_q_weight * (temp * mean_s logsumexp_j(cat_j / temp) - mean_(s,a)~D Q(s, a))
        cat = [Q(s, a_unif) - log 0.5^A,  Q(s, a~pi(s')) - log pi(a|s'),  Q(s, a~pi(s)) - log pi(a|s)]

    q_data [N, B]; q_* [N, B, M]; log_pi_* [B, M].
    """
    random_density = act_dim * np.log(0.5)  # log of the uniform density on [-1, 1]^A
    cat_q = jnp.concatenate([q_rand - random_density, q_pi_tp1 - log_pi_tp1, q_pi_t - log_pi_t], axis=-1)
    logsumexp = jnp.mean(jax.scipy.special.logsumexp(cat_q / temperature, axis=-1), axis=-1) * temperature
    return min_q_weight * logsumexp - min_q_weight * jnp.mean(q_data, axis=-1)


def alpha_prime_of(log_alpha_prime):
    return jnp.clip(jnp.exp(log_alpha_prime), 0.0, ALPHA_PRIME_MAX)


def lagrange_loss(log_alpha_prime, penalty, threshold):
    """The reference's alpha_prime_loss = (-min_qf1_loss - min_qf2_loss) * 0.5, the mean over critics.

    alpha' grows while the penalty (the gap between pushed-down and data Q)
    exceeds the threshold. No gradient reaches the critics through it.
    """
    return -jnp.mean(alpha_prime_of(log_alpha_prime) * (jax.lax.stop_gradient(penalty) - threshold))


def rlkit_init(params, key, num_hidden, init_w):
    """Re-draws Dense parameters as rlkit's Mlp initialises them.

    Hidden layers: weight U(+-1/sqrt(size[0])) by ptu.fanin_init, where size[0]
    of a torch weight [out, in] is the number of OUTPUT features (rlkit's
    quirk, kept), bias 0.1. Output layers (Dense_i, i >= num_hidden):
    weight and bias U(+-init_w), 3e-3 for the Q-functions, 1e-3 for the
    policy's heads. Done here on the flax tree because networks.MLP uses the
    torch nn.Linear default, which the rlkit reference does not.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(key, len(leaves))
    new_leaves = []
    for (path, leaf), k in zip(leaves, keys):
        names = [str(getattr(p, "key", p)) for p in path]
        layer = int(next(n for n in reversed(names) if n.startswith("Dense_")).split("_")[1])
        if layer >= num_hidden:
            bound = init_w
        elif names[-1] == "bias":
            new_leaves.append(jnp.full_like(leaf, 0.1))
            continue
        else:
            bound = 1.0 / np.sqrt(leaf.shape[-1])
        new_leaves.append(jax.random.uniform(k, leaf.shape, leaf.dtype, -bound, bound))
    return jax.tree_util.tree_unflatten(treedef, new_leaves)


# ----------------------------------------------------------------- agent


def make_agent(config, obs_dim: int, act_dim: int) -> common.Agent:
    actor_net = networks.TanhGaussianActor(
        tuple(config.actor_hidden_dims), act_dim, log_std_min=LOG_STD_MIN, log_std_max=LOG_STD_MAX, init_w=1e-3
    )
    critic_net = networks.EnsembleCritic(tuple(config.critic_hidden_dims), config.num_critics)
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
        k_actor, k_critic, k_target, k_actor_init, k_critic_init, k_target_init = jax.random.split(key, 6)
        obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
        actor = rlkit_init(actor_net.init(k_actor, obs), k_actor_init, len(config.actor_hidden_dims), 1e-3)
        critic = rlkit_init(critic_net.init(k_critic, obs, act), k_critic_init, len(config.critic_hidden_dims), 3e-3)
        # cql_mujoco_new.py builds target_qf1/2 as separately initialised
        # networks and never copies the critics into them: so do we (as UWAC).
        critic_target = rlkit_init(critic_net.init(k_target, obs, act), k_target_init, len(config.critic_hidden_dims), 3e-3)
        zero = jnp.zeros((), jnp.float32)  # ptu.zeros(1): log alpha = log alpha' = 0 at the start
        return CQLState(
            actor=actor,
            critic=critic,
            critic_target=critic_target,
            log_alpha=zero,
            log_alpha_prime=zero,
            actor_opt=actor_opt.init(actor),
            critic_opt=critic_opt.init(critic),
            alpha_opt=alpha_opt.init(zero),
            alpha_prime_opt=alpha_prime_opt.init(zero),
            step=jnp.zeros((), jnp.int32),
        )

    def update(state: CQLState, batch, key, hparams):
        k_pi, k_tp1, k_penalty = jax.random.split(key, 3)
        obs, next_obs = batch.observations, batch.next_observations
        dist_fn = lambda o: actor_net.apply(state.actor, o)

        # --- temperature: alpha loss on a ~ pi(s), then alpha = exp(new log alpha) ---
        mean_t, log_std_t = dist_fn(obs)
        _, log_pi = common.tanh_gaussian_sample(mean_t, log_std_t, k_pi)
        if config.automatic_entropy_tuning:
            log_alpha, alpha_opt_state, alpha_loss, _ = common.apply_gradients(
                alpha_opt, lambda la: (temperature_loss(la, log_pi, target_entropy), None), state.log_alpha,
                state.alpha_opt,
            )
            alpha = jnp.exp(log_alpha)
        else:  # the reference's alpha = 1
            log_alpha, alpha_opt_state, alpha_loss, alpha = state.log_alpha, state.alpha_opt, 0.0, 1.0

        # --- targets: y = r + gamma (1 - d) min_i Q_i'(s', a'), a' ~ pi(s') ---
        mean_tp1, log_std_tp1 = dist_fn(next_obs)
        if config.max_q_backup:
            # max over 10 policy actions at s' per target critic, then the min over critics;
            # the reference subtracts no entropy here and hard-codes the 10.
            a_tp1, _ = common.tanh_gaussian_sample(
                common.repeat_samples(mean_tp1, 10), common.repeat_samples(log_std_tp1, 10), k_tp1
            )
            q_tp1 = critic_net.apply(state.critic_target, common.repeat_samples(next_obs, 10), a_tp1)
            v_tp1 = common.clipped_double_q(jnp.max(q_tp1, axis=-1))
        else:
            a_tp1, log_pi_tp1 = common.tanh_gaussian_sample(mean_tp1, log_std_tp1, k_tp1)
            v_tp1 = common.clipped_double_q(critic_net.apply(state.critic_target, next_obs, a_tp1))
            if not config.deterministic_backup:  # soft backup: the entropy bonus of SAC
                v_tp1 = v_tp1 - alpha * log_pi_tp1
        y = common.td_target(batch.rewards, hparams["discount"], batch.terminals, v_tp1)

        # --- critic: TD error + the conservative penalty, per critic ---
        alpha_prime = alpha_prime_of(state.log_alpha_prime)  # before its update, as the reference's Q loss

        def critic_loss_fn(critic):
            q_fn = lambda o, a: critic_net.apply(critic, o, a)
            q_tm1 = q_fn(obs, batch.actions)  # [N, B]
            td_loss = common.ensemble_mse(q_tm1, y)
            q_rand, q_pi_t, q_pi_tp1, log_pi_t, log_pi_tp1 = penalty_action_values(
                q_fn, dist_fn, obs, next_obs, k_penalty, num_random
            )
            penalty = conservative_penalty(
                q_tm1, q_rand, q_pi_t, log_pi_t, q_pi_tp1, log_pi_tp1, act_dim, hparams["min_q_weight"], temperature
            )  # [N]
            if with_lagrange:
                penalty_loss = alpha_prime * (penalty - hparams["lagrange_threshold"])
            else:
                penalty_loss = penalty
            aux = {
                "td_loss": td_loss,
                "cql_penalty": jnp.mean(penalty),
                "q_data": jnp.mean(q_tm1),
                "q_random": jnp.mean(q_rand),
                "q_pi_s": jnp.mean(q_pi_t),
                "q_pi_next_s": jnp.mean(q_pi_tp1),
            }
            return td_loss + jnp.sum(penalty_loss), (aux, penalty)

        critic, critic_opt_state, critic_loss, (critic_aux, penalty) = common.apply_gradients(
            critic_opt, critic_loss_fn, state.critic, state.critic_opt
        )
        metrics = {"critic_loss": critic_loss, "target_mean": jnp.mean(y), **critic_aux}

        if with_lagrange:
            # The reference steps alpha' on the penalty of the pre-update critics, before their step.
            log_alpha_prime, alpha_prime_opt_state, alpha_prime_loss, _ = common.apply_gradients(
                alpha_prime_opt,
                lambda lap: (lagrange_loss(lap, penalty, hparams["lagrange_threshold"]), None),
                state.log_alpha_prime,
                state.alpha_prime_opt,
            )
            metrics.update(alpha_prime=alpha_prime, alpha_prime_loss=alpha_prime_loss)
        else:
            log_alpha_prime, alpha_prime_opt_state = state.log_alpha_prime, state.alpha_prime_opt

        # --- actor: E[alpha log pi(a|s) - min_i Q_i(s, a)], or behaviour cloning at first ---
        # (through the critics of before this step's critic update: see the module docstring)
        def actor_loss_fn(actor):
            mean, log_std = actor_net.apply(actor, obs)
            a_pi, log_pi = common.tanh_gaussian_sample(mean, log_std, k_pi)  # the alpha loss's sample
            # log pi(a_data|s): the BC loss, and on the other steps a diagnostic (no extra network pass).
            # rlkit's TanhGaussianPolicy.log_prob clamps the mean to [-9, 9]; sampling does not.
            log_prob_data = common.tanh_gaussian_log_prob(jnp.clip(mean, MEAN_MIN, MEAN_MAX), log_std, batch.actions)

            def sac_loss():
                q_pi = common.clipped_double_q(critic_net.apply(state.critic, obs, a_pi))  # pre-update critics
                return jnp.mean(alpha * log_pi - q_pi)

            def bc_loss():
                return jnp.mean(alpha * log_pi - log_prob_data)

            # rlkit increments _current_epoch (per update, despite the name) before the test
            # `_current_epoch < policy_eval_start`, so the BC steps are updates 1 .. start-1.
            loss = jax.lax.cond(state.step + 1 < policy_eval_start, bc_loss, sac_loss)
            return loss, {"entropy": -jnp.mean(log_pi), "data_log_likelihood": jnp.mean(log_prob_data)}

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
        metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
        return state, metrics

    def act(state: CQLState, obs, key):
        del key  # rlkit's MakeDeterministic: tanh(mean)
        mean, _ = actor_net.apply(state.actor, obs)
        return jnp.tanh(mean)

    def q_values(state: CQLState, obs, action):
        return critic_net.apply(state.critic, obs, action)

    return common.Agent(init, update, act, q_values, common.hparams_from_config(config, hparam_names))
