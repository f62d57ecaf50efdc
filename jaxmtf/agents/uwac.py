"""UWAC (Wu et al. 2021, "Uncertainty Weighted Actor-Critic"), following apple/ml-uwac.

The reference is `rlkit/torch/sac/uwac_dropout.py` (UWAC_DropoutTrainer) run by
`examples/UWAC_hdf5_d4rl.py`, whose command-line defaults are the defaults
here. It is BEAR (Kumar et al. 2019) with MC-dropout critics whose variance
down-weights the Bellman residual. With a transition (s_tm1, a_tm1, r_t,
d_t, s_t) (rlax's indices, see common.py):

    VAE      recon + 0.5 KL, a generative model of the behaviour policy
    target   y_t   = r_t + gamma (1 - d_t) max_{j<10} [0.75 min_i + 0.25 max_i] Qbar'_i(s_t, a_t^j),
             a_t^j ~ pi(s_t),  Qbar'_i = mean of 100 dropout passes of target critic i
             Var_t = max_{j<10} sum_i Var'_i(s_t, a_t^j)   (the 100 passes' sample variance)
             w_t   = clamp(exp(-beta Var_t), 0, 1)          (use_exp_weight; else beta / Var_t)
    critic   sum_i mean ((Q_i(s_tm1, a_tm1) - y_t) * w_t)^2,   Q_i one dropout pass
    actor    mean[-min_i Qbar_i(s_tm1, a_pi_tm1) * w_pi + alpha (MMD(a_beta, a_pi) - eps)],
             the Q term only after `warmup` updates; w_pi = the same weight of
             sum_i Var_i(s_tm1, a_pi_tm1) with var_Pi, else 1
    alpha    log alpha ascends alpha (MMD - eps), then is clamped to [-5, 10]

The MMD compares `num_samples_mmd_match` pre-tanh actions of the policy and
of the VAE's decoder per state, with the reference's kernels
exp(-||x - y||^2 / (2 sigma)) (gaussian) or exp(-||x - y||_1 / (2 sigma))
(laplacian): note 2 sigma, not 2 sigma^2, as the reference writes it.

Networks as the reference builds them: the policy is rlkit's
TanhGaussianPolicy, the VAE BEAR's VAEPolicy (torch nn.Linear layers), the
critics and their targets FlattenDropout_Mlp (rlkit's fanin_init, biases
0.1, last layer U(+-3e-3); dropout 0.1 after each hidden ReLU, on in every
pass; with --SN, spectral norm on every layer). Torch's spectral norm does
one power iteration per forward in train mode, so per update each critic
gets two (its qf.sample pass for its loss, its qf.multiple pass for the
actor's Q, both on the pre-step weights) and each target one (its
qf.multiple pass for y); the targets' polyak update averages parameters
only, each keeps its own u. Here the iterated u and sigma live in the
critics' "batch_stats" collection, threaded through those passes in that
order; the optimiser and polyak see only "params".

Deviations from the reference (each also commented where it happens):
- the actor's gradient uses the critics before this update's critic step
  (rlkit's torch 0.4.1 backprops the policy loss after `qf.step()` through
  weights updated in place, mixing old activations and new weights);
- `q_values` (no key in the interface) is a dropout-off pass, not the mean
  of 100 stochastic passes;
- evaluation passes (`act`, `q_values`): torch's eval mode reuses the stored
  spectral-norm u and v, flax's SpectralNorm always does one power
  iteration from the stored u (without storing it): one more power step of
  an estimate that training has already converged.
"""
import functools
from typing import Any, Optional

import chex
import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxmtf import schema
from jaxmtf.agents import common, networks

HPARAMS = ("discount", "tau", "beta", "target_mmd_thresh")

# The reference's soft clipped double Q (BCQ's): 0.75 min + 0.25 max of the twins.
TARGET_LMBDA = 0.75
# rlkit's TanhGaussianPolicy bounds log std to [LOG_SIG_MIN, LOG_SIG_MAX].
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
# BEAR/UWAC clamp log alpha in place after every multiplier step.
LOG_ALPHA_MIN, LOG_ALPHA_MAX = -5.0, 10.0
# rlkit Mlp's init_w: the critics' last layer starts at U(+-3e-3), weight and bias.
CRITIC_INIT_W = 3e-3


