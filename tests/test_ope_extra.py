"""NCIS, MTF-GAUC and model-based OPE (issue 20): hand-computed cases."""
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxmtf.ope import gauc, importance, model_based, ncis
from jaxmtf.ope.episodes import Episodes
from jaxmtf.sim.mtf import env as sim_env
from jaxmtf.types import Dataset


def make_episodes(rewards, mask):
    rewards, mask = jnp.asarray(rewards, jnp.float32), jnp.asarray(mask, jnp.float32)
    return Episodes(rows=jnp.zeros(rewards.shape, jnp.int32), mask=mask, rewards=rewards * mask,
                    behaviour_log_prob=jnp.zeros(rewards.shape, jnp.float32))


# ----------------------------------------------------------------- NCIS


def three_episodes():
    """Rewards (1, 2), (3, 0), (0, 4); per-step ratios (1, 2), (0.5, 1), (2, 4): episode ratios 2, 0.5, 8."""
    episodes = make_episodes([[1.0, 2.0], [3.0, 0.0], [0.0, 4.0]], np.ones((3, 2)))
    log_ratio = jnp.log(jnp.array([[1.0, 2.0], [0.5, 1.0], [2.0, 4.0]]))
    return episodes, log_ratio


def test_ncis_hand_values():
    episodes, log_ratio = three_episodes()
    ones = jnp.ones((3,))
    # gamma 0.5: G = 2, 3, 2; cap 4: weights 2, 0.5, 4 -> (4 + 1.5 + 8) / 6.5
    assert float(ncis.ncis(episodes, log_ratio, 0.5, ones, 4.0)) == pytest.approx(13.5 / 6.5, rel=1e-6)
    # per step: step 0 weights 1, 0.5, 2 (rewards 1, 3, 0); step 1 weights 2, 0.5, min(8, 4) (rewards 2, 0, 4)
    expected = 2.5 / 3.5 + 0.5 * 20.0 / 6.5
    assert float(ncis.ncis_per_decision(episodes, log_ratio, 0.5, ones, 4.0)) == pytest.approx(expected, rel=1e-6)
    # counts (a bootstrap replicate): episode 0 twice, episode 1 dropped: (2*2*2 + 4*2) / (2*2 + 4)
    counts = jnp.array([2.0, 0.0, 1.0])
    assert float(ncis.ncis(episodes, log_ratio, 0.5, counts, 4.0)) == pytest.approx(2.0, rel=1e-6)
    # ESS of the capped weights 2, 0.5, 4: 6.5^2 / (4 + 0.25 + 16); uncapped (8): 10.5^2 / 68.25
    assert float(ncis.effective_sample_size(log_ratio, 4.0)) == pytest.approx(6.5**2 / 20.25, rel=1e-6)
    assert float(ncis.effective_sample_size(log_ratio, 1e9)) == pytest.approx(10.5**2 / 68.25, rel=1e-6)


def test_ncis_without_a_binding_cap_is_weighted_is_and_a_tiny_cap_is_the_behaviour_mean():
    episodes, log_ratio = three_episodes()
    ones = jnp.ones((3,))
    log_w = importance.log_cumulative_weights(log_ratio)
    assert float(ncis.ncis(episodes, log_ratio, 0.9, ones, 1e6)) == pytest.approx(
        float(importance.weighted_is(episodes, log_w, 0.9, ones)), rel=1e-6)
    assert float(ncis.ncis_per_decision(episodes, log_ratio, 0.9, ones, 1e6)) == pytest.approx(
        float(importance.weighted_per_decision_is(episodes, log_w, 0.9, ones)), rel=1e-6)
    # every ratio above the cap: all weights equal, the on-policy mean of the logged returns
    g = (1 + 0.9 * 2 + 3 + 0.9 * 4) / 3
    assert float(ncis.ncis(episodes, log_ratio, 0.9, ones, 0.1)) == pytest.approx(g, rel=1e-6)


def test_ncis_weights_never_overflow():
    episodes, _ = three_episodes()
    huge = jnp.full((3, 2), -200.0)  # ratios e^-400 per episode: the normalisation still holds
    assert np.isfinite(float(ncis.ncis(episodes, huge, 0.5, jnp.ones((3,)), 10.0)))


# ----------------------------------------------------------------- MTF-GAUC


