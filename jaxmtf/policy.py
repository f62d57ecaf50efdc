"""A trained fusion policy, outside the driver: load one run's policy, act, export it, see its fusion weights.

    from jaxmtf import policy
    pi = policy.load("runs/td3_bc", seed=0, setting=0)      # newest checkpoint; step=N for another
    actions = pi(observations)                               # [N, obs_dim] -> [N, act_dim], normalisation applied
    weights = policy.fusion_weights(pi, observations)        # per-task powers and biases, with their names
    policy.export(pi, "td3_bc.jaxexport")                    # serialised StableHLO (jax.export), no jaxmtf needed
    act = policy.load_exported("td3_bc.jaxexport")           # act(observations) -> actions, any batch size

`restore_run` is the one restore of a launch.train run directory (every seed and setting): OPE's run-directory
targets read it too. The checkpoint is verified against its checksum (checkpoint.restore_for_evaluation).
"""
import dataclasses
import json
import os
from typing import Any, Callable, Dict, List, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxmtf.agents import common, make_agent
from jaxmtf.core import chunk
from jaxmtf.core.run_config import ConfigError, hparam_grid
from jaxmtf.runs import checkpoint as checkpoint_lib
from jaxmtf.runs import record as record_lib
from jaxmtf.runs import rundir
from jaxmtf.sim.mtf import env as sim_env


@dataclasses.dataclass(frozen=True)
class RestoredRun:
    """Every run of a launch.train run directory at one checkpoint."""
    workdir: str
    config: ml_collections.ConfigDict
    agent: common.Agent  # observation normalisation applied (the run's normalization.json)
    states: Any  # agent states, every leaf [S, H, ...]
    step: int
    seeds: List[int]
    settings: List[Dict[str, Any]]  # the sweep's labels, one per setting (H)
    record: Dict[str, Any]  # run_record.json ({} for runs that predate it)
    obs_dim: int
    act_dim: int
    finite: np.ndarray  # [S, H] bool: every float leaf of the run's state finite (a diverged run's is not)

    def check_finite(self, where: str, seed: Optional[int] = None, setting: Optional[int] = None) -> None:
        """Refuses (ConfigError) a run whose state holds a NaN or Inf: its actions would be too."""
        bad = [(s, h) for i, s in enumerate(self.seeds) for h in range(len(self.settings))
               if not self.finite[i, h] and seed in (None, s) and setting in (None, h)]
        if bad:
            runs = ", ".join(f"seed {s} setting {h}" for s, h in bad)
            raise ConfigError(f"{where}: checkpoint {self.step} of '{self.workdir}' holds non-finite parameters "
                              f"({runs}: a diverged run), expected finite ones; evaluate another checkpoint "
                              "(RUN_DIR@STEP) or the other runs")


def restore_run(workdir: str, obs_dim: Optional[int] = None, act_dim: Optional[int] = None,
                step: Optional[int] = None) -> RestoredRun:
    """Restores `workdir`'s newest (or `step`) checkpoint, checksum-verified, into the agent its config
    builds for (obs_dim, act_dim), which default to the run record's; a run recorded with other dims is
    refused (ConfigError) before anything is built."""
    saved = rundir.load_config_json(workdir)
    if saved is None:
        raise ConfigError(f"run directory '{workdir}': no {rundir.CONFIG_FILE}, expected a launch.train run directory")
    config = ml_collections.ConfigDict(saved)
    record_path = os.path.join(workdir, record_lib.RECORD_FILE)
    record = rundir.read_json(record_path) if os.path.exists(record_path) else {}
    obs_dim, act_dim = obs_dim or record.get("obs_dim"), act_dim or record.get("act_dim")
    if obs_dim is None or act_dim is None:
        raise ConfigError(f"run directory '{workdir}': its record gives no obs_dim / act_dim; pass them")
    for field, want in (("obs_dim", obs_dim), ("act_dim", act_dim)):
        if field in record and record[field] != want:
            raise ConfigError(f"run directory '{workdir}': trained with {field} {record[field]}, expected {want} "
                              "(a run of another simulator or action space)")
    agent = make_agent(config, int(obs_dim), int(act_dim))
    seeds = [int(config.seed) + i for i in range(int(config.num_seeds))]
    _, settings = hparam_grid(agent.default_hparams, config.get("sweep", ""))
    # Only the state's structure, shapes and dtypes are needed to restore into: abstract values, so no
    # initialisation runs.
    like = jax.eval_shape(lambda: chunk.init_run_state(agent, seeds, len(settings)))
    checkpointer = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
    try:
        step, state = checkpointer.restore_for_evaluation(like, step)
    finally:
        checkpointer.close()
    stats_path = os.path.join(workdir, record_lib.NORMALIZATION_FILE)
    stats = rundir.read_json(stats_path) if os.path.exists(stats_path) else None
    finite = np.asarray(jax.vmap(jax.vmap(chunk.all_finite))(state.agent.replace(step=None)))
    return RestoredRun(workdir, config, common.with_obs_normalization(agent, stats), state.agent, int(step), seeds,
                       settings, record, int(obs_dim), int(act_dim), finite)


