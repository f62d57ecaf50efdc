"""Progressive training (IntegratedRL-MTF): rounds of explore, train, evaluate, redeploy.

Every seed is its own chain of rounds. One budget of `budget_sessions`
sessions per seed is split evenly over the rounds, as the paper splits one
collection budget over its 5 rounds. Round k of seed s: collect budget / R
sessions in the simulator with the exploration policy around seed s's
deployed policy (round 1: the production baseline weights), logging its
centre with every transition; train on that round's data or on all of seed
s's rounds so far (each transition judged against its own round's centre),
starting from the deployed policy (`warm_start`); score the trained policy
and the collecting policy against simulator truth; deploy the trained
policy as round k+1's centre. Each step of a round is one compiled
program over all seeds: collection is vmapped over the seeds' (different)
centre policies, training is the driver's chunk with `PerSeedData`, and the
evaluation vmaps over the seeds' agents.

Run directory (each round's pieces in the standard formats):

    config.json, references.json      the config; baseline / uniform / mixture true values
    round_{k}/data/seed_{s}.npz+.json the round's logged sessions of seed s (jaxmtf datasets)
    round_{k}/train/                  a standard training run dir (config.json, metrics.jsonl,
                                      eval.jsonl, checkpoints/, summary.json)
    round_{k}/user_returns.npz        every evaluation user's return under each seed's trained policy [S, U]
    round_{k}/evaluation.json         per seed: trained and collecting policy, training diagnostics
                                      (outside_box, effective discount); marks the round done
    summary.json                      every round's evaluation, when all are done

Resuming after a kill at any point redoes only what is missing: a round
with evaluation.json is done (its final state restored from its checkpoint
when the next round needs its centre); a round's data is re-collected unless
every seed's file exists (collection is a pure function of the keys); its
training resumes from its newest checkpoint. So the final result equals an
uninterrupted run's.

Choices the paper leaves open (config fields, see jaxmtf/configs/integrated_rl.py):
`train_on` ("all" rounds so far, or the "newest"); `warm_start` ("actor":
round k's actor and its target start from round k-1's deployed actor, the
critics fresh; "actor_critic": both; "none": a fresh initialisation, as
before issue 19); the centre of round k+1 is the deterministic trained policy
of round k. Observation statistics (when the config normalises) come from
round 1's data and stay fixed over the chain, so a warm-started actor is the
deployed policy exactly.
"""
import glob
import json
import os
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxmtf import policy as policy_lib
from jaxmtf import schema
from jaxmtf.agents import check_dataset, common, integrated_rl, make_agent, transition_fields
from jaxmtf.core import chunk, evaluation, lifecycle, run_config, sharding, training
from jaxmtf.core.run_config import ConfigError, validate_config
from jaxmtf.data import collect
from jaxmtf.data import dataset as dataset_lib
from jaxmtf.runs import checkpoint as checkpoint_lib
from jaxmtf.runs import record as record_lib
from jaxmtf.runs import rundir, workdir_lock
from jaxmtf.sim import policies
from jaxmtf.sim.mtf import env as sim_env
from jaxmtf.sim.rollout import flatten_valid, rollout
from jaxmtf.types import Dataset

EXPLORATIONS = ("box", "mixed", "uniform")
TRAIN_ON = ("all", "newest")
WARM_STARTS = ("actor", "actor_critic", "none")
USER_RETURNS_FILE = "user_returns.npz"
# Training diagnostics a round's record keeps from its final metrics, when the agent logs them.
DIAGNOSTICS = ("outside_box", "effective_discount")
EVALUATION_FILE = "evaluation.json"
REFERENCES_FILE = "references.json"
PAD_MULTIPLE = 1024  # per-seed data is padded to a multiple of this (fewer distinct shapes to compile)