def test_auc_and_weighted_gauc_by_hand():
    scores = jnp.array([[0.9, 0.8, 0.3, 0.1, 0.0],  # pairs (pos, neg): 1, 1, 0, 1 -> 3/4
                        [0.5, 0.5, 0.7, 100.0, 0.0],  # tie 1/2, loss 0 -> 1/4; entry 3 is invalid
                        [0.1, 0.2, 0.3, 0.0, 0.0]])  # no positive: left out
    labels = jnp.array([[1, 0, 1, 0, 0], [1, 0, 0, 1, 0], [0, 0, 0, 0, 0]], jnp.float32)
    valid = jnp.array([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0]], jnp.float32)
    assert float(gauc.auc(scores[0], labels[0], valid[0])) == pytest.approx(0.75)
    assert float(gauc.auc(scores[1], labels[1], valid[1])) == pytest.approx(0.25)
    assert np.isnan(float(gauc.auc(scores[2], labels[2], valid[2])))
    weights = jnp.array([3.0, 1.0, 5.0])
    assert float(gauc.gauc(scores, labels, valid, weights)) == pytest.approx((3 * 0.75 + 0.25) / 4)
    # a replicate that draws user 1 twice and user 0 never
    assert float(gauc.gauc(scores, labels, valid, weights, jnp.array([0.0, 2.0, 1.0]))) == pytest.approx(0.25)


def test_auc_matches_the_pairwise_definition_on_random_ties():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 40).astype(np.float32)
    y = (rng.random(40) < 0.4).astype(np.float32)
    pos, neg = s[y > 0], s[y == 0]
    pairwise = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert float(gauc.auc(jnp.asarray(s), jnp.asarray(y), jnp.ones(40))) == pytest.approx(pairwise, rel=1e-6)


def test_candidate_outcomes_score_every_candidate_and_draw_valid_consumption():
    params = sim_env.default_params(num_candidates=20)
    _, state = sim_env.reset(jax.random.PRNGKey(0), params)
    action = sim_env.baseline_action(params)
    scores, consumed = sim_env.candidate_outcomes(jax.random.PRNGKey(1), state, action, params)
    np.testing.assert_allclose(scores, sim_env.fused_scores(state.cand_pred, action, params), rtol=1e-6)
    keys = jax.random.split(jax.random.PRNGKey(2), 4000)
    draws = jax.vmap(lambda k: sim_env.candidate_outcomes(k, state, action, params)[1])(keys)
    assert set(np.unique(draws)) <= {0.0, 1.0}
    p = jax.nn.sigmoid(state.cand_true[:, 0]) * jax.nn.sigmoid(state.cand_true[:, 1])
    np.testing.assert_allclose(draws.mean(0), p, atol=0.04)


def test_group_gauc_of_named_policies_on_the_same_users():
    from jaxmtf.configs import ope as ope_config
    from jaxmtf.ope import targets

    params = sim_env.default_params(max_steps=4, num_candidates=12)
    config = ope_config.get_config()
    (group,) = targets.load_policies("baseline", params, config, sim_env.obs_dim(params), sim_env.act_dim(params))
    est, low, high = gauc.group_gauc(group, params, jax.random.PRNGKey(0), 16, "impressions", 20, 0.9,
                                     jax.random.PRNGKey(1))
    assert est.shape == (1,) and 0.0 < float(est[0]) < 1.0 and float(low[0]) <= float(est[0]) <= float(high[0])
    # the MTL ranks consumption better than chance
    assert float(est[0]) > 0.55


# ----------------------------------------------------------------- model-based OPE


def test_rollout_of_a_known_model_is_the_hand_computed_return():
    def predict(obs, action):  # r = s + a, s' = s + 1, leaves with probability 1/4
        return obs[0] + action[0], obs + 1.0, jnp.float32(0.25)

    policy = lambda obs, key: jnp.array([0.5])  # noqa: E731
    ret = model_based.rollout(predict, policy, jnp.array([1.0]), jax.random.PRNGKey(0), 3, 0.9)
    expected = 1.5 + 0.9 * 0.75 * 2.5 + 0.81 * 0.75**2 * 3.5
    assert float(ret) == pytest.approx(expected, rel=1e-6)


def test_summary_is_the_member_mean_spread_and_lower_bound():
    values = jnp.array([[1.0, 3.0], [3.0, 5.0], [5.0, 7.0]])  # member means 2, 4, 6
    mean, std, lower = model_based.summarise(values, 2.0)
    assert (float(mean), float(std), float(lower)) == pytest.approx((4.0, 2.0, 0.0))


A = np.array([[0.9, 0.1], [0.0, 0.8]], np.float32)
B = np.array([[0.1], [0.2]], np.float32)
C, D = np.array([1.0, 0.5], np.float32), 1.0


