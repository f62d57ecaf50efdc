"""The notification-decision simulator: one user, one day per step, a discrete action (gymnax style).

Every day the platform decides how many notifications to send a user,
``n in {0, ..., num_actions - 1}`` (LinkedIn's notification-volume problem).
It is the MTF simulator's sibling: the same reset/step conventions, the same
rollout, collection and evaluation code (`jaxmtf.sim.registry`).

User model (hidden: ``base``, ``tolerance``; observed: everything the
platform logs itself)
------------------------------------------------------------------------
- ``base`` ~ N(base_mean, base_std): the user's organic visit propensity
  (logit); the profile feature is a noisy copy.
- ``habit`` h in [0, 1]: an EMA of the user's visits (observed: the platform
  sees the visits). A visit today makes visits tomorrow likelier and keeps the
  user from churning: this is what a notification buys beyond today.
- ``fatigue`` f: the decayed count of notifications received (observed: the
  platform knows what it sent), ``f' = fatigue_decay * f + n``.
- ``tolerance`` ~ N(tolerance_mean, tolerance_std): the fatigue at which the
  user's risk of disabling notifications is 1/2 (hidden).
- ``enabled``: notifications on. Once a user disables them, sending has no
  effect for the rest of the episode.

One day, with ``m = n * enabled`` notifications received:

    f'        = fatigue_decay * f + m
    P(visit)  = sigmoid(base + habit_coef * h + notif_coef * (1 - h) * log(1 + m))
    h'        = habit_decay * h + (1 - habit_decay) * visit
    P(disable)= [m > 0] * sigmoid(disable_slope * (f' - tolerance))
    P(churn)  = sigmoid(churn_intercept - churn_habit * h' + churn_fatigue * f')
    reward    = visit - disable_cost * disabled_today - churn_cost * churned_today

A churned user leaves (terminal); the horizon ``max_days`` ends the rest
(the day is observed, so both are terminal: `rollout.logged_end_flags`).

Why it is sequential: for a user with a low habit, notifications are the only
way to build visits before the user churns, so sending pays over days; for a
user with a high habit they add little today and bring fatigue, and fatigue
past the hidden tolerance makes the user disable notifications for good.
Sending the same number every day either under-serves the first kind or
exhausts the tolerance; a rule that sends while the habit is low and the
fatigue is low beats every static count (tests/test_notifications.py
measures it on fresh users with common random numbers).

Observation (`observation_layout`): profile, day / max_days, habit,
fatigue / fatigue_scale, enabled, visited yesterday, days since the last
visit / max_days.
"""
from typing import Dict, Tuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

TASKS = ("visit", "disable", "churn")  # task_responses columns: the day's counts of each event


def _f(value):
    return flax.struct.field(default_factory=lambda: np.asarray(value, dtype=np.float32))


@flax.struct.dataclass
class NotificationParams:
    """Everything a researcher varies. Sizes are static, coefficients are leaves."""

    task_names: Tuple[str, ...] = flax.struct.field(pytree_node=False, default=TASKS)
    num_actions: int = flax.struct.field(pytree_node=False, default=5)  # send 0..4 notifications a day
    max_steps: int = flax.struct.field(pytree_node=False, default=30)  # days per episode (the horizon)

    # --- users ---
    base_mean: Array = _f(-1.5)  # mean organic visit logit
    base_std: Array = _f(1.0)  # its spread over users
    profile_noise: Array = _f(0.3)  # std of the noise on the observed profile feature
    tolerance_mean: Array = _f(3.0)  # fatigue at which disabling is a coin flip, mean over users
    tolerance_std: Array = _f(1.0)

    # --- visits ---
    habit_coef: Array = _f(3.5)  # visit logit per unit habit
    notif_coef: Array = _f(1.5)  # visit logit per log(1 + notifications received), times (1 - habit)
    habit_decay: Array = _f(0.8)  # h' = decay * h + (1 - decay) * visit

    # --- fatigue, disabling, churn ---
    fatigue_decay: Array = _f(0.6)  # f' = decay * f + notifications received
    disable_slope: Array = _f(2.0)  # steepness of the disable risk around the tolerance
    churn_intercept: Array = _f(-2.5)  # churn logit of a user with no habit and no fatigue
    churn_habit: Array = _f(6.0)  # habit lowers churn
    churn_fatigue: Array = _f(0.2)  # fatigue raises churn (too many notifications drive users away)

    # --- reward ---
    disable_cost: Array = _f(3.0)  # reward lost the day a user disables notifications
    churn_cost: Array = _f(5.0)  # reward lost the day a user churns

    fatigue_scale: Array = _f(5.0)  # the observed fatigue is f / fatigue_scale

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)


