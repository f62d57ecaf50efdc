"""The policies OPE evaluates, from wherever they live, as groups that act in one vmapped program.

A policy spec (the launcher's `--config.policies`, comma-separated) is one of:

- a run directory of `launch.train` (it holds config.json and checkpoints/):
  every seed and hparam setting in it, from its newest checkpoint, or from
  checkpoint N with `DIR@N` (two training budgets of one run);
- a `static_weights.json` of `launch.search_static`: its fixed fusion vector;
- a named policy: `baseline` (the production weights), `random` (uniform on
  the box), `switch` (the hand-written state-dependent rule), `noisy_switch`
  (a truncated Gaussian around it, std `noisy_switch_sigma`); on a
  notification dataset `random` (every count alike) and `rule` (its
  hand-written rule, `sim.notifications.policies`).

A `PolicyGroup` is a `sim.policies.Policy` with its params stacked over the
group's policies (a run directory is one group of S x H agents), so every
group acts, gives log densities and is scored in the simulator by vmapped
programs. Trained agents and static vectors are deterministic (point
masses); IS needs a density, so OPE evaluates them smoothed
(`evaluated_group`): a truncated Gaussian N(pi(s), sigma) on [-1, 1]^A of
the configured `target_sigma` (written into every output row); discrete
ones (greedy Q-learners, the notification rule) epsilon-greedy with
`target_epsilon`. That one smoothed policy gives the ratios, FQE's next
actions, V(s) and the truth, so every row estimates it (and names it,
`evaluated_name`); the unsmoothed policy's truth is reported beside it.
Stochastic policies (`random`, `noisy_switch`) are evaluated as they are.
"""
import json
import os
from typing import Any, Dict, List, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxmtf import policy as policy_lib
from jaxmtf import schema
from jaxmtf.core import evaluation
from jaxmtf.core.run_config import ConfigError
from jaxmtf.runs import rundir
from jaxmtf.sim import policies, registry
from jaxmtf.sim.mtf import env as sim_env
from jaxmtf.sim.mtf import policies as mtf_policies
from jaxmtf.sim.notifications import policies as notification_policies
from jaxmtf.sim.rollout import evaluate as rollout_returns
from jaxmtf.stats import normal_halfwidth

# The names `launch.ope` knows, as each simulator's registry entry lists them (a new simulator adds its own there).
NAMED = registry.named("mtf").named_policies
NAMED_DISCRETE = registry.named("notifications").named_policies
# One Policy object for every fixed vector, so the baseline and static files merge into one group.
FIXED = policies.fixed_policy()


class PolicySpecError(ValueError):
    """A policy spec names nothing OPE can evaluate. The message names the spec."""


class PolicyGroup(NamedTuple):
    labels: List[Dict[str, Any]]  # one per policy: {"policy": name, "source": spec, ...seed/hparam_index}
    policy: policies.Policy  # apply(params, obs, key) -> action, log_prob(params, obs, action), one observation
    params: Any  # every leaf stacked over the group's policies (axis 0)
    stochastic: bool  # False: point masses (IS smooths them with target_sigma)

    @property
    def size(self) -> int:
        return len(self.labels)


def policy_key(row) -> str:
    """A policy's name in a report: its name, and seed/setting for one agent of a run directory."""
    if "seed" in row:
        return f"{row['policy']}/seed{row['seed']}/h{row['hparam_index']}"
    return row["policy"]


# ----------------------------------------------------------------- loading


def named_discrete_policy(name: str, env_params, num_actions: int) -> PolicyGroup:
    """`random` (uniform counts) or `rule` (the notification simulator's hand-written rule)."""
    if name == "random":
        return PolicyGroup([{"policy": "random", "source": name}], notification_policies.uniform_policy(num_actions),
                           jnp.zeros((1,)), True)
    if name == "rule":
        params = jax.tree.map(lambda x: jnp.asarray(x)[None], notification_policies.default_rule_params())
        return PolicyGroup([{"policy": "rule", "source": name}], notification_policies.rule_policy(), params, False)
    raise PolicySpecError(f"policy '{name}': unknown name for a discrete dataset (known: {', '.join(NAMED_DISCRETE)})"
                          f"{schema.nearest(name, NAMED_DISCRETE)}")


