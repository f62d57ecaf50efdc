"""OPE estimators: hand-computed values, exactness on a tabular MDP, FQE, the bootstrap, refusals."""
import contextlib
import itertools
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxmtf.core import chunk as chunk_lib
from jaxmtf.data import one_step_dataset
from jaxmtf.data.synthetic import optimal_action
from jaxmtf.ope import bootstrap, doubly_robust, importance, marginal, scoring
from jaxmtf.ope import fqe as fqe_lib
from jaxmtf.ope.episodes import Episodes, OPEDataError, episodes_from_dataset, require_behaviour_log_prob


def make_episodes(rewards, mask, behaviour_log_prob):
    rewards, mask = jnp.asarray(rewards, jnp.float32), jnp.asarray(mask, jnp.float32)
    rows = jnp.zeros(rewards.shape, jnp.int32)
    return Episodes(rows=rows, mask=mask, rewards=rewards * mask,
                    behaviour_log_prob=jnp.asarray(behaviour_log_prob, jnp.float32))


# ----------------------------------------------------------------- hand-computed values


def two_episodes():
    """Episode A: 2 steps, rewards 1, 2, ratios 2, 0.5. Episode B: 1 step, reward 3, ratio 0.5."""
    episodes = make_episodes([[1.0, 2.0], [3.0, 0.0]], [[1, 1], [1, 0]], [[0.0, 0.0], [0.0, 0.0]])
    target_log_prob = jnp.log(jnp.array([[2.0, 0.5], [0.5, 1.0]]))
    return episodes, importance.log_ratios(episodes, target_log_prob)


def test_importance_family_hand_values():
    episodes, lr = two_episodes()
    log_w = importance.log_cumulative_weights(lr)
    ones = jnp.ones(2)
    # w_A = (2, 1), w_B = (0.5, 0.5: absorbing after its end); gamma 0.5: G_A = 1 + 0.5 * 2 = 2, G_B = 3.
    got = importance.estimate_all(episodes, log_w, 0.5, ones)
    np.testing.assert_allclose(got["tis"], (1 * 2 + 0.5 * 3) / 2, rtol=1e-6)
    np.testing.assert_allclose(got["pdis"], ((2 * 1 + 0.5 * 1 * 2) + 0.5 * 3) / 2, rtol=1e-6)
    np.testing.assert_allclose(got["wis"], (1 * 2 + 0.5 * 3) / (1 + 0.5), rtol=1e-6)
    np.testing.assert_allclose(got["wpdis"], (2 * 1 + 0.5 * 3) / 2.5 + 0.5 * (1 * 2) / 1.5, rtol=1e-6)
    np.testing.assert_allclose(importance.effective_sample_size(log_w, ones), 1.5**2 / 1.25, rtol=1e-6)
    # Clipping at 1.5: w_A = (1.5, 1); TIS unchanged, PDIS = ((1.5 + 0.5 * 2) + 1.5) / 2.
    clipped = importance.estimate_all(episodes, importance.log_cumulative_weights(lr, 1.5), 0.5, ones)
    np.testing.assert_allclose(clipped["tis"], 1.75, rtol=1e-6)
    np.testing.assert_allclose(clipped["pdis"], 2.0, rtol=1e-6)


def test_weighted_is_equals_is_when_weights_are_equal():
    rng = np.random.default_rng(0)
    lp = rng.normal(size=(5, 4))
    episodes = make_episodes(rng.uniform(size=(5, 4)), np.ones((5, 4)), lp)
    log_w = importance.log_cumulative_weights(importance.log_ratios(episodes, jnp.asarray(lp, jnp.float32)))
    got = importance.estimate_all(episodes, log_w, 0.9, jnp.ones(5))
    np.testing.assert_allclose(got["wis"], got["tis"], rtol=1e-6)
    np.testing.assert_allclose(got["wpdis"], got["pdis"], rtol=1e-6)
    on_policy = np.mean(np.sum(np.asarray(episodes.rewards) * 0.9 ** np.arange(4), axis=1))
    np.testing.assert_allclose(got["tis"], on_policy, rtol=1e-6)


def test_weights_never_overflow_in_the_weighted_forms():
    episodes = make_episodes(np.ones((3, 2)), np.ones((3, 2)), np.zeros((3, 2)))
    log_w = jnp.array([[300.0, 400.0], [301.0, 401.0], [0.0, 0.0]])  # far beyond float32's exp range
    assert np.isfinite(importance.weighted_is(episodes, log_w, 1.0, jnp.ones(3)))
    assert np.isfinite(importance.weighted_per_decision_is(episodes, log_w, 1.0, jnp.ones(3)))
    assert np.isinf(importance.trajectory_is(episodes, log_w, 1.0, jnp.ones(3)))  # honest: unclipped IS explodes