@flax.struct.dataclass
class UWACState:
    actor: Any
    critic: Any  # the twins' variables: "params", and "batch_stats" (spectral norm's u, sigma)
    critic_target: Any  # the same for target_qf1/2: polyak params, their own u (the policy has no target)
    vae: Any
    log_alpha: jax.Array  # log of the MMD constraint's Lagrange multiplier, scalar
    actor_opt: Any
    critic_opt: Any  # over critic["params"] only
    vae_opt: Any
    alpha_opt: Any
    step: jax.Array  # number of updates taken (the reference's _n_train_steps_total)


# ----------------------------------------------------------------- MMD kernels


def mmd_gaussian(x, y, sigma):
    """MMD(x, y) = sqrt(k(x, x) + k(y, y) - 2 k(x, y) + 1e-6) per row, k = mean exp(-|.|^2 / (2 sigma)).

    x [B, N, d] and y [B, M, d] sample sets.
    """
    chex.assert_rank([x, y], 3)
    k = lambda a, b: jnp.mean(jnp.exp(-jnp.sum((a[:, :, None] - b[:, None]) ** 2, -1) / (2.0 * sigma)), axis=(1, 2))
    return jnp.sqrt(k(x, x) + k(y, y) - 2.0 * k(x, y) + 1e-6)


def mmd_laplacian(x, y, sigma):
    """MMD(x, y) per row as mmd_gaussian, with the Laplacian kernel k = mean exp(-|.|_1 / (2 sigma))."""
    chex.assert_rank([x, y], 3)
    k = lambda a, b: jnp.mean(jnp.exp(-jnp.sum(jnp.abs(a[:, :, None] - b[:, None]), -1) / (2.0 * sigma)), axis=(1, 2))
    return jnp.sqrt(k(x, x) + k(y, y) - 2.0 * k(x, y) + 1e-6)


MMD_KERNELS = {"gaussian": mmd_gaussian, "laplacian": mmd_laplacian}

# The agent config's fields, checked by the driver before anything is built.
CONFIG_FIELDS = {
    "actor_hidden_dims": schema.widths(),
    "critic_hidden_dims": schema.widths(),
    "vae_hidden_dims": schema.widths(),
    "dropout_rate": schema.real(0, 1, hi_open=True),
    "spectral_norm": schema.boolean(),
    "num_dropout_samples": schema.integer(2),  # the variance over passes (ddof=1) needs two
    "dropout_pass_batch": schema.integer(1, required=False),
    "dropout_masks": schema.choice(networks.DROPOUT_MASKS, required=False),
    "num_target_actions": schema.integer(1),
    "num_samples_mmd_match": schema.integer(1),
    "num_eval_actions": schema.integer(0),  # 0 = tanh(mean)
    "kernel": schema.choice(list(MMD_KERNELS)),
    "mmd_sigma": schema.real(0, lo_open=True),
    "warmup": schema.integer(0),
    "actor_lr": schema.LEARNING_RATE,
    "critic_lr": schema.LEARNING_RATE,
    "vae_lr": schema.LEARNING_RATE,
    "alpha_lr": schema.LEARNING_RATE,
    "use_exp_weight": schema.boolean(),
    "clip_bottom": schema.real(),
    "clip_top": schema.real(),
    "var_pi": schema.boolean(),
    "q_penalty": schema.real(0),
    "use_exp_penalty": schema.boolean(),
    "discount": schema.DISCOUNT,
    "tau": schema.POLYAK,
    "beta": schema.real(0),
    "target_mmd_thresh": schema.real(0),
}
CONFIG_RULES = [schema.Rule(("clip_bottom", "clip_top"), lambda c: c["clip_bottom"] <= c["clip_top"],
                            "clip_bottom <= clip_top (the weight's clamp range)")]


# ----------------------------------------------------------------- critics and policy samples


