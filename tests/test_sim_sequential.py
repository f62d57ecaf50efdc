"""The default simulator is sequential: the best static fusion loses to a state-dependent policy.

All comparisons are paired: both policies meet the same users with the same
keys (common random numbers), and the confidence interval is that of the
mean per-user difference.
"""
import jax
import jax.numpy as jnp
import numpy as np

from jaxmtf.sim import policies as P
from jaxmtf.sim.mtf import env as E
from jaxmtf.sim.mtf import policies as mtf_policies
from jaxmtf.sim.mtf.static_search import search_static_weights
from jaxmtf.sim.rollout import evaluate

PARAMS = E.EnvParams()
FIXED = P.fixed_policy().apply


def _paired(x, y):
    d = np.asarray(x, np.float64) - np.asarray(y, np.float64)
    return d.mean(), d.std(ddof=1) / np.sqrt(len(d))


def test_click_greedy_wins_the_step_and_loses_the_session():
    key = jax.random.PRNGKey(11)
    g = evaluate(key, PARAMS, FIXED, E.click_greedy_action(PARAMS), 2000)
    s = evaluate(key, PARAMS, FIXED, E.satisfaction_action(PARAMS), 2000)
    d1, se1 = _paired(g["first_reward"], s["first_reward"])
    dr, ser = _paired(g["undiscounted"], s["undiscounted"])
    assert d1 - 3 * se1 > 0, (d1, se1)  # greedy: more reward on the first request
    assert dr + 3 * ser < 0, (dr, ser)  # ... and less over the session


MARGIN = 0.05  # the state-dependent policy beats the best static vector by at least 5% of return


def test_best_static_weights_lose_to_state_dependent_policy():
    extra = jnp.stack([E.baseline_action(PARAMS), E.click_greedy_action(PARAMS), E.satisfaction_action(PARAMS),
                       jnp.asarray(mtf_policies.PRONE_ACTION), jnp.asarray(mtf_policies.AVERSE_ACTION)])
    best, hist = search_static_weights(jax.random.PRNGKey(0), PARAMS, num_generations=5, population=32,
                                       num_elite=6, num_users=400, num_heldout_users=2000,
                                       extra_finalists=extra)
    key = jax.random.PRNGKey(12345)  # fresh users: neither the search nor the rule saw them
    static = evaluate(key, PARAMS, FIXED, best, 4000)["undiscounted"]
    switch = mtf_policies.bounce_switch_policy(PARAMS)
    adaptive = evaluate(key, PARAMS, switch.apply, mtf_policies.default_switch_params(PARAMS), 4000)["undiscounted"]
    d, se = _paired(adaptive, static)
    rel = d / float(np.mean(static))
    print(f"static {np.mean(static):.1f} adaptive {np.mean(adaptive):.1f} diff {d:.1f} +- {1.96 * se:.1f} ({rel:.1%})")
    assert d - 1.96 * se > 0, (d, se)
    assert rel >= MARGIN, rel
