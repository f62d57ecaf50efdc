"""What the launchers run, importable from a notebook: load a dataset, train from a config, search
the static weights. (The demo, which strings these together, is jaxmtf/workflows/demo.py.)"""
from typing import Any, Dict, List, Optional

import jax
import numpy as np
from absl import logging

from jaxmtf import stats
from jaxmtf.core import evaluation, lifecycle, training
from jaxmtf.core.run_config import ConfigError, reference_scores, validate_config
from jaxmtf.data import collect, synthetic
from jaxmtf.data import dataset as dataset_lib
from jaxmtf.data.minari_import import from_minari  # imports minari (optional) only when called
from jaxmtf.runs import rundir
from jaxmtf.sim import policies
from jaxmtf.sim.mtf import env as sim_env
from jaxmtf.sim.mtf import static_search
from jaxmtf.types import Dataset

SYNTHETIC_PREFIX = "synthetic:"
MINARI_PREFIX = "minari:"
# What a launch can be refused with, each a one-line message naming the field, the value and the expectation.
REFUSALS = lifecycle.REFUSALS + (evaluation.EvaluationError,)


def load_dataset(spec: str) -> Dataset:
    """A dataset file path, `synthetic:one_step` (built-in one-step task) or `minari:ID_OR_PATH`."""
    if spec.startswith(MINARI_PREFIX):
        return from_minari(spec[len(MINARI_PREFIX):])[0]
    if spec.startswith(SYNTHETIC_PREFIX):
        name = spec[len(SYNTHETIC_PREFIX):]
        if name != "one_step":
            raise ConfigError(f"config field 'dataset': got {spec!r}, expected a path, minari:ID or synthetic:one_step")
        return synthetic.one_step_dataset()
    return dataset_lib.load(spec)


def train_from_config(config, workdir: str, stop_after: Optional[int] = None) -> Dict[str, Any]:
    """Loads `config.dataset` and trains on it in `workdir` (resuming if possible); the config is checked
    before the dataset is loaded. `stop_after`: see `training.train`."""
    validate_config(config)
    if not config.get("dataset"):
        raise ConfigError("config field 'dataset': got '', expected a path (give --config.dataset=PATH)")
    dataset = load_dataset(config.dataset)
    logging.info("dataset %s: %d transitions, obs %d, act %d", config.dataset, dataset.size, dataset.obs_dim,
                 dataset.act_dim)
    return training.train(config, dataset, workdir, eval_fn=eval_fn_for(config), stop_after=stop_after,
                          config_checked=True)


def dataset_simulator(spec: str):
    """The simulator parameters a dataset file's sidecar records, or None (synthetic, imported, or not recorded)."""
    if spec.startswith((SYNTHETIC_PREFIX, MINARI_PREFIX)):
        return None
    return collect.simulator_of_provenance(dataset_lib.read_sidecar(spec)["provenance"])


def ope_from_config(config, workdir: str) -> Dict[str, Any]:
    """Loads `config.dataset` and runs every OPE estimator on `config.policies` (jaxmtf.ope.run)."""
    from jaxmtf.ope import run as ope_run
    from jaxmtf.ope.config import validate_ope_config

    validate_ope_config(config)  # before the dataset is read
    if not config.get("dataset"):
        raise ConfigError("config field 'dataset': got '', expected a path (give --config.dataset=PATH)")
    dataset = load_dataset(config.dataset)
    env_params = dataset_simulator(config.dataset)
    if env_params is None:
        logging.info("dataset %s records no simulator: estimates without true values", config.dataset)
    return ope_run.evaluate(config, dataset, env_params, workdir)


def eval_fn_for(config):
    """The training driver's evaluation of `config.dataset`'s policies, or None: a `minari:` dataset's in its
    recovered Gymnasium environment (`gym_evaluation`), a simulator dataset's in its simulator
    (`simulator_eval_fn`)."""
    if config.dataset.startswith(MINARI_PREFIX):
        return minari_eval_fn(config)
    return simulator_eval_fn(config)


