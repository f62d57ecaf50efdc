"""Data-collection pipelines: logged datasets from chosen behaviour policies.

Pipelines (config.pipeline):

- `random`: uniform random fusion vectors.
- `baseline`: the fixed production weights (a point mass: no behaviour density).
- `expert`: the expert's greedy actions (`config.expert`: the hand-written
  state-dependent `switch` policy, or an `online` TD3 agent trained here).
- `noisy_expert`: N(expert(s), sigma) truncated to the box (BatchRL-MTF's N(0, sigma)).
- `mixed`: half uniform random, half Gaussian around the expert (BatchRL-MTF).
- `exploration_box`: IntegratedRL-MTF's baseline(s) + U(-0.15, 0.15).
- `final_buffer`: the whole replay buffer of an online TD3/DDPG run (BCQ paper).
- `concurrent`: that same buffer, with an offline learner trained at the same
  time on the same batches; its true value is recorded (BCQ paper).
- `imitation`: the online-trained expert's own transitions, no noise (BCQ paper).

With `config.simulator = "notifications"` (the discrete notification
simulator, `sim.notifications`) the behaviour policies are discrete, around
its hand-written rule (`sim.notifications.policies`), and the datasets have
integer actions and `num_actions` in the sidecar:

- `random`: every count equally likely.
- `epsilon_greedy`: the rule with probability 1 - epsilon, else uniform.
- `softmax`: Boltzmann around the rule's count, `temperature`.

Every dataset is saved with a sidecar naming the pipeline, the behaviour
policy, the simulator parameters (enough to rebuild the simulator), the seed
and the behaviour policy's true value in the simulator.
"""
import dataclasses
import os
import time
from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxmtf import schema
from jaxmtf.agents import make_agent
from jaxmtf.core import evaluation, online
from jaxmtf.core.run_config import ConfigError
from jaxmtf.data import dataset as dataset_lib
from jaxmtf.sim import policies, registry
from jaxmtf.sim.mtf import env as sim_env
from jaxmtf.sim.mtf import policies as mtf_policies
from jaxmtf.sim.notifications import policies as notification_policies
from jaxmtf.sim.rollout import flatten_valid, rollout
from jaxmtf.types import Dataset

PIPELINES = registry.named("mtf").pipelines  # the MTF simulator's (every simulator's: its registry entry)
_ONLINE_PIPELINES = ("final_buffer", "concurrent", "imitation")  # the MTF pipelines that train an online agent
NOTIFICATION_PIPELINES = registry.named("notifications").pipelines


# ----------------------------------------------------------------- the collection config's schema

ONLINE_ALGOS = ("td3", "ddpg")  # the online behavioural agents (jaxmtf/configs names)
# jaxmtf/configs/collect/base.py's fields, checked before anything is simulated or written.
CONFIG_FIELDS = {
    "pipeline": schema.string(),  # against the simulator's pipelines below
    "simulator": schema.choice(tuple(registry.ENVIRONMENTS)),
    "seed": schema.integer(0),
    "num_users": schema.integer(1),
    "env": schema.Field(lambda v: hasattr(v, "keys"), "a mapping of simulator parameter overrides", False),
    "expert": schema.choice(("switch", "online")),
    # 0 would make the Gaussian a point mass: no behaviour density for OPE or BCQ's data.
    "noise_sigma": schema.real(0, lo_open=True),
    "box_half_width": schema.real(0, 1, lo_open=True),
    "epsilon": schema.real(0, 1),
    "temperature": schema.real(0, lo_open=True),
    "eval_users": schema.integer(2),  # a CI over users needs two
    "eval_discount": schema.DISCOUNT,
    "online": schema.Field(lambda v: hasattr(v, "keys"), "the online agent's fields", False),
}
ONLINE_FIELDS = {
    "algo": schema.choice(ONLINE_ALGOS),
    "learner_algo": schema.choice(("td3", "ddpg", "td3_bc", "bcq", "cql", "uwac", "iql")),
    "num_envs": schema.integer(1),
    "iterations": schema.integer(1),
    "updates_per_iteration": schema.integer(0),
    "batch_size": schema.integer(1),
    "exploration_sigma": schema.real(0),
    "random_iterations": schema.integer(0),
    "log_every": schema.integer(1),
}
ONLINE_RULES = (
    # The online loop runs whole chunks of log_every iterations: a remainder would be silently dropped.
    schema.Rule(("iterations", "log_every"), lambda c: c["iterations"] % c["log_every"] == 0,
                "iterations a multiple of log_every"),
    schema.Rule(("num_envs", "iterations", "batch_size"), lambda c: c["num_envs"] * c["iterations"] >= c["batch_size"],
                "num_envs * iterations (the buffer) >= batch_size"),
)


