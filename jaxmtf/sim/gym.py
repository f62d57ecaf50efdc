"""The simulators as Gymnasium environments, for code written against the Gymnasium API (d3rlpy, SB3, CleanRL).

    import gymnasium as gym
    import jaxmtf.sim.gym  # registers the ids below

    env = gym.make("jaxmtf/MTF-v0")                       # one user, one feed request a step
    env = gym.make("jaxmtf/Notifications-v0", max_steps=14)  # simulator fields as keyword overrides
    envs = gym.make_vec("jaxmtf/MTF-v0", num_envs=256)    # many users, one jitted, vmapped step

- ``jaxmtf/MTF-v0``: the multi-task fusion session simulator (`sim.mtf.env`):
  a Box(-1, 1, (act_dim,)) fusion vector a step.
- ``jaxmtf/Notifications-v0``: the notification-volume simulator
  (`sim.notifications.env`): Discrete(num_actions) notifications a day.

Both take ``params=`` (the simulator's params) or the simulator's fields as
keyword overrides (`default_params`). ``terminated`` is the user leaving (or
churning), ``truncated`` the horizon ``max_steps``. (jaxmtf's own datasets log
the horizon as terminal too, since the session position is observed:
`rollout.logged_end_flags`.) ``info`` holds the step's diagnostics as numpy
values (``task_responses`` and the simulator's extras).

Randomness follows the project's rollout (`sim.rollout`): ``reset(seed=s)``
of a vector env of U users draws user i's key as ``split(PRNGKey(s), U)[i]``,
its reset from ``fold_in(key, 0)`` and its step t from ``fold_in(key, t + 1)``,
so the first episode of every user matches ``rollout.evaluate(PRNGKey(s),
params, policy, ..., num_users=U)`` for the same actions (tests/test_gym.py).
Later episodes (a reset without a seed, or the vector env's autoreset) use
fresh keys derived from the same seed. The vector env resets a finished user
on the next ``step`` call (Gymnasium's NEXT_STEP autoreset: that step's
action is ignored, its reward is 0).
"""
import functools
from typing import Any, Dict, Optional

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from jaxmtf.sim import registry

MTF_ID = "jaxmtf/MTF-v0"
NOTIFICATIONS_ID = "jaxmtf/Notifications-v0"
_EPISODE_SALT = 0x7FFFFFFF  # folds a user key into the stream of its later episodes' keys


def _episode_key(user_key, episode):
    """The key of a user's episode: the user key itself for the first, fresh derived keys after."""
    later = jax.random.fold_in(jax.random.fold_in(user_key, _EPISODE_SALT), episode)
    return jnp.where(episode == 0, user_key, later)


@functools.partial(jax.jit, static_argnames=("name",))
def _reset_users(keys, episodes, params, name):
    env = registry.named(name)
    episode_keys = jax.vmap(_episode_key)(keys, episodes)
    obs, state = jax.vmap(lambda k: env.reset(jax.random.fold_in(k, 0), params))(episode_keys)
    return obs, state, episode_keys


@functools.partial(jax.jit, static_argnames=("name",))
def _step_users(episode_keys, t, state, actions, params, name):
    """One step of every user, as `rollout._run_block` steps them (the same keys)."""
    env = registry.named(name)

    def one(k, t, s, a):
        _, k_env = jax.random.split(jax.random.fold_in(k, t + 1))
        obs, s, reward, done, info = env.step(k_env, s, a, params)
        return obs, s, reward, info

    return jax.vmap(one)(episode_keys, t, state, actions)


