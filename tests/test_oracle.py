"""The oracle progressive chains (jaxmtf.sim.mtf.oracle): projection, chain reach, CMA-ES, a tiny run."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmtf.sim import policies as P
from jaxmtf.sim.mtf import env as E
from jaxmtf.sim.mtf import oracle
from jaxmtf.sim.mtf import policies as mtf_policies

W = 0.15


def _projected(target, centre, half_width=W):
    pol = oracle.box_projected(P.fixed_policy(), P.fixed_policy())
    params = dict(target=jnp.asarray(target, jnp.float32), centre=jnp.asarray(centre, jnp.float32),
                  half_width=jnp.float32(half_width))
    return np.asarray(pol.apply(params, jnp.zeros((3,)), jax.random.PRNGKey(0))), pol, params


def test_box_projection_by_hand():
    centre = [0.0, 0.5, -0.2, 0.95, -0.9]
    # far outside: the box's faces
    a, pol, params = _projected([1.0, -1.0, 0.9, -1.0, 0.5], centre)
    np.testing.assert_allclose(a, [0.15, 0.35, -0.05, 0.8, -0.75], atol=1e-6)
    # inside: the target itself
    a, _, _ = _projected([0.1, 0.4, -0.3, 1.0, -1.0], centre)
    np.testing.assert_allclose(a, [0.1, 0.4, -0.3, 1.0, -1.0], atol=1e-6)
    # the box pokes out of [-1, 1]: clipped to the cube (centre +- w = 1.1 / -1.05)
    a, _, _ = _projected([1.0, 0.0, 0.0, 1.5, -1.5], [0.0, 0.0, 0.0, 0.95, -0.9])
    np.testing.assert_allclose(a, [0.15, 0.0, 0.0, 1.0, -1.0], atol=1e-6)
    assert np.isnan(float(pol.log_prob(params, jnp.zeros((3,)), jnp.asarray(a))))


def test_chain_of_one_equals_box_projected():
    """projected_chain at round 1 is box_projected around the base; at round 0 the base."""
    ep = E.default_params()
    rule, fixed = mtf_policies.bounce_switch_policy(ep), P.fixed_policy()
    sp, base = mtf_policies.default_switch_params(ep), E.baseline_action(ep)
    chain = oracle.projected_chain(rule, fixed)
    one = oracle.box_projected(rule, fixed)
    obs = jax.random.uniform(jax.random.PRNGKey(1), (E.obs_dim(ep),))
    key = jax.random.PRNGKey(2)
    targets = oracle.stack_rounds([sp, sp])
    a_chain = chain.apply(dict(base=base, targets=targets, rounds=jnp.int32(1), half_width=jnp.float32(W)), obs, key)
    a_one = one.apply(dict(target=sp, centre=base, half_width=jnp.float32(W)), obs, key)
    np.testing.assert_allclose(a_chain, a_one, atol=1e-6)
    a0 = chain.apply(dict(base=base, targets=targets, rounds=jnp.int32(0), half_width=jnp.float32(W)), obs, key)
    np.testing.assert_allclose(a0, base, atol=0)


@pytest.mark.parametrize("rounds", [1, 2, 5])
def test_switch_chain_moves_at_most_rounds_times_w(rounds):
    ep = E.default_params()
    rule, sp = mtf_policies.bounce_switch_policy(ep), mtf_policies.default_switch_params(ep)
    base = E.baseline_action(ep)
    chain = oracle.projected_chain(rule, P.fixed_policy())
    params = dict(base=base, targets=oracle.stack_rounds([sp] * 5), rounds=jnp.int32(rounds),
                  half_width=jnp.float32(W))
    # observations where both branches of the rule fire: positions and bounce rates spread over [0, 1]
    lay = E.observation_layout(ep)
    obs = jax.random.normal(jax.random.PRNGKey(0), (512, E.obs_dim(ep)))
    u = jax.random.uniform(jax.random.PRNGKey(1), (512, 2))
    obs = obs.at[:, lay["session_position"].start].set(u[:, 0]).at[:, lay["session_bounce_rate"].start].set(u[:, 1])
    keys = jax.random.split(jax.random.PRNGKey(2), 512)
    acts = np.asarray(jax.jit(jax.vmap(chain.apply, in_axes=(None, 0, 0)))(params, obs, keys))
    targets = np.asarray(jax.vmap(rule.apply, in_axes=(None, 0, 0))(sp, obs, keys))
    move = np.abs(acts - np.asarray(base))
    assert move.max() <= rounds * W + 1e-5
    assert np.all(np.abs(acts) <= 1.0)
    # one target every round: the chain is the target clipped to the k w box around the baseline
    expected = np.clip(targets, np.asarray(base) - rounds * W, np.asarray(base) + rounds * W)
    np.testing.assert_allclose(acts, expected, atol=1e-5)
    assert move.max() > (rounds - 0.5) * W  # it does move as far as it may


@pytest.mark.parametrize("diagonal", [False, True])
def test_cma_es_sphere(diagonal):
    n, opt = 10, jnp.linspace(-1.0, 1.0, 10)
    cma = oracle.cma_es(n, diagonal=diagonal)

    @jax.jit
    def run(key):
        def gen(state, key):
            x = cma.ask(state, key)
            return cma.tell(state, x, -jnp.sum((x - opt) ** 2, axis=-1)), None
        state, _ = jax.lax.scan(gen, cma.init(jnp.full((n,), 3.0), 1.0), jax.random.split(key, 200))
        return state
    state = run(jax.random.PRNGKey(0))
    assert cma.popsize == 10 and cma.num_parents == 5
    np.testing.assert_allclose(state.mean, opt, atol=1e-3)
    assert float(state.sigma) < 1e-2


def test_cma_es_adapts_scales_on_an_ellipsoid():
    """Full CMA learns a badly scaled quadratic (condition 1e4): C's eigenvalues follow the scales."""
    n = 6
    scales = 10.0 ** jnp.linspace(0, 2, n)
    cma = oracle.cma_es(n)

    @jax.jit
    def run(key):
        def gen(state, key):
            x = cma.ask(state, key)
            return cma.tell(state, x, -jnp.sum((scales * (x - 1.0)) ** 2, axis=-1)), None
        state, _ = jax.lax.scan(gen, cma.init(jnp.zeros((n,)), 0.5), jax.random.split(key, 400))
        return state
    state = run(jax.random.PRNGKey(3))
    np.testing.assert_allclose(state.mean, 1.0, atol=1e-3)
    axis_len = np.sqrt(np.diag(np.asarray(state.C)))
    ratio = axis_len[0] / axis_len[-1]
    assert 30 < ratio < 300, ratio  # ideally 100 = the scales' ratio


def test_tiny_oracle_chain():
    ep = E.default_params(max_steps=10)
    out = oracle.oracle_chain(ep, jax.random.PRNGKey(0), jax.random.PRNGKey(1), rounds=2, eval_users=64,
                              train_users=32, generations=3, popsize=8, stats_users=32)
    assert out["baseline"].shape == (64,) and out["switch_unconstrained"].shape == (64,)
    assert out["switch"].shape == (2, 64) and out["cma_linear"].shape == (2, 64)
    assert out["cma_train_mean"].shape == (2, 3) and out["cma_theta"].shape == (2, 41 * 6 + 6)
    for v in out.values():
        assert np.all(np.isfinite(v))
    assert not np.array_equal(out["switch"][0], out["baseline"])  # round 1 moved off the baseline
    assert np.all(out["baseline"] >= 0)
