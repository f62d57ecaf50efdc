"""Behaviour and reference policies: ``apply(params, obs, key) -> action`` plus ``log_prob``.

A ``Policy`` is a NamedTuple of two pure functions; its params are a separate
pytree, so policies compose (a Gaussian around a base policy closes over the
base's functions and carries the base's params inside its own).

``log_prob(params, obs, action)`` is the log density of ``action`` (one
observation, one action) w.r.t. Lebesgue measure on [-1, 1]^A, unless said
otherwise:
- deterministic policies (fixed weights, trained agents, hand-written rules)
  are point masses: no density exists, their ``log_prob`` returns NaN so that
  any importance ratio built on it fails loudly;
- ``"clip"`` noise (the literal IntegratedRL box or a clipped Gaussian) puts
  probability atoms on the faces a = +-1. There ``log_prob`` is w.r.t. the
  per-dimension measure "Lebesgue on (-1, 1) + unit atoms at -1 and +1": the
  continuous density inside, the log of the atom's mass on a face. It is exact
  and ratios between two such policies are valid; do not mix it with
  Lebesgue-only densities (e.g. inside a mixture with the uniform policy).
- ``"truncate"`` noise (the default) samples the same box / Gaussian
  restricted to [-1, 1] (inverse CDF), an honest Lebesgue density.
"""
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr, ndtr

Array = jax.Array


class Policy(NamedTuple):
    apply: Callable  # (params, obs, key) -> action in [-1, 1]^A
    log_prob: Callable  # (params, obs, action) -> scalar log density
    # (params, obs) -> the deterministic action the policy explores around (box, Gaussian around a base);
    # None for policies without one. Collection logs it as the dataset's `behaviour_centre`.
    centre: Optional[Callable] = None


def _nan_log_prob(params, obs, action):
    return jnp.full((), jnp.nan, jnp.float32)


# --- uniform random --------------------------------------------------------

def uniform_policy(act_dim: int) -> Policy:
    """U([-1, 1]^A); params unused (pass None or ())."""
    def apply(params, obs, key):
        return jax.random.uniform(key, (act_dim,), minval=-1.0, maxval=1.0)

    def log_prob(params, obs, action):
        inside = jnp.all(jnp.abs(action) <= 1.0)
        return jnp.where(inside, -act_dim * np.log(2.0), -jnp.inf).astype(jnp.float32)
    return Policy(apply, log_prob)


# --- deterministic ---------------------------------------------------------

def fixed_policy() -> Policy:
    """Always the action in params (e.g. ``sim_env.baseline_action(env_params)``). A point mass."""
    return Policy(lambda params, obs, key: params, _nan_log_prob)


def agent_policy(act_fn: Callable) -> Policy:
    """Wrap a trained agent's ``act(state, obs, key)``; params are the agent state.

    Log density is NaN: agents act deterministically for evaluation. Wrap the
    result in ``gaussian_policy`` to get a stochastic behaviour policy with a density.
    """
    return Policy(lambda state, obs, key: act_fn(state, obs, key), _nan_log_prob)


# --- noise around a deterministic base ---------------------------------------

def _boundary_log_prob(log_density_inside, log_mass_low, log_mass_high, action):
    """Per-dimension log prob for a clipped distribution (atoms at -1, +1)."""
    return jnp.where(action >= 1.0, log_mass_high, jnp.where(action <= -1.0, log_mass_low, log_density_inside))


def _base_centre(base: Policy) -> Callable:
    """The centre of noise around a deterministic base: base(s) (its key is unused)."""
    return lambda params, obs: base.apply(params["base"], obs, jax.random.PRNGKey(0))


def gaussian_policy(base: Policy, mode: str = "truncate") -> Policy:
    """N(base(s), sigma^2 I) restricted to the box. params = dict(base=..., sigma=scalar or [A]).

    ``truncate``: truncated normal on [-1, 1] by inverse CDF; exact Lebesgue density.
    ``clip``: clip(N(...), -1, 1); density inside plus atoms on the faces (see module doc).
    The base must be deterministic (its key is ignored in the density).
    """
    if mode not in ("truncate", "clip"):
        raise ValueError(mode)

    def apply(params, obs, key):
        k_base, k_noise = jax.random.split(key)
        m = base.apply(params["base"], obs, k_base)
        s = jnp.broadcast_to(params["sigma"], m.shape)
        if mode == "truncate":
            z = jax.random.truncated_normal(k_noise, (-1.0 - m) / s, (1.0 - m) / s, m.shape)
            return jnp.clip(m + s * z, -1.0, 1.0)
        return jnp.clip(m + s * jax.random.normal(k_noise, m.shape), -1.0, 1.0)

    def log_prob(params, obs, action):
        m = base.apply(params["base"], obs, jax.random.PRNGKey(0))
        s = jnp.broadcast_to(params["sigma"], m.shape)
        z = (action - m) / s
        log_pdf = -0.5 * z ** 2 - 0.5 * np.log(2 * np.pi) - jnp.log(s)
        lo, hi = (-1.0 - m) / s, (1.0 - m) / s
        if mode == "truncate":
            log_mass = jnp.log(ndtr(hi) - ndtr(lo))  # >= ~0.5 since the mean lies in the box
            per_dim = jnp.where(jnp.abs(action) <= 1.0, log_pdf - log_mass, -jnp.inf)
        else:
            per_dim = _boundary_log_prob(log_pdf, log_ndtr(lo), log_ndtr(-hi), action)
        return per_dim.sum()
    return Policy(apply, log_prob, _base_centre(base))