# ----------------------------------------------------------------- a tabular MDP with an exact value

R = np.array([[1.0, 0.0], [0.5, 2.0]])  # r(s, a); s' = a; s_0 = 0; horizon 2
B = np.array([[0.5, 0.5], [0.3, 0.7]])  # behaviour b(a | s)
PI = np.array([[0.2, 0.8], [0.6, 0.4]])  # target pi(a | s)
GAMMA = 0.9


def true_value():
    v1 = (PI * R).sum(1)  # V_1(s)
    return float(sum(PI[0, a] * (R[0, a] + GAMMA * v1[a]) for a in range(2)))


def tabular_population():
    """All 4 trajectories, with counts proportional to their behaviour probability (the estimators' expectation)."""
    trajs = list(itertools.product(range(2), range(2)))
    states = np.array([[0, a0] for a0, _ in trajs])
    actions = np.array(trajs)
    episodes = make_episodes(R[states, actions], np.ones((4, 2)), np.log(B[states, actions]))
    counts = jnp.asarray([B[0, a0] * B[a0, a1] for a0, a1 in trajs], jnp.float32)
    target_lp = jnp.asarray(np.log(PI[states, actions]), jnp.float32)
    return episodes, states, actions, counts, target_lp


def perfect_q(states, actions):
    """Q_t(s_t, a_t) and V_t(s_t) of the target on the [E, T] layout."""
    v1 = (PI * R).sum(1)
    q = np.stack([R[states[:, 0], actions[:, 0]] + GAMMA * v1[actions[:, 0]], R[states[:, 1], actions[:, 1]]], 1)
    q0 = R[0] + GAMMA * v1
    v = np.stack([np.full(len(states), (PI[0] * q0).sum()), v1[states[:, 1]]], 1)
    return jnp.asarray(q, jnp.float32), jnp.asarray(v, jnp.float32)


def test_every_estimator_is_exact_in_expectation_on_a_tabular_mdp():
    """With each trajectory counted by its behaviour probability, the estimators give their expectation: V^pi."""
    episodes, states, actions, counts, target_lp = tabular_population()
    lr = importance.log_ratios(episodes, target_lp)
    log_w = importance.log_cumulative_weights(lr)
    for name, value in importance.estimate_all(episodes, log_w, GAMMA, counts).items():
        np.testing.assert_allclose(value, true_value(), rtol=1e-5, err_msg=name)
    zeros = jnp.zeros((4, 2))
    for name, fn in doubly_robust.ESTIMATORS.items():  # unbiased with any model, here none
        np.testing.assert_allclose(fn(episodes, log_w, zeros, zeros, GAMMA, counts), true_value(), rtol=1e-5,
                                   err_msg=name)
    cells = jnp.asarray(states, jnp.int32)  # the cells are the states: MIS is exact
    np.testing.assert_allclose(marginal.marginalized_is(episodes, cells, lr, GAMMA, counts, 2), true_value(), rtol=1e-5)


def test_trajectory_is_is_unbiased_on_sampled_episodes():
    rng = np.random.default_rng(1)
    n = 40_000
    a0 = (rng.uniform(size=n) < B[0, 1]).astype(int)
    a1 = (rng.uniform(size=n) < B[a0, 1]).astype(int)
    states, actions = np.stack([np.zeros(n, int), a0], 1), np.stack([a0, a1], 1)
    episodes = make_episodes(R[states, actions], np.ones((n, 2)), np.log(B[states, actions]))
    lr = importance.log_ratios(episodes, jnp.asarray(np.log(PI[states, actions]), jnp.float32))
    w = np.exp(np.cumsum(np.asarray(lr), 1))
    g = (R[states, actions] * GAMMA ** np.arange(2)).sum(1)
    stderr = np.std(w[:, -1] * g) / np.sqrt(n)
    got = float(importance.trajectory_is(episodes, importance.log_cumulative_weights(lr), GAMMA, jnp.ones(n)))
    assert abs(got - true_value()) < 4 * stderr