def linear_dataset(n=2000, seed=0):
    """s' = A s + B a, r = C.s + D a, never ends: random states and actions."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    a = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    zeros = np.zeros((n,), np.float32)
    return Dataset(observations=jnp.asarray(s), actions=jnp.asarray(a), rewards=jnp.asarray(s @ C + D * a[:, 0]),
                   next_observations=jnp.asarray(s @ A.T + a @ B.T), terminals=jnp.asarray(zeros),
                   timeouts=jnp.asarray(zeros), episode_ids=jnp.arange(n))


def model_config(**overrides):
    config = ml_collections.ConfigDict(dict(
        enabled=True, num_members=2, seed=0, hidden_dims=(64, 64), learning_rate=3e-3, num_updates=1500,
        batch_size=256, chunk_size=500, horizon=8, lcb_coef=1.0, checkpoint_every=1500, keep_checkpoints=1,
        # Members vmapped (0), the program this test's tolerance was measured on. Looped one at a time
        # (groups of 1, the CPU default) member 1 lands 4% off at 1,500 updates and 20% at 3,000: the
        # fit moves with float rounding (an open point of issue 20's model-based OPE, not hidden here).
        eval_every=0, seed_group_size=0))
    config.update(overrides)
    return config


def test_the_ensemble_fits_a_linear_mdp_and_its_rollout_value_is_close(tmp_path):
    dataset = linear_dataset()
    config = model_config()
    model, states = model_based.fit_models(config, dataset, str(tmp_path / "model_based"))
    obs0 = jnp.array([[0.5, -0.5], [-0.3, 0.2], [0.0, 0.0]])
    policy = lambda obs, key: jnp.array([0.5])  # noqa: E731
    values = model_based.member_values(model, states, policy, obs0, jax.random.PRNGKey(0), 8, 0.9)
    assert values.shape == (2, 3)
    true = []
    for s in np.asarray(obs0):
        ret = 0.0
        for t in range(8):
            ret += 0.9**t * (s @ C + D * 0.5)
            s = A @ s + B[:, 0] * 0.5
        true.append(ret)
    np.testing.assert_allclose(np.asarray(values), np.broadcast_to(true, (2, 3)), atol=0.15)
    mean, std, lower = model_based.summarise(values, 1.0)
    assert float(mean) == pytest.approx(np.mean(true), abs=0.1) and float(lower) <= float(mean)


# ----------------------------------------------------------------- config refusals


@pytest.mark.parametrize("field, value, message", [
    ("ncis_cap", 0.0, "config field 'ncis_cap': got 0.0, expected a finite number > 0"),
    ("gauc_users", -1, "config field 'gauc_users': got -1, expected an integer >= 0"),
    ("gauc_weight", "clicks", "config field 'gauc_weight': got 'clicks', expected one of"),
    ("model_based.num_members", 0, "config field 'model_based.num_members': got 0, expected an integer >= 1"),
    ("model_based.lcb_coef", -1.0, "config field 'model_based.lcb_coef': got -1.0, expected a finite number >= 0"),
    ("model_based.num_updates", 1500, "config field 'model_based.num_updates': got 1500, expected a multiple"),
    ("model_based.horizon", 0, "config field 'model_based.horizon': got 0, expected an integer >= 1"),
])
def test_bad_extra_config_is_named(field, value, message):
    from jaxmtf.configs import ope as ope_config
    from jaxmtf.core.run_config import ConfigError
    from jaxmtf.ope.config import validate_ope_config

    config = ope_config.get_config()
    parent, _, name = field.rpartition(".")
    with config.unlocked():
        (config[parent] if parent else config)[name] = value
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_ope_config(config)


# ----------------------------------------------------------------- rows


def test_new_rows_carry_the_truth_of_their_policy_and_are_scored():
    from jaxmtf.ope import extra_rows
    from jaxmtf.ope import run as ope_run

    config = ml_collections.ConfigDict({"discount": 0.9, "ci_level": 0.95})
    truths = {"a": 1.0, "b": 3.0, "c": 2.0}
    old = [{"estimator": "fqe", "policy": p, "fqe_seed": None, "estimate": v, "ci_low": v, "ci_high": v,
            "true_discounted": v, "true_undiscounted": 2 * v} for p, v in truths.items()]
    truth = extra_rows._truth_of(old)
    new = [extra_rows._row("ncis", {"policy": p}, est, est - 1, est + 1, config, truth, ncis_cap=10.0)
           for p, est in (("a", 1.5), ("b", 2.5), ("c", 2.0))]
    new += [extra_rows._row("mtf_gauc", {"policy": p}, g, g, g, config, truth) for p, g in (("a", .6), ("b", .5),
                                                                                         ("c", .7))]
    assert new[0]["true_undiscounted"] == 2.0 and new[0]["abs_error"] == pytest.approx(0.5)
    assert "abs_error" not in new[3]  # a GAUC is no value
    report = ope_run.ope_report(old + new)
    assert report["ncis"]["scores"]["spearman"] == pytest.approx(1.0)
    assert report["ncis"]["selection"]["by_estimate"] == "b" and report["ncis"]["scores"]["regret@1"] == 0.0
    assert report["mtf_gauc"]["selection"]["by_estimate"] == "c"
    assert report["mtf_gauc"]["scores"]["regret@1"] == pytest.approx(1 / 3)