def box_policy(base: Policy, half_width: float = 0.15, mode: str = "truncate") -> Policy:
    """IntegratedRL-MTF exploration: base(s) + U(-w, w), kept in [-1, 1]. params = dict(base=...).

    ``clip`` is the paper's literal ``clip(base + U(-w, w), -1, 1)`` (atoms on the
    faces, see module doc); ``truncate`` samples U on the box intersected with
    [-1, 1] (exact Lebesgue density 1 / width).
    """
    if mode not in ("truncate", "clip"):
        raise ValueError(mode)
    w = float(half_width)

    def apply(params, obs, key):
        k_base, k_noise = jax.random.split(key)
        m = base.apply(params["base"], obs, k_base)
        if mode == "truncate":
            lo, hi = jnp.maximum(m - w, -1.0), jnp.minimum(m + w, 1.0)
            return lo + (hi - lo) * jax.random.uniform(k_noise, m.shape)
        return jnp.clip(m + jax.random.uniform(k_noise, m.shape, minval=-w, maxval=w), -1.0, 1.0)

    def log_prob(params, obs, action):
        m = base.apply(params["base"], obs, jax.random.PRNGKey(0))
        lo, hi = m - w, m + w
        in_box = (action >= jnp.maximum(lo, -1.0)) & (action <= jnp.minimum(hi, 1.0))
        if mode == "truncate":
            width = jnp.minimum(hi, 1.0) - jnp.maximum(lo, -1.0)
            per_dim = jnp.where(in_box, -jnp.log(width), -jnp.inf)
        else:
            inside = jnp.where(in_box, -np.log(2 * w), -jnp.inf)
            # mass clipped onto a face; -inf when the box does not reach it
            log_low = jnp.log(jnp.clip((-1.0 - lo) / (2 * w), 0.0, 1.0))
            log_high = jnp.log(jnp.clip((hi - 1.0) / (2 * w), 0.0, 1.0))
            per_dim = _boundary_log_prob(inside, log_low, log_high, action)
        return per_dim.sum()
    return Policy(apply, log_prob, _base_centre(base))


# --- discrete actions ------------------------------------------------------

def epsilon_greedy(base: Policy, num_actions: int) -> Policy:
    """A deterministic discrete base (integer actions), else with probability epsilon a uniform action.

    pi(a|s) = (1 - epsilon) [a = base(s)] + epsilon / n, a probability (not a
    density). params = dict(base=..., epsilon=scalar). OPE gives deterministic
    discrete targets (greedy agents, rules) their probabilities this way, as
    `gaussian_policy` smooths continuous ones.
    """

    def probs(params, obs):
        greedy = jax.nn.one_hot(base.apply(params["base"], obs, jax.random.PRNGKey(0)), num_actions)
        return (1.0 - params["epsilon"]) * greedy + params["epsilon"] / num_actions

    def apply(params, obs, key):
        return jax.random.categorical(key, jnp.log(probs(params, obs))).astype(jnp.int32)

    def log_prob(params, obs, action):
        return jnp.log(probs(params, obs)[action])

    return Policy(apply, log_prob)


# --- mixtures --------------------------------------------------------------

def mixture_policy(components: Sequence[Policy]) -> Policy:
    """Pick component i with probability weights[i], then act with it.

    params = dict(components=(params_0, params_1, ...), weights=[C]) (weights sum to 1).
    The log density is the exact mixture ``logsumexp_i(log w_i + log p_i(a|s))``;
    all components must have Lebesgue densities (no NaN/point masses, no "clip" atoms).
    """
    components = tuple(components)

    def apply(params, obs, key):
        k_pick, *k_comp = jax.random.split(key, len(components) + 1)
        acts = jnp.stack([c.apply(p, obs, k) for c, p, k in zip(components, params["components"], k_comp)])
        i = jax.random.categorical(k_pick, jnp.log(params["weights"]))
        return acts[i]

    def log_prob(params, obs, action):
        lps = jnp.stack([c.log_prob(p, obs, action) for c, p in zip(components, params["components"])])
        return jax.nn.logsumexp(lps + jnp.log(params["weights"]))
    return Policy(apply, log_prob)


def batchrl_mixture(expert: Policy, act_dim: int) -> Policy:
    """BatchRL-MTF's collection: half uniform random, half Gaussian around an expert.

    params = dict(components=((), dict(base=expert_params, sigma=...)), weights=[0.5, 0.5]).
    """
    return mixture_policy((uniform_policy(act_dim), gaussian_policy(expert)))
