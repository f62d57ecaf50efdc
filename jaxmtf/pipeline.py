"""What the launchers run, importable from a notebook: load data, train, evaluate."""
from typing import Any, Dict

from absl import logging

from jaxmtf import training
from jaxmtf.stats import ci95_halfwidth
from jaxmtf.data import dataset as dataset_lib
from jaxmtf.data import synthetic
from jaxmtf.types import Dataset

SYNTHETIC_PREFIX = "synthetic:"
MINARI_PREFIX = "minari:"


def _load_minari(path_or_id: str) -> Dataset:
    from jaxmtf.data.minari_import import from_minari

    return from_minari(path_or_id)[0]


def load_dataset(spec: str) -> Dataset:
    """A dataset file path, `synthetic:one_step` (built-in one-step task) or `minari:ID_OR_PATH`."""
    if spec.startswith(MINARI_PREFIX):
        return _load_minari(spec[len(MINARI_PREFIX):])
    if spec.startswith(SYNTHETIC_PREFIX):
        name = spec[len(SYNTHETIC_PREFIX):]
        if name != "one_step":
            raise ValueError(f"config field 'dataset': unknown synthetic dataset {name!r} (known: one_step)")
        return synthetic.one_step_dataset()
    return dataset_lib.load(spec)


def train_from_config(config, workdir: str) -> Dict[str, Any]:
    """Loads `config.dataset` and trains on it in `workdir` (resuming if possible)."""
    if not config.get("dataset"):
        raise ValueError("config field 'dataset': empty; give --config.dataset=PATH")
    dataset = load_dataset(config.dataset)
    logging.info("dataset %s: %d transitions, obs %d, act %d", config.dataset, dataset.size, dataset.obs_dim, dataset.act_dim)
    return training.train(config, dataset, workdir, eval_fn=simulator_eval_fn(config))


def simulator_eval_fn(config):
    """Ground-truth evaluation in the simulator that logged the dataset, if one did.

    The dataset's sidecar records the simulator parameters; synthetic or
    imported datasets have none, and then there is no evaluation.
    """
    if config.dataset.startswith((SYNTHETIC_PREFIX, MINARI_PREFIX)) or not config.get("eval_every"):
        return None
    provenance = dataset_lib.read_sidecar(config.dataset)["provenance"]
    if "env_params" not in provenance:
        logging.info("dataset %s records no simulator: no ground-truth evaluation", config.dataset)
        return None
    from jaxmtf import evaluation
    from jaxmtf.data import collect

    env_params = collect.env_params_from_dict(provenance["env_params"])
    return evaluation.make_eval_fn(env_params, int(config.eval_users), float(config.get("eval_discount", 0.99)))


class _DropOrbaxInfo:
    """A logging filter: orbax logs several INFO lines per checkpoint; keep its warnings."""

    def filter(self, record) -> bool:
        return record.levelno >= 30 or "orbax" not in record.pathname


def quiet_orbax_logs() -> None:
    """Hides orbax's INFO lines on the absl handler (launchers call this)."""
    import logging as std_logging

    logging.get_absl_handler().addFilter(_DropOrbaxInfo())
    std_logging.getLogger().addFilter(_DropOrbaxInfo())


def search_static(config) -> Dict[str, Any]:
    """CEM over static fusion vectors; the winner with its evaluation (JSON-ready)."""
    import jax

    from jaxmtf import evaluation
    from jaxmtf.data import collect
    from jaxmtf.sim import env as sim_env
    from jaxmtf.sim import policies, static_search

    env_params = collect.env_params_from_config(config)
    k_search, k_eval = jax.random.split(jax.random.PRNGKey(config.seed))
    action, history = static_search.search_static_weights(
        k_search, env_params, num_generations=config.num_generations, population=config.population,
        num_elite=config.num_elite, num_users=config.num_users, num_heldout_users=config.num_heldout_users,
        init_std=config.init_std,
    )
    powers, biases = sim_env.fusion_from_action(action, env_params)
    value = (
        evaluation.evaluate_policy(k_eval, env_params, policies.fixed_policy().apply, action, config.eval_users, config.eval_discount)
        if config.eval_users > 0
        else None
    )
    return {
        "action": action.tolist(),
        "powers": dict(zip(env_params.task_names, powers.tolist())),
        "biases": dict(zip(env_params.task_names, biases.tolist())),
        "heldout_return": float(history["best_score"]),
        "evaluation": value,
        "history": {k: jax.device_get(v).tolist() for k, v in history.items() if k != "heldout_key"},
        "env_params": collect.env_params_to_dict(env_params),
    }


