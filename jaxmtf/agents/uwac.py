"""UWAC (Wu et al. 2021, "Uncertainty Weighted Actor-Critic"), following apple/ml-uwac.

The reference is `rlkit/torch/sac/uwac_dropout.py` (UWAC_DropoutTrainer) run by
`examples/UWAC_hdf5_d4rl.py`, whose command-line defaults are the defaults
here. It is BEAR (Kumar et al. 2019) with MC-dropout critics whose variance
down-weights the Bellman residual:

    VAE      recon + 0.5 KL, a generative model of the behaviour policy
    target   y  = r + gamma (1 - d) max_{j<10} [0.75 min_i + 0.25 max_i] Qbar'_i(s', a'_j),
             a'_j ~ pi(s'),  Qbar' = mean of 100 dropout passes of the target critic
             Var = max_{j<10} sum_i Var'_i(s', a'_j)   (the 100 passes' sample variance)
             w   = clamp(exp(-beta Var), 0, 1)          (use_exp_weight; else beta / Var)
    critic   sum_i mean ((Q_i(s, a) - y) * w)^2,   Q_i one dropout pass
    actor    mean[-min_i Qbar_i(s, a_pi) * w_pi + alpha (MMD(a_beta, a_pi) - eps)],
             the Q term only after `warmup` updates; w_pi = the same weight of
             sum_i Var_i(s, a_pi) with var_Pi, else 1
    alpha    log alpha ascends alpha (MMD - eps), then is clamped to [-5, 10]

The MMD compares `num_samples_mmd_match` pre-tanh actions of the policy and
of the VAE's decoder per state, with the reference's kernels
exp(-||x - y||^2 / (2 sigma)) (gaussian) or exp(-||x - y||_1 / (2 sigma))
(laplacian): note 2 sigma, not 2 sigma^2, as the reference writes it.

Deviations from the reference (each also commented where it happens):
- no spectral norm on the critics (the example script's --SN default is
  True): networks.EnsembleCritic has none, and PyTorch's power-iteration
  vector is mutable per-forward state that the vmapped ensemble and the
  polyak targets would have to thread through every call;
- network init: PyTorch/networks.py defaults instead of rlkit's fanin_init
  (which uses fan_out by a size[0] quirk) with biases 0.1 and 3e-3 heads;
- the actor's gradient uses the critics before this update's critic step
  (rlkit's torch 0.4.1 backprops the policy loss after `qf.step()` through
  weights updated in place, mixing old activations and new weights);
- `q_values` (no key in the interface) is a dropout-off pass, not the mean
  of 100 stochastic passes.
"""
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxmtf import networks
from jaxmtf.agents import common

HPARAMS = ("discount", "tau", "beta", "target_mmd_thresh")

# The reference's soft clipped double Q (BCQ's): 0.75 min + 0.25 max of the twins.
TARGET_LMBDA = 0.75
# rlkit's TanhGaussianPolicy bounds log std to [LOG_SIG_MIN, LOG_SIG_MAX].
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
# BEAR/UWAC clamp log alpha in place after every multiplier step.
LOG_ALPHA_MIN, LOG_ALPHA_MAX = -5.0, 10.0


@flax.struct.dataclass
class UWACState:
    actor: Any
    critic: Any
    critic_target: Any  # the reference keeps no target policy (the target uses pi itself)
    vae: Any
    log_alpha: jax.Array  # log of the MMD constraint's Lagrange multiplier, scalar
    actor_opt: Any
    critic_opt: Any
    vae_opt: Any
    alpha_opt: Any
    step: jax.Array  # number of updates taken (the reference's _n_train_steps_total)


# ----------------------------------------------------------------- losses, one per function


def mmd_gaussian(x, y, sigma):
    """MMD between sample sets x [B, N, d] and y [B, M, d] per row, Gaussian kernel exp(-|.|^2 / (2 sigma))."""
    k = lambda a, b: jnp.mean(jnp.exp(-jnp.sum((a[:, :, None] - b[:, None]) ** 2, -1) / (2.0 * sigma)), axis=(1, 2))
    return jnp.sqrt(k(x, x) + k(y, y) - 2.0 * k(x, y) + 1e-6)


def mmd_laplacian(x, y, sigma):
    """MMD between sample sets x [B, N, d] and y [B, M, d] per row, Laplacian kernel exp(-|.|_1 / (2 sigma))."""
    k = lambda a, b: jnp.mean(jnp.exp(-jnp.sum(jnp.abs(a[:, :, None] - b[:, None]), -1) / (2.0 * sigma)), axis=(1, 2))
    return jnp.sqrt(k(x, x) + k(y, y) - 2.0 * k(x, y) + 1e-6)