def policy_samples(actor_apply, actor, obs, key, num_samples):
    """a = tanh(u), u = mean(s) + std(s) eps: `num_samples` reparameterised actions per state, a and u [B, n, A].

    One policy pass at the B states, its (mean, log_std) repeated: the values
    of the reference's pass over repeated states, for 1/n of the cost.
    """
    chex.assert_rank(obs, 2)
    mean, log_std = actor_apply(actor, obs)
    repeat = functools.partial(common.repeat_samples, num_samples=num_samples)
    return common.tanh_gaussian_rsample(repeat(mean), repeat(log_std), key)


def dropout_pass(critic_apply, critic, obs, action, key, update_stats=False):
    """One pass of the twin critics with fresh dropout masks (FlattenDropout_Mlp.sample): q [2, N], and
    the mutated collections ({"batch_stats": ...} with spectral norm, {} without).

    With spectral norm, the pass does one power iteration per layer from
    the stored u; `update_stats` keeps the iterated u and sigma (torch's
    train mode), else they come back as they were.

    The masks come from threefry's original (non-partitionable) bit layout:
    the same Bernoulli(1 - p) masks in law, drawn twice as fast on a CPU,
    where they bound the update (131M draws per update at the defaults:
    1.05 s vs 0.54 s, benchmarks/README.md); vmapped seeds still equal
    separate runs.
    """
    chex.assert_rank([obs, action], 2)
    with jax.threefry_partitionable(False):
        return critic_apply(critic, obs, action, deterministic=False, update_stats=update_stats,
                            rngs={"dropout": key}, mutable=["batch_stats"])


def mc_dropout(critic_apply, critic, obs, action, key, num_passes, pass_batch, update_stats=False):
    """Qbar = mean and Var = unbiased variance (torch.var) over `num_passes` dropout passes, [2, N] each,
    and the critic's variables after them.

    The reference's FlattenDropout_Mlp.multiple: fresh masks every pass, all
    in ONE batched forward, so ONE power iteration per layer. Every pass here
    starts from the same stored u and weights, so all compute the same
    iterated u: pass 0's is kept (with `update_stats`).
    """
    # Passes run `pass_batch` at a time (lax.map): one batched pass of all
    # 100 at once needs ~3.5 GB of activations per seed at the default
    # sizes, which 8 vmapped seeds cannot hold on a 24 GB machine.
    one_pass = functools.partial(dropout_pass, critic_apply, critic, obs, action, update_stats=update_stats)
    q, stats = jax.lax.map(one_pass, jax.random.split(key, num_passes), batch_size=pass_batch)  # q [passes, 2, N]
    stats = jax.tree.map(lambda x: x[0], stats)
    return jnp.mean(q, axis=0), jnp.var(q, axis=0, ddof=1), {**critic, **stats}





# ----------------------------------------------------------------- target


def uncertainty_weight(var, beta, clip_bottom=0.0, clip_top=1.0, use_exp_weight=True):
    """The reference's _get_weight: w = clamp(exp(-beta Var), bottom, top) or clamp(beta / Var, ...), no gradient."""
    weight = jnp.exp(-beta * var) if use_exp_weight else beta / var
    return jax.lax.stop_gradient(jnp.clip(weight, clip_bottom, clip_top))


def uwac_target(r_t, discount, terminal_t, q_t, var_t, num_actions):
    """y_t = r_t + gamma (1 - d_t) max_j [0.75 min_i + 0.25 max_i] Qbar'_i(s_t, a_t^j) and
    Var_t = max_j sum_i Var'_i(s_t, a_t^j), from the target critics' MC-dropout moments.

    q_t, var_t: [num_critics, B * num_actions], rows grouped per state
    (state b's actions at b * num_actions ... (b + 1) * num_actions - 1).
    The variance is the max over the actions of the twins' summed variance,
    taken independently of the action that maximises the value, as in the reference.
    """
    chex.assert_rank([r_t, terminal_t, q_t, var_t], [1, 1, 2, 2])
    chex.assert_equal_shape([q_t, var_t])
    chex.assert_shape(q_t, (None, r_t.shape[0] * num_actions))
    v_t = common.soft_clipped_max_over_samples(q_t.reshape(q_t.shape[0], -1, num_actions), TARGET_LMBDA)
    var_y = jnp.sum(var_t, axis=0).reshape(-1, num_actions).max(axis=1)
    return common.td_target(r_t, discount, terminal_t, v_t), jax.lax.stop_gradient(var_y)