# jaxmtf/configs/integrated_rl.progressive_config's fields, checked before anything is collected or written.
PROGRESSIVE_FIELDS = {
    "rounds": schema.integer(1),
    "budget_sessions": schema.integer(1),
    "exploration": schema.choice(EXPLORATIONS),
    "box_half_width": schema.real(0, 1, lo_open=True),
    "box_mode": schema.choice(("clip", "truncate")),
    "noise_sigma": schema.real(0, lo_open=True),  # 0: a point mass, no behaviour density
    "train_on": schema.choice(TRAIN_ON),
    "warm_start": schema.choice(WARM_STARTS, required=False),
    "eval_users": schema.integer(2),  # a CI over users needs two
    "eval_seed": schema.integer(0),
    "env": schema.Field(lambda v: hasattr(v, "keys"), "a mapping of simulator parameter overrides", False),
}
PROGRESSIVE_RULES = (
    schema.Rule(("budget_sessions", "rounds"), lambda p: p["budget_sessions"] >= p["rounds"],
                "at least one session per round (budget_sessions >= rounds)"),
)


def validate_progressive(config) -> None:
    """The progressive fields, checked before anything runs (ConfigError names the field)."""
    validate_config(config)
    if "progressive" not in config:
        raise ConfigError("config field 'progressive': missing (see jaxmtf/configs/integrated_rl.py)")
    p = config.progressive
    if "num_users" in p:
        raise ConfigError("config field 'progressive.num_users': replaced by 'progressive.budget_sessions', the "
                          "sessions of all rounds together (each round collects budget_sessions / rounds)")
    schema.check_fields(p, PROGRESSIVE_FIELDS, "progressive.", ConfigError)
    schema.check_rules(p, PROGRESSIVE_RULES, "progressive.", ConfigError)
    collect.check_env_overrides(p, "progressive.")
    if config.get("sweep"):
        raise ConfigError("config field 'sweep': progressive training runs one setting per chain; sweep nothing")
    agent_width = config.agent.get("box_half_width", None)
    if p.exploration == "box" and agent_width is not None and float(agent_width) != float(p.box_half_width):
        raise ConfigError(
            f"config field 'progressive.box_half_width': {p.box_half_width} differs from agent.box_half_width="
            f"{agent_width}; the agent's box must be the box that explored"
        )


# Compiled programs and the policies / agents they close over, kept for the process: a later round
# (or a resumed run) with the same shapes reuses them instead of compiling again (keys hold the
# objects themselves, never ids, so a key cannot outlive what it names).
_PROGRAMS: Dict[Any, Any] = {}


def release_programs() -> None:
    """Forgets every compiled program of this process (this module's and jax's caches). A long experiment
    calls it between chains: XLA's CPU backend maps each compiled kernel's code into memory regions of its
    own and keeps them while a cache holds the program; over a whole experiment in one process that reached
    Linux's 65,530-mapping limit (vm.max_map_count) and the next compile died with "LLVM compilation error:
    Cannot allocate memory" (the N = 16,000 segfault of benchmarks/mtf_progressive.py). A chain's programs
    are not reused by the next chain (other shapes or configs), so releasing them costs nothing there."""
    _PROGRAMS.clear()
    jax.clear_caches()


def _cached(key, build):
    if key not in _PROGRAMS:
        _PROGRAMS[key] = build()
    return _PROGRAMS[key]


def _functions(agent: common.Agent):
    """An agent's hashable part (its default_hparams dict is not)."""
    return agent.init, agent.update, agent.act, agent.q_values


def _env_key(env_params) -> str:
    return json.dumps(collect.env_params_to_dict(env_params), sort_keys=True)


def _agent(config, obs_dim: int, act_dim: int) -> common.Agent:
    key = ("agent", config.algo, json.dumps(config.agent.to_dict(), sort_keys=True, default=str), obs_dim, act_dim)
    return _cached(key, lambda: make_agent(config, obs_dim, act_dim))


def sessions_per_round(config) -> int:
    """budget_sessions / rounds, rounded down (the paper splits one budget evenly)."""
    return int(config.progressive.budget_sessions) // int(config.progressive.rounds)


def seeds_of(config) -> List[int]:
    return [int(config.seed) + i for i in range(int(config.num_seeds))]


# ----------------------------------------------------------------- collection