@flax.struct.dataclass
class NotificationState:
    base: Array  # [] hidden organic propensity
    profile: Array  # [] observed noisy base
    tolerance: Array  # [] hidden fatigue tolerance
    habit: Array  # [] EMA of visits
    fatigue: Array  # [] decayed count of notifications received
    enabled: Array  # [] float, 1 while notifications are on
    visited: Array  # [] float, visited on the last day
    since_visit: Array  # [] float, days since the last visit
    t: Array  # [] int32, days so far


def default_params(**overrides) -> NotificationParams:
    """NotificationParams with the defaults, fields overridden by keyword (floats become float32 arrays)."""
    overrides = {k: (v if isinstance(v, (str, int, tuple)) and not isinstance(v, bool) else np.asarray(v, np.float32))
                 for k, v in overrides.items()}
    return NotificationParams(**overrides)


def observation_layout(params: NotificationParams) -> Dict[str, slice]:
    del params
    names = ("profile", "day", "habit", "fatigue", "enabled", "visited_yesterday", "days_since_visit")
    return {name: slice(i, i + 1) for i, name in enumerate(names)}


def obs_dim(params: NotificationParams) -> int:
    return len(observation_layout(params))


def _observe(state: NotificationState, params: NotificationParams) -> Array:
    T = float(params.max_steps)
    return jnp.stack([
        state.profile, state.t.astype(jnp.float32) / T, state.habit, state.fatigue / params.fatigue_scale,
        state.enabled, state.visited, state.since_visit / T,
    ]).astype(jnp.float32)


def reset(key: Array, params: NotificationParams):
    k_base, k_profile, k_tol = jax.random.split(key, 3)
    base = params.base_mean + params.base_std * jax.random.normal(k_base)
    zero = jnp.zeros((), jnp.float32)
    state = NotificationState(
        base=base, profile=base + params.profile_noise * jax.random.normal(k_profile),
        tolerance=params.tolerance_mean + params.tolerance_std * jax.random.normal(k_tol),
        habit=zero, fatigue=zero, enabled=jnp.ones((), jnp.float32), visited=zero, since_visit=zero,
        t=jnp.zeros((), jnp.int32),
    )
    return _observe(state, params), state


def step(key: Array, state: NotificationState, action: Array, params: NotificationParams):
    """One day: `action` notifications (an integer, clipped to [0, num_actions)), the user's response."""
    u_visit, u_disable, u_churn = jax.random.uniform(key, (3,))
    n = jnp.clip(action, 0, params.num_actions - 1).astype(jnp.float32)
    received = n * state.enabled
    fatigue = params.fatigue_decay * state.fatigue + received
    # A reminder re-engages a dormant user; an engaged one (habit near 1) comes anyway.
    lift = params.notif_coef * (1.0 - state.habit) * jnp.log1p(received)
    visit_logit = state.base + params.habit_coef * state.habit + lift
    visit = (u_visit < jax.nn.sigmoid(visit_logit)).astype(jnp.float32)
    habit = params.habit_decay * state.habit + (1.0 - params.habit_decay) * visit
    p_disable = jnp.where(received > 0, jax.nn.sigmoid(params.disable_slope * (fatigue - state.tolerance)), 0.0)
    disabled = (u_disable < p_disable).astype(jnp.float32)
    p_churn = jax.nn.sigmoid(params.churn_intercept - params.churn_habit * habit + params.churn_fatigue * fatigue)
    churned = u_churn < p_churn
    reward = visit - params.disable_cost * disabled - params.churn_cost * churned.astype(jnp.float32)

    t = state.t + 1
    timeout = (t >= params.max_steps) & ~churned
    new_state = state.replace(
        habit=habit, fatigue=fatigue, enabled=state.enabled * (1.0 - disabled), visited=visit,
        since_visit=jnp.where(visit > 0, 0.0, state.since_visit + 1.0), t=t,
    )
    info = {
        "task_responses": jnp.stack([visit, disabled, churned.astype(jnp.float32)]),
        "terminal": churned,
        "timeout": timeout,
        "p_visit": jax.nn.sigmoid(visit_logit),
        "fatigue": fatigue,
    }
    return _observe(new_state, params), new_state, reward, churned | timeout, info