@dataclasses.dataclass(frozen=True)
class Policy:
    """One run's deterministic policy: `policy(observations [N, obs_dim]) -> actions [N, act_dim]` in [-1, 1]."""
    agent: common.Agent
    state: Any  # the agent state of this one run (no [S, H] axes)
    obs_dim: int
    act_dim: int
    label: Dict[str, Any]  # workdir, algo, checkpoint step, seed, setting and its swept values

    def __call__(self, observations) -> jax.Array:
        return _act(self.agent, self.state, jnp.asarray(observations, jnp.float32))


def _act(agent: common.Agent, state, observations):
    # The key is fixed: every agent's act is deterministic unless asked (agents/common.py), so it is unused.
    return jax.jit(agent.act)(state, observations, jax.random.PRNGKey(0))


def load(workdir: str, seed: int = 0, setting: int = 0, step: Optional[int] = None,
         obs_dim: Optional[int] = None, act_dim: Optional[int] = None) -> Policy:
    """The policy of run (`seed`, `setting`) of a launch.train run directory, at its newest or `step`
    checkpoint. obs_dim / act_dim default to the run record's."""
    run = restore_run(workdir, obs_dim, act_dim, step)
    if seed not in run.seeds:
        raise ConfigError(f"policy.load seed: got {seed}, expected one of the run's seeds {run.seeds}")
    if not 0 <= setting < len(run.settings):
        raise ConfigError(f"policy.load setting: got {setting}, expected 0..{len(run.settings) - 1} (the sweep's "
                          f"settings: {run.settings})")
    run.check_finite("policy.load", seed, setting)
    index = run.seeds.index(seed)
    state = jax.tree.map(lambda x: x[index, setting], run.states.replace(step=None)).replace(step=run.states.step)
    label = {"workdir": workdir, "algo": run.config.algo, "checkpoint_step": run.step, "seed": seed,
             "setting": setting, **run.settings[setting]}
    return Policy(run.agent, state, run.obs_dim, run.act_dim, label)


# ----------------------------------------------------------------- export


def export(policy: Policy, path: str) -> None:
    """Writes the policy as serialised StableHLO (jax.export), its parameters inside, for any batch size;
    `load_exported` (or jax.export.deserialize anywhere jax runs) gives it back. A JSON sidecar PATH.json
    records the label and the dims."""
    batch = jax.export.symbolic_shape("batch")[0]
    spec = jax.ShapeDtypeStruct((batch, policy.obs_dim), jnp.float32)
    exported = jax.export.export(jax.jit(lambda obs: policy.agent.act(policy.state, obs, jax.random.PRNGKey(0))))(spec)
    with open(path, "wb") as f:
        f.write(exported.serialize())
    rundir.write_json(path + ".json", {"obs_dim": policy.obs_dim, "act_dim": policy.act_dim,
                                       "label": json.loads(json.dumps(policy.label, default=str))})


def load_exported(path: str) -> Callable[[Any], jax.Array]:
    """act(observations [N, obs_dim]) -> actions [N, act_dim], from a file `export` wrote."""
    with open(path, "rb") as f:
        exported = jax.export.deserialize(bytearray(f.read()))
    return lambda observations: exported.call(jnp.asarray(observations, jnp.float32))


# ----------------------------------------------------------------- what the policy fuses with


def observation_names(env_params: sim_env.EnvParams) -> List[str]:
    """One name per observation column: the simulator's feature, with an index where a feature spans several."""
    names = []
    for feature, columns in sim_env.observation_layout(env_params).items():
        width = columns.stop - columns.start
        names += [feature] if width == 1 else [f"{feature}[{i}]" for i in range(width)]
    return names


def fusion_weights(policy: Policy, observations, env_params: Optional[sim_env.EnvParams] = None) -> Dict[str, Any]:
    """What the policy does per state in the simulator's terms: {"powers": [N, K], "biases": [N, K] (the
    fusion's per-task exponent and offset), "task_names": K names, "observation_names": obs_dim names,
    "actions": [N, act_dim]}. `env_params` default to the default simulator's."""
    env_params = env_params or sim_env.default_params()
    if sim_env.obs_dim(env_params) != policy.obs_dim or sim_env.act_dim(env_params) != policy.act_dim:
        raise ConfigError(f"fusion_weights: the policy's (obs_dim, act_dim) ({policy.obs_dim}, {policy.act_dim}) "
                          f"are not the simulator's ({sim_env.obs_dim(env_params)}, {sim_env.act_dim(env_params)})")
    actions = policy(observations)
    powers, biases = jax.vmap(lambda a: sim_env.fusion_from_action(a, env_params))(actions)
    return {"powers": np.asarray(powers), "biases": np.asarray(biases), "actions": np.asarray(actions),
            "task_names": list(env_params.task_names), "observation_names": observation_names(env_params)}