def validate_config(config) -> None:
    """Refuses a bad collection config in one line (ConfigError naming the field) before anything runs."""
    schema.check_fields(config, CONFIG_FIELDS, "", ConfigError)
    simulator = config.get("simulator", "mtf")
    known = registry.named(simulator).pipelines
    if config.pipeline not in known:
        raise ConfigError(f"config field 'pipeline': got {config.pipeline!r}, expected one of {', '.join(known)} "
                          f"with simulator {simulator!r}{schema.nearest(config.pipeline, known)}")
    if "online" in config:
        schema.check_fields(config.online, ONLINE_FIELDS, "online.", ConfigError)
        if config.pipeline in _ONLINE_PIPELINES or config.get("expert") == "online":  # only where it trains
            schema.check_rules(config.online, ONLINE_RULES, "online.", ConfigError)
    check_env_overrides(config, "")


def check_env_overrides(config, prefix: str) -> None:
    """The simulator overrides `config.env` name known parameters of the right kind (ConfigError naming
    '<prefix>env.<name>' otherwise)."""
    try:
        env_params_from_config(config)
    except (ValueError, TypeError) as e:  # an unknown simulator parameter, or one of the wrong kind
        raise ConfigError(str(e).splitlines()[0].replace("simulator parameter '", f"config field '{prefix}env.")
                          ) from None


def check_output(path: str, overwrite: bool) -> None:
    """Refuses, before collecting, an output that exists (unless `overwrite`), is a directory, or whose folder
    cannot be created or written; `path` is the .npz (its .json sidecar beside it)."""
    npz, sidecar = dataset_lib.paths(path)
    for target in (npz, sidecar):
        if os.path.isdir(target):
            raise ConfigError(f"flag '--output': got {path!r}, whose {target!r} is a directory, expected a file path")
        if os.path.exists(target) and not overwrite:
            raise ConfigError(f"flag '--output': got {path!r}, which exists ({target}), expected a new path "
                              "(or --overwrite to replace it)")
    folder = os.path.dirname(os.path.abspath(npz))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"flag '--output': got {path!r}, but {existing!r} is a file, expected a folder there")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"flag '--output': got {path!r}, but {existing!r} is not writable, expected a writable "
                          "folder")


# ----------------------------------------------------------------- simulator parameters in JSON


def env_params_to_dict(params) -> Dict[str, Any]:
    """Every field of a simulator's params (EnvParams, NotificationParams) as plain JSON values."""
    out = {}
    for field in dataclasses.fields(params):
        value = getattr(params, field.name)
        if isinstance(value, tuple):  # task names
            out[field.name] = list(value)
        elif field.metadata.get("pytree_node", True):  # numeric coefficients (arrays)
            out[field.name] = np.asarray(value).tolist()
        else:  # static sizes and names
            out[field.name] = value
    return out


def env_params_from_dict(values: Dict[str, Any], simulator: str = "mtf"):
    """Inverse of env_params_to_dict for the named simulator (`sim.registry`); unknown fields fail with their name."""
    params_type = registry.named(simulator).params_type
    known = {f.name: f for f in dataclasses.fields(params_type)}
    kwargs = {}
    for name, value in values.items():
        if name not in known:
            raise ValueError(f"simulator parameter '{name}': unknown (known: {sorted(known)})")
        if not known[name].metadata.get("pytree_node", True):
            kwargs[name] = tuple(value) if isinstance(value, list) else value
        else:
            kwargs[name] = jnp.asarray(value, jnp.float32)
    return params_type(**kwargs)


def env_params_from_config(config):
    """Simulator parameters of `config.simulator` (default "mtf"): the defaults overridden by `config.env`."""
    simulator = config.get("simulator", "mtf")
    overrides = dict(config.get("env", {}) or {})
    defaults = env_params_to_dict(registry.named(simulator).default_params())
    return env_params_from_dict({**defaults, **overrides}, simulator)


def simulator_of_provenance(provenance: Dict[str, Any]):
    """The simulator params a sidecar's provenance records (None if it records none)."""
    if "env_params" not in provenance:
        return None
    return env_params_from_dict(provenance["env_params"], provenance.get("simulator", "mtf"))


# ----------------------------------------------------------------- behaviour policies


def expert_policy(config, env_params: sim_env.EnvParams, key) -> Tuple[policies.Policy, Any, Dict[str, Any]]:
    """(policy, params, description) of the configured expert."""
    if config.expert == "switch":
        return (mtf_policies.bounce_switch_policy(env_params), mtf_policies.default_switch_params(env_params),
                {"expert": "switch"})
    if config.expert == "online":
        run = train_online(config, env_params, key)
        greedy = policies.Policy(lambda state, obs, k: run["agent"].act(state, obs[None], k)[0], lambda *a: jnp.nan)
        return greedy, run["state"].agent, {"expert": "online", **run["description"]}
    raise ValueError(f"config field 'expert': unknown expert {config.expert!r} (known: switch, online)")