def target_of(sample_fn, moments_fn, actor, critic_target, batch, keys, discount, num_actions):
    """y_t and Var_t [B] (uwac_target) from `num_actions` policy actions a_t^j ~ pi(s_t), no gradient;
    and the target critics' variables after their one MC-dropout forward (one power iteration).

    sample_fn = policy_samples with the actor's apply; moments_fn = mc_dropout
    with the critic's apply and pass counts; keys = (policy, dropout).
    """
    k_pi, k_drop = keys
    s_t = batch.next_observations
    a_t, _ = sample_fn(actor, s_t, k_pi, num_actions)  # [B, n, A]
    flat = lambda x: x.reshape(-1, x.shape[-1])  # state b's copies at rows b n ... (b + 1) n - 1
    q_t, var_t, critic_target = moments_fn(
        critic_target, flat(common.repeat_samples(s_t, num_actions)), flat(a_t), k_drop, update_stats=True
    )
    y, var_y = uwac_target(batch.rewards, discount, batch.terminals, q_t, var_t, num_actions)
    return y, var_y, critic_target


def polyak_target(critic_params, critic_target, tau):
    """ptu.soft_update_from_to: target params <- tau params + (1 - tau) target params; the target's u stays its own."""
    return {**critic_target, "params": common.polyak_update(critic_params, critic_target["params"], tau)}


# ----------------------------------------------------------------- losses, one per function


def weighted_critic_loss(q_tm1, y, weight):
    """sum_i mean ((Q_i(s_tm1, a_tm1) - y_t) * w_t)^2: the weight multiplies the residual inside the square.

    q_tm1 [num_critics, B]; y, weight [B].
    """
    chex.assert_rank(q_tm1, 2)
    chex.assert_equal_shape([q_tm1[0], y, weight])
    return jnp.sum(jnp.mean(((q_tm1 - y[None]) * weight[None]) ** 2, axis=-1))


def q_penalty_loss(q_tm1, var_y, q_penalty, use_exp_penalty):
    """The reference's optional q_penalty * sum_i mean(relu(Q_i) * Var_t (or exp Var_t))."""
    chex.assert_rank(q_tm1, 2)
    chex.assert_equal_shape([q_tm1[0], var_y])
    scale = jnp.exp(var_y) if use_exp_penalty else var_y
    return q_penalty * jnp.sum(jnp.mean(jax.nn.relu(q_tm1) * scale[None], axis=-1))


def critic_loss_of(critic_params, critic_apply, critic, batch, y, var_y, weight, key, q_penalty=0.0,
                   use_exp_penalty=False):
    """qf1_loss + qf2_loss: weighted_critic_loss (+ q_penalty_loss) of Q_i(s_tm1, a_tm1), one dropout pass (qf.sample).

    The pass is the critics' first power iteration of the update. Returns
    the loss and (q_tm1, the variables after the pass: `critic`'s params,
    i.e. the pre-step ones, with the iterated u).
    """
    q_tm1, stats = dropout_pass(critic_apply, {**critic, "params": critic_params}, batch.observations, batch.actions,
                                key, update_stats=True)
    loss = weighted_critic_loss(q_tm1, y, weight)
    if q_penalty:  # static: the reference's default 0 adds nothing
        loss = loss + q_penalty_loss(q_tm1, var_y, q_penalty, use_exp_penalty)
    return loss, (q_tm1, {**critic, **stats})


def actor_loss(q_pi_tm1, var_pi_tm1, mmd, alpha, rl_on, beta, target_mmd_thresh, weight_fn=None):
    """mean[-min_i Qbar_i(s, a_pi) * w_pi * 1{rl_on} + alpha (MMD - eps)] (policy_update_style '0', mode 'auto').

    q_pi_tm1, var_pi_tm1 [num_critics, B]: MC-dropout mean and variance of
    the critics at the policy's action; mmd [B]. rl_on False (the warm-up)
    leaves the MMD term alone. w_pi = weight_fn(sum_i Var_i, beta) with
    var_Pi (weight_fn given), else 1.
    """
    chex.assert_rank([q_pi_tm1, var_pi_tm1, mmd], [2, 2, 1])
    chex.assert_equal_shape([q_pi_tm1, var_pi_tm1])
    chex.assert_equal_shape([q_pi_tm1[0], mmd])
    q_pi = jnp.min(q_pi_tm1, axis=0)
    w_pi = jnp.ones_like(q_pi) if weight_fn is None else weight_fn(jnp.sum(var_pi_tm1, axis=0), beta)
    rl_term = jnp.where(rl_on, -q_pi * w_pi, 0.0)
    loss = jnp.mean(rl_term + alpha * (mmd - target_mmd_thresh))
    return loss, {"mmd": mmd, "q_pi": jnp.mean(q_pi), "weight_pi": jnp.mean(w_pi)}


