"""The reachable-headroom curve: oracle progressive chains (no learning, no logged data).

IntegratedRL-MTF (arXiv 2404.17589) trains progressively: round k explores the
box ``mu_{k-1}(s) + U(-w, w)`` (w = 0.15) around the policy deployed in round
k-1 (round 1: the production baseline, a fixed vector), learns a policy that is
trusted only inside that box, deploys it and repeats. However good the
learner, round k's policy can at best be the best policy inside the box around
round k-1's. This module measures that ceiling in the simulator itself: an
oracle chain replaces the learner of every round by a target policy projected
onto the box around the previous round's (oracle) policy,

    mu_0(s) = baseline,    mu_k(s) = clip(clip(target_k(s), mu_{k-1}(s) - w, mu_{k-1}(s) + w), -1, 1),

and scores mu_1 .. mu_R on fresh users. Two targets:

- ``switch``: the hand-written switch rule (``mtf_policies.bounce_switch_policy``
  with ``default_switch_params``) at every round, untuned. With one target for
  all rounds the chain equals ``clip(target(s), mu_0 - k w, mu_0 + k w)``.
- ``cma_linear``: ``tanh(W s_norm + b)`` (``linear_tanh_policy``), re-tuned
  at every round by CMA-ES (``cma_es``) to maximise the mean undiscounted
  return of the projected policy mu_k on training users (common random numbers
  within a generation, fresh training users every generation; their keys never
  meet the evaluation users').

A chain is one jittable policy (``projected_chain``): the per-round target
params are stacked on a leading round axis and a ``rounds`` count says how many
projections apply (``lax.fori_loop``), so every round of a chain, and every
CMA-ES candidate of every round, runs through one compiled program.
"""
import math
from typing import Callable, Dict, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxmtf.sim import policies
from jaxmtf.sim.mtf import env as sim_env
from jaxmtf.sim.mtf import policies as mtf_policies
from jaxmtf.sim.policies import Policy, _nan_log_prob
from jaxmtf.sim.rollout import evaluate, rollout

Array = jax.Array


# --- projection onto the trusted box ------------------------------------------

def _project(target_action: Array, centre_action: Array, half_width) -> Array:
    """clip(clip(target, c - w, c + w), -1, 1): the point of the box (within the action cube) nearest the target."""
    return jnp.clip(jnp.clip(target_action, centre_action - half_width, centre_action + half_width), -1.0, 1.0)


def box_projected(target: Policy, centre: Policy) -> Policy:
    """The target policy projected onto the box of half-width w around the centre policy.

    action(s) = clip(clip(target(s), c(s) - w, c(s) + w), -1, 1), per dimension.
    params = dict(target=..., centre=..., half_width=scalar or [A]). Deterministic
    (targets and centres are): a point mass, ``log_prob`` is NaN.
    """
    def apply(params, obs, key):
        k_target, k_centre = jax.random.split(key)
        a = target.apply(params["target"], obs, k_target)
        c = centre.apply(params["centre"], obs, k_centre)
        return _project(a, c, params["half_width"])
    return Policy(apply, _nan_log_prob)


def projected_chain(target: Policy, base: Policy) -> Policy:
    """A nested chain of box projections: round k's policy is ``box_projected(target_k, round k-1's)``.

    params = dict(base=base params (round 0's policy), targets=per-round target params stacked
    on a leading axis [R_max, ...], rounds=int32 scalar k <= R_max (how many projections
    apply; 0 gives the base), half_width=w). All rounds share one compiled program, since
    ``rounds`` is data. A point mass (``log_prob`` NaN).
    """
    def apply(params, obs, key):
        a = base.apply(params["base"], obs, jax.random.fold_in(key, 0))

        def body(k, a):
            p_k = jax.tree.map(lambda x: x[k], params["targets"])
            return _project(target.apply(p_k, obs, jax.random.fold_in(key, k + 1)), a, params["half_width"])
        return jax.lax.fori_loop(0, params["rounds"], body, a)
    return Policy(apply, _nan_log_prob)


