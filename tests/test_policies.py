"""Each stochastic policy's log_prob must match the density of its own sampler.

Two checks that fail for different bugs:
- shape: each 1-D marginal histogram of the samples matches the density that
  log_prob implies on a slice through the base point, normalised over the slice
  (valid because these policies are products over dimensions);
- normalisation: E_{a~q}[1 / q(a)] equals the volume of q's support, which
  catches constant offsets that the slice normalisation would hide.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmtf.sim import policies as P
from jaxmtf.sim.mtf import env as E

A = 3
N = 40_000
BASE = np.array([0.95, -0.2, -0.97], np.float32)  # near a face, inside, near the other face
OBS = jnp.zeros((5,))
W = 0.15


def _cases():
    fixed = P.fixed_policy()
    gauss = dict(base=jnp.asarray(BASE), sigma=jnp.array(0.3))
    box_width = np.minimum(BASE + W, 1) - np.maximum(BASE - W, -1)
    return {
        "uniform": (P.uniform_policy(A), None, 2.0 ** A),
        "gauss_trunc": (P.gaussian_policy(fixed), gauss, 2.0 ** A),
        "box_trunc": (P.box_policy(fixed, W), dict(base=jnp.asarray(BASE)), float(np.prod(box_width))),
        "mixture": (P.batchrl_mixture(fixed, A), dict(components=(None, gauss), weights=jnp.array([0.5, 0.5])),
                    2.0 ** A),
    }


def _lp(policy, params, actions):
    return np.asarray(jax.vmap(policy.log_prob, in_axes=(None, None, 0))(params, OBS, jnp.asarray(actions)))


@pytest.mark.parametrize("name", ["uniform", "gauss_trunc", "box_trunc", "mixture"])
def test_log_prob_matches_sampler(name):
    policy, params, support_volume = _cases()[name]
    keys = jax.random.split(jax.random.PRNGKey(0), N)
    a = np.asarray(jax.jit(jax.vmap(policy.apply, in_axes=(None, None, 0)))(params, OBS, keys))
    assert a.shape == (N, A) and np.all(np.abs(a) <= 1.0)
    lp = _lp(policy, params, a)
    assert np.all(np.isfinite(lp))

    inv_q = np.exp(-lp)
    est, se = inv_q.mean(), inv_q.std() / np.sqrt(N)
    assert abs(est - support_volume) < 4 * se + 1e-3 * support_volume, (est, se, support_volume)

    if name == "mixture":  # not a product over dims: the slice check does not apply
        return
    edges = np.linspace(-1, 1, 81)
    fine = np.linspace(-1, 1, 4001)
    for d in range(A):
        hist, _ = np.histogram(a[:, d], bins=edges, density=True)
        grid = np.tile(BASE, (len(fine), 1))
        grid[:, d] = fine
        slice_dens = np.exp(_lp(policy, params, grid))
        norm = np.trapezoid(slice_dens, fine)
        # bin averages of the implied density (the box density jumps inside a bin)
        implied = np.array([slice_dens[(fine >= lo) & (fine < hi)].mean() for lo, hi in zip(edges[:-1], edges[1:])])
        implied /= norm
        # skip bins that straddle an edge of the support (the box's ends)
        whole = np.array([np.all(slice_dens[(fine >= lo) & (fine < hi)] > 0) for lo, hi in zip(edges[:-1], edges[1:])])
        mask = (implied > 0.05) & whole
        err = np.abs(hist[mask] - implied[mask]) / implied[mask]
        assert np.median(err) < 0.06 and err.max() < 0.4, (name, d, np.median(err), err.max())
        assert np.all(hist[implied == 0] == 0)


@pytest.mark.parametrize("kind", ["gauss", "box"])
def test_clip_mode_atoms(kind):
    """clip mode: the mass on a face equals exp(log_prob) there; inside it is the continuous density."""
    fixed = P.fixed_policy()
    base = jnp.array([0.95])
    if kind == "gauss":
        policy, params = P.gaussian_policy(fixed, mode="clip"), dict(base=base, sigma=jnp.array(0.3))
    else:
        policy, params = P.box_policy(fixed, W, mode="clip"), dict(base=base)
    keys = jax.random.split(jax.random.PRNGKey(1), N)
    a = np.asarray(jax.vmap(policy.apply, in_axes=(None, None, 0))(params, OBS, keys))[:, 0]
    frac_face = np.mean(a >= 1.0)
    p_face = float(np.exp(policy.log_prob(params, OBS, jnp.array([1.0]))))
    assert abs(frac_face - p_face) < 4 * np.sqrt(p_face * (1 - p_face) / N) + 1e-3
    inside = np.linspace(-0.99, 0.999, 2000)
    dens = np.exp(_lp(policy, params, inside[:, None]))
    assert abs(np.trapezoid(dens, inside) + p_face - 1.0) < 0.01


def test_deterministic_policies():
    params = E.EnvParams()
    base = E.baseline_action(params)
    fixed = P.fixed_policy()
    key = jax.random.PRNGKey(0)
    obs = jnp.zeros((E.obs_dim(params),))
    np.testing.assert_array_equal(fixed.apply(base, obs, key), base)
    assert np.isnan(fixed.log_prob(base, obs, base))
    agent = P.agent_policy(lambda state, o, k: jnp.tanh(state["w"] @ o))
    st = {"w": jnp.ones((E.act_dim(params), E.obs_dim(params)))}
    assert agent.apply(st, obs, key).shape == (E.act_dim(params),)
    # composable: a Gaussian around the wrapped agent has a density
    g = P.gaussian_policy(agent)
    gp = dict(base=st, sigma=jnp.array(0.2))
    act = g.apply(gp, obs, key)
    assert np.isfinite(g.log_prob(gp, obs, act))