@jax.jit
def _merge(resetting, fresh, stepped):
    """Per user: the fresh episode's values where `resetting`, the stepped ones elsewhere."""
    def pick(a, b):
        return jnp.where(resetting.reshape(resetting.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree.map(pick, fresh, stepped)


def _params(name: str, params, overrides):
    env = registry.named(name)
    if params is not None and overrides:
        raise TypeError(f"{name} environment: give params= or field overrides, not both (got {sorted(overrides)})")
    return params if params is not None else env.default_params(**overrides)


def _spaces(name: str, params):
    env = registry.named(name)
    obs_space = spaces.Box(-np.inf, np.inf, (env.obs_dim(params),), np.float32)
    if env.num_actions(params):
        return obs_space, spaces.Discrete(env.num_actions(params))
    return obs_space, spaces.Box(-1.0, 1.0, (env.act_dim(params),), np.float32)


def _infos(info, index=None) -> Dict[str, Any]:
    """The step's diagnostics as numpy values (one user's if `index` is given)."""
    out = {}
    for k, v in jax.device_get(info).items():
        if k in ("terminal", "timeout"):
            continue
        v = np.array(v)
        out[k] = v[index] if index is not None else v
    return out


class _Users:
    """U users of one simulator on the host's side: keys, states and step counters."""

    def __init__(self, name: str, params, num_users: int):
        self.name, self.params, self.num_users = name, params, num_users
        self.discrete = registry.named(name).num_actions(params) > 0

    def reset(self, key):
        self.keys = jax.random.split(key, self.num_users)
        self.episodes = jnp.zeros((self.num_users,), jnp.int32)
        return self._restart()

    def next_episode(self):
        self.episodes = self.episodes + 1
        return self._restart()

    def _restart(self):
        obs, self.state, self.episode_keys = _reset_users(self.keys, self.episodes, self.params, self.name)
        self.t = jnp.zeros((self.num_users,), jnp.int32)
        self.resetting = np.zeros((self.num_users,), bool)
        return np.array(obs)

    def actions(self, actions):
        if self.discrete:
            return jnp.asarray(np.asarray(actions).reshape(self.num_users), jnp.int32)
        return jnp.asarray(np.asarray(actions, np.float32).reshape(self.num_users, -1))

    def step(self, actions):
        """One step of every user; a user that finished on the last step starts its next episode instead
        (NEXT_STEP autoreset: its action is ignored, its reward is 0)."""
        obs, state, reward, info = _step_users(self.episode_keys, self.t, self.state, self.actions(actions),
                                               self.params, self.name)
        t = self.t + 1
        resetting = np.asarray(self.resetting)
        if resetting.any():
            self.episodes = self.episodes + jnp.asarray(resetting, jnp.int32)
            fresh = _reset_users(self.keys, self.episodes, self.params, self.name)
            obs, state, self.episode_keys = _merge(resetting, fresh, (obs, state, self.episode_keys))
            t = jnp.where(resetting, 0, t)
        self.state, self.t = state, t
        obs, reward, terminal, timeout = jax.device_get((obs, reward, info["terminal"], info["timeout"]))
        terminated, truncated = np.asarray(terminal) & ~resetting, np.asarray(timeout) & ~resetting
        self.resetting = terminated | truncated
        reward = np.where(resetting, 0.0, reward).astype(np.float32)
        return np.array(obs), reward, terminated, truncated, info


def _seed_key(env, seed):
    """The JAX key of a seeded reset; an unseeded first reset draws its seed from the env's np_random."""
    if seed is None:
        seed = int(env.np_random.integers(2**31 - 1))
    return jax.random.PRNGKey(seed)


def _start_episodes(env, seed: Optional[int]):
    """The users' observations [U, obs_dim] after `reset`: the first episode of users drawn from the
    seed on a seeded (or the first) reset, else each user's next episode."""
    if seed is not None or not env._started:
        obs = env._users.reset(_seed_key(env, seed))
        env._started = True
        return obs
    return env._users.next_episode()


class SimulatorEnv(gymnasium.Env):
    """One user of a jaxmtf simulator (`registry.ENVIRONMENTS` name) as a Gymnasium environment."""

    metadata = {"render_modes": []}
    simulator = ""

    def __init__(self, params=None, render_mode: Optional[str] = None, **overrides):
        self.params = _params(self.simulator, params, overrides)
        self.observation_space, self.action_space = _spaces(self.simulator, self.params)
        self.render_mode = render_mode
        self._users = _Users(self.simulator, self.params, 1)
        self._started = False

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        super().reset(seed=seed)
        return _start_episodes(self, seed)[0], {}

    def step(self, action):
        if self._users.discrete:
            action = int(np.asarray(action).reshape(()))
        obs, reward, terminated, truncated, info = self._users.step(np.asarray(action)[None])
        return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), _infos(info, 0)


class MTFEnv(SimulatorEnv):
    """``jaxmtf/MTF-v0``: one MTF session (`sim.mtf.env`), a fusion vector in [-1, 1]^act_dim a request."""

    simulator = "mtf"


class NotificationsEnv(SimulatorEnv):
    """``jaxmtf/Notifications-v0``: one user's days (`sim.notifications.env`), a count of notifications a day."""

    simulator = "notifications"


class SimulatorVectorEnv(VectorEnv):
    """``num_envs`` users of a jaxmtf simulator stepped together by one jitted, vmapped step."""

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}
    simulator = ""

    def __init__(self, num_envs: int = 1, params=None, render_mode: Optional[str] = None, **overrides):
        self.params = _params(self.simulator, params, overrides)
        self.num_envs = int(num_envs)
        self.single_observation_space, self.single_action_space = _spaces(self.simulator, self.params)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = render_mode
        self._users = _Users(self.simulator, self.params, self.num_envs)
        self._started = False

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        super().reset(seed=seed)
        return _start_episodes(self, seed), {}

    def step(self, actions):
        obs, reward, terminated, truncated, info = self._users.step(actions)
        return obs, reward, terminated, truncated, _infos(info)


class MTFVectorEnv(SimulatorVectorEnv):
    simulator = "mtf"


class NotificationsVectorEnv(SimulatorVectorEnv):
    simulator = "notifications"


def _register() -> None:
    for env_id, single, vector in ((MTF_ID, "MTFEnv", "MTFVectorEnv"),
                                   (NOTIFICATIONS_ID, "NotificationsEnv", "NotificationsVectorEnv")):
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=f"{__name__}:{single}",
                               vector_entry_point=f"{__name__}:{vector}")


_register()
