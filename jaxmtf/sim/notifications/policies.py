"""Policies of the notification simulator: a hand-written rule and the behaviour policies around it.

Discrete policies follow `sim.policies.Policy`: ``apply(params, obs, key)``
returns an int32 action in [0, num_actions) and ``log_prob(params, obs,
action)`` the log PROBABILITY of the action (a probability mass: the IS
family and marginalised IS take their ratios unchanged). The rule and the
static counts are point masses (log_prob NaN, as continuous point masses);
the epsilon-greedy and softmax policies around the rule are the behaviour
policies of the collection pipelines.
"""
import jax
import jax.numpy as jnp

from jaxmtf.sim.notifications import env as sim_notif
from jaxmtf.sim.policies import Policy, _nan_log_prob, epsilon_greedy

Array = jax.Array


def default_rule_params() -> dict:
    """Send 1 while the habit is under 0.5 and the observed fatigue under 0.3 (f < 1.5), else none.

    The best of a grid of (count, thresholds) on the default simulator (benchmarks/README.md, Discrete track).
    """
    return dict(count=jnp.int32(1), habit_threshold=jnp.float32(0.5), fatigue_threshold=jnp.float32(0.3))


def rule_action(params, obs) -> Array:
    """The rule: `count` notifications while notifications are on, the habit is low and the fatigue is low."""
    layout = sim_notif.observation_layout(None)
    habit, fatigue = obs[layout["habit"]][0], obs[layout["fatigue"]][0]
    enabled = obs[layout["enabled"]][0] > 0.5
    send = enabled & (habit < params["habit_threshold"]) & (fatigue < params["fatigue_threshold"])
    return jnp.where(send, params["count"], 0).astype(jnp.int32)


def rule_policy() -> Policy:
    """The deterministic rule (params: `default_rule_params`). A point mass."""
    return Policy(lambda params, obs, key: rule_action(params, obs), _nan_log_prob)


def static_policy() -> Policy:
    """The same count every day (params: the count, an int32 scalar). A point mass."""
    return Policy(lambda params, obs, key: jnp.asarray(params, jnp.int32), _nan_log_prob)


def epsilon_greedy_policy(num_actions: int) -> Policy:
    """The rule with probability 1 - epsilon, else uniform: pi(a|s) = (1 - eps) [a = rule(s)] + eps / n.

    params = dict(base=default_rule_params(), epsilon=scalar).
    """
    return epsilon_greedy(rule_policy(), num_actions)


def softmax_policy(num_actions: int) -> Policy:
    """Boltzmann around the rule: pi(a|s) = softmax_a(-(a - rule(s))^2 / temperature).

    Counts near the rule's are likely, far ones rare (a smooth exploration that
    still tries every count). params = dict(rule=default_rule_params(), temperature=scalar).
    """

    def logits(params, obs):
        a = jnp.arange(num_actions, dtype=jnp.float32)
        return -((a - rule_action(params["rule"], obs)) ** 2) / params["temperature"]

    def apply(params, obs, key):
        return jax.random.categorical(key, logits(params, obs)).astype(jnp.int32)

    def log_prob(params, obs, action):
        return jax.nn.log_softmax(logits(params, obs))[action]

    return Policy(apply, log_prob)


def uniform_policy(num_actions: int) -> Policy:
    """Every count with probability 1 / n; params unused."""

    def apply(params, obs, key):
        return jax.random.randint(key, (), 0, num_actions).astype(jnp.int32)

    def log_prob(params, obs, action):
        return -jnp.log(jnp.float32(num_actions))

    return Policy(apply, log_prob)