def actor_loss_of(actor_params, sample_fn, moments_fn, mmd_fn, critic, raw_beta_tm1, obs, keys, alpha, rl_on, hparams,
                  weight_fn=None):
    """actor_loss of the policy's actions at s_tm1: MMD of its pre-tanh samples to the VAE's, raw_beta_tm1
    [B, n, A], and Qbar, Var of the critics' MC-dropout pass at its first sample.

    That pass is the critics' second power iteration of the update: returns
    the loss and (its metrics, the critic's variables after it).
    """
    k_pi, k_drop = keys
    chex.assert_rank(raw_beta_tm1, 3)
    a_pi_tm1, u_pi_tm1 = sample_fn(actor_params, obs, k_pi, raw_beta_tm1.shape[1])
    mmd = mmd_fn(raw_beta_tm1, u_pi_tm1)
    q_pi_tm1, var_pi_tm1, critic = moments_fn(critic, obs, a_pi_tm1[:, 0], k_drop, update_stats=True)
    loss, aux = actor_loss(q_pi_tm1, var_pi_tm1, mmd, alpha, rl_on, hparams["beta"], hparams["target_mmd_thresh"],
                           weight_fn)
    return loss, (aux, critic)


def lagrange_step(optimizer, log_alpha, opt_state, mmd, target_mmd_thresh):
    """One step of the multiplier: descend -alpha * mean(MMD - eps) in log alpha, then clamp to [-5, 10].

    The reference steps on -policy_loss; only its alpha * (MMD - eps) term
    depends on log alpha, so this is the same gradient.
    """
    chex.assert_rank([log_alpha, mmd], [0, 1])
    gap = jax.lax.stop_gradient(jnp.mean(mmd - target_mmd_thresh))
    loss_fn = lambda log_alpha: (-jnp.exp(log_alpha) * gap, None)
    log_alpha, opt_state, loss, _ = common.apply_gradients(optimizer, loss_fn, log_alpha, opt_state)
    return jnp.clip(log_alpha, LOG_ALPHA_MIN, LOG_ALPHA_MAX), opt_state, loss


def run_length_warning(agent_config, num_updates) -> Optional[str]:
    """A message when a run is too short for the policy ever to see the critics, else None.

    Updates 0 ... num_updates - 1 run, and the actor's Q term is on from
    update `warmup` (the reference's `_n_train_steps_total >= 40000`), so a
    run of num_updates <= warmup never has it. For the driver or launcher to log.
    """
    warmup = int(agent_config.warmup)
    if int(num_updates) > warmup:
        return None
    return (
        f"UWAC's policy trains on the MMD term alone for the first warmup={warmup} updates (the reference's "
        f"40000); this run of {int(num_updates)} updates never uses the critics in the actor: it only imitates "
        f"the VAE. Lower config field 'agent.warmup' below num_updates."
    )


# ----------------------------------------------------------------- agent


