"""State-marginalised importance sampling over a discretised state (Xie et al. 2019's tabular MIS).

Trajectory weights multiply T per-step ratios, so their variance grows
exponentially with the horizon. Marginalised IS reweights each step by the
ratio of state distributions d^pi_t(s) / d^b_t(s) times ONE action ratio,
which does not compound (the LinkedIn notification work evaluates its
policies this way). The state-distribution ratio is estimated on a
discretisation of the state into K cells, forward in time:

    d^pi_0(k)       = share of episodes whose s_0 is in cell k (the same for every policy)
    P^pi_t(k' | k)  = sum_{i in k at t} rho^i_t [s^i_{t+1} in k'] / sum_{i in k at t} rho^i_t
    rbar^pi_t(k)    = sum_{i in k at t} rho^i_t r^i_t / sum_{i in k at t} rho^i_t
    d^pi_{t+1}(k')  = sum_k d^pi_t(k) P^pi_t(k' | k)
    V               = sum_t gamma^t sum_k d^pi_t(k) rbar^pi_t(k)

with rho^i_t = pi_e(a^i_t | s^i_t) / pi_b(a^i_t | s^i_t) the per-step ratio.
Both cell averages are self-normalised (the denominator is the sum of the
ratios, not the count), which is what keeps the estimator bounded. An
episode that has ended sits in an extra absorbing cell with reward 0. The
estimate is exact for a tabular MDP whose states are the cells; with
coarser cells it is biased by what a cell hides about the state. With one
cell and episodes of equal length it is the self-normalised IS of the
one-step ratios, step by step: sum_t gamma^t sum_i rho^i_t r^i_t / sum_i rho^i_t.

The cells (`state_cells`): k-means on the first principal components of
the standardised observations. k-means rather than quantile bins because a
grid of q bins per dimension has q^d cells, most of them empty once d > 2,
while k-means puts its K cells where the logged states are, so every cell
has samples; the principal components first, because the observation
stacks user-profile features, the session position and running response
statistics whose scales and correlations differ, and a few components keep
most of their variance. The session position needs no cell: the
estimator is indexed by time. Cells scale badly with the state dimension
all the same; no learned-ratio estimator (DualDICE, MWL) is offered here,
since its minimax training has no stopping rule that OPE could trust
without the truth.
"""
import jax
import jax.numpy as jnp
import numpy as np
import scipy.cluster.vq

from jaxmtf.ope.episodes import Episodes, discounts


def principal_components(x, num_components: int):
    """(mean, std, projection [D, C]): standardise, then the top C right singular vectors."""
    mean, std = jnp.mean(x, axis=0), jnp.std(x, axis=0) + 1e-6
    z = (x - mean) / std
    _, _, vt = jnp.linalg.svd(z, full_matrices=False)
    return mean, std, vt[:num_components].T


def kmeans(seed: int, x, num_clusters: int, restarts: int = 5) -> np.ndarray:
    """[K, D] centres: scipy's k-means (k-means++ starts, Lloyd's iterations), the best of `restarts` runs by
    within-cell sum of squares. Host-side and once per OPE run (the fit is at most max_fit_rows rows)."""
    x = np.asarray(x, np.float64)
    rng, best, best_inertia = np.random.default_rng(seed), None, np.inf
    for _ in range(restarts):
        centres, labels = scipy.cluster.vq.kmeans2(x, num_clusters, minit="++", seed=rng)
        inertia = float(np.sum((x - centres[labels]) ** 2))
        if inertia < best_inertia:
            best, best_inertia = centres, inertia
    return best.astype(np.float32)


def assign_cells(x, centres):
    """[N] index of the nearest centre."""
    d2 = jnp.sum(x**2, 1)[:, None] - 2.0 * x @ centres.T + jnp.sum(centres**2, 1)[None]
    return jnp.argmin(d2, axis=1)


def state_cells(key, observations, num_cells: int, num_components: int, max_fit_rows: int = 20_000):
    """[N] cell of every row: k-means on the principal components (fitted on at most `max_fit_rows` rows)."""
    k_rows, k_means = jax.random.split(key)
    n = observations.shape[0]
    fit = (observations if n <= max_fit_rows
           else observations[jax.random.choice(k_rows, n, (max_fit_rows,), replace=False)])
    mean, std, proj = principal_components(fit, num_components)
    seed = int(jax.random.randint(k_means, (), 0, 2**31 - 1))  # the config's seed, through the OPE key
    centres = kmeans(seed, ((fit - mean) / std) @ proj, num_cells)
    return assign_cells(((observations - mean) / std) @ proj, jnp.asarray(centres))


def marginalized_is(episodes: Episodes, cells, log_ratio, gamma, counts, num_cells: int):
    """The estimate V above. cells [E, T] in [0, num_cells) on logged steps; log_ratio [E, T] per step."""
    absorbing = num_cells
    cells = jnp.where(episodes.mask > 0, cells, absorbing)
    here = jax.nn.one_hot(cells, num_cells + 1)  # [E, T, K+1]
    after = jnp.concatenate([here[:, 1:], jax.nn.one_hot(jnp.full_like(cells[:, :1], absorbing), num_cells + 1)], 1)
    cw = counts[:, None] * jnp.exp(jnp.where(episodes.mask > 0, log_ratio, 0.0))  # [E, T]
    mass = jnp.einsum("et,etk->tk", cw, here)
    safe = jnp.where(mass > 0, mass, 1.0)
    mean_reward = jnp.einsum("et,etk->tk", cw * episodes.rewards, here) / safe
    transition = jnp.einsum("et,etk,etl->tkl", cw, here, after) / safe[:, :, None]
    d0 = jnp.einsum("e,ek->k", counts, here[:, 0]) / jnp.sum(counts)

    def forward(d, step):
        p, rbar = step
        return d @ p, d @ rbar

    _, reward_t = jax.lax.scan(forward, d0, (transition, mean_reward))
    return jnp.sum(discounts(episodes.horizon, gamma) * reward_t)


def per_step_effective_sample_size(episodes: Episodes, log_ratio) -> jax.Array:
    """The ESS of MIS's one-step ratios: Kish's (sum w)^2 / sum w^2 at every step over the episodes still live
    there, averaged over the steps with a live episode. An ended episode's padded steps (ratio 1) are not
    samples of that step and are left out (issue 20: counting them inflated the ESS of late steps)."""
    live = episodes.mask > 0
    masked = jnp.where(live, log_ratio, -jnp.inf)
    shift = jnp.max(masked, axis=0, keepdims=True)
    w = jnp.where(live, jnp.exp(masked - jnp.where(jnp.isfinite(shift), shift, 0.0)), 0.0)  # [E, T]
    num, den = jnp.sum(w, axis=0) ** 2, jnp.sum(w**2, axis=0)
    has_live = jnp.any(live, axis=0) & (den > 0)
    ess = jnp.where(has_live, num / jnp.where(has_live, den, 1.0), 0.0)
    return jnp.sum(ess) / jnp.maximum(jnp.sum(has_live), 1)