def named_policy(name: str, env_params: Optional[sim_env.EnvParams], config, act_dim: int) -> PolicyGroup:
    if name == "random":
        # params unused by the uniform policy; one dummy row gives the group its axis
        return PolicyGroup([{"policy": "random", "source": name}], policies.uniform_policy(act_dim), jnp.zeros((1,)),
                           True)
    if env_params is None:
        raise PolicySpecError(f"policy '{name}': needs the simulator that logged the dataset, "
                              "and the dataset records none")
    if name == "baseline":
        action = sim_env.baseline_action(env_params)[None]
        return PolicyGroup([{"policy": "baseline", "source": name}], FIXED, action, False)
    params = jax.tree.map(lambda x: jnp.asarray(x)[None], mtf_policies.default_switch_params(env_params))
    if name == "switch":
        switch = mtf_policies.bounce_switch_policy(env_params)
        return PolicyGroup([{"policy": "switch", "source": name}], switch, params, False)
    if name == "noisy_switch":
        sigma = float(config.noisy_switch_sigma)
        noisy = policies.gaussian_policy(mtf_policies.bounce_switch_policy(env_params))
        label = {"policy": f"noisy_switch(sigma={sigma:g})", "source": name}
        return PolicyGroup([label], noisy, {"base": params, "sigma": jnp.full((1,), sigma, jnp.float32)}, True)
    raise PolicySpecError(f"policy '{name}': unknown name (known: {', '.join(NAMED)}){schema.nearest(name, NAMED)}")


def check_static_action(where: str, action, act_dim: int) -> np.ndarray:
    """A fixed fusion vector as float32 [act_dim], refused unless finite and within the action box [-1, 1]."""
    try:
        array = np.asarray(action, np.float64)
    except (TypeError, ValueError):
        raise PolicySpecError(f"policy '{where}': action {action!r} is not a list of numbers, expected {act_dim} "
                              "numbers in [-1, 1]") from None
    if array.shape != (act_dim,):
        raise PolicySpecError(f"policy '{where}': action of shape {array.shape}, expected ({act_dim},) (the "
                              "dataset's act_dim)")
    if not np.all(np.isfinite(array)) or np.any(np.abs(array) > 1.0):
        raise PolicySpecError(f"policy '{where}': action {array.tolist()} has values outside [-1, 1] or not "
                              "finite, expected every weight in the action box [-1, 1]")
    return array.astype(np.float32)


def static_policy(path: str, act_dim: int) -> PolicyGroup:
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise PolicySpecError(f"policy '{path}': unreadable ({type(e).__name__}: {str(e).splitlines()[0]}), "
                              "expected a static_weights.json of launch.search_static") from None
    if not isinstance(record, dict) or "action" not in record:
        raise PolicySpecError(f"policy '{path}': no 'action' field "
                              "(expected a static_weights.json of launch.search_static)")
    action = jnp.asarray(check_static_action(path, record["action"], act_dim))[None]
    label = {"policy": f"static:{os.path.basename(os.path.dirname(os.path.abspath(path)))}", "source": path}
    return PolicyGroup([label], FIXED, action, False)