def stack_rounds(per_round_params) -> dict:
    """Stack a sequence of per-round target params on a leading round axis (``projected_chain``'s ``targets``)."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *per_round_params)


# --- the linear target ------------------------------------------------------------

def linear_tanh_policy() -> Policy:
    """tanh(W (s - obs_mean) / obs_std + b). params = dict(W=[A, O], b=[A], obs_mean=[O], obs_std=[O]).

    The standardisation statistics are fixed (``observation_stats``), not tuned. A point mass.
    """
    def apply(params, obs, key):
        s = (obs - params["obs_mean"]) / params["obs_std"]
        return jnp.tanh(params["W"] @ s + params["b"])
    return Policy(apply, _nan_log_prob)


def linear_num_params(obs_dim: int, act_dim: int) -> int:
    return act_dim * obs_dim + act_dim


def linear_params(theta: Array, obs_mean: Array, obs_std: Array, act_dim: int) -> dict:
    """``linear_tanh_policy`` params from the search vector theta = (sqrt(O) W flattened, b).

    W is searched as sqrt(O) W so that one step of size sigma in theta moves each output's
    pre-activation by about sigma, through W (standardised inputs: Var(W_i s) = |W_i|^2) as
    through b; the policy is still tanh(W s_norm + b).
    """
    obs_dim = obs_mean.shape[0]
    W = theta[:act_dim * obs_dim].reshape(act_dim, obs_dim) / math.sqrt(obs_dim)
    return dict(W=W, b=theta[act_dim * obs_dim:], obs_mean=obs_mean, obs_std=obs_std)


def observation_stats(key: Array, env_params: sim_env.EnvParams, num_users: int, num_steps=None):
    """Mean and std (+ 1e-3, as TD3+BC) of the observations of baseline sessions, over their valid steps."""
    traj = rollout(key, env_params, policies.fixed_policy().apply, sim_env.baseline_action(env_params),
                   num_users, num_steps)
    obs = np.asarray(traj.observations)[np.asarray(traj.valid)]
    return jnp.asarray(obs.mean(0), jnp.float32), jnp.asarray(obs.std(0) + 1e-3, jnp.float32)


# --- CMA-ES --------------------------------------------------------------------------

class CMAState(NamedTuple):
    mean: Array  # [n]
    sigma: Array  # [] step size
    C: Array  # [n, n] covariance (full) or [n] its diagonal (separable)
    B: Array  # [n, n] eigenvectors of C (full) or [0] (separable: the identity)
    D: Array  # [n] square roots of C's eigenvalues (of its diagonal when separable)
    p_c: Array  # [n] evolution path of C
    p_s: Array  # [n] evolution path of sigma (conjugate)
    generation: Array  # [] int32, tells so far


class CMAES(NamedTuple):
    init: Callable  # (mean [n], sigma) -> CMAState
    ask: Callable  # (state, key) -> candidates [popsize, n]
    tell: Callable  # (state, candidates [popsize, n], fitness [popsize], maximised) -> state
    popsize: int
    num_parents: int


def cma_es(n: int, popsize: Optional[int] = None, diagonal: bool = False) -> CMAES:
    """(mu/mu_w, lambda)-CMA-ES with rank-one and rank-mu updates and cumulative step-size adaptation.

    Hansen, "The CMA Evolution Strategy: A Tutorial" (arXiv 1604.00772), its default
    constants with positive recombination weights only: lambda = 4 + floor(3 ln n),
    mu = floor(lambda / 2), w_i ~ ln((lambda + 1) / 2) - ln i, c_c = (4 + mu_eff / n) /
    (n + 4 + 2 mu_eff / n), c_s = (mu_eff + 2) / (n + mu_eff + 5), c_1 = 2 / ((n + 1.3)^2 +
    mu_eff), c_mu = min(1 - c_1, 2 (mu_eff - 2 + 1 / mu_eff) / ((n + 2)^2 + mu_eff)),
    d_s = 1 + 2 max(0, sqrt((mu_eff - 1) / (n + 1)) - 1) + c_s, h_sigma with threshold
    1.4 + 2 / (n + 1). C is eigendecomposed at every tell (n ~ 250: a few ms, nothing
    next to the rollouts). One safeguard as in pycma: the log step-size change per
    generation is capped at 1.

    ``diagonal=True`` is sep-CMA-ES (Ros & Hansen, PPSN 2008): C restricted to its
    diagonal and c_1, c_mu multiplied by (n + 2) / 3 (capped so that c_1 + c_mu <= 1).
    Not for cost but for the budget: full CMA's learning rates are ~2 / n^2, so with n ~
    250 and a few dozen generations C moves by well under 1% and the search is an
    isotropic ES with step-size control; sep-CMA learns per-coordinate scales
    ~n / 3 times faster, which a few dozen generations can use.
    """
    lam = int(popsize) if popsize else 4 + int(3 * math.log(n))
    mu = lam // 2
    w = np.log((lam + 1) / 2.0) - np.log(np.arange(1, mu + 1))
    w = w / w.sum()
    mueff = float(1.0 / (w ** 2).sum())
    cc = (4 + mueff / n) / (n + 4 + 2 * mueff / n)
    cs = (mueff + 2) / (n + mueff + 5)
    c1 = 2 / ((n + 1.3) ** 2 + mueff)
    cmu = min(1 - c1, 2 * (mueff - 2 + 1 / mueff) / ((n + 2) ** 2 + mueff))
    if diagonal:
        c1, cmu = c1 * (n + 2) / 3, cmu * (n + 2) / 3
        if c1 + cmu > 1:
            c1, cmu = c1 / (c1 + cmu), cmu / (c1 + cmu)
    damps = 1 + 2 * max(0.0, math.sqrt((mueff - 1) / (n + 1)) - 1) + cs
    chi_n = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n ** 2))
    weights = jnp.asarray(w, jnp.float32)

    def init(mean, sigma):
        mean = jnp.asarray(mean, jnp.float32)
        zeros = jnp.zeros((n,), jnp.float32)
        C = jnp.ones((n,)) if diagonal else jnp.eye(n)
        B = jnp.zeros((0,)) if diagonal else jnp.eye(n)
        return CMAState(mean, jnp.asarray(sigma, jnp.float32), C, B, jnp.ones((n,)), zeros, zeros,
                        jnp.zeros((), jnp.int32))

    def ask(state, key):
        z = jax.random.normal(key, (lam, n))
        y = state.D * z if diagonal else (state.D * z) @ state.B.T  # y ~ N(0, C)
        return state.mean + state.sigma * y

    def tell(state, candidates, fitness):
        """One update from the candidates that ``ask`` gave and their fitness (higher is better)."""
        order = jnp.argsort(-fitness)[:mu]
        y = (candidates[order] - state.mean) / state.sigma  # [mu, n], best first
        y_w = weights @ y
        mean = state.mean + state.sigma * y_w
        # C^{-1/2} y_w
        inv_sqrt_c_yw = y_w / state.D if diagonal else state.B @ ((state.B.T @ y_w) / state.D)
        p_s = (1 - cs) * state.p_s + math.sqrt(cs * (2 - cs) * mueff) * inv_sqrt_c_yw
        g = state.generation + 1
        ps_norm = jnp.linalg.norm(p_s)
        h_sigma = (ps_norm / jnp.sqrt(1 - (1 - cs) ** (2 * g.astype(jnp.float32))) / chi_n
                   < 1.4 + 2 / (n + 1)).astype(jnp.float32)
        p_c = (1 - cc) * state.p_c + h_sigma * math.sqrt(cc * (2 - cc) * mueff) * y_w
        delta_h = (1 - h_sigma) * cc * (2 - cc)
        if diagonal:
            rank_one, rank_mu = p_c ** 2, weights @ y ** 2
            C = (1 - c1 - cmu) * state.C + c1 * (rank_one + delta_h * state.C) + cmu * rank_mu
            C = jnp.maximum(C, 1e-20)
            B, D = state.B, jnp.sqrt(C)
        else:
            rank_one, rank_mu = jnp.outer(p_c, p_c), (y * weights[:, None]).T @ y
            C = (1 - c1 - cmu) * state.C + c1 * (rank_one + delta_h * state.C) + cmu * rank_mu
            C = (C + C.T) / 2
            eigvals, B = jnp.linalg.eigh(C)
            D = jnp.sqrt(jnp.maximum(eigvals, 1e-20))
        sigma = state.sigma * jnp.exp(jnp.minimum(1.0, (cs / damps) * (ps_norm / chi_n - 1)))
        return CMAState(mean, sigma, C, B, D, p_c, p_s, g)

    return CMAES(init, ask, tell, lam, mu)


# --- the oracle chains --------------------------------------------------------------

def _chain_params(base_params, targets, rounds, half_width):
    return dict(base=base_params, targets=targets, rounds=jnp.asarray(rounds, jnp.int32),
                half_width=jnp.asarray(half_width, jnp.float32))


def make_round_tuner(env_params, linear_chain: Policy, to_params, cma: CMAES, baseline: Array, half_width: float,
                     train_users: int, generations: int, sigma0: float, num_steps=None):
    """tune_round(key, thetas, k, theta0) -> (final CMA mean, per-generation training return of the mean, of the
    best candidate, step size): ``generations`` of CMA-ES on round k's search vector, one compiled program."""

    def train_return(k_users, thetas, k, theta):
        """Mean training return of the chain whose round k (1-based) uses theta, earlier rounds thetas."""
        params = _chain_params(baseline, to_params(thetas.at[k - 1].set(theta)), k, half_width)
        return evaluate(k_users, env_params, linear_chain.apply, params, train_users, num_steps)["undiscounted"].mean()

    @jax.jit
    def tune_round(key, thetas, k, theta0):
        def generation(state, key):
            k_ask, k_users = jax.random.split(key)
            cand = cma.ask(state, k_ask)
            scores = jax.vmap(train_return, in_axes=(None, None, None, 0))(
                k_users, thetas, k, jnp.concatenate([state.mean[None], cand]))
            new = cma.tell(state, cand, scores[1:])
            return new, (scores[0], scores[1:].max(), new.sigma)
        state, (mean_ret, best_ret, sigmas) = jax.lax.scan(
            generation, cma.init(theta0, sigma0), jax.random.split(key, generations))
        return state.mean, mean_ret, best_ret, sigmas

    return tune_round


