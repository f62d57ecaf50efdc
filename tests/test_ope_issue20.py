"""Issue 20's OPE fixes on hand-made cases: one evaluated policy for DR's weights and model, the truth of that
policy in every row, MIS's ESS over live steps, the exact discrete V, top-k selection scores, the support share
and the console table."""
import io

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxmtf.ope import doubly_robust, importance, marginal, scoring, summary, support, targets
from jaxmtf.ope import fqe as fqe_lib
from jaxmtf.ope import run as ope_run
from jaxmtf.ope.episodes import Episodes
from jaxmtf.sim import policies

EPSILON = 0.1
REWARD = np.array([1.0, 3.0])  # a two-armed bandit: r(a) deterministic, Q(s, a) = r(a) exactly


def always(action: int) -> targets.PolicyGroup:
    """A deterministic discrete target: always `action` (a point mass, smoothed epsilon-greedy by OPE)."""
    return targets.PolicyGroup([{"policy": f"always{action}"}], policies.fixed_policy(),
                               jnp.full((1,), action, jnp.int32), False)


def bandit_episodes():
    """Four one-step episodes, actions 0, 1, 0, 1 from a uniform behaviour (probability 1/2)."""
    actions = jnp.array([0, 1, 0, 1], jnp.int32)
    rewards = jnp.asarray(REWARD[np.asarray(actions)], jnp.float32)[:, None]
    episodes = Episodes(rows=jnp.arange(4, dtype=jnp.int32)[:, None], mask=jnp.ones((4, 1)), rewards=rewards,
                        behaviour_log_prob=jnp.full((4, 1), np.log(0.5), jnp.float32))
    return episodes, actions, jnp.zeros((4, 1))


def test_dr_is_the_smoothed_policys_exact_value_when_q_is_exact():
    """Target 'always 0', smoothed: pi(0) = 0.95, pi(1) = 0.05, value 0.95 * 1 + 0.05 * 3 = 1.1 (by hand).
    Issue 20: V(s) = Q(s, pi_det(s)) = 1 made DR 1.0, the value of neither policy."""
    episodes, actions, obs = bandit_episodes()
    group = targets.evaluated_group(always(0), 0.2, 2, EPSILON)
    assert group.stochastic
    all_actions, weights = targets.action_weights(group, obs, jax.random.PRNGKey(0), 8, num_actions=2)
    np.testing.assert_allclose(weights[0], [[0.95, 0.05]] * 4, rtol=1e-6)
    q_fn = lambda o, a: jnp.asarray(REWARD, jnp.float32)[a][None]  # noqa: E731  one critic, exact
    v = fqe_lib.expected_q(q_fn, obs, all_actions[0], weights[0])  # the exact sum over actions
    np.testing.assert_allclose(v, 1.1, rtol=1e-6)
    target_lp = targets.target_log_prob(always(0), obs, actions, 0.2, 2, EPSILON)[0]
    np.testing.assert_allclose(np.exp(target_lp), [0.95, 0.05, 0.95, 0.05], rtol=1e-6)
    log_w = importance.log_cumulative_weights(importance.log_ratios(episodes, target_lp[:, None]))
    q_logged = jnp.asarray(REWARD[np.asarray(actions)], jnp.float32)[:, None]
    ones = jnp.ones(4)
    for name, fn in doubly_robust.ESTIMATORS.items():
        np.testing.assert_allclose(fn(episodes, log_w, q_logged, v[:, None], 0.9, ones), 1.1, rtol=1e-5, err_msg=name)
    # Without a model DR is per-decision IS of the same policy: (1.9 * 1 + 0.1 * 3) / 2 = 1.1 as well.
    zero = jnp.zeros((4, 1))
    np.testing.assert_allclose(doubly_robust.doubly_robust(episodes, log_w, zero, zero, 0.9, ones), 1.1, rtol=1e-5)


def test_fqe_target_weights_the_next_actions():
    """The discrete exact sum as weights: y = r + gamma sum_a pi(a|s') Q'(s', a)."""
    batch = fqe_lib.FQEData(
        observations=jnp.zeros((2, 1)), actions=jnp.zeros((2,), jnp.int32), rewards=jnp.array([1.0, 2.0]),
        next_observations=jnp.array([[1.0], [2.0]]), terminals=jnp.array([0.0, 1.0]), rows=jnp.arange(2),
    )
    q_fn = lambda obs, a: (obs[..., 0] + 10.0 * a)[None]  # noqa: E731  Q'(s, a) = s + 10 a
    next_actions = jnp.array([[0, 1], [0, 1]], jnp.int32)
    next_weights = jnp.array([[0.95, 0.05], [0.5, 0.5]])
    y = fqe_lib.fqe_target(q_fn, batch, next_actions, 0.5, next_weights)
    np.testing.assert_allclose(y, [1.0 + 0.5 * (0.95 * 1.0 + 0.05 * 11.0), 2.0], rtol=1e-6)