def run_dir_policies(spec: str, obs_dim: int, act_dim: int, acting: Dict[str, policies.Policy]) -> PolicyGroup:
    """Every (seed, setting) agent of a launch.train run directory, at its newest (or `@STEP`) checkpoint.

    `acting` caches one Policy per run directory, so that two checkpoints of a run merge into one group.
    """
    workdir, at, step = spec.partition("@")
    if at and not step.isdigit():
        raise PolicySpecError(f"policy '{spec}': checkpoint step {step!r} is not a number, expected RUN_DIR or "
                              "RUN_DIR@STEP with an integer STEP")
    try:
        run = policy_lib.restore_run(workdir, obs_dim, act_dim, int(step) if step else None)
    except ConfigError as refused:  # another simulator's run, or not a run directory: named as a policy spec
        raise PolicySpecError(f"policy '{spec}': {refused}") from None
    try:
        run.check_finite(f"policy '{spec}'")
    except ConfigError as refused:
        raise PolicySpecError(str(refused)) from None
    config, agent, step, seeds, settings = run.config, run.agent, run.step, run.seeds, run.settings
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), run.states.replace(step=None))
    params = flat.replace(step=jnp.full((len(seeds) * len(settings),), run.states.step))  # acting ignores it
    policy = acting.setdefault(os.path.abspath(workdir), policies.agent_policy(evaluation.agent_policy_fn(agent)))
    name = f"{os.path.basename(os.path.normpath(workdir))}@{step}"
    labels = [
        {"policy": name, "source": workdir, "algo": config.algo, "checkpoint_step": step, "seed": s, "hparam_index": h,
         **label}
        for s in seeds for h, label in enumerate(settings)
    ]
    return PolicyGroup(labels, policy, params, False)


def load_policies(specs, env_params: Optional[sim_env.EnvParams], config, obs_dim: int, act_dim: int,
                  num_actions: int = 0) -> List[PolicyGroup]:
    """The policies of every spec (see the module docstring), in groups that share their functions."""
    specs = [s.strip() for s in (specs.split(",") if isinstance(specs, str) else specs) if s.strip()]
    if not specs:
        raise PolicySpecError("config field 'policies': empty; give run directories, static_weights.json files "
                              "or names")
    groups, acting = [], {}
    for spec in specs:
        path = spec.partition("@")[0]
        if os.path.isdir(path) and os.path.exists(os.path.join(path, rundir.CONFIG_FILE)):
            groups.append(run_dir_policies(spec, obs_dim, act_dim, acting))
        elif spec.endswith(".json") and os.path.isfile(spec):
            groups.append(static_policy(spec, act_dim))
        elif num_actions and spec in NAMED_DISCRETE:
            groups.append(named_discrete_policy(spec, env_params, num_actions))
        elif spec in NAMED and not num_actions:
            groups.append(named_policy(spec, env_params, config, act_dim))
        else:
            raise PolicySpecError(
                f"config field 'policies': {spec!r} is neither a run directory of launch.train (with config.json), "
                "a static_weights.json file, nor a named policy "
                f"({', '.join(NAMED_DISCRETE if num_actions else NAMED)})"
                f"{schema.nearest(spec, NAMED_DISCRETE if num_actions else NAMED)}"
            )
    return merge_groups(groups)


def merge_groups(groups: List[PolicyGroup]) -> List[PolicyGroup]:
    """Groups with the same Policy functions stacked into one (one compiled program each, in first-seen order)."""
    merged: Dict[int, PolicyGroup] = {}
    for g in groups:
        key = id(g.policy)
        if key in merged:
            m = merged[key]
            params = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), m.params, g.params)
            merged[key] = m._replace(labels=m.labels + g.labels, params=params)
        else:
            merged[key] = g
    return list(merged.values())


# ----------------------------------------------------------------- what the estimators need of a group


def _over_group(group: PolicyGroup, fn, *args):
    """fn(params of one policy, *args) for every policy of the group, stacked: one compiled program that runs
    the policies one after another (lax.map). Each call is already a whole dataset's states x K draws (or
    thousands of simulated users); vmapping the policies too held all their activations at once (the study's
    9 TD3+BC runs x 75,585 states x 8 draws asked for 37 GB)."""
    return jax.jit(lambda params, *a: jax.lax.map(lambda p: fn(p, *a), params))(group.params, *args)


def sample_actions(group: PolicyGroup, obs, key, num_samples: int):
    """[G, M, K, A]: K actions of every policy at every observation (K copies for a point mass)."""
    keys = jax.random.split(key, obs.shape[0] * num_samples).reshape(obs.shape[0], num_samples, -1)

    def one(params, obs, keys):
        per_obs = jax.vmap(lambda o, ks: jax.vmap(lambda k: group.policy.apply(params, o, k))(ks))
        return per_obs(obs, keys)

    if not group.stochastic:  # the same action K times: one call per observation
        first = _over_group(group, one, obs, keys[:, :1])
        return jnp.broadcast_to(first, first.shape[:2] + (num_samples,) + first.shape[3:])
    return _over_group(group, one, obs, keys)


