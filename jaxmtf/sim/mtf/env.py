"""The MTF session simulator: one user, one feed request per step (gymnax style).

User model
----------
A user has a latent vector ``u`` (``user_dim``) and a hidden *clickbait
proneness* ``rho`` in [0, 1] (Beta(0.5, 1) by default: most users are averse to
clickbait, a minority (13% with rho > 0.75) enjoys it). The
platform observes a noisy copy of ``u`` (the profile features) but never
``rho``: the policy can only learn it from how the user reacts during the
session, which is what makes the enhanced state (running response statistics)
pay.

Responses are Bernoulli per item and task, independent given the logits,
except long view, which follows a click (cascade): task 1's logit is that of
P(long_view | click), and the MTL's long-view head predicts that conditional
probability too (an ESMM-style CVR head). A
*bounce* is a click without a long view.

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
carry noise (uniform, std ``pred_noise``).

The policy's action is a fusion vector; the top ``slate_size`` candidates by
fused score are shown and the user responds per item and per task with
Bernoulli draws from the TRUE probabilities (cascade for long view, see above).
Reward is ``reward_weights @ counts``; the counts are in ``info`` too.

Leaving (KuaiSim's temper, made non-linear): temper starts at
``initial_temper``, drains by a constant per request and per bounced click,
recovers per long view (a long view of clickbait counts ``bait_recover_frac``:
it entertains but builds less loyalty), capped at the initial value. The user
leaves with
hazard ``sigmoid(hazard_slope * (hazard_threshold - temper))`` (negligible at
high temper, steep near the threshold) and surely once temper <= 0. The
temper is NOT observed (platforms cannot see patience).

Why the optimal fusion depends on the state: for a prone user a click-heavy
fusion (which selects clickbait) earns the most reward per request and keeps
the user to the horizon; for an averse user it burns the temper in a few
requests and builds distrust. A static weight vector must serve both; a
policy that shows some clickbait, reads the session bounce rate from the
observation and commits to the matching fusion beats the best static vector
by ~13% of return (benchmarks/simulator.md). Clicks pay as much as long views
in the reward, so the click-greedy fusion wins the first request and loses
the session.

Observation (``observation_layout``): profile (D), session position t/T,
bias-corrected EMAs of per-item task rates (K) and of the bounce rate,
session means of the same (K + 1), and mean/std/max over the pending
request's candidates of the MTL's predicted logits per task (3K). Temper,
distrust and rho are hidden.

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
from jax.scipy.special import ndtri

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
    # latent dim D (>= K: u_k drives task k's propensity)
    user_dim: int = flax.struct.field(pytree_node=False, default=8)
    num_candidates: int = flax.struct.field(pytree_node=False, default=50)  # N items per request
    slate_size: int = flax.struct.field(pytree_node=False, default=6)  # L shown (KuaiSim)
    max_steps: int = flax.struct.field(pytree_node=False, default=100)  # horizon (KuaiSim)
    fusion: str = flax.struct.field(pytree_node=False, default="power")  # "power" | "additive"
    action_mode: str = flax.struct.field(pytree_node=False, default="power")  # "power" (A=K) | "power_bias" (A=2K)

    # --- users ---
    profile_noise: Array = _f(0.5)  # std of the noise on the observed profile features
    prone_alpha: Array = _f(0.5)  # Beta(alpha, beta) of clickbait proneness rho;
    prone_beta: Array = _f(1.0)  #   (0.5, 1): mean 1/3, most users averse, a minority (13% above 0.75) prone

    # --- items ---
    bait_frac: Array = _f(0.25)  # share of candidates that are clickbait

    # --- true response logits (per task, ordered as task_names) ---
    # intercepts calibrated so the baseline policy hits KuaiRand-Pure's rates (see benchmarks/simulator.md)
    intercept: Array = _f([-0.79, -0.17, -5.73, -7.37, -8.48, -8.44])
    prop: Array = _f([0.3, 0.3, 0.5, 0.5, 0.5, 0.5])  # user propensity: logit += prop_k * u_k
    aff: Array = _f([0.6, 0.8, 0.8, 0.6, 0.8, 0.6])  # weight of user-item affinity
    qual: Array = _f([0.2, 0.6, 0.6, 0.5, 0.4, 0.6])  # weight of item quality
    bait: Array = _f([1.5, 0.0, -1.5, -0.5, -1.0, -1.0])  # clickbait: more clicks, fewer interactions
    bait_prone: Array = _f([0.0, 3.0, 0.6, 0.0, 0.0, 0.3])  # times (2 rho - 1): prone users like bait
    distrust_coef: Array = _f([-3.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # logit shift per unit distrust

    # --- the MTL's predictions ---
    pred_noise: Array = _f([0.3, 0.3, 0.4, 0.4, 0.4, 0.4])  # std of the (uniform) logit error per task
    pred_bait_bias: Array = _f([0.5, 0.0, 0.0, 0.0, 0.0, 0.0])  # clickbait over-prediction (click)

    # --- reward: weighted sum of per-task counts. A click pays as much as a long view
    # (short-term engagement is rewarded) while retention follows satisfaction (temper);
    # rarer interactions pay more per event. Re-score datasets via task_responses. ---
    reward_weights: Array = _f([1.0, 1.0, 2.0, 3.0, 5.0, 3.0])

    # --- fusion action mapping ---
    max_power: Array = _f(2.0)  # w_k in [0, max_power]
    max_bias: Array = _f(0.1)  # b_k in [0, max_bias] when action_mode="power_bias"
    default_bias: Array = _f(1e-4)  # b_k otherwise; keeps log(p + b) finite

    # --- dynamics ---
    distrust_decay: Array = _f(0.8)  # D' = decay * D + (1 - decay) * bounced/clicked
    initial_temper: Array = _f(10.0)  # KuaiSim's initial temper (also its cap)
    temper_drain: Array = _f(0.6)  # drained every request
    temper_bounce: Array = _f(0.3)  # drained per bounced click (clicked, not long viewed)
    temper_recover: Array = _f(0.35)  # recovered per long view of a non-clickbait item
    bait_recover_frac: Array = _f(0.6)  # a long view of clickbait recovers only this fraction:
    #   it entertains the prone user but builds less loyalty than real satisfaction
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
    total: Array  # [K + 1] session sums of the same per-request statistics
    t: Array  # [] int32, requests served so far
    cand_true: Array  # [N, K] true logits of the pending request's candidates
    cand_pred: Array  # [N, K] MTL predicted logits
    cand_bait: Array  # [N] clickbait flags (float)


def default_params(**overrides) -> EnvParams:
    """EnvParams with the defaults, fields overridden by keyword (floats become float32 arrays)."""
    overrides = {k: (np.asarray(v, np.float32) if not isinstance(v, (str, int, tuple)) or isinstance(v, bool)
                     else v) for k, v in overrides.items()}
    return EnvParams(**overrides)


def act_dim(params: EnvParams) -> int:
    return params.num_tasks * (2 if params.action_mode == "power_bias" else 1)


def observation_layout(params: EnvParams) -> Dict[str, slice]:
    """Names of the observation slices, in order."""
    K, D = params.num_tasks, params.user_dim
    names = [("profile", D), ("session_position", 1), ("ema_task_rates", K), ("ema_bounce_rate", 1),
             ("session_task_rates", K), ("session_bounce_rate", 1),
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
    """A fixed 'production' fusion vector: powers 1 on click and long view, 0.4 on the rest."""
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


def _uniform16(bits: Array) -> Tuple[Array, Array]:
    """Two uniforms in (0, 1) from each 32-bit word (16 bits each: plenty for noise)."""
    lo = (bits & 0xFFFF).astype(jnp.float32)
    hi = (bits >> 16).astype(jnp.float32)
    return (lo + 0.5) / 65536.0, (hi + 0.5) / 65536.0


def _sample_candidates(key, u, prone, distrust, params: EnvParams):
    """Logits (true, predicted) and clickbait flags of one request's N fresh candidates.

    Random numbers dominate the simulator's cost, so one threefry call draws
    16-bit uniforms for everything: Gaussian affinity/quality by inverse CDF,
    and the MTL's prediction error as uniform noise with std ``pred_noise``
    (its shape is immaterial to ranking; uniform avoids an inverse CDF).
    """
    N, D, K = params.num_candidates, params.user_dim, params.num_tasks
    W = 1 + (K + 1) // 2 + 1  # words per item: aff+qual, K noise uniforms, bait (+ one spare half)
    u1, u2 = _uniform16(jax.random.bits(key, (N, W), jnp.uint32))
    aff = ndtri(u1[:, 0]) * (jnp.sqrt(jnp.sum(u * u)) / np.sqrt(D))
    qual = ndtri(u2[:, 0])
    bait = (u1[:, -1] < params.bait_frac).astype(jnp.float32)
    noise_u = jnp.concatenate([u1[:, 1:W - 1], u2[:, 1:W - 1]], axis=1)[:, :K]
    noise = (noise_u - 0.5) * (np.sqrt(12.0) * params.pred_noise)  # uniform, std pred_noise
    shared = (params.intercept + params.prop * u[:K]
              + aff[:, None] * params.aff + qual[:, None] * params.qual
              + bait[:, None] * params.bait)
    true = shared + bait[:, None] * (params.bait_prone * (2.0 * prone - 1.0)) + params.distrust_coef * distrust
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
        state.total / jnp.maximum(t, 1.0),
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
                     distrust=distrust, ema=jnp.zeros((K + 1,), jnp.float32),
                     total=jnp.zeros((K + 1,), jnp.float32), t=jnp.zeros((), jnp.int32),
                     cand_true=true, cand_pred=pred, cand_bait=bait)
    return _observe(state, params), state


def step(key: Array, state: EnvState, action: Array, params: EnvParams):
    """One feed request: rank, show top-L, sample responses, update the user."""
    L = params.slate_size
    k_resp, k_cand = jax.random.split(key)

    scores = fused_scores(state.cand_pred, action, params)
    _, idx = jax.lax.top_k(scores, L)
    true = state.cand_true[idx]  # [L, K]
    bait_shown = state.cand_bait[idx]
    K = params.num_tasks
    n_words = (L * K + 2) // 2  # L*K response uniforms + one for leaving, two per word
    r1, r2 = _uniform16(jax.random.bits(k_resp, (n_words,), jnp.uint32))
    r = jnp.concatenate([r1, r2])
    resp = (r[:L * K].reshape(L, K) < jax.nn.sigmoid(true)).astype(jnp.float32)
    resp = resp.at[:, 1].multiply(resp[:, 0])  # cascade: a long view needs a click
    counts = resp.sum(0)  # [K]
    n_click = counts[0]
    n_bounce = (resp[:, 0] * (1.0 - resp[:, 1])).sum()
    n_loyal = (resp[:, 1] * (1.0 - bait_shown * (1.0 - params.bait_recover_frac))).sum()
    bounce_rate = n_bounce / jnp.maximum(n_click, 1.0)
    reward = counts @ params.reward_weights

    distrust = params.distrust_decay * state.distrust + (1.0 - params.distrust_decay) * bounce_rate
    temper = jnp.minimum(params.initial_temper,
                         state.temper - params.temper_drain - params.temper_bounce * n_bounce
                         + params.temper_recover * n_loyal)
    hazard = jax.nn.sigmoid(params.hazard_slope * (params.hazard_threshold - temper))
    left = (temper <= 0.0) | (r[L * K] < hazard)
    t = state.t + 1
    timeout = (t >= params.max_steps) & ~left
    done = left | timeout

    ema_x = jnp.concatenate([counts / L, bounce_rate[None]])
    ema = (1.0 - params.ema_rate) * state.ema + params.ema_rate * ema_x
    cand_true, cand_pred, cand_bait = _sample_candidates(k_cand, state.u, state.prone, distrust, params)
    new_state = state.replace(temper=temper, distrust=distrust, ema=ema, total=state.total + ema_x, t=t,
                              cand_true=cand_true, cand_pred=cand_pred, cand_bait=cand_bait)
    info = {
        "task_responses": counts,
        "terminal": left,
        "timeout": timeout,
        "temper": temper,
        "distrust": distrust,
        "bounces": n_bounce,
        "bait_shown": bait_shown.sum(),
        # mean true per-impression long-view probability of the slate (no sampling noise)
        "true_satisfaction": (jax.nn.sigmoid(true[:, 0]) * jax.nn.sigmoid(true[:, 1])).mean(),
        "prone": state.prone,
    }
    return _observe(new_state, params), new_state, reward, done, info



def candidate_outcomes(key: Array, state: EnvState, action: Array, params: EnvParams) -> Tuple[Array, Array]:
    """For OPE's MTF-GAUC: the fused score of every pending candidate under `action` [N], and a draw of its valid
    consumption [N] (1.0 when a click and then a long view, from the TRUE probabilities), as if each were shown.

    Reads the state only: `step`'s own draws are untouched (this uses its own key), so a rollout that calls it
    is the same rollout.
    """
    scores = fused_scores(state.cand_pred, action, params)
    p_click, p_long = jax.nn.sigmoid(state.cand_true[:, 0]), jax.nn.sigmoid(state.cand_true[:, 1])
    u_click, u_long = jax.random.uniform(key, (2,) + p_click.shape)
    return scores, ((u_click < p_click) & (u_long < p_long)).astype(jnp.float32)