def test_continuous_targets_are_smoothed_and_sampled_k_times():
    group = targets.PolicyGroup([{"policy": "fixed"}], policies.fixed_policy(), jnp.full((1, 2), 0.5), False)
    evaluated = targets.evaluated_group(group, 0.3)
    actions, weights = targets.action_weights(evaluated, jnp.zeros((64, 3)), jax.random.PRNGKey(1), 8)
    assert actions.shape == (1, 64, 8, 2) and np.allclose(weights, 1 / 8)
    assert np.all(np.abs(actions) <= 1.0) and np.std(np.asarray(actions)) > 0.1  # draws, not copies
    assert targets.evaluated_name("fixed", False, 0.3) == "gaussian(0.3) of fixed"
    assert targets.evaluated_name("x", False, 0.3, 5, 0.1) == "epsilon-greedy 0.1 of x"
    assert targets.evaluated_name("random", True, 0.3) == "random"


def test_rows_carry_the_truth_of_the_policy_they_estimate():
    config = ml_collections.ConfigDict(dict(discount=0.9, ci_level=0.95, target_sigma=0.2, max_weight=0.0))
    labels = [{"policy": "baseline", "stochastic": False}, {"policy": "random", "stochastic": True}]
    point = (np.array([1.0, 2.0]), np.array([0.5, 1.5]), np.array([1.5, 2.5]))
    estimates = {"wis": point}
    diagnostics = {"ess": np.array([50.0, 3.0]), "ess_per_step": np.array([1.0, 1.0]),
                   "outside_support": np.array([0.0, 0.5])}
    truth = {"true_discounted": np.array([1.2, 2.0]), "true_discounted_unsmoothed": np.array([1.4, np.nan])}
    rows = ope_run._rows(labels, estimates, diagnostics, truth, config, 1)
    smoothed, stochastic = rows
    assert smoothed["evaluated_policy"] == "gaussian(0.2) of baseline" and smoothed["target_sigma"] == 0.2
    assert smoothed["true_discounted"] == 1.2 and smoothed["true_discounted_unsmoothed"] == 1.4
    np.testing.assert_allclose(smoothed["abs_error"], 0.2)  # against the smoothed policy's truth, not 0.4
    assert stochastic["evaluated_policy"] == "random" and "true_discounted_unsmoothed" not in stochastic
    assert stochastic["outside_support"] == 0.5 and stochastic["ess"] == 3.0


def test_conservative_pick_adds_the_fqe_seeds_spread_to_the_bootstrap_bound():
    # Two FQE seeds per policy (then their mean): A's seeds disagree (10, 12), B's agree (10.4, 10.6).
    config = ml_collections.ConfigDict(dict(discount=0.9, ci_level=0.95, target_sigma=0.2, max_weight=0.0,
                                            fqe=dict(lcb_coef=1.0)))
    labels = [{"policy": "A", "stochastic": True}, {"policy": "B", "stochastic": True}]
    value = np.array([[10.0, 12.0, 11.0], [10.4, 10.6, 10.5]])
    low, high = value - np.array([[0.5], [0.5]]), value + 0.5
    rows = ope_run._rows(labels, {"fqe": (value, low, high)}, {}, None, config, 2)
    mean_rows = {r["policy"]: r for r in rows if r["fqe_seed"] is None}
    np.testing.assert_allclose(mean_rows["A"]["member_std"], np.sqrt(2.0))  # std (ddof 1) of 10 and 12
    np.testing.assert_allclose(mean_rows["A"]["lower_bound"], 10.5 - np.sqrt(2.0))
    np.testing.assert_allclose(mean_rows["B"]["lower_bound"], 10.0 - 0.1 * np.sqrt(2.0))
    assert all("lower_bound" not in r for r in rows if r["fqe_seed"] is not None)
    selection = ope_run.ope_report(rows)["fqe"]["selection"]
    # by the bootstrap bound alone A (10.5 > 10.0); with the seeds' spread B (9.86 > 9.09)
    assert selection == {"by_estimate": "A", "by_lower_bound": "B"}


def test_mis_ess_counts_live_steps_only():
    """Episode A: 3 steps; B and C end after step 0. Step 0: ratios 2, 2, 2 (ESS 3); steps 1, 2: A alone
    (ESS 1): mean 5/3. Padding (ratio 1) would have counted B and C at steps 1 and 2."""
    mask = jnp.array([[1, 1, 1], [1, 0, 0], [1, 0, 0]], jnp.float32)
    episodes = Episodes(rows=jnp.zeros((3, 3), jnp.int32), mask=mask, rewards=jnp.zeros((3, 3)),
                        behaviour_log_prob=jnp.zeros((3, 3)))
    log_ratio = importance.log_ratios(episodes, jnp.log(jnp.array([[2.0, 4.0, 0.5]] * 3)))
    np.testing.assert_allclose(marginal.per_step_effective_sample_size(episodes, log_ratio), 5.0 / 3.0, rtol=1e-6)