def collection_policy(config, env_params, agent: common.Agent, centres) -> Tuple[policies.Policy, Any, Any, str]:
    """(policy, params [S, ...], their vmap axes, description) of this round's collection.

    `centres` None: the production baseline (round 1); else the agent states [S] of the last round.
    "mixed" and "uniform" never follow the current policy (BatchRL-MTF explores around the baseline).
    """
    p, S, A = config.progressive, int(config.num_seeds), sim_env.act_dim(env_params)
    baseline = jnp.broadcast_to(sim_env.baseline_action(env_params), (S, A))
    w = float(p.box_half_width)
    if p.exploration == "uniform":
        return _cached(("uniform", A), lambda: policies.uniform_policy(A)), None, None, "uniform random"
    if p.exploration == "mixed":
        params = {"components": (None, {"base": baseline, "sigma": jnp.full((S,), p.noise_sigma)}),
                  "weights": jnp.full((S, 2), 0.5)}
        return _mixture(A), params, 0, \
            f"0.5 uniform + 0.5 truncated N(baseline, {p.noise_sigma})"
    if centres is None:
        box = _cached(("box", w, p.box_mode), lambda: policies.box_policy(_fixed(), half_width=w, mode=p.box_mode))
        return box, {"base": baseline}, 0, f"baseline + U(-{w}, {w}) ({p.box_mode})"
    box = _cached(("box", _functions(agent), w, p.box_mode),
                  lambda: integrated_rl.exploration_policy(agent.act, half_width=w, mode=p.box_mode))
    return (box, {"base": centres}, {"base": common.agent_axes(centres)},
            f"last round's policy + U(-{w}, {w}) ({p.box_mode})")


def _fixed() -> policies.Policy:
    return _cached(("fixed",), policies.fixed_policy)


def _mixture(act_dim: int) -> policies.Policy:
    return _cached(("mixture", act_dim), lambda: policies.batchrl_mixture(_fixed(), act_dim))


def collection_keys(seeds, round_index: int) -> jax.Array:
    """[S, 2]: seed s's users and exploration noise of round k depend on (s, k) only."""
    return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s), 1000 + round_index) for s in seeds])


def collect_round(config, env_params, policy, params, axes, keys) -> List[Dict[str, np.ndarray]]:
    """Every seed's sessions in one program (vmapped over the seeds' policy params); arrays per seed."""
    num_users = sessions_per_round(config)
    log_prob = policy.log_prob

    def one(key, policy_params):
        return rollout(key, env_params, policy.apply, policy_params, num_users, log_prob_fn=log_prob,
                       centre_fn=policy.centre)

    program = _cached(("collect", policy, num_users, _env_key(env_params), str(jax.tree.structure(params))),
                      lambda: jax.jit(jax.vmap(one, in_axes=(0, axes))))
    traj = program(keys, params)
    traj = jax.device_get(traj)
    return [flatten_valid(jax.tree.map(lambda x: x[s], traj)) for s in range(keys.shape[0])]


def round_data(config, env_params, round_dir: str, round_index: int, seeds, make_policy) -> List[Dataset]:
    """The round's dataset of every seed: loaded if all files exist, else collected and saved."""
    paths = [os.path.join(round_dir, "data", f"seed_{s}.npz") for s in seeds]
    if all(os.path.exists(p) and os.path.exists(p[:-4] + ".json") for p in paths):
        return [dataset_lib.load(p) for p in paths]
    policy, params, axes, description = make_policy()
    per_seed = collect_round(config, env_params, policy, params, axes, collection_keys(seeds, round_index))
    datasets = []
    for seed, arrays, path in zip(seeds, per_seed, paths):
        arrays["episode_ids"] = arrays["episode_ids"].astype(np.int32)
        dataset = dataset_lib.from_arrays(arrays, tuple(env_params.task_names))
        sidecar = {"pipeline": "progressive", "round": round_index, "seed": seed, "behaviour": description,
                   "env_params": collect.env_params_to_dict(env_params), "num_transitions": dataset.size}
        dataset_lib.save(path, dataset, sidecar)
        datasets.append(dataset)
    logging.info("%s: collected %s transitions per seed (%s)", round_dir, [d.size for d in datasets], description)
    return datasets


# ----------------------------------------------------------------- training on per-seed data