def make_agent(config, obs_dim: int, act_dim: int) -> common.Agent:
    actor_net = networks.TanhGaussianActor(
        tuple(config.actor_hidden_dims), act_dim, log_std_min=LOG_STD_MIN, log_std_max=LOG_STD_MAX
    )
    # FlattenDropout_Mlp: rlkit's Mlp init, dropout after each hidden ReLU, spectral norm on every layer (--SN).
    critic_net = networks.EnsembleCritic(
        tuple(config.critic_hidden_dims), num_critics=2, dropout_rate=config.dropout_rate,
        dropout_masks=config.get("dropout_masks", "threefry"), hidden_init=networks.rlkit_hidden,
        output_init=networks.rlkit_output(CRITIC_INIT_W), spectral_norm=bool(config.spectral_norm),
    )
    # Latent dim 2 * act_dim as in the example script's VAEPolicy.
    vae_net = networks.VAE(act_dim, 2 * act_dim, tuple(config.vae_hidden_dims))
    # PyTorch Adam defaults (betas 0.9, 0.999, eps 1e-8) are optax's defaults.
    actor_opt = optax.adam(config.actor_lr)
    critic_opt = optax.adam(config.critic_lr)  # one Adam over both twins = the reference's two (disjoint params)
    vae_opt = optax.adam(config.vae_lr)
    alpha_opt = optax.adam(config.alpha_lr)
    num_passes = int(config.num_dropout_samples)
    if num_passes < 2:  # the variance over passes (ddof=1, torch.var) needs two
        raise ValueError(f"config field 'agent.num_dropout_samples': must be >= 2, got {num_passes}")
    num_target_actions = int(config.num_target_actions)
    num_mmd = int(config.num_samples_mmd_match)
    num_eval_actions = int(config.num_eval_actions)
    warmup = int(config.warmup)
    penalty = dict(q_penalty=float(config.q_penalty), use_exp_penalty=bool(config.use_exp_penalty))
    sample_fn = functools.partial(policy_samples, actor_net.apply)
    moments_fn = functools.partial(
        mc_dropout, critic_net.apply, num_passes=num_passes,
        pass_batch=min(int(config.get("dropout_pass_batch", 10)), num_passes),
    )
    mmd_fn = functools.partial(MMD_KERNELS[config.kernel], sigma=config.mmd_sigma)
    weight_fn = functools.partial(
        uncertainty_weight, clip_bottom=config.clip_bottom, clip_top=config.clip_top,
        use_exp_weight=config.use_exp_weight,
    )

    def init(key):
        k_actor, k_critic, k_target, k_vae, k_sample = jax.random.split(key, 5)
        obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
        actor = actor_net.init(k_actor, obs)
        critic = networks.init_with_raw_kernels(critic_net, k_critic, obs, act)
        vae = vae_net.init(k_vae, obs, act, k_sample)
        log_alpha = jnp.zeros((), jnp.float32)  # ptu.zeros(1): alpha starts at 1
        return UWACState(
            actor=actor,
            critic=critic,
            # The example script builds target_qf1/2 as separately initialised
            # networks and never copies the critics into them: so do we.
            critic_target=networks.init_with_raw_kernels(critic_net, k_target, obs, act),
            vae=vae,
            log_alpha=log_alpha,
            actor_opt=actor_opt.init(actor),
            critic_opt=critic_opt.init(critic["params"]),
            vae_opt=vae_opt.init(vae),
            alpha_opt=alpha_opt.init(log_alpha),
            step=jnp.zeros((), jnp.int32),
        )

    def update(state: UWACState, batch, key, hparams):
        k_vae, k_pi_t, k_drop_t, k_drop_tm1, k_z, k_pi, k_drop_pi = jax.random.split(key, 7)
        obs = batch.observations

        # --- behaviour model: VAE, recon + 0.5 KL ---
        vae_loss_fn = lambda vae: common.behaviour_vae_loss(functools.partial(vae_net.apply, vae), batch, k_vae)
        vae, vae_opt_state, vae_loss, vae_aux = common.apply_gradients(vae_opt, vae_loss_fn, state.vae, state.vae_opt)

        # --- target: y_t, Var_t from 10 policy actions at s_t (the targets' one power iteration) ---
        y, var_y, critic_target = target_of(sample_fn, moments_fn, state.actor, state.critic_target, batch,
                                            (k_pi_t, k_drop_t), hparams["discount"], num_target_actions)
        weight = weight_fn(var_y, hparams["beta"])

        # --- critic: sum_i mean ((Q_i(s, a) - y) w)^2, one dropout pass (the critics' power iteration 1) ---
        critic_loss_fn = functools.partial(critic_loss_of, critic_apply=critic_net.apply, critic=state.critic,
                                           batch=batch, y=y, var_y=var_y, weight=weight, key=k_drop_tm1, **penalty)
        critic_params, critic_opt_state, critic_loss, (q_tm1, critic) = common.apply_gradients(
            critic_opt, critic_loss_fn, state.critic["params"], state.critic_opt
        )

        # --- actor: -min_i Qbar_i(s, a_pi) w_pi (after warmup) + alpha (MMD - eps) ---
        # The VAE samples come from the VAE updated above, as in the reference
        # (its decode_multiple runs after vae_optimizer.step()); MMD on pre-tanh actions.
        raw_beta_tm1 = vae_net.apply(vae, common.repeat_samples(obs, num_mmd), k_z, method=networks.VAE.sample_raw)
        # Deviation (see the docstring): through the critics before this update's
        # critic step (`critic` holds the pre-step params), their power iteration 2.
        actor_loss_fn = functools.partial(
            actor_loss_of, sample_fn=sample_fn, moments_fn=moments_fn, mmd_fn=mmd_fn, critic=critic,
            raw_beta_tm1=raw_beta_tm1, obs=obs, keys=(k_pi, k_drop_pi), alpha=jnp.exp(state.log_alpha),
            rl_on=state.step >= warmup,  # the reference's `_n_train_steps_total >= 40000`
            hparams=hparams, weight_fn=weight_fn if config.var_pi else None,
        )
        actor, actor_opt_state, actor_loss, (actor_aux, critic) = common.apply_gradients(
            actor_opt, actor_loss_fn, state.actor, state.actor_opt
        )
        critic = {**critic, "params": critic_params}  # the stepped params, the twice-iterated u

        # --- Lagrange multiplier of the MMD constraint ---
        log_alpha, alpha_opt_state, alpha_loss = lagrange_step(
            alpha_opt, state.log_alpha, state.alpha_opt, actor_aux["mmd"], hparams["target_mmd_thresh"]
        )

        # --- targets: polyak averaging of the critics' params, every update (target_update_period 1) ---
        critic_target = polyak_target(critic_params, critic_target, hparams["tau"])

        state = state.replace(
            actor=actor, critic=critic, critic_target=critic_target, vae=vae, log_alpha=log_alpha,
            actor_opt=actor_opt_state, critic_opt=critic_opt_state, vae_opt=vae_opt_state,
            alpha_opt=alpha_opt_state, step=state.step + 1,
        )
        metrics = {
            "critic_loss": critic_loss, "actor_loss": actor_loss, "alpha_loss": alpha_loss, "vae_loss": vae_loss,
            **vae_aux, "alpha": jnp.exp(log_alpha), "mmd": jnp.mean(actor_aux["mmd"]), "q_pi": actor_aux["q_pi"],
            "weight_pi": actor_aux["weight_pi"], "q_mean": jnp.mean(q_tm1), "target_mean": jnp.mean(y),
            "target_var_mean": jnp.mean(var_y), "weight_mean": jnp.mean(weight),
        }
        return state, metrics

    def act(state: UWACState, obs, key):
        """The reference's evaluation policy_fn: the argmax of Qbar_1 over `num_eval_actions` policy samples.

        Stochastic in the key (policy samples and dropout masks), as the
        reference; num_eval_actions 0 gives tanh(mean) instead. The critics'
        u is not stored (eval mode; see the docstring's last deviation).
        """
        if num_eval_actions == 0:
            return jnp.tanh(actor_net.apply(state.actor, obs)[0])
        k_pi, k_drop = jax.random.split(key)
        actions = sample_fn(state.actor, obs, k_pi, num_eval_actions)[0]  # [B, K, A]
        flat = lambda x: x.reshape((-1, x.shape[-1]))
        q1 = moments_fn(state.critic, flat(common.repeat_samples(obs, num_eval_actions)), flat(actions), k_drop)[0][0]
        best = jnp.argmax(q1.reshape(obs.shape[0], num_eval_actions), axis=1)
        return jnp.take_along_axis(actions, best[:, None, None], axis=1)[:, 0]

    def q_values(state: UWACState, obs, action):
        # Deviation: the interface has no key, so dropout is off (the usual
        # weight-scaling approximation of the reference's 100-pass mean).
        return critic_net.apply(state.critic, obs, action)

    return common.Agent(init, update, act, q_values, common.hparams_from_config(config, HPARAMS))