def test_top_k_scores_by_hand():
    estimates, truths = [5.0, 4.0, 3.0, 2.0], [1.0, 4.0, 2.0, 3.0]  # the estimator ranks 0, 1, 2 first
    scores = scoring.score_estimator(estimates, truths, k=3)
    assert scores["top_k"] == 3
    assert (scores["best@3"], scores["worst@3"]) == (4.0, 1.0)
    np.testing.assert_allclose(scores["mean@3"], 7.0 / 3.0)
    assert scores["regret@3"] == 0.0  # the best (4) is in its top 3
    np.testing.assert_allclose(scores["regret@1"], (4.0 - 1.0) / 4.0)  # the existing names are kept
    two = scoring.score_estimator(estimates, truths, k=2)
    np.testing.assert_allclose([two["best@2"], two["worst@2"], two["mean@2"], two["regret@2"]], [4.0, 1.0, 2.5, 0.0])
    assert scoring.top_k_scores([1.0, 2.0], [3.0, 1.0], 1) == {"best@1": 1.0, "worst@1": 1.0, "mean@1": 1.0,
                                                                 "regret@1": 2.0 / 3.0}


def test_outside_support_by_hand():
    # A logged box: centres 0 and 0.5, the data reach +-0.2 around them.
    centres = np.array([[0.0], [0.5]])
    logged = np.array([[0.2], [0.3]])
    half_width = support.logged_box_half_width(logged, centres)
    np.testing.assert_allclose(half_width, [0.2])
    # One policy, two draws per state, weights 1/2: state 0 has one draw outside, state 1 none -> 1/4.
    actions = np.array([[[[0.1], [0.5]], [[0.6], [0.4]]]])
    np.testing.assert_allclose(support.outside_box(actions, np.full((1, 2, 2), 0.5), centres, half_width), [0.25])
    # From densities: threshold 0.1 x the uniform 1/2 of one dimension on [-1, 1].
    threshold = support.log_threshold(0.1, act_dim=1)
    np.testing.assert_allclose(np.exp(threshold), 0.05)
    behaviour = np.log([0.5, 0.5, 0.01, 0.5])  # the third logged action is where the behaviour barely acts
    target = np.log([[0.5, 0.5, 0.01, 0.5], [1.0, 0.5, 2.0, 0.5]])  # rho: 1,1,1,1 and 2,1,200,1
    # policy 0: covered mass (1+1+0+1)/4 = 0.75; policy 1: (2+1+0+1)/4 = 1 -> outside 0.
    np.testing.assert_allclose(support.outside_density(target, behaviour, threshold), [0.25, 0.0])
    # discrete: the threshold is 0.1 x 1/n
    np.testing.assert_allclose(np.exp(support.log_threshold(0.1, act_dim=5, num_actions=5)), 0.02, rtol=1e-6)


def test_console_table_and_warnings():
    rows = [
        {"estimator": "wis", "policy": "baseline", "evaluated_policy": "gaussian(0.2) of baseline", "fqe_seed": None,
         "ci_level": 0.95, "estimate": 1.25, "ci_low": 1.0, "ci_high": 1.5, "ess": 4.2, "outside_support": 0.3,
         "true_discounted": 1.2},
        {"estimator": "fqe", "policy": "random", "evaluated_policy": "random", "fqe_seed": None, "ci_level": 0.95,
         "estimate": 0.5, "ci_low": 0.4, "ci_high": 0.6, "outside_support": 0.0},
        {"estimator": "fqe", "policy": "random", "evaluated_policy": "random", "fqe_seed": 0, "ci_level": 0.95,
         "estimate": 9.0, "ci_low": 9.0, "ci_high": 9.0},  # a per-seed row: not in the table
    ]
    report = {"estimators": {"wis": {"selection": {"by_estimate": "baseline", "by_lower_bound": "baseline"},
                                     "scores": {"top_k": 1, "best@1": 1.2, "worst@1": 1.2, "mean@1": 1.2,
                                                "regret@1": 0.0}}},
              "warnings": summary.warnings(rows)}
    out = io.StringIO()
    summary.print_summary({"rows": rows, "report": report}, file=out)
    text = out.getvalue()
    lines = text.splitlines()
    assert lines[0].split() == ["estimator", "policy", "estimate", "CI", "ESS", "outside", "truth"]
    wis = next(line for line in lines if line.startswith("wis "))
    assert "gaussian(0.2) of baseline" in wis and "95% [1, 1.5]" in wis and "4.2" in wis and "1.2" in wis
    assert "30.0%" in wis
    fqe = [line for line in lines if line.startswith("fqe ")]
    assert len(fqe) == 1 and fqe[0].split()[-1] == "-"  # no truth known; the per-seed row left out
    assert "wis: picks baseline (by estimate), baseline (by lower bound); top-1: true best 1.2" in text
    assert "WARNING: gaussian(0.2) of baseline: wis (4.2) rest on fewer than 10 effective episodes" in text
    assert "WARNING: gaussian(0.2) of baseline: 30.0% of its actions fall outside the behaviour's support" in text
    assert len(report["warnings"]) == 2
