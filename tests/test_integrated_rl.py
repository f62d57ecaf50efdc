"""IntegratedRL-MTF: hand-computed box penalty, decayed-discount target, ensemble disagreement, the sampler."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxmtf.agents import integrated_rl as irl
from jaxmtf.agents import td3_bc
from jaxmtf.types import Transition, logged_next_actions

W = 0.15
HP = {"discount": jnp.float32(0.9), "policy_noise": jnp.float32(0.0), "noise_clip": jnp.float32(0.5),
      "alpha": jnp.float32(2.5), "box_weight": jnp.float32(2.0), "discount_decay": jnp.float32(2.0),
      "disagreement_weight": jnp.float32(0.5)}


def test_box_penalty_zero_inside_positive_outside_by_hand():
    a = jnp.zeros((2, 2))
    inside = jnp.array([[0.1, -0.15], [0.0, 0.149]])
    assert float(irl.box_penalty(inside, a, W)) == 0.0
    outside = jnp.array([[0.1, -0.5], [0.0, 0.0]])  # one dimension 0.35 beyond the box
    np.testing.assert_allclose(irl.box_penalty(outside, a, W), 0.35**2 / 4, rtol=1e-5)
    # Its gradient is zero inside the box and pulls back toward it outside.
    grad = jax.grad(lambda pi: irl.box_penalty(pi, a, W))(outside)
    np.testing.assert_allclose(grad, [[0.0, -2 * 0.35 / 4], [0.0, 0.0]], rtol=1e-5)


def test_decayed_discount_by_hand():
    a_t = jnp.array([[0.5, 0.0], [0.1, -0.1], [0.9, 0.9], [0.5, -0.6]])
    logged = jnp.array([[0.0, 0.0], [0.0, 0.0], [jnp.nan, jnp.nan], [0.0, 0.0]])
    out = irl.decayed_discount(a_t, logged, W, 0.9, 2.0)
    # excess 0.35; inside; next action unknown (no decay); L1 excess 0.35 + 0.45
    np.testing.assert_allclose(out, [0.9 * np.exp(-0.7), 0.9, 0.9, 0.9 * np.exp(-1.6)], rtol=1e-5)


def _batch(next_actions):
    return Transition(observations=jnp.zeros((3, 1)), actions=jnp.zeros((3, 2)), rewards=jnp.array([1.0, 0.5, -1.0]),
                      next_observations=jnp.zeros((3, 1)), terminals=jnp.array([0.0, 1.0, 0.0]),
                      next_actions=next_actions)


def test_decayed_discount_target_on_a_hand_made_batch():
    pi_t = jnp.array([[0.5, 0.0], [0.5, 0.0], [0.1, 0.0]])  # pi'(s'); no smoothing noise (policy_noise 0)
    q_t = jnp.array([[2.0, 5.0, -3.0], [3.0, 1.0, -4.0]])
    batch = _batch(jnp.zeros((3, 2)))
    y = irl.integrated_target(lambda obs: pi_t, lambda obs, a: q_t, batch, jax.random.PRNGKey(0), HP, W)
    # row 0: 0.35 outside -> 1 + 0.9 e^-0.7 * min(2, 3); row 1 terminal; row 2 inside -> -1 + 0.9 * -4
    np.testing.assert_allclose(y, [1.0 + 0.9 * np.exp(-0.7) * 2.0, 0.5, -1.0 - 0.9 * 4.0], rtol=1e-5)
    y_mean = irl.integrated_target(lambda obs: pi_t, lambda obs, a: q_t, batch, jax.random.PRNGKey(0), HP, W, "mean")
    np.testing.assert_allclose(y_mean[2], -1.0 - 0.9 * 3.5, rtol=1e-5)
    no_decay = irl.integrated_target(lambda obs: pi_t, lambda obs, a: q_t, batch, jax.random.PRNGKey(0),
                                     {**HP, "discount_decay": jnp.float32(0.0)}, W)
    np.testing.assert_allclose(no_decay[0], 1.0 + 0.9 * 2.0, rtol=1e-5)


def test_ensemble_disagreement_and_actor_loss_by_hand():
    q_pi = jnp.array([[1.0, 2.0], [3.0, 2.0]])  # [critics, batch]
    np.testing.assert_allclose(irl.ensemble_disagreement(q_pi), [1.0, 0.0])
    pi = jnp.array([[0.1, -0.5], [0.0, 0.0]])
    batch = _batch(None).replace(actions=jnp.zeros((2, 2)), rewards=jnp.zeros(2))
    loss, aux = irl.integrated_actor_loss(q_pi, pi, batch, HP, W)
    # mu = [2, 2], sd = [1, 0]: lambda = 2.5 / 2; mean(mu - 0.5 sd) = 1.75; penalty 0.35^2 / 4, weight 2
    np.testing.assert_allclose(loss, -1.25 * 1.75 + 2.0 * 0.35**2 / 4, rtol=1e-5)
    np.testing.assert_allclose(aux["q_disagreement"], 0.5)
    np.testing.assert_allclose(aux["outside_box"], 0.5)
    # The disagreement term has a gradient: raising the disputed member's Q lowers the loss less than the agreed.
    grad = jax.grad(lambda q: irl.integrated_actor_loss(q, pi, batch, HP, W)[0])(q_pi)
    assert float(grad[1, 0]) > float(grad[1, 1])


def test_without_box_and_disagreement_the_actor_loss_is_td3_bc():
    q_pi = jnp.array([[1.5, -0.5, 2.0], [1.5, -0.5, 2.0]])  # agreeing members
    pi, a = jnp.array([[0.3, -0.2], [0.9, 0.1], [0.0, 0.0]]), jnp.array([[0.0, 0.1], [0.5, 0.5], [0.2, -0.2]])
    batch = Transition(jnp.zeros((3, 1)), a, jnp.zeros(3), jnp.zeros((3, 1)), jnp.zeros(3))
    hp = {**HP, "box_weight": jnp.float32(1.0)}
    ours, _ = irl.integrated_actor_loss(q_pi, pi, batch, hp, 0.0)
    reference, _ = td3_bc.td3_bc_actor_loss(q_pi[0], pi, batch, hp)
    np.testing.assert_allclose(ours, reference, rtol=1e-6)


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