def evaluated_group(group: PolicyGroup, target_sigma: float, num_actions: int = 0,
                    target_epsilon: float = 0.1) -> PolicyGroup:
    """The policies every estimator estimates: a stochastic group as it is; a point mass smoothed by a
    truncated N(pi(s), target_sigma) on the box, or for discrete actions (`num_actions` > 0) made
    epsilon-greedy with `target_epsilon`. One policy for the ratios, FQE's next actions, V(s) and the truth
    (issue 20: DR mixed the smoothed weights with a model of the unsmoothed policy)."""
    if group.stochastic:
        return group
    if num_actions:
        policy = policies.epsilon_greedy(group.policy, num_actions)
        params = {"base": group.params, "epsilon": jnp.full((group.size,), target_epsilon, jnp.float32)}
    else:
        policy = policies.gaussian_policy(group.policy, mode="truncate")
        params = {"base": group.params, "sigma": jnp.full((group.size,), target_sigma, jnp.float32)}
    return PolicyGroup(group.labels, policy, params, True)


def evaluated_name(name: str, stochastic: bool, target_sigma: float, num_actions: int = 0,
                   target_epsilon: float = 0.1) -> str:
    """What a row estimates, in words: the policy itself, "gaussian(0.2) of X" or "epsilon-greedy 0.1 of X"."""
    if stochastic:
        return name
    return f"epsilon-greedy {target_epsilon:g} of {name}" if num_actions else f"gaussian({target_sigma:g}) of {name}"


def target_log_prob(group: PolicyGroup, obs, actions, target_sigma: float, num_actions: int = 0,
                    target_epsilon: float = 0.1):
    """[G, M]: log density (discrete: log probability) of the logged actions under the evaluated policies
    (`evaluated_group`: a point mass smoothed)."""
    group = evaluated_group(group, target_sigma, num_actions, target_epsilon)

    def one(params, obs, actions):
        return jax.vmap(lambda o, a: group.policy.log_prob(params, o, a))(obs, actions)

    return _over_group(group, one, obs, actions)


def action_weights(group: PolicyGroup, obs, key, num_samples: int, num_actions: int = 0):
    """(actions, weights) with E_{a ~ pi(s)} f(a) = sum_k weights[k] f(actions[k]), for every policy of a
    stochastic (e.g. evaluated) group at every observation.

    Discrete actions: every action with its probability, [G, M, n] each: the exact sum over actions.
    Continuous: `num_samples` draws with weight 1/K each: actions [G, M, K, A], weights [G, M, K].
    """
    if num_actions:
        all_actions = jnp.arange(num_actions, dtype=jnp.int32)

        def one(params, obs):
            return jax.vmap(lambda o: jax.vmap(lambda a: group.policy.log_prob(params, o, a))(all_actions))(obs)

        probs = jnp.exp(_over_group(group, one, obs))
        probs = probs / jnp.sum(probs, axis=-1, keepdims=True)  # sums to 1 up to rounding already
        return jnp.broadcast_to(all_actions, probs.shape), probs
    actions = sample_actions(group, obs, key, num_samples)
    return actions, jnp.full(actions.shape[:3], 1.0 / num_samples, jnp.float32)


def true_values(group: PolicyGroup, env_params, key, num_users: int, discount: float) -> Dict[str, np.ndarray]:
    """Simulator ground truth of every policy, on the same users: {"true_discounted", ...: [G]};
    "true_discounted_ci95" is the 95% CI half-width over the users (normal approximation)."""

    def one(params, key):
        per_user = rollout_returns(key, env_params, group.policy.apply, params, num_users, discount=discount)
        d, u = per_user["discounted"], per_user["undiscounted"]
        return {
            "true_discounted": d.mean(), "true_discounted_ci95": normal_halfwidth(d.std(ddof=1), num_users),
            "true_undiscounted": u.mean(), "true_session_length": per_user["length"].mean(),
        }

    return jax.device_get(_over_group(group, one, key))
