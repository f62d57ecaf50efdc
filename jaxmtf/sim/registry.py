"""The simulators jaxmtf knows, behind one interface: rollout, collection and evaluation dispatch here.

An `Environment` bundles a simulator module's gymnax functions and sizes.
`of(params)` finds it from the type of the parameters, so every caller that
holds env params (a rollout, an evaluator, a sidecar's record) reaches the
right simulator without a flag; `named(name)` from a config or a sidecar.
An entry also lists what the rest of the package offers for it: its
collection pipelines (`data.collect` builds their behaviour policies) and
its named OPE targets (`ope.targets`); tests/test_registry.py checks that
every listed name is served there, so a new simulator is one entry here plus
those two functions.

- "mtf": the multi-task fusion session simulator (`sim.mtf.env`), continuous
  fusion vectors [act_dim] in [-1, 1], a slate of `slate_size` items a step.
- "notifications": the notification-volume simulator (`sim.notifications.env`),
  a discrete count in [0, num_actions) a day.
"""
from typing import Callable, NamedTuple, Tuple

from jaxmtf.sim.mtf import env as sim_env
from jaxmtf.sim.notifications import env as sim_notif


class Environment(NamedTuple):
    name: str
    params_type: type
    default_params: Callable  # (**overrides) -> params
    reset: Callable  # (key, params) -> (obs, state)
    step: Callable  # (key, state, action, params) -> (obs, state, reward, done, info)
    obs_dim: Callable  # (params) -> int
    act_dim: Callable  # (params) -> int: the action width, or num_actions for a discrete simulator
    num_actions: Callable  # (params) -> int: 0 for continuous actions
    items_per_step: Callable  # (params) -> int: what per-task rates divide by (slate size; 1 a day)
    pipelines: Tuple[str, ...]  # its collection pipelines (jaxmtf/configs/collect), the first one the default
    named_policies: Tuple[str, ...]  # the policies `launch.ope` knows by name on its datasets


ENVIRONMENTS = {
    "mtf": Environment(
        "mtf", sim_env.EnvParams, sim_env.default_params, sim_env.reset, sim_env.step, sim_env.obs_dim,
        sim_env.act_dim, lambda p: 0, lambda p: p.slate_size,
        pipelines=("random", "baseline", "expert", "noisy_expert", "mixed", "exploration_box", "final_buffer",
                   "concurrent", "imitation"),
        named_policies=("baseline", "random", "switch", "noisy_switch")),
    "notifications": Environment(
        "notifications", sim_notif.NotificationParams, sim_notif.default_params, sim_notif.reset, sim_notif.step,
        sim_notif.obs_dim, lambda p: p.num_actions, lambda p: p.num_actions, lambda p: 1,
        pipelines=("random", "epsilon_greedy", "softmax"),
        named_policies=("random", "rule")),
}


def named(name: str) -> Environment:
    if name not in ENVIRONMENTS:
        raise ValueError(f"config field 'simulator': got {name!r}, expected one of {sorted(ENVIRONMENTS)}")
    return ENVIRONMENTS[name]


def of(params) -> Environment:
    """The simulator whose parameters `params` are."""
    for environment in ENVIRONMENTS.values():
        if isinstance(params, environment.params_type):
            return environment
    raise TypeError(f"simulator parameters of type {type(params).__name__}: not a known simulator's "
                    f"(known: {sorted(ENVIRONMENTS)})")