MMD_KERNELS = {"gaussian": mmd_gaussian, "laplacian": mmd_laplacian}


def uncertainty_weight(var, beta, clip_bottom=0.0, clip_top=1.0, use_exp_weight=True):
    """The reference's _get_weight: clamp(exp(-beta Var)) or clamp(beta / Var), no gradient."""
    weight = jnp.exp(-beta * var) if use_exp_weight else beta / var
    return jax.lax.stop_gradient(jnp.clip(weight, clip_bottom, clip_top))


def uwac_target(r_t, discount, terminal_t, q_tp1, var_tp1, num_actions):
    """y and Var(y) from the MC-dropout moments of the target critics at `num_actions` policy actions.

    q_tp1, var_tp1: [num_critics, B * num_actions], rows grouped per state
    (state b's actions at b * num_actions ... (b + 1) * num_actions - 1).
    The variance is the max over the actions of the twins' summed variance,
    taken independently of the action that maximises the value, as in the reference.
    """
    v_tp1 = common.soft_clipped_max_over_samples(q_tp1.reshape(q_tp1.shape[0], -1, num_actions), TARGET_LMBDA)
    var_y = jnp.sum(var_tp1, axis=0).reshape(-1, num_actions).max(axis=1)
    return common.td_target(r_t, discount, terminal_t, v_tp1), jax.lax.stop_gradient(var_y)


def weighted_critic_loss(q_t, y, weight):
    """sum_i mean ((Q_i - y) * w)^2: the weight multiplies the residual inside the square."""
    return jnp.sum(jnp.mean(((q_t - y[None]) * weight[None]) ** 2, axis=-1))


def q_penalty_loss(q_t, var_y, q_penalty, use_exp_penalty):
    """The reference's optional q_penalty * mean(relu(Q_i) * Var (or exp Var)), summed over critics."""
    scale = jnp.exp(var_y) if use_exp_penalty else var_y
    return q_penalty * jnp.sum(jnp.mean(jax.nn.relu(q_t) * scale[None], axis=-1))


def lagrange_step(optimizer, log_alpha, opt_state, mmd, target_mmd_thresh):
    """One step of the multiplier: descend -alpha * mean(MMD - eps) in log alpha, then clamp to [-5, 10].

    The reference steps on -policy_loss; only its alpha * (MMD - eps) term
    depends on log alpha, so this is the same gradient.
    """
    gap = jax.lax.stop_gradient(jnp.mean(mmd - target_mmd_thresh))
    loss_fn = lambda log_alpha: (-jnp.exp(log_alpha) * gap, None)
    log_alpha, opt_state, loss, _ = common.apply_gradients(optimizer, loss_fn, log_alpha, opt_state)
    return jnp.clip(log_alpha, LOG_ALPHA_MIN, LOG_ALPHA_MAX), opt_state, loss


# ----------------------------------------------------------------- agent