def test_doubly_robust_with_the_perfect_q_is_exact_on_every_sample():
    """Deterministic transitions and rewards: each episode's DR term telescopes to V(s_0)."""
    episodes, states, actions, _, target_lp = tabular_population()
    log_w = importance.log_cumulative_weights(importance.log_ratios(episodes, target_lp))
    q, v = perfect_q(states, actions)
    for counts in (jnp.array([1.0, 0.0, 0.0, 0.0]), jnp.array([0.0, 3.0, 1.0, 0.0]), jnp.ones(4)):
        np.testing.assert_allclose(doubly_robust.doubly_robust(episodes, log_w, q, v, GAMMA, counts),
                                   true_value(), rtol=1e-5)
        np.testing.assert_allclose(doubly_robust.weighted_doubly_robust(episodes, log_w, q, v, GAMMA, counts),
                                   true_value(), rtol=1e-5)


def test_doubly_robust_without_a_model_is_per_decision_is():
    episodes, lr = two_episodes()
    log_w = importance.log_cumulative_weights(lr)
    zeros = jnp.zeros((2, 2))
    np.testing.assert_allclose(doubly_robust.doubly_robust(episodes, log_w, zeros, zeros, 0.5, jnp.ones(2)), 2.25,
                               rtol=1e-6)


def test_marginal_is_with_one_cell_is_stepwise_self_normalised_is():
    rng = np.random.default_rng(2)
    rewards, lr = rng.uniform(size=(6, 3)), rng.normal(size=(6, 3))
    episodes = make_episodes(rewards, np.ones((6, 3)), np.zeros((6, 3)))
    got = marginal.marginalized_is(episodes, jnp.zeros((6, 3), jnp.int32), jnp.asarray(lr, jnp.float32), 0.8,
                                   jnp.ones(6), 1)
    rho = np.exp(lr)
    want = sum(0.8**t * (rho[:, t] * rewards[:, t]).sum() / rho[:, t].sum() for t in range(3))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_marginal_is_cells_follow_the_data():
    x = np.concatenate([np.random.default_rng(3).normal(size=(50, 3)) + c for c in (-10.0, 10.0)]).astype(np.float32)
    cells = np.asarray(marginal.state_cells(jax.random.PRNGKey(0), jnp.asarray(x), 2, 2))
    assert len(set(cells[:50])) == 1 and len(set(cells[50:])) == 1 and cells[0] != cells[50]


# ----------------------------------------------------------------- bootstrap, scoring, refusals


def test_bootstrap_interval_of_a_known_sample():
    x = jnp.asarray(np.random.default_rng(4).normal(size=400), jnp.float32)
    counts = bootstrap.bootstrap_counts(jax.random.PRNGKey(0), 400, 8)
    np.testing.assert_array_equal(counts.sum(1), 400.0)  # each replicate redraws all episodes
    out = bootstrap.with_intervals(lambda c: {"mean": jnp.sum(c * x) / jnp.sum(c)}, jax.random.PRNGKey(1), 400, 2000)
    mean, low, high = (float(v) for v in out["mean"])
    half = 1.96 * float(jnp.std(x)) / np.sqrt(400)  # the normal interval of a mean, which the bootstrap approximates
    np.testing.assert_allclose(mean, float(jnp.mean(x)), rtol=1e-5)
    np.testing.assert_allclose([low, high], [mean - half, mean + half], atol=0.15 * half)


def test_scoring_metrics_by_hand():
    truths, estimates = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 1.0, 4.0, 3.0])
    scores = scoring.score_estimator(estimates, truths, estimates - 0.6, estimates + 0.6)
    np.testing.assert_allclose(scores["spearman"], 0.6)  # rank differences (1, 1, 1, 1): 1 - 6*4 / (4*15)
    np.testing.assert_allclose(scores["regret@1"], (4.0 - 3.0) / 4.0)  # it picks policy 2 (true 3)
    assert scores["regret@3"] == 0.0
    np.testing.assert_allclose(scores["coverage"], 0.25)  # |errors| 0.5, 1, 1, 1: one of four inside +-0.6
    np.testing.assert_allclose(scores["relative_error"], np.mean([0.5, 0.5, 1 / 3, 0.25]))
    chosen = scoring.select(["a", "b"], np.array([5.0, 4.0]), np.array([1.0, 3.0]))
    assert chosen == {"by_estimate": "a", "by_lower_bound": "b"}
    # Ties share their mean rank: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4): 4.5 / sqrt(4.5 * 5).
    np.testing.assert_allclose(scoring.spearman([1.0, 2.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]), 4.5 / np.sqrt(22.5))
    assert np.isnan(scoring.spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))  # a constant side: undefined
    assert np.isnan(scoring.spearman([1.0, np.nan, 2.0], [1.0, 2.0, 3.0]))