def per_seed_data(datasets: List[List[Dataset]], fields: Dict[str, bool],
                  stats) -> Tuple[chunk.PerSeedData, List[int]]:
    """datasets[s] = seed s's datasets (rounds) -> PerSeedData padded to a common size, and the sizes.

    `fields`: the optional batch fields the agent trains on (agents.transition_fields), taken from each
    round's dataset on its own (a round's centres are its own exploration's).
    """
    per_seed = []
    for seed_datasets in datasets:
        parts = [d.as_transitions(**fields) for d in seed_datasets]
        joined = jax.tree.map(lambda *x: np.concatenate([np.asarray(v) for v in x]), *parts)
        if stats is not None:
            mean, std = stats["mean"], stats["std"]
            joined = joined.replace(observations=(joined.observations - mean) / std,
                                    next_observations=(joined.next_observations - mean) / std)
        per_seed.append(joined)
    sizes = [int(t.rewards.shape[0]) for t in per_seed]
    padded = -(-max(sizes) // PAD_MULTIPLE) * PAD_MULTIPLE

    def pad(x):  # rows past a seed's size are never sampled
        return np.concatenate([x, np.zeros((padded - x.shape[0],) + x.shape[1:], x.dtype)])

    stacked = jax.tree.map(lambda *x: np.stack([pad(v) for v in x]), *per_seed)
    return chunk.PerSeedData(transitions=stacked, size=np.asarray(sizes, np.int32)), sizes


def pooled_stats(config, datasets: List[List[Dataset]]):
    """Observation mean / std over every seed's FIRST round (one normaliser: evaluation shares the agent).

    Fixed over the chain (round 1's data is part of every later round's "all"), so an actor warm-started
    from the last round's sees its inputs scaled as it was trained on them: it is the deployed policy.
    """
    if not config.get("normalize_observations", False):
        return None
    return dataset_lib.normalization_stats(np.concatenate([ds[0].observations for ds in datasets]))


def round_record(config, obs_dim, act_dim, sizes) -> Dict[str, Any]:
    """What a round's checkpoints record (each seed's data size, the warm start); restoring with another config
    fails naming the field."""
    return record_lib.training_record(config, obs_dim, act_dim, sizes, seeds_of(config),
                                      warm_start=_warm_start_mode(config))


def _warm_start_mode(config) -> str:
    """progressive.warm_start, "none" for a config without a progressive section (training on given data)."""
    return config.progressive.get("warm_start", "none") if "progressive" in config else "none"


def warm_start_fn(config, deployed) -> Optional[Any]:
    """state -> state with round k-1's deployed networks copied in ([S, 1] states -> every setting), or None.

    "actor": the actor and its target; "actor_critic": the critics and their targets too. Optimiser
    states start fresh. Agents without those fields (BCQ's perturbation actor is `actor` too) take what
    they have of them.
    """
    mode = _warm_start_mode(config)
    if deployed is None or mode == "none":
        return None
    names = ("actor", "actor_target") + (("critic", "critic_target") if mode == "actor_critic" else ())

    def apply(state):
        agent = state.agent
        fields = {}
        for name in names:
            if hasattr(agent, name) and hasattr(deployed, name):
                fields[name] = jax.tree.map(lambda fresh, old: jnp.broadcast_to(old, fresh.shape).astype(fresh.dtype),
                                            getattr(agent, name), getattr(deployed, name))
        return state.replace(agent=agent.replace(**fields))

    return apply


def train_per_seed(config, datasets: List[List[Dataset]], workdir: str, eval_fn=None,
                   stop_after: Optional[int] = None, deployed=None) -> Dict[str, Any]:
    """Trains seed s on datasets[s] only, every seed in one program: training.train with PerSeedData.

    A standard run directory in `workdir`, resumed from its newest checkpoint.
    Observations are normalised, when the config asks, with statistics pooled over
    all seeds' first-round data (one normaliser, so evaluation scores every seed with one agent).
    `deployed`: the last round's agent states [S, 1], the warm start (`warm_start_fn`).
    """
    validate_config(config)
    obs_dim, act_dim = datasets[0][0].obs_dim, datasets[0][0].act_dim
    raw_agent = _agent(config, obs_dim, act_dim)
    stats = pooled_stats(config, datasets)
    for seed_datasets in datasets:
        for dataset in seed_datasets:
            check_dataset(config, dataset, ConfigError)
    data, sizes = per_seed_data(datasets, transition_fields(config), stats)
    hparams, labels = run_config.hparam_grid(raw_agent.default_hparams, None)
    grid = run_config.RunGrid(seeds_of(config), hparams, labels)
    record = round_record(config, obs_dim, act_dim, sizes)
    driver = run_config.Driver.of(config)
    group = sharding.seed_group_size(driver, None)
    chunk_fn = _cached(("chunk", _functions(raw_agent), driver.batch_size, driver.chunk_size, group),
                       lambda: chunk.make_chunk_fn(raw_agent, driver.batch_size, driver.chunk_size, group,
                                                   per_seed_data=True))
    # The driver's own set-up and loop: lock, record check, checkpoint integrity, pre-emption.
    run = lifecycle.set_up_runs(config, workdir, raw_agent, grid, data, record, stats, chunk_fn,
                                warm_start=warm_start_fn(config, deployed))
    return training.train_runs(run, eval_fn, stop_after)


def restore_final(config, workdir: str) -> Tuple[common.Agent, Any]:
    """(agent, final agent states [S, 1]) of a finished round, from its newest checkpoint (checksum-verified,
    the round's own normalisation applied): `jaxmtf.policy.restore_run`, the one restore of a run directory."""
    run = policy_lib.restore_run(workdir)
    if run.step != int(config.num_updates):
        raise checkpoint_lib.CheckpointError(f"{workdir}: round marked done but its newest checkpoint is at update "
                                             f"{run.step}, expected the final one ({config.num_updates})")
    return run.agent, run.states


# ----------------------------------------------------------------- evaluation


def _per_seed_values(stats) -> Dict[str, List[float]]:
    return {k: np.asarray(v, np.float64).reshape(-1).tolist() for k, v in jax.device_get(stats).items()}


def evaluate_round(config, env_params, agent, agent_states, behaviour, num_seeds: int) -> Dict[str, Any]:
    """The trained policies [S, 1] and the collecting policies [S], all on the same fresh users.

    Returns (record, every user's undiscounted return under each seed's trained policy [S, U]).
    """
    p, discount = config.progressive, float(config.eval_discount)
    key = jax.random.PRNGKey(int(p.eval_seed))
    env_key, users = _env_key(env_params), int(p.eval_users)
    trained, user_returns = _cached(
        ("agent_eval", _functions(agent), users, discount, env_key),
        lambda: evaluation.make_agent_evaluator(agent, env_params, users, discount, with_user_returns=True),
    )(agent_states, key)
    policy, params, axes, description = behaviour
    evaluator = evaluation.make_policy_evaluator(env_params, policy.apply, users, discount)
    if axes is None:  # the same policy for every seed (uniform)
        program = _cached(("policy_eval", policy, users, discount, env_key), lambda: jax.jit(evaluator))
        collecting = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_seeds,)), program(key, params))
    else:
        program = _cached(("policy_eval", policy, users, discount, env_key, str(jax.tree.structure(params))),
                          lambda: jax.jit(jax.vmap(evaluator, in_axes=(None, axes))))
        collecting = program(key, params)
    record = {"trained": _per_seed_values(trained), "collecting": _per_seed_values(collecting),
              "collecting_policy": description}
    return record, np.asarray(jax.device_get(user_returns))[:, 0]