def notification_behaviour(config, env_params, key=None) -> Tuple[policies.Policy, Any, Dict[str, Any]]:
    """(policy, params, description) of a notification-simulator pipeline: discrete, around the rule."""
    n, name = env_params.num_actions, config.pipeline
    rule = notification_policies.default_rule_params()
    if name == "random":
        return notification_policies.uniform_policy(n), None, {"behaviour": f"uniform over {n} counts"}
    if name == "epsilon_greedy":
        params = {"base": rule, "epsilon": jnp.float32(config.epsilon)}
        return (notification_policies.epsilon_greedy_policy(n), params,
                {"behaviour": f"epsilon-greedy rule, epsilon {config.epsilon}"})
    if name == "softmax":
        params = {"rule": rule, "temperature": jnp.float32(config.temperature)}
        return (notification_policies.softmax_policy(n), params,
                {"behaviour": f"softmax around the rule, temperature {config.temperature}"})
    raise ValueError(f"config field 'pipeline': got {name!r}, expected one of {', '.join(NOTIFICATION_PIPELINES)} "
                     "with simulator 'notifications'")


def behaviour(config, env_params, key) -> Tuple[policies.Policy, Any, Dict[str, Any]]:
    """(policy, params, description) of the behaviour policy of a non-online pipeline, for the simulator whose
    parameters `env_params` are."""
    return BEHAVIOURS[registry.of(env_params).name](config, env_params, key)


def mtf_behaviour(config, env_params, key) -> Tuple[policies.Policy, Any, Dict[str, Any]]:
    """(policy, params, description) of an MTF pipeline: around the baseline, the expert, or uniform."""
    A = sim_env.act_dim(env_params)
    sigma = jnp.float32(config.noise_sigma)
    baseline = sim_env.baseline_action(env_params)
    name = config.pipeline
    if name == "random":
        return policies.uniform_policy(A), None, {"behaviour": "uniform"}
    if name == "baseline":
        return policies.fixed_policy(), baseline, {"behaviour": "fixed baseline weights", "action": baseline.tolist()}
    if name == "exploration_box":
        box = policies.box_policy(policies.fixed_policy(), half_width=config.box_half_width)
        return (box, {"base": baseline},
                {"behaviour": f"baseline + U(-{config.box_half_width}, {config.box_half_width})"})
    expert, expert_params, description = expert_policy(config, env_params, key)
    if name == "expert":
        return expert, expert_params, {"behaviour": "expert", **description}
    if name == "noisy_expert":
        noisy = policies.gaussian_policy(expert)
        return (noisy, {"base": expert_params, "sigma": sigma},
                {"behaviour": f"truncated N(expert, {config.noise_sigma})", **description})
    if name == "mixed":
        mixture = policies.batchrl_mixture(expert, A)
        params = {"components": (None, {"base": expert_params, "sigma": sigma}), "weights": jnp.array([0.5, 0.5])}
        return (mixture, params,
                {"behaviour": f"0.5 uniform + 0.5 truncated N(expert, {config.noise_sigma})", **description})
    raise ValueError(f"config field 'pipeline': unknown pipeline {name!r} (known: {', '.join(PIPELINES)})")


# The behaviour policies of each simulator's pipelines (registry.Environment.pipelines), by simulator name.
BEHAVIOURS = {"mtf": mtf_behaviour, "notifications": notification_behaviour}


def _has_density(policy_description: Dict[str, Any]) -> bool:
    return policy_description["behaviour"] not in ("expert", "fixed baseline weights")


# ----------------------------------------------------------------- online behavioural agent


def train_online(config, env_params: sim_env.EnvParams, key) -> Dict[str, Any]:
    """Trains config.online.algo online in the simulator; returns its state, agent and buffer."""
    oc = config.online
    agent_config = _agent_config(oc.algo)
    obs_dim, act_dim = sim_env.obs_dim(env_params), sim_env.act_dim(env_params)
    agent = make_agent(agent_config, obs_dim, act_dim)
    learner = make_agent(_agent_config(oc.learner_algo), obs_dim, act_dim) if config.pipeline == "concurrent" else None
    capacity = oc.num_envs * oc.iterations
    k_init, k_eval = jax.random.split(key)
    state = online.init(k_init, agent, env_params, oc.num_envs, capacity, learner)
    chunk_fn = online.make_chunk_fn(
        agent, env_params, oc.num_envs, oc.log_every, oc.updates_per_iteration, oc.batch_size,
        oc.exploration_sigma, oc.random_iterations, learner,
    )
    start = time.time()
    for done in range(oc.log_every, oc.iterations + 1, oc.log_every):
        state = chunk_fn(state)
        finished = float(state.finished_count)
        logging.info(
            "online %s: iteration %d/%d, mean return of %d finished sessions %.2f (%.0fs)",
            oc.algo, done, oc.iterations, finished, float(state.finished_returns) / max(finished, 1.0),
            time.time() - start,
        )
    description = {"online_algo": oc.algo, "online_iterations": oc.iterations, "online_num_envs": oc.num_envs,
                   "online_transitions": int(state.buffer.size)}
    return {"state": state, "agent": agent, "learner": learner, "description": description}