def test_kmeans_cells_find_separated_clusters_and_follow_the_seed():
    """Three well-separated blobs: every restart-picked solution puts one centre in each; same seed, same
    centres."""
    from jaxmtf.ope import marginal

    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.concatenate([m + 0.1 * rng.standard_normal((50, 2)) for m in means])
    centres = marginal.kmeans(3, x, 3)
    found = sorted(map(tuple, np.round(centres).astype(int).tolist()))
    assert found == [(0, 0), (0, 10), (10, 0)]
    np.testing.assert_array_equal(centres, marginal.kmeans(3, x, 3))
    cells = np.asarray(marginal.assign_cells(jnp.asarray(x, jnp.float32), jnp.asarray(centres)))
    assert all(len(set(cells[i * 50:(i + 1) * 50])) == 1 for i in range(3)) and len(set(cells)) == 3


def test_is_is_refused_without_behaviour_log_prob(tiny_dataset):
    episodes = episodes_from_dataset(tiny_dataset)
    with pytest.raises(OPEDataError, match="'behaviour_log_prob' is missing"):
        require_behaviour_log_prob(episodes, "wis")


def test_split_episodes_are_refused():
    dataset = one_step_dataset(num_transitions=4)
    dataset = dataset.replace(episode_ids=jnp.array([0, 1, 0, 2], jnp.int32))
    with pytest.raises(OPEDataError, match="episode 0 is split"):
        episodes_from_dataset(dataset)


# ----------------------------------------------------------------- FQE


def fqe_config(**overrides):
    config = ml_collections.ConfigDict(dict(
        hidden_dims=(64, 64), num_critics=1, learning_rate=1e-3, target_update_interval=10,
    ))
    config.update(overrides)
    return config


_CHUNKS = {}


def chunk_fn(fqe, batch_size, num_updates):
    """One compiled chunk per FQE and shape, as the driver builds it once per run."""
    key = (id(fqe), batch_size, num_updates)
    return _CHUNKS.setdefault(key, chunk_lib.make_chunk_fn(fqe, batch_size, num_updates))


def fit(fqe, dataset, next_actions, seeds, num_updates, batch_size=64):
    num_policies = next_actions.shape[0]
    state = chunk_lib.init_run_state(fqe, seeds, num_policies)
    hparams = {"next_actions": next_actions, "discount": jnp.full((num_policies,), 0.99)}
    chunk = chunk_fn(fqe, batch_size, num_updates)
    state, _ = chunk(state, fqe_lib.fqe_data(dataset), hparams)
    return state.agent


def test_fqe_on_a_one_step_task_is_the_mean_reward_of_the_target():
    """Three deterministic targets and a tanh-Gaussian one (K sampled actions per state)."""
    dataset = one_step_dataset(num_transitions=1024, obs_dim=3, act_dim=2, seed=0)
    obs = np.asarray(dataset.observations)
    best = optimal_action(obs, 2)
    k = 4  # draws per state of the stochastic target; the deterministic ones repeat their action
    deterministic = np.stack([best, np.zeros_like(best), np.clip(best + 0.5, -1, 1)])  # [3, N, A]
    rng = np.random.default_rng(5)
    tanh_gaussian = np.tanh(best[:, None, :] + 0.5 * rng.normal(size=(len(obs), k, 2)))  # [N, K, A]
    actions = np.concatenate([np.repeat(deterministic[:, :, None], k, 2), tanh_gaussian[None]])  # [4, N, K, A]
    fqe = fqe_lib.make_fqe(fqe_config(), 3, 2)
    actions = jnp.asarray(actions, jnp.float32)  # one-step episodes: s' is never used, s_0 is every s
    states = fit(fqe, dataset, actions, [0], 2000)
    estimate = np.asarray(fqe_lib.values(fqe, states, dataset.observations, actions)).mean(-1)[0]
    # The mean reward of each target; the tanh-Gaussian's by Monte Carlo over many more draws.
    many = np.tanh(best[:, None, :] + 0.5 * rng.normal(size=(len(obs), 256, 2)))
    want = np.r_[-np.sum((deterministic - best[None]) ** 2, -1).mean(-1),
                 -np.sum((many - best[:, None]) ** 2, -1).mean()]
    np.testing.assert_allclose(estimate, want, atol=0.08)