def training_diagnostics(summary) -> Dict[str, List[float]]:
    """Per seed, the last chunk's mean of each DIAGNOSTICS metric the agent logs (outside_box, ...)."""
    records = summary.get("final_metrics") or []
    return {name: [float(r[name]) if r.get(name) is not None else float("nan") for r in records]
            for name in DIAGNOSTICS if any(name in r for r in records)}


REFERENCE_ROWS = ("production baseline", "uniform random", "BatchRL-MTF mixture")


def _references_policy(act_dim: int) -> policies.Policy:
    """REFERENCE_ROWS' policies as one, picked by params["index"]: the three rows are one program."""
    fixed, uniform, mixture = _fixed(), _cached(("uniform", act_dim), lambda: policies.uniform_policy(act_dim)), \
        _mixture(act_dim)

    def apply(params, obs, key):
        return jax.lax.switch(params["index"], [lambda: fixed.apply(params["baseline"], obs, key),
                                                lambda: uniform.apply(None, obs, key),
                                                lambda: mixture.apply(params["mixture"], obs, key)])

    return _cached(("references_policy", act_dim), lambda: policies.Policy(apply, None))


def references(config, env_params, workdir: str) -> Dict[str, Dict[str, float]]:
    """True values of the production baseline, uniform random and BatchRL-MTF's mixture (references.json)."""
    path = os.path.join(workdir, REFERENCES_FILE)
    if os.path.exists(path):
        return _read_json(path)
    p, A = config.progressive, sim_env.act_dim(env_params)
    baseline = sim_env.baseline_action(env_params)
    params = {"index": jnp.arange(3), "baseline": baseline,
              "mixture": {"components": (None, {"base": baseline, "sigma": jnp.float32(p.noise_sigma)}),
                          "weights": jnp.array([0.5, 0.5])}}
    users, discount = int(p.eval_users), float(config.eval_discount)
    policy = _references_policy(A)
    program = _cached(("references", policy, users, discount, _env_key(env_params)), lambda: jax.jit(jax.vmap(
        evaluation.make_policy_evaluator(env_params, policy.apply, users, discount),
        in_axes=(None, {"index": 0, "baseline": None, "mixture": None}))))
    stats = jax.device_get(program(jax.random.PRNGKey(int(p.eval_seed)), params))
    out = {name: {k: float(v[i]) for k, v in stats.items()} for i, name in enumerate(REFERENCE_ROWS)}
    rundir.write_json(path, out)
    return out