def make_agent(config, obs_dim: int, act_dim: int) -> common.Agent:
    actor_net = networks.TanhGaussianActor(
        tuple(config.actor_hidden_dims), act_dim, log_std_min=LOG_STD_MIN, log_std_max=LOG_STD_MAX
    )
    # Deviation: the reference's FlattenDropout_Mlp has spectral norm (--SN True); see the module docstring.
    critic_net = networks.EnsembleCritic(tuple(config.critic_hidden_dims), 2, dropout_rate=config.dropout_rate)
    # Latent dim 2 * act_dim as in the example script's VAEPolicy.
    vae_net = networks.VAE(act_dim, 2 * act_dim, tuple(config.vae_hidden_dims))
    # PyTorch Adam defaults (betas 0.9, 0.999, eps 1e-8) are optax's defaults.
    actor_opt = optax.adam(config.actor_lr)
    critic_opt = optax.adam(config.critic_lr)  # one Adam over both twins = the reference's two (disjoint params)
    vae_opt = optax.adam(config.vae_lr)
    alpha_opt = optax.adam(config.alpha_lr)
    mmd_fn = MMD_KERNELS[config.kernel]
    num_passes = int(config.num_dropout_samples)
    pass_batch = min(int(config.get("dropout_pass_batch", 10)), num_passes)
    if num_passes < 2:  # the variance over passes (ddof=1, torch.var) needs two
        raise ValueError(f"config field 'agent.num_dropout_samples': must be >= 2, got {num_passes}")
    num_target_actions = int(config.num_target_actions)
    num_mmd = int(config.num_samples_mmd_match)
    num_eval_actions = int(config.num_eval_actions)
    warmup = int(config.warmup)
    weight_fn = lambda var, beta: uncertainty_weight(
        var, beta, config.clip_bottom, config.clip_top, config.use_exp_weight
    )

    def dropout_pass(critic, obs, action, key):
        """One pass of the twin critics with fresh dropout masks: [2, N].

        The masks come from threefry's original (non-partitionable) bit layout:
        the same Bernoulli(1 - p) masks in law, drawn twice as fast on a CPU,
        where they bound the update (131M draws per update at the defaults:
        1.05 s vs 0.54 s, benchmarks/README.md); vmapped seeds still equal
        separate runs.
        """
        with jax.threefry_partitionable(False):
            return critic_net.apply(critic, obs, action, deterministic=False, rngs={"dropout": key})

    def mc_dropout(critic, obs, action, key):
        """Mean and (unbiased, as torch.var) variance over `num_passes` dropout passes: [2, N] each.

        The reference's FlattenDropout_Mlp.multiple: every pass draws fresh masks.
        """
        # Passes run `dropout_pass_batch` at a time (lax.map): one batched pass
        # of all 100 at once needs ~3.5 GB of activations per seed at the
        # default sizes, which 8 vmapped seeds cannot hold on a 24 GB machine.
        one_pass = functools.partial(dropout_pass, critic, obs, action)
        q = jax.lax.map(one_pass, jax.random.split(key, num_passes), batch_size=pass_batch)  # [passes, 2, N]
        return jnp.mean(q, axis=0), jnp.var(q, axis=0, ddof=1)

    def sample_policy(actor, obs, key, num):
        """num reparameterised tanh-Gaussian actions per state: actions and pre-tanh values [B, num, A]."""
        mean, log_std = actor_net.apply(actor, obs)
        u = mean[:, None] + jnp.exp(log_std)[:, None] * jax.random.normal(key, (obs.shape[0], num, act_dim))
        return jnp.tanh(u), u

    def init(key):
        k_actor, k_critic, k_target, k_vae, k_sample = jax.random.split(key, 5)
        obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
        actor = actor_net.init(k_actor, obs)
        critic = critic_net.init(k_critic, obs, act)
        vae = vae_net.init(k_vae, obs, act, k_sample)
        log_alpha = jnp.zeros((), jnp.float32)  # ptu.zeros(1): alpha starts at 1
        return UWACState(
            actor=actor,
            critic=critic,
            # The example script builds target_qf1/2 as separately initialised
            # networks and never copies the critics into them: so do we.
            critic_target=critic_net.init(k_target, obs, act),
            vae=vae,
            log_alpha=log_alpha,
            actor_opt=actor_opt.init(actor),
            critic_opt=critic_opt.init(critic),
            vae_opt=vae_opt.init(vae),
            alpha_opt=alpha_opt.init(log_alpha),
            step=jnp.zeros((), jnp.int32),
        )

    def update(state: UWACState, batch, key, hparams):
        k_vae, k_pi_tp1, k_drop_tp1, k_drop_t, k_z, k_pi, k_drop_pi = jax.random.split(key, 7)
        obs, a_t = batch.observations, batch.actions
        batch_size = obs.shape[0]

        # --- behaviour model: VAE, recon + 0.5 KL ---
        def vae_loss_fn(vae):
            recon, mean, std = vae_net.apply(vae, obs, a_t, k_vae)
            return common.vae_loss(recon, a_t, mean, std)

        vae, vae_opt_state, vae_loss, vae_aux = common.apply_gradients(vae_opt, vae_loss_fn, state.vae, state.vae_opt)

        # --- targets: 10 actions of the current policy at s', MC-dropout moments of the target critics ---
        s_tp1 = jnp.repeat(batch.next_observations, num_target_actions, axis=0)  # [B * 10, obs_dim]
        a_tp1 = sample_policy(state.actor, s_tp1, k_pi_tp1, 1)[0][:, 0]
        q_tp1, var_tp1 = mc_dropout(state.critic_target, s_tp1, a_tp1, k_drop_tp1)
        y, var_y = uwac_target(batch.rewards, hparams["discount"], batch.terminals, q_tp1, var_tp1, num_target_actions)
        weight = weight_fn(var_y, hparams["beta"])

        # --- critic: sum_i mean ((Q_i(s, a) - y) w)^2, Q_i from one dropout pass (qf.sample) ---
        def critic_loss_fn(critic):
            q_t = dropout_pass(critic, obs, a_t, k_drop_t)
            loss = weighted_critic_loss(q_t, y, weight)
            if config.q_penalty:  # static: the reference's default 0 adds nothing
                loss = loss + q_penalty_loss(q_t, var_y, config.q_penalty, config.use_exp_penalty)
            return loss, q_t

        critic, critic_opt_state, critic_loss, q_t = common.apply_gradients(
            critic_opt, critic_loss_fn, state.critic, state.critic_opt
        )

        # --- actor: -min_i Qbar_i(s, a_pi) w_pi (after warmup) + alpha (MMD - eps) ---
        # The VAE samples come from the VAE updated above, as in the reference
        # (its decode_multiple runs after vae_optimizer.step()); MMD on pre-tanh actions.
        z = jnp.clip(jax.random.normal(k_z, (batch_size, num_mmd, 2 * act_dim)), -0.5, 0.5)
        raw_beta = vae_net.apply(vae, jnp.concatenate([jnp.repeat(obs[:, None], num_mmd, 1), z], -1),
                                 method=lambda m, x: m.decoder(x))
        raw_beta = jax.lax.stop_gradient(raw_beta)
        alpha = jnp.exp(state.log_alpha)
        rl_on = state.step >= warmup  # the reference's `_n_train_steps_total >= 40000`

        def actor_loss_fn(actor):
            a_pi, u_pi = sample_policy(actor, obs, k_pi, num_mmd)
            mmd = mmd_fn(raw_beta, u_pi, config.mmd_sigma)
            # Deviation (see docstring): the critics before this update's critic step.
            q_pi, var_pi = mc_dropout(state.critic, obs, a_pi[:, 0], k_drop_pi)
            q_pi = jnp.min(q_pi, axis=0)  # policy_update_style '0'
            w_pi = weight_fn(jnp.sum(var_pi, axis=0), hparams["beta"]) if config.var_pi else 1.0
            rl_term = jnp.where(rl_on, -q_pi * w_pi, 0.0)
            loss = jnp.mean(rl_term + alpha * (mmd - hparams["target_mmd_thresh"]))
            return loss, {"mmd": mmd, "q_pi": jnp.mean(q_pi), "weight_pi": jnp.mean(w_pi)}

        actor, actor_opt_state, actor_loss, actor_aux = common.apply_gradients(
            actor_opt, actor_loss_fn, state.actor, state.actor_opt
        )

        # --- Lagrange multiplier of the MMD constraint ---
        log_alpha, alpha_opt_state, alpha_loss = lagrange_step(
            alpha_opt, state.log_alpha, state.alpha_opt, actor_aux["mmd"], hparams["target_mmd_thresh"]
        )

        # --- targets: polyak averaging of the critics, every update (target_update_period 1) ---
        critic_target = common.polyak_update(critic, state.critic_target, hparams["tau"])

        state = state.replace(
            actor=actor,
            critic=critic,
            critic_target=critic_target,
            vae=vae,
            log_alpha=log_alpha,
            actor_opt=actor_opt_state,
            critic_opt=critic_opt_state,
            vae_opt=vae_opt_state,
            alpha_opt=alpha_opt_state,
            step=state.step + 1,
        )
        metrics = {
            "critic_loss": critic_loss,
            "actor_loss": actor_loss,
            "alpha_loss": alpha_loss,
            "vae_loss": vae_loss,
            **vae_aux,
            "alpha": jnp.exp(log_alpha),
            "mmd": jnp.mean(actor_aux["mmd"]),
            "q_pi": actor_aux["q_pi"],
            "weight_pi": actor_aux["weight_pi"],
            "q_mean": jnp.mean(q_t),
            "target_mean": jnp.mean(y),
            "target_var_mean": jnp.mean(var_y),
            "weight_mean": jnp.mean(weight),
        }
        return state, metrics

    def act(state: UWACState, obs, key):
        """The reference's evaluation policy_fn: the argmax of Qbar_1 over `num_eval_actions` policy samples.

        Stochastic in the key (policy samples and dropout masks), as the
        reference; num_eval_actions 0 gives tanh(mean) instead.
        """
        if num_eval_actions == 0:
            return jnp.tanh(actor_net.apply(state.actor, obs)[0])
        k_pi, k_drop = jax.random.split(key)
        actions = sample_policy(state.actor, obs, k_pi, num_eval_actions)[0]  # [B, K, A]
        flat = lambda x: x.reshape((-1, x.shape[-1]))
        q1 = mc_dropout(state.critic, flat(jnp.repeat(obs[:, None], num_eval_actions, 1)), flat(actions), k_drop)[0][0]
        best = jnp.argmax(q1.reshape(obs.shape[0], num_eval_actions), axis=1)
        return jnp.take_along_axis(actions, best[:, None, None], axis=1)[:, 0]

    def q_values(state: UWACState, obs, action):
        # Deviation: the interface has no key, so dropout is off (the usual
        # weight-scaling approximation of the reference's 100-pass mean).
        return critic_net.apply(state.critic, obs, action)

    return common.Agent(init, update, act, q_values, common.hparams_from_config(config, HPARAMS))
