"""The notification simulator: gymnax contract, its policies' probabilities, sequential by construction
(the best static count loses to the state-dependent rule), and collection -> training on its data."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import small_config

from jaxmtf import data
from jaxmtf.core import evaluation
from jaxmtf.data import collect
from jaxmtf.sim import registry
from jaxmtf.sim.notifications import env as N
from jaxmtf.sim.notifications import policies as NP
from jaxmtf.sim.rollout import evaluate
from jaxmtf.workflows import pipeline

PARAMS = N.default_params()
STATIC, RULE = NP.static_policy(), NP.rule_policy()  # one object each: one compilation each


def test_reset_and_step_follow_gymnax_and_vmap():
    keys = jax.random.split(jax.random.PRNGKey(0), 8)
    obs, state = jax.vmap(N.reset, in_axes=(0, None))(keys, PARAMS)
    assert obs.shape == (8, N.obs_dim(PARAMS)) == (8, 7)
    actions = jnp.arange(8, dtype=jnp.int32) % PARAMS.num_actions
    obs2, state2, reward, done, info = jax.vmap(N.step, in_axes=(0, 0, 0, None))(keys, state, actions, PARAMS)
    assert obs2.shape == obs.shape and reward.shape == done.shape == (8,)
    assert info["task_responses"].shape == (8, len(N.TASKS))
    np.testing.assert_allclose(state2.fatigue, actions)  # f' = decay * 0 + n received
    assert registry.of(PARAMS).name == "notifications" and registry.of(PARAMS).num_actions(PARAMS) == 5


def test_notifications_stop_working_once_disabled():
    _, state = N.reset(jax.random.PRNGKey(3), PARAMS)
    off = state.replace(enabled=jnp.zeros(()))
    p_visit = lambda s, n: float(N.step(jax.random.PRNGKey(4), s, jnp.int32(n), PARAMS)[4]["p_visit"])
    assert p_visit(state, 3) > p_visit(state, 0)  # a reminder lifts today's visit probability
    assert p_visit(off, 3) == p_visit(off, 0)  # ... but not once notifications are off
    assert float(N.step(jax.random.PRNGKey(4), off, jnp.int32(3), PARAMS)[1].fatigue) == 0.0


@pytest.mark.parametrize("policy, params", [
    (NP.epsilon_greedy_policy(5), {"base": NP.default_rule_params(), "epsilon": jnp.float32(0.3)}),
    (NP.softmax_policy(5), {"rule": NP.default_rule_params(), "temperature": jnp.float32(1.0)}),
    (NP.uniform_policy(5), None),
])
def test_behaviour_policies_have_probabilities_that_match_their_draws(policy, params):
    obs, _ = N.reset(jax.random.PRNGKey(0), PARAMS)  # habit 0, fatigue 0: the rule sends 1
    probs = np.exp([float(policy.log_prob(params, obs, jnp.int32(a))) for a in range(5)])
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)
    draws = jax.vmap(lambda k: policy.apply(params, obs, k))(jax.random.split(jax.random.PRNGKey(1), 4000))
    assert draws.dtype == jnp.int32
    freq = np.bincount(np.asarray(draws), minlength=5) / 4000
    np.testing.assert_allclose(freq, probs, atol=0.03)


def _paired(x, y):
    d = np.asarray(x, np.float64) - np.asarray(y, np.float64)
    return d.mean(), d.std(ddof=1) / np.sqrt(len(d))


MARGIN = 0.05  # the rule beats the best static count by at least 5% of its return


def test_best_static_count_loses_to_the_state_dependent_rule():
    key = jax.random.PRNGKey(2024)  # the same users for every policy (common random numbers)
    static = {n: evaluate(key, PARAMS, STATIC.apply, jnp.int32(n), 4000)["undiscounted"] for n in range(5)}
    best = max(static, key=lambda n: float(np.mean(static[n])))  # exhaustive: every count is a candidate
    adaptive = evaluate(key, PARAMS, RULE.apply, NP.default_rule_params(), 4000)["undiscounted"]
    d, se = _paired(adaptive, static[best])
    rel = d / float(np.mean(static[best]))
    print(f"best static {best}: {np.mean(static[best]):.2f}, rule {np.mean(adaptive):.2f} ({rel:.1%})")
    assert d - 1.96 * se > 0, (d, se)
    assert rel >= MARGIN, rel
    # Sending more every day is worse past one: fatigue, disabling and churn outweigh the visits.
    assert float(np.mean(static[4])) < float(np.mean(static[1]))


def test_policies_must_give_one_integer_action():
    with pytest.raises(evaluation.EvaluationError, match="expected one integer in \\[0, 5\\)"):
        evaluation.check_policy(PARAMS, lambda p, o, k: jnp.zeros((5,)), None)
    evaluation.check_policy(PARAMS, RULE.apply, NP.default_rule_params())  # the rule is fine


def test_collect_and_train_cql_dqn_through_the_launcher_path(tmp_path):
    """Collection -> .npz -> launch.train's path (pipeline.train_from_config) with simulator evaluation."""
    from jaxmtf.configs.collect import notifications_softmax

    config = notifications_softmax.get_config()
    config.num_users, config.eval_users = 40, 40
    path, provenance = collect.collect_and_save(config, str(tmp_path / "notif.npz"))
    sidecar = json.load(open(str(tmp_path / "notif.json")))
    assert sidecar["num_actions"] == 5 and sidecar["provenance"]["simulator"] == "notifications"
    assert isinstance(pipeline.dataset_simulator(path), N.NotificationParams)
    dataset = data.load(path)  # the rollout's integer actions and their log probabilities, validated
    assert dataset.num_actions == 5 and dataset.actions.dtype == np.int32 and dataset.actions.ndim == 1
    assert np.all(dataset.behaviour_log_prob <= 0.0) and len(np.unique(dataset.actions)) >= 3  # it explores

    train = small_config("cql_dqn", num_seeds=2, num_updates=20, eval_every=20, eval_users=16, checkpoint_every=20)
    train.dataset = path
    summary = pipeline.train_from_config(train, str(tmp_path / "run"))
    assert summary["finished"]
    records = [json.loads(line) for line in open(os.path.join(tmp_path, "run", "eval.jsonl"))]
    assert len(records) == 2 and all(np.isfinite(r["discounted_return"]) for r in records)
    assert all(r["rate_visit"] > 0 for r in records)


def test_notification_pipelines_refuse_continuous_ones():
    with pytest.raises(ValueError, match="config field 'pipeline': got 'final_buffer'"):
        collect.collect(_collect_config("final_buffer"))
    with pytest.raises(ValueError, match="config field 'simulator': got 'notifs'"):
        collect.collect(_collect_config("random", simulator="notifs"))


def _collect_config(pipeline_name, simulator="notifications"):
    from jaxmtf.configs.collect import base

    config = base.get_base_config(pipeline_name)
    config.simulator = simulator
    config.num_users = config.eval_users = 4
    return config