# ----------------------------------------------------------------- the loop


def _training_sets(config, all_data: List[List[Dataset]], k: int) -> List[List[Dataset]]:
    """Seed s's datasets that round k trains on: every round so far, or round k's only."""
    rounds = all_data[:k] if config.progressive.train_on == "all" else all_data[k - 1:k]
    return [[round_sets[s] for round_sets in rounds] for s in range(int(config.num_seeds))]


def _without_hparam_axis(states):
    """Agent states [S, 1, ...] -> [S, ...] (the step stays shared)."""
    return jax.tree.map(lambda x: x[:, 0], states.replace(step=None)).replace(step=states.step)


def run_progressive(config, workdir: str, stop_after: Optional[Tuple[int, int]] = None) -> Dict[str, Any]:
    """Runs (or resumes) every round in `workdir`; returns {"finished", "rounds", "references", "agent", "state"}.

    `stop_after` = (round, updates) ends this call once that round's training
    reaches that many updates (tests interrupt a run with it); a later call resumes.
    """
    validate_progressive(config)
    env_params = collect.env_params_from_config(config.progressive)
    lock = workdir_lock.WorkdirLock(workdir)
    lock.acquire()
    try:
        open_chain(config, workdir)
        return _run_rounds(config, workdir, env_params, stop_after)
    finally:
        lock.release()


# What does not change what a chain is: how often it checkpoints, whether it starts afresh.
_NOT_IN_RECORD = ("force_new_run", "checkpoint_every", "keep_checkpoints", "tensorboard", "writers", "wandb_project",
                  "wandb_mode", "ref_min_score", "ref_max_score", "eval_episodes")


def chain_record(config) -> Dict[str, Any]:
    """Every config field that changes a chain's data, references or training (the chain's run record)."""
    return {k: v for k, v in config.to_dict().items() if k not in _NOT_IN_RECORD}


def open_chain(config, workdir: str) -> None:
    """Under the chain's lock, before anything is collected or written: `force_new_run` clears the chain; an
    existing chain whose record differs is refused naming the first changed field and its two values (its data
    and references were made with the saved settings); then config.json and the record are written."""
    os.makedirs(workdir, exist_ok=True)
    record_path = os.path.join(workdir, record_lib.RECORD_FILE)
    if config.get("force_new_run", False):
        rundir.force_new_run(workdir, ("round_*", REFERENCES_FILE, rundir.SUMMARY_FILE, record_lib.RECORD_FILE,
                                       rundir.CONFIG_FILE))
    record = chain_record(config)
    config_path = os.path.join(workdir, rundir.CONFIG_FILE)
    if os.path.exists(record_path):
        checkpoint_lib.check_record(rundir.read_json(record_path), record, record_path)
    elif os.path.exists(config_path):  # a chain started before chains kept a record: its last config stands in
        checkpoint_lib.check_record({k: v for k, v in rundir.read_json(config_path).items()
                                     if k not in _NOT_IN_RECORD}, record, config_path)
    elif glob.glob(os.path.join(workdir, "round_*")) or os.path.exists(os.path.join(workdir, REFERENCES_FILE)):
        raise ConfigError(f"progressive run '{workdir}': has rounds but no {record_lib.RECORD_FILE} (made before "
                          "chains kept one), expected a chain this code started; use a new --workdir or "
                          "--config.force_new_run=True")
    rundir.write_json(os.path.join(workdir, rundir.CONFIG_FILE), config.to_dict())
    rundir.write_json(record_path, record)


