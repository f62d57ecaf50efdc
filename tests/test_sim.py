"""Simulator and rollout: shapes, determinism, done masking, calibration, fusion forms, jit."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmtf.sim import policies as P
from jaxmtf.sim.mtf import env as E
from jaxmtf.sim.rollout import evaluate, flatten_valid, returns, rollout

PARAMS = E.EnvParams()
FIXED = P.fixed_policy().apply
UNIFORM = P.uniform_policy(E.act_dim(PARAMS))


def test_shapes_and_layout():
    K, N = PARAMS.num_tasks, PARAMS.num_candidates
    obs, state = jax.jit(E.reset)(jax.random.PRNGKey(0), PARAMS)
    assert obs.shape == (E.obs_dim(PARAMS),) and obs.dtype == jnp.float32
    assert state.cand_true.shape == (N, K) and state.cand_pred.shape == (N, K)
    lay = E.observation_layout(PARAMS)
    covered = np.zeros(E.obs_dim(PARAMS), int)
    for sl in lay.values():
        covered[sl] += 1
    assert np.all(covered == 1)
    a = E.baseline_action(PARAMS)
    assert a.shape == (E.act_dim(PARAMS),) == (K,)
    obs2, state2, r, done, info = jax.jit(E.step)(jax.random.PRNGKey(1), state, a, PARAMS)
    assert obs2.shape == obs.shape and r.shape == () and done.shape == ()
    assert info["task_responses"].shape == (K,)
    assert np.all((np.asarray(info["task_responses"]) >= 0) & (np.asarray(info["task_responses"]) <= PARAMS.slate_size))
    np.testing.assert_allclose(r, info["task_responses"] @ PARAMS.reward_weights, rtol=1e-6)
    assert float(obs2[lay["session_position"]][0]) == pytest.approx(1 / PARAMS.max_steps)
    assert int(state2.t) == 1
    # long views follow clicks (cascade)
    assert info["task_responses"][1] <= info["task_responses"][0]
    bias_params = PARAMS.replace(action_mode="power_bias")
    assert E.act_dim(bias_params) == 2 * K


def test_determinism():
    a = rollout(jax.random.PRNGKey(3), PARAMS, UNIFORM.apply, None, 64, 30)
    b = rollout(jax.random.PRNGKey(3), PARAMS, UNIFORM.apply, None, 64, 30)
    c = rollout(jax.random.PRNGKey(4), PARAMS, UNIFORM.apply, None, 64, 30)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.rewards, c.rewards)
    # vmap over users is the same as one user at a time
    obs, st = jax.vmap(E.reset, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(5), 3), PARAMS)
    obs1, st1 = E.reset(jax.random.split(jax.random.PRNGKey(5), 3)[1], PARAMS)
    np.testing.assert_allclose(obs[1], obs1, rtol=1e-5, atol=1e-6)


def test_done_masking():
    params = PARAMS.replace(max_steps=25)  # short horizon: both timeouts and departures occur
    traj = rollout(jax.random.PRNGKey(7), params, UNIFORM.apply, None, 400, log_prob_fn=UNIFORM.log_prob)
    T, U = traj.rewards.shape
    assert T == 25
    valid, term, tout = (np.asarray(x) for x in (traj.valid, traj.terminals, traj.timeouts))
    ended = term | tout
    assert np.all(valid[0])
    np.testing.assert_array_equal(valid[1:], valid[:-1] & ~ended[:-1])
    assert np.all(ended.sum(0) == 1)  # every user ends exactly once within the horizon
    assert not np.any(term & tout)
    assert np.all(~ended | valid)
    assert np.all(tout[:-1] == 0) and tout[-1].sum() > 0 and term.sum() > 0
    assert np.all(np.asarray(traj.rewards)[~valid] == 0)
    assert np.all(np.asarray(traj.task_responses)[~valid] == 0)
    assert np.allclose(np.asarray(traj.log_probs)[valid], -E.act_dim(params) * np.log(2.0))
    # next_observations[t] is observations[t + 1] while the user stays
    both = valid[1:]
    np.testing.assert_allclose(np.asarray(traj.next_observations)[:-1][both], np.asarray(traj.observations)[1:][both])
    # the lean evaluator and the stored trajectory agree
    ev = evaluate(jax.random.PRNGKey(7), params, UNIFORM.apply, None, 400)
    ret = returns(traj, 0.9)
    np.testing.assert_allclose(ev["undiscounted"], ret["undiscounted"], rtol=1e-5)
    np.testing.assert_array_equal(ev["length"], ret["length"])
    np.testing.assert_allclose(ret["discounted"],
                               (np.asarray(traj.rewards) * 0.9 ** np.arange(T)[:, None]).sum(0), rtol=1e-5)

    flat = flatten_valid(traj)
    n = valid.sum()
    for name in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts",
                 "episode_ids", "behaviour_log_prob", "task_responses"):
        assert flat[name].shape[0] == n, name
    ids = flat["episode_ids"]
    assert np.all(np.diff(ids) >= 0)  # episodes are contiguous
    last = np.r_[ids[1:] != ids[:-1], True]
    np.testing.assert_array_equal(flat["terminals"] + flat["timeouts"], last.astype(np.float32))
    # The horizon is part of the MDP (the position is observed): a session that reaches it
    # ends with a terminal, as a departure does; simulator datasets have no timeouts.
    assert np.all(flat["timeouts"] == 0)
    np.testing.assert_array_equal(flat["terminals"], last.astype(np.float32))
    horizon_ends = int(tout[-1].sum())
    assert flat["terminals"].sum() == horizon_ends + int(term.sum()) and horizon_ends > 0
    np.testing.assert_allclose(flat["rewards"].sum(), np.asarray(traj.rewards).sum(), rtol=1e-5)


def test_calibration_to_kuairand():
    traj = rollout(jax.random.PRNGKey(21), PARAMS, FIXED, E.baseline_action(PARAMS), 2000)
    valid = np.asarray(traj.valid)
    items = valid.sum() * PARAMS.slate_size
    rates = np.asarray(traj.task_responses).sum((0, 1)) / items
    target = np.asarray(E.KUAIRAND_RATES)
    print("rates", np.round(rates, 4), "ratio", np.round(rates / target, 3), "length", valid.sum(0).mean())
    assert np.all(np.abs(rates / target - 1) <= 0.25), rates / target
    assert 10 <= valid.sum(0).mean() <= 60


def test_fusion_forms():
    # log-space power product ranks like the product itself
    pred = jax.random.normal(jax.random.PRNGKey(0), (50, 6)) - 2
    a = jax.random.uniform(jax.random.PRNGKey(1), (12,), minval=-1, maxval=1)
    pb = PARAMS.replace(action_mode="power_bias")
    w, b = E.fusion_from_action(a, pb)
    direct = jnp.prod((jax.nn.sigmoid(pred) + b) ** w, axis=1)
    np.testing.assert_array_equal(np.argsort(E.fused_scores(pred, a, pb)), np.argsort(direct))
    add = PARAMS.replace(fusion="additive")
    np.testing.assert_allclose(E.fused_scores(pred, a[:6], add),
                               jax.nn.sigmoid(pred) @ E.fusion_from_action(a[:6], add)[0],
                               rtol=1e-6)
    # both forms (and the bias action) run in a rollout and the action changes the outcome
    for params in (add, pb):
        A = E.act_dim(params)
        r1 = evaluate(jax.random.PRNGKey(2), params, FIXED, jnp.full((A,), -1.0).at[0].set(1.0), 300, 20)
        r2 = evaluate(jax.random.PRNGKey(2), params, FIXED, jnp.full((A,), -1.0).at[2].set(1.0), 300, 20)
        assert np.all(np.isfinite(r1["undiscounted"]))
        assert not np.allclose(r1["undiscounted"], r2["undiscounted"])


def test_user_model_mechanics():
    """What the sequential property rests on: prone users long-view clickbait, averse users bounce."""
    _, st = jax.vmap(E.reset, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(8), 2000), PARAMS)
    bait = np.asarray(st.cand_bait) > 0
    lv = np.asarray(jax.nn.sigmoid(st.cand_true[..., 1]))  # P(long view | click)
    prone = np.asarray(st.prone)
    hi, lo = prone > 0.9, prone < 0.1
    assert lv[hi][bait[hi]].mean() > lv[hi][~bait[hi]].mean() + 0.1
    assert lv[lo][bait[lo]].mean() < lv[lo][~bait[lo]].mean() - 0.3
    # the MTL over-predicts clicks on clickbait relative to the truth
    gap = np.asarray(st.cand_pred[..., 0] - st.cand_true[..., 0])
    assert gap[bait].mean() > gap[~bait].mean() + 0.3
    assert abs(bait.mean() - float(PARAMS.bait_frac)) < 0.01


def test_static_search_uses_common_random_numbers():
    from jaxmtf.sim.mtf.static_search import cem_generation, score_actions
    a, b = E.baseline_action(PARAMS), E.click_greedy_action(PARAMS)
    s = np.asarray(score_actions(jax.random.PRNGKey(0), PARAMS, jnp.stack([a, b, a]), 64, 15))
    assert s.shape == (3, 64)
    np.testing.assert_array_equal(s[0], s[2])  # same action, same users and keys: same returns
    assert not np.array_equal(s[0], s[1])
    mean, std, best, best_score, mean_score = cem_generation(
        jax.random.PRNGKey(1), PARAMS, jnp.zeros(6), jnp.full((6,), 0.5), 8, 3, 32, 10)
    assert mean.shape == std.shape == best.shape == (6,) and np.all(np.abs(np.asarray(best)) <= 1)
    assert float(best_score) >= float(mean_score)  # the current mean is one of the candidates