def score_chains(env_params, eval_key: Array, switch_chain: Policy, switch_targets, linear_chain: Policy,
                 linear_targets, baseline: Array, rounds: int, half_width: float, eval_users: int,
                 num_steps=None) -> Dict[str, np.ndarray]:
    """Every round of both chains on the same evaluation users: per-user undiscounted returns."""
    def score(policy, params):
        return np.asarray(evaluate(eval_key, env_params, policy.apply, params, eval_users, num_steps)["undiscounted"])

    # the baseline is any chain at round 0 and the switch rule itself the switch chain's round 1 with a
    # box wider than the action cube: one compiled evaluation per chain (the same users, the same keys)
    return {"baseline": score(switch_chain, _chain_params(baseline, switch_targets, 0, half_width)),
            "switch_unconstrained": score(switch_chain, _chain_params(baseline, switch_targets, 1, 2.0)),
            "switch": np.stack([score(switch_chain, _chain_params(baseline, switch_targets, k, half_width))
                                for k in range(1, rounds + 1)]),
            "cma_linear": np.stack([score(linear_chain, _chain_params(baseline, linear_targets, k, half_width))
                                    for k in range(1, rounds + 1)])}


def tune_rounds(tune_round, key: Array, baseline: Array, obs_dim: int, rounds: int, log: Callable[[str], None]):
    """(thetas [R, n], history) of the CMA-linear chain: round 1 starts from the target equal to the baseline
    (W = 0, b = atanh(baseline)), round k > 1 from round k-1's tuned target."""
    act_dim = baseline.shape[0]
    b0 = jnp.arctanh(jnp.clip(baseline, -0.99, 0.99))
    theta = jnp.concatenate([jnp.zeros((act_dim * obs_dim,)), b0])  # target = baseline: round 1 starts at the centre
    thetas = jnp.tile(theta[None], (rounds, 1))
    hist = {"cma_train_mean": [], "cma_train_best": [], "cma_sigma": []}
    for k, k_round in zip(range(1, rounds + 1), jax.random.split(key, rounds)):
        theta, mean_ret, best_ret, sigmas = tune_round(k_round, thetas, k, theta)  # from the previous round's
        thetas = thetas.at[k - 1].set(theta)
        for name, v in zip(hist, (mean_ret, best_ret, sigmas)):
            hist[name].append(np.asarray(v))
        log(f"round {k}: CMA training return of the mean {float(mean_ret[0]):.2f} -> {float(mean_ret[-1]):.2f} "
            f"(best candidate {float(best_ret.max()):.2f}), sigma {float(sigmas[-1]):.3f}")
    return thetas, hist