def _run_rounds(config, workdir: str, env_params, stop_after) -> Dict[str, Any]:
    refs = references(config, env_params, workdir)
    seeds, rounds = seeds_of(config), int(config.progressive.rounds)
    eval_fn = (evaluation.make_eval_fn(env_params, int(config.eval_users), float(config.eval_discount))
               if config.get("eval_every") else None)
    all_data, evaluations, last = [], [], None  # last: (agent, states [S, 1]) of the previous round, if in memory
    for k in range(1, rounds + 1):
        round_dir = os.path.join(workdir, f"round_{k}")
        eval_path = os.path.join(round_dir, EVALUATION_FILE)
        collecting = []  # this round's collection policy, built once (a box needs the last round's state)

        def restore_deployed(k=k):
            """(agent, states [S, 1]) of round k-1 into `last`, from its checkpoint when not in memory."""
            nonlocal last
            if last is None:
                last = restore_final(config, os.path.join(workdir, f"round_{k - 1}", "train"))
            return last

        def behaviour(k=k):
            if not collecting:
                if k > 1 and config.progressive.exploration == "box":
                    restore_deployed()
                agent, centres = (None, None) if k == 1 else (last[0], _without_hparam_axis(last[1]))
                collecting.append(collection_policy(config, env_params, agent, centres))
            return collecting[0]

        all_data.append(round_data(config, env_params, round_dir, k, seeds, behaviour))
        train_sets = _training_sets(config, all_data, k)
        if os.path.exists(eval_path):
            evaluations.append(_read_json(eval_path))
            last = None
            continue
        behaviour()  # before training replaces `last`: the collecting policy explores around round k-1's
        stop = stop_after[1] if stop_after is not None and stop_after[0] == k else None
        warm = k > 1 and _warm_start_mode(config) != "none"
        deployed = restore_deployed()[1] if warm else None
        summary = train_per_seed(config, train_sets, os.path.join(round_dir, "train"), eval_fn, stop, deployed)
        if not summary["finished"]:
            return {"finished": False, "rounds": evaluations, "references": refs, "agent": None, "state": None}
        last = (summary["agent"], summary["state"].agent)
        record, user_returns = evaluate_round(config, env_params, *last, collecting[0], len(seeds))
        record.update(round=k, seeds=seeds, num_transitions=[d.size for d in all_data[-1]],
                      trained_on=[sum(d.size for d in ds) for ds in train_sets],
                      training=training_diagnostics(summary))
        rundir.write_npz(os.path.join(round_dir, USER_RETURNS_FILE), trained=user_returns)
        record["exploration_cost"] = [refs["production baseline"]["undiscounted_return"] - v
                                      for v in record["collecting"]["undiscounted_return"]]
        rundir.write_json(eval_path, record)
        evaluations.append(_read_json(eval_path))
        logging.info("round %d/%d: trained %s, collecting %s (baseline %.2f)", k, rounds,
                     np.round(record["trained"]["undiscounted_return"], 2),
                     np.round(record["collecting"]["undiscounted_return"], 2),
                     refs["production baseline"]["undiscounted_return"])
    if last is None:
        last = restore_final(config, os.path.join(workdir, f"round_{rounds}", "train"))
    rundir.write_json(os.path.join(workdir, rundir.SUMMARY_FILE), {"rounds": evaluations, "references": refs})
    return {"finished": True, "rounds": evaluations, "references": refs, "agent": last[0], "state": last[1]}


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)
