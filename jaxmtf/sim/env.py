"""The MTF session simulator: one user, one feed request per step (gymnax style).

User model
----------
A user has a latent vector ``u`` (``user_dim``) and a hidden *clickbait
proneness* ``rho`` in [0, 1] (Beta distributed, U-shaped by default). The
platform observes a noisy copy of ``u`` (the profile features) but never
``rho``: the policy can only learn it from how the user reacts during the
session, which is what makes the enhanced state (running response statistics)
pay.

Each request brings ``num_candidates`` fresh items. Item ``i`` has an affinity
with the user ``a_i = u . v_i / sqrt(D)`` with ``v_i ~ N(0, I)`` (sampled
directly as ``N(0, |u|^2 / D)``, the same distribution at a fraction of the
cost), a quality ``q_i ~ N(0, 1)`` and a clickbait flag ``z_i ~ Bernoulli``.
The TRUE logit of task ``k`` is

    intercept_k + prop_k * u_k + aff_k * a_i + qual_k * q_i
      + bait_k * z_i + bait_prone_k * (2 rho - 1) * z_i + distrust_k * D_t

so clickbait draws clicks from everyone, satisfies (long view) the prone
users and dissatisfies the averse ones, and a persistent *distrust* ``D_t``
(an EMA of the fraction of clicks that bounced, i.e. clicked but not long
viewed) lowers clicks later. The MTL's PREDICTED logits are personalised in
``u`` but not in ``rho`` (it predicts the population mean ``rho = 1/2``), do
not model distrust, over-predict clicks on clickbait (``pred_bait_bias``) and
carry Gaussian noise.

The policy's action is a fusion vector; the top ``slate_size`` candidates by
fused score are shown and the user responds per item and per task with
Bernoulli draws from the TRUE probabilities (independent across tasks).

Leaving (KuaiSim's temper, made non-linear): temper starts at
``initial_temper``, drains by a constant per request and per bounced click,
recovers per long view (capped at the initial value). The user leaves with
hazard ``sigmoid(hazard_slope * (hazard_threshold - temper))`` (negligible at
high temper, steep near the threshold) and surely once temper <= 0. The
temper is NOT observed (platforms cannot see patience).

Why the optimal fusion depends on the state: for a prone user the
click-heavy fusion (which selects clickbait) earns the most reward and keeps
the user, for an averse user it burns the temper and builds distrust. A
static weight vector must compromise across users; a policy that shows a
little clickbait, reads the bounce rate from the enhanced state and then
commits, beats it. See benchmarks/SIM_NOTES.md for the measured margin.

Action mapping (continuous ``a`` in [-1, 1]^A)
-----------------------------------------------
power ``w_k = max_power * (a_k + 1) / 2`` in [0, max_power] (a_k = -1 switches
task k off); with ``action_mode="power_bias"`` (A = 2K) also
``b_k = max_bias * (a_{K+k} + 1) / 2``, otherwise ``b_k = default_bias``.
Fused score: ``"power"``: ``sum_k w_k log(p_k + b_k)`` (the log of
``prod_k (p_k + b_k) ** w_k``, same ranking); ``"additive"``:
``sum_k w_k p_k`` (biases unused).
"""
from typing import Dict, Tuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

TASKS = ("click", "long_view", "like", "comment", "follow", "forward")
# KuaiRand-Pure per-impression positive rates, the calibration targets.
KUAIRAND_RATES = (0.46, 0.33, 0.0185, 0.0026, 0.0011, 0.0010)


def _f(values):
    """A float32 coefficient field (numpy default: no device work at import)."""
    return flax.struct.field(default_factory=lambda: np.asarray(values, dtype=np.float32))


