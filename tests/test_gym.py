"""The simulators as Gymnasium environments (jaxmtf.sim.gym): the checker, a d3rlpy-style loop, the vector env."""
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import jaxmtf.sim.gym as sim_gym
from jaxmtf.sim.mtf import env as sim_env
from jaxmtf.sim.notifications import env as sim_notif
from jaxmtf.sim.rollout import evaluate as rollout_evaluate


@pytest.mark.parametrize("env_id", [sim_gym.MTF_ID, sim_gym.NOTIFICATIONS_ID])
def test_check_env_passes(env_id):
    env = gym.make(env_id, max_steps=10)
    check_env(env.unwrapped, skip_render_check=True)
    if env_id == sim_gym.MTF_ID:
        assert isinstance(env.action_space, gym.spaces.Box) and env.action_space.shape == (6,)
        assert float(env.action_space.low.min()) == -1.0 and float(env.action_space.high.max()) == 1.0
    else:
        assert isinstance(env.action_space, gym.spaces.Discrete) and env.action_space.n == 5
    env.close()


@pytest.mark.parametrize("env_id", [sim_gym.MTF_ID, sim_gym.NOTIFICATIONS_ID])
def test_random_action_loop_like_d3rlpy(env_id):
    """reset, step with random actions until terminated or truncated, returns accumulated."""
    env = gym.make(env_id, max_steps=10)
    env.action_space.seed(0)
    returns = []
    obs, info = env.reset(seed=3)
    assert obs.shape == env.observation_space.shape and obs.dtype == np.float32
    for _ in range(3):
        total, steps, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert isinstance(reward, float) and "task_responses" in info
            total, steps, done = total + reward, steps + 1, terminated or truncated
        assert 1 <= steps <= 10 and (truncated == (steps == 10) or terminated)
        returns.append(total)
        obs, info = env.reset()
    assert np.all(np.isfinite(returns))
    # A seeded reset replays the same first episode.
    env.action_space.seed(0)
    env.reset(seed=3)
    total, done = 0.0, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        total, done = total + reward, terminated or truncated
    assert total == returns[0]


def _vector_returns(envs, seed, action):
    """Each user's return over its first episode, with the same action every step."""
    envs.reset(seed=seed)
    n = envs.num_envs
    total, alive = np.zeros(n), np.ones(n, bool)
    actions = np.stack([np.asarray(action)] * n)
    while alive.any():
        _, reward, terminated, truncated, _ = envs.step(actions)
        total += np.where(alive, reward, 0.0)
        alive &= ~(terminated | truncated)
    return total


@pytest.mark.parametrize("simulator", ["mtf", "notifications"])
def test_vector_env_matches_the_projects_rollout(simulator):
    if simulator == "mtf":
        env_id, params = sim_gym.MTF_ID, sim_env.default_params(max_steps=10)
        action = np.asarray(sim_env.baseline_action(params))
    else:
        env_id, params = sim_gym.NOTIFICATIONS_ID, sim_notif.default_params(max_steps=10)
        action = np.int32(2)
    envs = gym.make_vec(env_id, num_envs=16, params=params)
    assert isinstance(envs, sim_gym.SimulatorVectorEnv)
    got = _vector_returns(envs, 7, action)
    policy = (lambda p, obs, key: jnp.asarray(action))
    want = rollout_evaluate(jax.random.PRNGKey(7), params, policy, None, num_users=16)["undiscounted"]
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-5)
    # Autoreset: a finished user starts a new episode on the next step (reward 0), the others go on.
    obs, _ = envs.reset(seed=7)
    actions = np.stack([action] * 16)
    for _ in range(params.max_steps + 1):
        obs, reward, terminated, truncated, _ = envs.step(actions)
    assert obs.shape == (16, envs.single_observation_space.shape[0]) and np.all(np.isfinite(obs))
    envs.close()