def run_demo(config, workdir: str) -> str:
    """The README's main job; returns the results table (markdown) also written to workdir."""
    import os

    import jax
    import numpy as np

    from jaxmtf import evaluation
    from jaxmtf import rundir
    from jaxmtf.data import collect
    from jaxmtf.sim import env as sim_env
    from jaxmtf.sim import policies

    os.makedirs(workdir, exist_ok=True)
    import ml_collections

    unlocked = lambda c: ml_collections.ConfigDict(c.to_dict())
    collect_config = unlocked(config.collect)
    collect_config.seed = config.seed
    logging.info("1/4 collecting the %s dataset (%d sessions)", collect_config.pipeline, collect_config.num_users)
    data_path, provenance = collect.collect_and_save(collect_config, os.path.join(workdir, "data", f"{collect_config.pipeline}.npz"))
    env_params = collect.env_params_from_dict(provenance["env_params"])

    logging.info("2/4 searching the best static fusion weights (CEM)")
    static_config = unlocked(config.static)
    static_config.seed, static_config.env = config.seed + 1, dict(collect_config.env)
    static_config.eval_users = 0  # the winner is scored below, on the table's users
    static = search_static(static_config)
    rundir.write_json(os.path.join(workdir, "static_weights.json"), static)

    train_config = unlocked(config.train)
    train_config.dataset, train_config.seed = data_path, config.seed
    logging.info("3/4 training %s for %d seeds x %d updates", train_config.algo, train_config.num_seeds, train_config.num_updates)
    summary = train_from_config(train_config, os.path.join(workdir, "train"))

    logging.info("4/4 scoring every policy on the same %d fresh users", config.eval_users)
    key = jax.random.PRNGKey(config.seed + 2)
    rows = []
    fixed = policies.fixed_policy().apply
    behaviour_policy, behaviour_params, _ = collect.behaviour(collect_config, env_params, jax.random.PRNGKey(config.seed))
    named = [
        (f"behaviour ({collect_config.pipeline}, logged the data)", behaviour_policy.apply, behaviour_params),
        ("production baseline weights", fixed, sim_env.baseline_action(env_params)),
        ("best static weights (CEM)", fixed, np.asarray(static["action"], np.float32)),
        ("hand-written state-dependent (switch)", policies.bounce_switch_policy(env_params).apply,
         policies.default_switch_params(env_params)),
    ]
    for name, policy, params in named:
        rows.append((name, evaluation.evaluate_policy(key, env_params, policy, params, config.eval_users, config.eval_discount)))

    evaluator = evaluation.make_agent_evaluator(summary["agent"], env_params, config.eval_users, config.eval_discount)
    learned = jax.device_get(evaluator(summary["state"].agent, key))
    seeds = [train_config.seed + i for i in range(train_config.num_seeds)]
    for i, seed in enumerate(seeds):
        rows.append((f"{train_config.algo} seed {seed}", {k: float(v[i, 0]) for k, v in learned.items()}))
    returns = learned["undiscounted_return"][:, 0]
    across = {k: float(np.mean(v[:, 0])) for k, v in learned.items()}
    across["undiscounted_return_ci95"] = float(ci95_halfwidth(np.std(returns, ddof=1), len(returns))) if len(returns) > 1 else float("nan")
    rows.append((f"{train_config.algo} mean over {len(seeds)} seeds (CI over seeds)", across))

    table = _results_table(rows, env_params.task_names[:2])
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(table + "\n")
    rundir.write_json(os.path.join(workdir, "results.json"), {name: values for name, values in rows})
    return table


def _results_table(rows, tasks) -> str:
    header = "| policy | return (undiscounted) | 95% CI | discounted return | session length | " + " | ".join(f"{t} rate" for t in tasks) + " |"
    lines = [header, "|" + " --- |" * (5 + len(tasks))]
    for name, v in rows:
        cells = [f"{v['undiscounted_return']:.1f}", f"± {v['undiscounted_return_ci95']:.1f}", f"{v['discounted_return']:.1f}",
                 f"{v['session_length']:.1f}"] + [f"{v[f'rate_{t}']:.3f}" for t in tasks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