@flax.struct.dataclass
class EnvParams:
    """Everything a researcher varies. Sizes/strings are static, coefficients are leaves.

    Per-task vectors are ordered as ``task_names``.
    """

    # --- static structure ---
    task_names: Tuple[str, ...] = flax.struct.field(pytree_node=False, default=TASKS)
    user_dim: int = flax.struct.field(pytree_node=False, default=8)  # latent dim D (>= K: u_k drives task k's propensity)
    num_candidates: int = flax.struct.field(pytree_node=False, default=50)  # N items per request
    slate_size: int = flax.struct.field(pytree_node=False, default=6)  # L shown (KuaiSim)
    max_steps: int = flax.struct.field(pytree_node=False, default=100)  # horizon (KuaiSim)
    fusion: str = flax.struct.field(pytree_node=False, default="power")  # "power" | "additive"
    action_mode: str = flax.struct.field(pytree_node=False, default="power")  # "power" (A=K) | "power_bias" (A=2K)

    # --- users ---
    profile_noise: Array = _f(0.5)  # std of the noise on the observed profile features
    prone_alpha: Array = _f(0.5)  # Beta(alpha, beta) of clickbait proneness rho; 0.5/0.5 is
    prone_beta: Array = _f(0.5)  #   U-shaped: most users clearly prone or clearly averse

    # --- items ---
    bait_frac: Array = _f(0.25)  # share of candidates that are clickbait

    # --- true response logits (per task, ordered as task_names) ---
    # intercepts calibrated so the baseline policy hits KuaiRand-Pure's rates (see SIM_NOTES.md)
    intercept: Array = _f([-0.62, -1.01, -4.45, -6.53, -7.36, -7.46])
    prop: Array = _f([0.3, 0.3, 0.5, 0.5, 0.5, 0.5])  # user propensity: logit += prop_k * u_k
    aff: Array = _f([0.6, 0.8, 0.8, 0.6, 0.8, 0.6])  # weight of user-item affinity
    qual: Array = _f([0.2, 0.6, 0.6, 0.5, 0.4, 0.6])  # weight of item quality
    bait: Array = _f([2.0, 0.0, -0.8, 0.0, -0.5, -0.5])  # clickbait effect for everyone
    bait_prone: Array = _f([0.0, 1.5, 0.6, 0.0, 0.0, 0.3])  # times (2 rho - 1): prone users like bait
    distrust_coef: Array = _f([-3.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # logit shift per unit distrust

    # --- the MTL's predictions ---
    pred_noise: Array = _f([0.3, 0.3, 0.4, 0.4, 0.4, 0.4])  # std of logit noise per task
    pred_bait_bias: Array = _f([0.5, 0.0, 0.0, 0.0, 0.0, 0.0])  # clickbait over-prediction (click)

    # --- reward: weighted sum of per-task counts; valid consumption dominates ---
    reward_weights: Array = _f([0.5, 1.0, 2.0, 3.0, 5.0, 3.0])

    # --- fusion action mapping ---
    max_power: Array = _f(2.0)  # w_k in [0, max_power]
    max_bias: Array = _f(0.1)  # b_k in [0, max_bias] when action_mode="power_bias"
    default_bias: Array = _f(1e-4)  # b_k otherwise; keeps log(p + b) finite

    # --- dynamics ---
    distrust_decay: Array = _f(0.8)  # D' = decay * D + (1 - decay) * bounced/clicked
    initial_temper: Array = _f(10.0)  # KuaiSim's initial temper (also its cap)
    temper_drain: Array = _f(1.0)  # drained every request
    temper_bounce: Array = _f(0.5)  # drained per bounced click (clicked, not long viewed)
    temper_recover: Array = _f(0.35)  # recovered per long view
    hazard_threshold: Array = _f(2.0)  # temper where the leave probability is 1/2
    hazard_slope: Array = _f(2.0)  # steepness of the leave hazard
    ema_rate: Array = _f(0.3)  # rate of the observed running statistics

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)


@flax.struct.dataclass
class EnvState:
    u: Array  # [D] user latent
    profile: Array  # [D] observed profile features
    prone: Array  # [] hidden clickbait proneness rho
    temper: Array  # [] hidden patience
    distrust: Array  # [] hidden distrust
    ema: Array  # [K + 1] raw EMA of per-item task rates and the bounce rate (bounced / clicked)
    t: Array  # [] int32, requests served so far
    cand_true: Array  # [N, K] true logits of the pending request's candidates
    cand_pred: Array  # [N, K] MTL predicted logits
    cand_bait: Array  # [N] clickbait flags (float)


def default_params(**overrides) -> EnvParams:
    """EnvParams with the defaults, per-task vectors resized if tasks are overridden."""
    return EnvParams(**overrides)


def act_dim(params: EnvParams) -> int:
    return params.num_tasks * (2 if params.action_mode == "power_bias" else 1)


def observation_layout(params: EnvParams) -> Dict[str, slice]:
    """Names of the observation slices, in order."""
    K, D = params.num_tasks, params.user_dim
    names = [("profile", D), ("session_position", 1), ("ema_task_rates", K), ("ema_bounce_rate", 1),
             ("cand_pred_logit_mean", K), ("cand_pred_logit_std", K), ("cand_pred_logit_max", K)]
    out, start = {}, 0
    for name, size in names:
        out[name] = slice(start, start + size)
        start += size
    return out


def obs_dim(params: EnvParams) -> int:
    return list(observation_layout(params).values())[-1].stop


def fusion_from_action(action: Array, params: EnvParams) -> Tuple[Array, Array]:
    """Map a in [-1, 1]^A to (powers [K], biases [K])."""
    K = params.num_tasks
    a = jnp.clip(action, -1.0, 1.0)
    powers = params.max_power * (a[:K] + 1.0) / 2.0
    if params.action_mode == "power_bias":
        biases = params.max_bias * (a[K:] + 1.0) / 2.0 + params.default_bias
    else:
        biases = jnp.broadcast_to(params.default_bias, (K,))
    return powers, biases


def fused_scores(pred_logits: Array, action: Array, params: EnvParams) -> Array:
    """Fused ranking score of each candidate, [N]."""
    powers, biases = fusion_from_action(action, params)
    p = jax.nn.sigmoid(pred_logits)
    if params.fusion == "power":
        return jnp.log(p + biases) @ powers  # log of prod_k (p_k + b_k) ** w_k
    if params.fusion == "additive":
        return p @ powers
    raise ValueError(f"unknown fusion {params.fusion!r}")


def baseline_action(params: EnvParams) -> Array:
    """A fixed 'production' fusion vector: mostly click and long view, a little of the rest."""
    K = params.num_tasks
    a = jnp.full((K,), -0.6).at[:2].set(jnp.array([0.0, 0.0]))
    if params.action_mode == "power_bias":
        a = jnp.concatenate([a, jnp.full((K,), -1.0)])
    return a


def click_greedy_action(params: EnvParams) -> Array:
    """Rank by predicted click only."""
    a = jnp.full((act_dim(params),), -1.0)
    return a.at[0].set(1.0)


def satisfaction_action(params: EnvParams) -> Array:
    """Rank by long view and the interaction tasks, ignoring click."""
    K = params.num_tasks
    a = jnp.full((act_dim(params),), -1.0)
    return a.at[1:K].set(1.0)


def _sample_candidates(key, u, prone, distrust, params: EnvParams):
    N, D = params.num_candidates, params.user_dim
    k_aff, k_q, k_b, k_n = jax.random.split(key, 4)
    aff = jax.random.normal(k_aff, (N,)) * (jnp.linalg.norm(u) / np.sqrt(D))
    qual = jax.random.normal(k_q, (N,))
    bait = (jax.random.uniform(k_b, (N,)) < params.bait_frac).astype(jnp.float32)
    K = params.num_tasks
    shared = (params.intercept + params.prop * u[:K]
              + aff[:, None] * params.aff + qual[:, None] * params.qual
              + bait[:, None] * params.bait)
    true = shared + bait[:, None] * (params.bait_prone * (2.0 * prone - 1.0)) + params.distrust_coef * distrust
    noise = jax.random.normal(k_n, (N, K)) * params.pred_noise
    pred = shared + bait[:, None] * params.pred_bait_bias + noise
    return true, pred, bait


def _observe(state: EnvState, params: EnvParams) -> Array:
    t = state.t.astype(jnp.float32)
    # Adam-style bias correction: the EMA starts at 0, so divide by the weight it has accumulated.
    corr = 1.0 - (1.0 - params.ema_rate) ** t
    ema = jnp.where(t > 0, state.ema / jnp.maximum(corr, 1e-6), 0.0)
    pred = state.cand_pred
    return jnp.concatenate([
        state.profile,
        (t / params.max_steps)[None],
        ema,
        pred.mean(0), pred.std(0), pred.max(0),
    ]).astype(jnp.float32)


def reset(key: Array, params: EnvParams) -> Tuple[Array, EnvState]:
    D, K = params.user_dim, params.num_tasks
    if D < K:
        raise ValueError(f"user_dim ({D}) must be >= number of tasks ({K})")
    k_u, k_p, k_r, k_c = jax.random.split(key, 4)
    u = jax.random.normal(k_u, (D,))
    profile = u + params.profile_noise * jax.random.normal(k_p, (D,))
    prone = jax.random.beta(k_r, params.prone_alpha, params.prone_beta)
    distrust = jnp.zeros((), jnp.float32)
    true, pred, bait = _sample_candidates(k_c, u, prone, distrust, params)
    state = EnvState(u=u, profile=profile, prone=prone, temper=jnp.asarray(params.initial_temper, jnp.float32),
                     distrust=distrust, ema=jnp.zeros((K + 1,), jnp.float32), t=jnp.zeros((), jnp.int32),
                     cand_true=true, cand_pred=pred, cand_bait=bait)
    return _observe(state, params), state


def step(key: Array, state: EnvState, action: Array, params: EnvParams):
    """One feed request: rank, show top-L, sample responses, update the user."""
    L = params.slate_size
    k_resp, k_leave, k_cand = jax.random.split(key, 3)

    scores = fused_scores(state.cand_pred, action, params)
    _, idx = jax.lax.top_k(scores, L)
    true = state.cand_true[idx]  # [L, K]
    bait_shown = state.cand_bait[idx]
    resp = (jax.random.uniform(k_resp, true.shape) < jax.nn.sigmoid(true)).astype(jnp.float32)
    counts = resp.sum(0)  # [K]
    n_click, n_lv = counts[0], counts[1]
    n_bounce = (resp[:, 0] * (1.0 - resp[:, 1])).sum()
    bounce_rate = n_bounce / jnp.maximum(n_click, 1.0)
    reward = counts @ params.reward_weights

    distrust = params.distrust_decay * state.distrust + (1.0 - params.distrust_decay) * bounce_rate
    temper = jnp.minimum(params.initial_temper,
                         state.temper - params.temper_drain - params.temper_bounce * n_bounce
                         + params.temper_recover * n_lv)
    hazard = jax.nn.sigmoid(params.hazard_slope * (params.hazard_threshold - temper))
    left = (temper <= 0.0) | (jax.random.uniform(k_leave) < hazard)
    t = state.t + 1
    timeout = (t >= params.max_steps) & ~left
    done = left | timeout

    ema_x = jnp.concatenate([counts / L, bounce_rate[None]])
    ema = (1.0 - params.ema_rate) * state.ema + params.ema_rate * ema_x
    cand_true, cand_pred, cand_bait = _sample_candidates(k_cand, state.u, state.prone, distrust, params)
    new_state = state.replace(temper=temper, distrust=distrust, ema=ema, t=t,
                              cand_true=cand_true, cand_pred=cand_pred, cand_bait=cand_bait)
    info = {
        "task_responses": counts,
        "terminal": left,
        "timeout": timeout,
        "temper": temper,
        "distrust": distrust,
        "bounces": n_bounce,
        "bait_shown": bait_shown.sum(),
        # mean true long-view probability of the slate: satisfaction without sampling noise
        "true_satisfaction": jax.nn.sigmoid(true[:, 1]).mean(),
        "prone": state.prone,
    }
    return _observe(new_state, params), new_state, reward, done, info

