"""IntegratedRL-MTF: hand-computed box penalty, decayed-discount target, ensemble disagreement, the sampler."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmtf.agents import integrated_rl as irl
from jaxmtf.agents import td3_bc
from jaxmtf.types import Transition, logged_next_actions

W = 0.15
HP = {"discount": jnp.float32(0.9), "policy_noise": jnp.float32(0.0), "noise_clip": jnp.float32(0.5),
      "alpha": jnp.float32(2.5), "box_weight": jnp.float32(2.0), "discount_decay": jnp.float32(2.0),
      "disagreement_weight": jnp.float32(0.5)}


def test_box_penalty_zero_inside_and_its_two_shapes_outside_by_hand():
    c = jnp.zeros((2, 2))
    inside = jnp.array([[0.1, -0.15], [0.0, 0.149]])
    assert float(irl.box_penalty(inside, c, W, "exponential", 0.03)) == 0.0
    assert float(irl.box_penalty(inside, c, W, "quadratic")) == 0.0
    outside = jnp.array([[0.1, -0.5], [0.0, 0.21]])  # excesses 0.35 (row 0) and 0.06 (row 1)
    # exponential: mean over rows of sum_d exp(e_d / s) - 1
    np.testing.assert_allclose(irl.box_penalty(outside, c, W, "exponential", 0.1),
                               ((np.exp(3.5) - 1) + (np.exp(0.6) - 1)) / 2, rtol=1e-5)
    np.testing.assert_allclose(irl.box_penalty(outside, c, W, "quadratic"), (0.35**2 + 0.06**2) / 4, rtol=1e-5)
    # Its gradient is zero inside the box and pulls back toward it outside: d/dx = exp(e / s) / s / B.
    grad = jax.grad(lambda pi: irl.box_penalty(pi, c, W, "exponential", 0.1))(outside)
    np.testing.assert_allclose(grad, [[0.0, -np.exp(3.5) / 0.1 / 2], [0.0, np.exp(0.6) / 0.1 / 2]], rtol=1e-4)
    # Past 20 length scales it continues along its tangent: finite, and still pulling back.
    far = irl.exponential_penalty(jnp.array([[1.0]]), 0.01)  # 100 scales out
    np.testing.assert_allclose(far, np.exp(20.0) * (1 + 80) - 1, rtol=1e-5)


def test_box_is_centred_on_the_logged_centre_not_the_action():
    pi = jnp.array([[0.3, 0.0]])
    action, centre = jnp.array([[0.3, 0.0]]), jnp.array([[0.0, 0.0]])
    assert float(irl.box_penalty(pi, action, W)) == 0.0  # at the logged action
    assert float(irl.box_penalty(pi, centre, W)) > 0.0  # 0.15 outside the box around the centre


def test_decayed_discount_by_hand():
    a_t = jnp.array([[0.5, 0.0], [0.1, -0.1], [0.9, 0.9], [0.5, -0.6]])
    next_centres = jnp.array([[0.0, 0.0], [0.0, 0.0], [jnp.nan, jnp.nan], [0.0, 0.0]])
    out = irl.decayed_discount(a_t, next_centres, W, 0.9, 2.0)
    # excess 0.35; inside; next centre unknown (no decay); L1 excess 0.35 + 0.45
    np.testing.assert_allclose(out, [0.9 * np.exp(-0.7), 0.9, 0.9, 0.9 * np.exp(-1.6)], rtol=1e-5)


def _batch(**fields):
    base = dict(observations=jnp.zeros((3, 1)), actions=jnp.zeros((3, 2)), rewards=jnp.array([1.0, 0.5, -1.0]),
                next_observations=jnp.zeros((3, 1)), terminals=jnp.array([0.0, 1.0, 0.0]),
                next_centres=jnp.zeros((3, 2)))
    return Transition(**{**base, **fields})


def test_own_target_per_critic_with_the_deterministic_target_action_by_hand():
    pi_t = jnp.array([[0.5, 0.0], [0.5, 0.0], [0.1, 0.0]])  # mu'(s'), no smoothing (policy_noise 0)
    q_t = jnp.array([[2.0, 5.0, -3.0], [3.0, 1.0, -4.0]])  # one group, two members
    y, aux = irl.integrated_target(lambda obs: pi_t, lambda obs, a: q_t, _batch(), jax.random.PRNGKey(0), HP, W, 1)
    g = 0.9 * np.exp(-2.0 * 0.35)  # row 0: 0.35 outside the box around its next centre
    # Each member bootstraps from its own target: row 0 -> 1 + g * (2, 3); row 1 terminal; row 2 inside.
    np.testing.assert_allclose(y, [[1.0 + g * 2.0, 0.5, -1.0 - 0.9 * 3.0], [1.0 + g * 3.0, 0.5, -1.0 - 0.9 * 4.0]],
                               rtol=1e-5)
    np.testing.assert_allclose(aux["effective_discount"], (g + 0.9) / 2, rtol=1e-5)  # over the two live rows
    y_min, _ = irl.integrated_target(lambda obs: pi_t, lambda obs, a: q_t, _batch(), jax.random.PRNGKey(0), HP, W, 1,
                                     "min")
    np.testing.assert_allclose(y_min[:, 2], [-1.0 - 0.9 * 4.0] * 2, rtol=1e-5)
    # The earlier anchor reads the logged next action instead of the next centre.
    logged = _batch(next_centres=None, next_actions=jnp.array([[0.5, 0.0]] * 3))
    y_logged, _ = irl.integrated_target(lambda obs: pi_t, lambda obs, a: q_t, logged, jax.random.PRNGKey(0), HP, W, 1,
                                        anchor="logged_action")
    np.testing.assert_allclose(y_logged[0, 0], 1.0 + 0.9 * 2.0, rtol=1e-5)  # mu'(s') is the logged next action


def test_critic_groups_score_their_own_rewards_by_hand():
    groups = ((0.0, 1.0, 0.0), (1.0, 0.0, 2.0))  # group 0: task 1; group 1: task 0 + 2 task 2
    responses = jnp.array([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 1.0]])
    batch = _batch(task_responses=responses)
    np.testing.assert_allclose(irl.group_rewards(batch, groups), [[1.0, 2.0, 0.0], [1.0, 2.0, 3.0]])
    q_t = jnp.array([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [10.0, 10.0, 10.0], [20.0, 20.0, 20.0]])  # [G * M = 4, B]
    pi_t = jnp.zeros((3, 2))
    y, _ = irl.integrated_target(lambda obs: pi_t, lambda obs, a: q_t, batch, jax.random.PRNGKey(0), HP, W, 2,
                                 reward_groups=groups)
    np.testing.assert_allclose(y[:, 0], [1.0 + 0.9, 1.0 + 1.8, 1.0 + 9.0, 1.0 + 18.0], rtol=1e-5)
    np.testing.assert_allclose(y[:, 1], [2.0, 2.0, 2.0, 2.0], rtol=1e-5)  # terminal: the group rewards alone


def test_grouped_critic_loss_by_hand():
    y = jnp.array([[1.0, 2.0], [0.0, 0.0]])
    loss, q = irl.grouped_critic_loss(lambda obs, a: jnp.array([[0.0, 2.0], [1.0, 1.0]]), _batch(
        observations=jnp.zeros((2, 1)), actions=jnp.zeros((2, 2))), y)
    np.testing.assert_allclose(loss, (1.0 + 0.0) / 2 + (1.0 + 1.0) / 2, rtol=1e-6)


def test_ensemble_disagreement_and_actor_loss_by_hand():
    # [G = 2, M = 2, B = 2]
    q_pi = jnp.array([[[1.0, 2.0], [3.0, 2.0]], [[0.0, 4.0], [0.0, 0.0]]])
    pi, centre = jnp.array([[0.1, -0.5], [0.0, 0.0]]), jnp.zeros((2, 2))
    hp = {**HP, "box_weight": jnp.float32(2.0), "disagreement_weight": jnp.float32(0.5)}
    loss, aux = irl.integrated_actor_loss(q_pi, pi, centre, hp, W, (1.0, 0.5), "exponential", 0.1)
    # mu = 1 * [2, 2] + 0.5 * [0, 2] = [2, 3]; sd = 1 * [1, 0] + 0.5 * [0, 2] = [1, 1]
    # loss = mean(-mu + 0.5 sd) + 2 * mean(d) = -2.5 + 0.5 + 2 * (e^3.5 - 1) / 2
    np.testing.assert_allclose(loss, -2.5 + 0.5 + (np.exp(3.5) - 1.0), rtol=1e-5)
    np.testing.assert_allclose(aux["q_disagreement"], 1.0)
    np.testing.assert_allclose(aux["outside_box"], 0.5)
    # TD3+BC's scaling: the Q terms times alpha / mean|mu| = 2.5 / 2.5.
    scaled, aux = irl.integrated_actor_loss(q_pi, pi, centre, hp, W, (1.0, 0.5), "exponential", 0.1, "td3_bc")
    np.testing.assert_allclose(aux["q_scale"], 1.0, rtol=1e-6)
    # The disagreement term has a gradient: raising a disputed member's Q lowers the loss less than an agreed one's.
    grad = jax.grad(lambda q: irl.integrated_actor_loss(q, pi, centre, hp, W, (1.0, 1.0))[0])(q_pi)
    assert float(grad[0, 1, 0]) > float(grad[0, 1, 1])


def test_without_box_and_disagreement_the_earlier_actor_loss_is_td3_bc():
    q_pi = jnp.array([[[1.5, -0.5, 2.0], [1.5, -0.5, 2.0]]])  # agreeing members, one group
    pi, a = jnp.array([[0.3, -0.2], [0.9, 0.1], [0.0, 0.0]]), jnp.array([[0.0, 0.1], [0.5, 0.5], [0.2, -0.2]])
    batch = Transition(jnp.zeros((3, 1)), a, jnp.zeros(3), jnp.zeros((3, 1)), jnp.zeros(3))
    hp = {**HP, "box_weight": jnp.float32(1.0)}
    ours, _ = irl.integrated_actor_loss(q_pi, pi, a, hp, 0.0, (1.0,), "quadratic", q_scaling="td3_bc")
    reference, _ = td3_bc.td3_bc_actor_loss(q_pi[0, 0], pi, batch, hp)
    np.testing.assert_allclose(ours, reference, rtol=1e-6)


def test_dataset_without_a_centre_is_refused_unless_the_config_asks_for_the_logged_action(tiny_dataset):
    from jaxmtf import agents
    from jaxmtf.configs import integrated_rl
    from jaxmtf.core.run_config import ConfigError

    config = integrated_rl.get_config()
    config.agent.reward_groups = ()
    no_centre = tiny_dataset.replace(behaviour_centre=None)
    with pytest.raises(ConfigError, match="behaviour_centre.*box_anchor"):
        agents.check_dataset(config, no_centre, ConfigError)
    config.agent.box_anchor = "logged_action"
    agents.check_dataset(config, no_centre, ConfigError)  # the explicit fallback
    assert agents.transition_fields(config) == {"next_actions": True, "centres": False, "task_responses": False}
    grouped = integrated_rl.get_config()
    with pytest.raises(ConfigError, match="task_responses"):
        agents.check_dataset(grouped, tiny_dataset, ConfigError)


def test_logged_next_actions():
    actions = np.array([[0.1], [0.2], [0.3], [0.4]], np.float32)
    out = logged_next_actions(actions, np.array([0, 0, 0, 1]), np.array([0.0, 0.0, 1.0, 1.0]))
    np.testing.assert_array_equal(out[:2], actions[1:3])
    assert np.isnan(out[2:]).all()  # a terminal row; the dataset's last row


def test_exploration_sampler_stays_in_the_box_with_the_uniform_density():
    centre = jnp.array([0.2, -0.4, 0.95])  # the last dimension's box crosses the face a = 1
    policy = irl.exploration_policy(lambda state, obs, key: jnp.broadcast_to(centre, (obs.shape[0], 3)), W, "truncate")
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    obs = jnp.zeros((1,))
    actions = jax.vmap(lambda k: policy.apply({"base": None}, obs, k))(keys)
    lo, hi = np.maximum(centre - W, -1.0), np.minimum(centre + W, 1.0)
    assert np.all(np.asarray(actions) >= lo - 1e-6) and np.all(np.asarray(actions) <= hi + 1e-6)
    np.testing.assert_allclose(np.asarray(actions).mean(0), (lo + hi) / 2, atol=0.01)  # uniform over the box
    log_p = jax.vmap(lambda a: policy.log_prob({"base": None}, obs, a))(actions[:50])
    np.testing.assert_allclose(log_p, -np.log(hi - lo).sum(), rtol=1e-5)  # 1 / volume of the box
    assert policy.log_prob({"base": None}, obs, centre + jnp.array([W + 0.01, 0.0, 0.0])) == -np.inf
    # The paper's literal clip: inside the box (away from the faces) the density is (2 eps)^-A.
    clip = irl.exploration_policy(lambda state, obs, key: jnp.zeros((obs.shape[0], 3)), W, "clip")
    a = clip.apply({"base": None}, obs, keys[0])
    assert np.all(np.abs(np.asarray(a)) <= W)
    np.testing.assert_allclose(clip.log_prob({"base": None}, obs, a), -3 * np.log(2 * W), rtol=1e-5)