def oracle_chain(env_params: sim_env.EnvParams, key: Array, eval_key: Array, rounds: int = 5,
                 half_width: float = 0.15, eval_users: int = 2000, train_users: int = 500,
                 generations: int = 30, popsize: Optional[int] = None, sigma0: float = 0.5,
                 diagonal: bool = True, stats_users: int = 500, num_steps: Optional[int] = None,
                 log_fn: Optional[Callable[[str], None]] = None) -> Dict[str, np.ndarray]:
    """Both oracle chains over ``rounds`` rounds, scored on the same fresh evaluation users.

    ``key`` drives everything that is tuned (observation statistics from ``stats_users``
    baseline sessions, CMA-ES sampling, training users); ``eval_key`` draws the evaluation
    users alone (pass a key independent of ``key``). CMA-ES: ``popsize`` (default Hansen's
    4 + 3 ln n) candidates per generation, all on the same ``train_users`` users (common random
    numbers), new users each generation; round 1 starts from the target equal to the baseline
    (W = 0, b = atanh(baseline)), round k > 1 from round k-1's tuned target, with step size
    ``sigma0`` every round; the round's policy is the final CMA mean. ``diagonal``: sep-CMA
    (default; see ``cma_es``) or full covariance.

    Returns numpy arrays (returns are undiscounted, per evaluation user):
    ``baseline`` [U] (round 0), ``switch`` [R, U] and ``cma_linear`` [R, U] (round k at
    index k-1), ``switch_unconstrained`` [U] (the switch rule itself, no box: the limit of the
    switch chain), ``cma_train_mean`` [R, G] (training return of the CMA mean before each
    generation's update), ``cma_train_best`` [R, G] (best candidate's), ``cma_sigma`` [R, G]
    (step size after it), ``cma_theta`` [R, n] (each round's tuned search vector, see
    ``linear_params``), ``obs_mean``, ``obs_std`` [O].
    """
    log = log_fn or (lambda msg: None)
    A, obs_dim = sim_env.act_dim(env_params), sim_env.obs_dim(env_params)
    baseline = sim_env.baseline_action(env_params)
    fixed = policies.fixed_policy()
    k_stats, k_cma = jax.random.split(key)

    # --- the switch-rule chain: the same target every round ---
    switch_rule = mtf_policies.bounce_switch_policy(env_params)
    switch_params = mtf_policies.default_switch_params(env_params)
    switch_chain = projected_chain(switch_rule, fixed)
    switch_targets = stack_rounds([switch_params] * rounds)

    # --- the CMA-linear chain ---
    obs_mean, obs_std = observation_stats(k_stats, env_params, stats_users, num_steps)
    linear = linear_tanh_policy()
    linear_chain = projected_chain(linear, fixed)
    n = linear_num_params(obs_dim, A)
    cma = cma_es(n, popsize, diagonal)
    to_params = jax.vmap(lambda th: linear_params(th, obs_mean, obs_std, A))

    tune_round = make_round_tuner(env_params, linear_chain, to_params, cma, baseline, half_width, train_users,
                                  generations, sigma0, num_steps)
    thetas, hist = tune_rounds(tune_round, k_cma, baseline, obs_dim, rounds, log)

    out = score_chains(env_params, eval_key, switch_chain, switch_targets, linear_chain, to_params(thetas),
                       baseline, rounds, half_width, eval_users, num_steps)
    out.update({name: np.stack(v) for name, v in hist.items()})
    out.update(cma_theta=np.asarray(thetas), obs_mean=np.asarray(obs_mean), obs_std=np.asarray(obs_std))
    return out