def minari_eval_fn(config):
    """`eval_episodes` episodes of every run in the Minari dataset's environment every `eval_every` updates,
    D4RL-normalised with `ref_min_score` / `ref_max_score` when both are given (None when eval_every is 0)."""
    from jaxmtf.core import gym_evaluation

    if not config.get("eval_every"):
        return None
    return gym_evaluation.make_minari_eval_fn(
        config.dataset[len(MINARI_PREFIX):], int(config.get("eval_episodes", 10)),
        float(config.get("eval_discount", 0.99)), reference_scores(config))


def simulator_eval_fn(config):
    """Ground-truth evaluation in the simulator that logged the dataset, if one did.

    The dataset's sidecar records the simulator parameters; synthetic or
    imported datasets have none, and then there is no evaluation.
    """
    if config.dataset.startswith((SYNTHETIC_PREFIX, MINARI_PREFIX)) or not config.get("eval_every"):
        return None
    env_params = dataset_simulator(config.dataset)
    if env_params is None:
        logging.info("dataset %s records no simulator: no ground-truth evaluation", config.dataset)
        return None
    return evaluation.make_eval_fn(env_params, int(config.eval_users), float(config.get("eval_discount", 0.99)))


def search_static(config) -> Dict[str, Any]:
    """CEM over static fusion vectors; the winner with its evaluation (JSON-ready).

    `config.init_at_baseline` starts CEM's mean at the production baseline
    weights and adds them to the finalists, so the winner scores at least
    the baseline on the held-out users (it is the baseline when nothing beat it).
    """
    env_params = collect.env_params_from_config(config)
    k_search, k_eval = jax.random.split(jax.random.PRNGKey(config.seed))
    baseline = sim_env.baseline_action(env_params) if config.get("init_at_baseline", False) else None
    action, history = static_search.search_static_weights(
        k_search, env_params, num_generations=config.num_generations, population=config.population,
        num_elite=config.num_elite, num_users=config.num_users, num_heldout_users=config.num_heldout_users,
        init_std=config.init_std, init_mean=baseline, extra_finalists=None if baseline is None else baseline[None],
    )
    powers, biases = sim_env.fusion_from_action(action, env_params)
    value = (
        evaluation.evaluate_policy(k_eval, env_params, policies.fixed_policy().apply, action, config.eval_users,
                                   config.eval_discount)
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


def closing_lines(summary: Dict[str, Any], workdir: str, metric: str = "undiscounted_return") -> List[str]:
    """The end of a training run, one line per setting: the final evaluation's mean over seeds with its
    Student-t 95% CI, the best evaluation's mean (and its update), and the diverged runs."""
    records = rundir.read_run_records(workdir, rundir.EVAL_FILE)
    diverged, labels = {}, {}
    for entry in summary.get("diverged_at_step", []):  # one per run: its labels (seed, setting, swept values)
        setting = entry["hparam_index"]
        diverged[setting] = diverged.get(setting, 0) + (entry["diverged_at_step"] is not None)
        labels[setting] = ", ".join(f"{k}={v}" for k, v in sorted(entry.items())
                                    if k not in ("seed", "hparam_index", "diverged_at_step"))
    lines = [f"finished at update {summary['step']}; {metric} per setting, mean ± 95% CI (Student-t over seeds):"]
    for setting in sorted({r.get("hparam_index", 0) for r in records} | set(diverged)):
        rows = [r for r in records if r.get("hparam_index", 0) == setting and r.get(metric) is not None]
        label = labels.get(setting, "")
        by_step = {}
        for r in rows:
            by_step.setdefault(r["step"], []).append(float(r[metric]))
        if not by_step:
            lines.append(f"  setting {setting}{f' ({label})' if label else ''}: no evaluation logged; "
                         f"{diverged.get(setting, 0)} diverged runs")
            continue
        last = np.asarray(by_step[max(by_step)])
        best_step = max(by_step, key=lambda k: np.mean(by_step[k]))
        half = stats.ci95_halfwidth(last.std(ddof=1), last.size, over="seeds") if last.size > 1 else float("nan")
        interval = f" ± {half:.2f}" if np.isfinite(half) else " (one seed: no interval)"
        lines.append(f"  setting {setting}{f' ({label})' if label else ''}: final {last.mean():.2f}{interval} "
                     f"at update {max(by_step)}, best {np.mean(by_step[best_step]):.2f} at update {best_step}, "
                     f"{diverged.get(setting, 0)} diverged of {last.size + diverged.get(setting, 0)} runs")
    return lines