def _agent_config(algo: str):
    import importlib

    return importlib.import_module(f"jaxmtf.configs.{algo}").get_config()


# ----------------------------------------------------------------- the pipelines


def collect(config) -> Tuple[Dataset, Dict[str, Any]]:
    """Runs `config.pipeline`, its config checked first; returns the dataset and its provenance (the sidecar's)."""
    validate_config(config)
    return _collect_checked(config)


def _collect_checked(config) -> Tuple[Dataset, Dict[str, Any]]:
    """`collect` of a config that validate_config has accepted."""
    env = registry.named(config.get("simulator", "mtf"))
    env_params = env_params_from_config(config)
    key = jax.random.PRNGKey(config.seed)
    k_behaviour, k_collect, k_value = jax.random.split(key, 3)
    provenance = {"pipeline": config.pipeline, "seed": int(config.seed), "simulator": env.name,
                  "env_params": env_params_to_dict(env_params)}
    eval_discount = float(config.eval_discount)

    if config.pipeline in _ONLINE_PIPELINES:
        run = train_online(config, env_params, k_behaviour)
        greedy = evaluation.agent_policy_fn(run["agent"])
        expert_value = evaluation.evaluate_policy(k_value, env_params, greedy, run["state"].agent, config.eval_users,
                                                  eval_discount)
        provenance.update(run["description"])
        if config.pipeline == "imitation":
            traj = rollout(k_collect, env_params, greedy, run["state"].agent, config.num_users)
            arrays = flatten_valid(traj)
            provenance.update(behaviour="online expert, greedy (no noise)", behaviour_value=expert_value)
        else:
            arrays = online.buffer_arrays(run["state"].buffer)
            provenance.update(
                behaviour=f"online {config.online.algo} with truncated N(pi(s), {config.online.exploration_sigma}) "
                "exploration after uniform random warm-up (behaviour changes over the run)",
                behaviour_value=expert_value, behaviour_value_note="true value of the final online agent, greedy",
            )
        if config.pipeline == "concurrent":
            learner_policy = evaluation.agent_policy_fn(run["learner"])
            provenance["concurrent_learner"] = config.online.learner_algo
            provenance["concurrent_learner_value"] = evaluation.evaluate_policy(
                k_value, env_params, learner_policy, run["state"].learner, config.eval_users, eval_discount
            )
    else:
        policy, params, description = behaviour(config, env_params, k_behaviour)
        log_prob_fn = policy.log_prob if _has_density(description) else None
        traj = rollout(k_collect, env_params, policy.apply, params, config.num_users, log_prob_fn=log_prob_fn,
                       centre_fn=policy.centre)
        arrays = flatten_valid(traj)
        provenance.update(description)
        provenance["behaviour_value"] = evaluation.evaluate_policy(
            k_value, env_params, policy.apply, params, config.eval_users, eval_discount
        )
    arrays["episode_ids"] = arrays["episode_ids"].astype(np.int32)
    dataset = dataset_lib.from_arrays(arrays, tuple(env_params.task_names), env.num_actions(env_params))
    provenance["num_transitions"] = dataset.size
    provenance["num_episodes"] = int(len(np.unique(arrays["episode_ids"])))
    return dataset, provenance


def collect_and_save(config, path: str, overwrite: bool = True) -> Tuple[str, Dict[str, Any]]:
    """Collects and writes `path` and its sidecar; the config and the output are checked first
    (`overwrite=False`: an existing dataset is refused, as `launch.collect` does without --overwrite)."""
    validate_config(config)
    check_output(path, overwrite)
    dataset, provenance = _collect_checked(config)
    path = dataset_lib.save(path, dataset, provenance)
    logging.info(
        "%s: %d transitions in %d sessions; behaviour value %.3f -> %s", config.pipeline, dataset.size,
        provenance["num_episodes"], provenance["behaviour_value"]["undiscounted_return"], path,
    )
    return path, provenance