def test_fqe_vmapped_over_policies_equals_separate_runs(tiny_dataset):
    fqe = fqe_lib.make_fqe(fqe_config(hidden_dims=(16, 16)), 3, 2)
    actions = jax.random.uniform(jax.random.PRNGKey(0), (2, tiny_dataset.size, 2, 2), minval=-1, maxval=1)
    together = fit(fqe, tiny_dataset, actions, [0, 1], 30, batch_size=16)
    for p in range(2):
        alone = fit(fqe, tiny_dataset, actions[p:p + 1], [0, 1], 30, batch_size=16)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a[:, p], b[:, 0], rtol=1e-5, atol=1e-6),
            together.critic, alone.critic,
        )


def test_fqe_target_by_hand():
    batch = fqe_lib.FQEData(
        observations=jnp.zeros((2, 1)), actions=jnp.zeros((2, 1)), rewards=jnp.array([1.0, 2.0]),
        next_observations=jnp.array([[1.0], [2.0]]), terminals=jnp.array([0.0, 1.0]), rows=jnp.arange(2),
    )
    q_fn = lambda obs, a: (obs[..., 0] + a[..., 0])[None]  # noqa: E731  Q'(s, a) = s + a, one critic
    next_actions = jnp.array([[[0.0], [1.0]], [[5.0], [5.0]]])  # K = 2 draws per row
    y = fqe_lib.fqe_target(q_fn, batch, next_actions, 0.5)
    np.testing.assert_allclose(y, [1.0 + 0.5 * (1.0 + 0.5), 2.0])  # mean of Q'(1, 0), Q'(1, 1); terminal row


@pytest.mark.parametrize("field, value, message", [
    ("discount", 0.0, "config field 'discount': got 0.0, expected"),
    ("target_sigma", -0.1, "config field 'target_sigma': got -0.1"),
    ("bootstrap_replicates", 1, "config field 'bootstrap_replicates': got 1, expected an integer >= 2"),
    ("fqe.num_critics", 0, "config field 'fqe.num_critics': got 0"),
    ("fqe.num_updates", 1500, "config field 'num_updates': got 1500, expected a multiple of chunk_size=1000"),
    ("num_cell", 4, "did you mean 'num_cells'"),
    ("top_k", 0, "config field 'top_k': got 0, expected an integer >= 1"),
    ("support_threshold", 0.0, "config field 'support_threshold': got 0.0"),
])
def test_bad_ope_config_is_named(field, value, message):
    from jaxmtf.configs import ope as ope_config
    from jaxmtf.core.run_config import ConfigError
    from jaxmtf.ope.config import validate_ope_config

    config = ope_config.get_config()
    parent, _, name = field.rpartition(".")
    with config.unlocked() if hasattr(config, "unlocked") else contextlib.nullcontext():
        (config[parent] if parent else config)[name] = value
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_ope_config(config)


def test_fqe_values_of_every_seed_and_policy_are_each_runs_own():
    """fqe.values maps over (seed, policy) one at a time (memory): each entry equals that run's own critic's
    weighted sum over its actions, with the seeds' shared step carried along."""
    fqe = fqe_lib.make_fqe(fqe_config(hidden_dims=(8, 8)), 3, 2)
    seeds, policies, m, k = 2, 3, 5, 4
    keys = jax.random.split(jax.random.PRNGKey(0), seeds * policies).reshape(seeds, policies, 2)
    states = jax.vmap(jax.vmap(fqe.init))(keys).replace(step=jnp.zeros((), jnp.int32))
    rng = np.random.default_rng(0)
    obs = jnp.asarray(rng.normal(size=(m, 3)), jnp.float32)
    actions = jnp.asarray(rng.uniform(-1, 1, size=(policies, m, k, 2)), jnp.float32)
    weights = jax.nn.softmax(jnp.asarray(rng.normal(size=(policies, m, k)), jnp.float32), axis=-1)
    got = np.asarray(fqe_lib.values(fqe, states, obs, actions, weights))
    assert got.shape == (seeds, policies, m)
    for s in range(seeds):
        for p in range(policies):
            run = jax.tree.map(lambda x: x[s, p] if x.ndim else x, states)
            q = np.stack([np.asarray(fqe.q_values(run, obs, actions[p, :, j])).mean(0) for j in range(k)], 1)
            np.testing.assert_allclose(got[s, p], np.sum(np.asarray(weights[p]) * q, 1), rtol=1e-5, atol=1e-5)
