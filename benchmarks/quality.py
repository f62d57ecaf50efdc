"""Quality of every algorithm on simulator datasets, scored by ground truth.

    python benchmarks/quality.py --out=benchmarks/results/quality_cpu.json

For each dataset (random, mixed, expert by default: collected in the
simulator with jaxmtf.data.collect) and each algorithm, `num_seeds` seeds are
trained in one vmapped program; every trained policy is then rolled out on
the same fresh users as the reference policies. Scores are normalised like
D4RL's: 0 = the uniform random policy, 100 = the expert (the hand-written
state-dependent policy that logged the expert data). Mean and 95% CI over
seeds (Student-t, df = seeds - 1: a handful of seeds).

CPU budget: the defaults cut network widths and sample counts (flags below)
so the whole table fits in about an hour on 2 cores; the table records the
settings used. The algorithms' own defaults are the launch configs'.
"""
import argparse
import importlib
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxmtf.configs.collect import base as collect_base  # noqa: E402
from jaxmtf.core import evaluation
from jaxmtf.data import collect  # noqa: E402
from jaxmtf.sim import policies  # noqa: E402
from jaxmtf.sim.mtf import env as sim_env  # noqa: E402
from jaxmtf.sim.mtf import policies as mtf_policies
from jaxmtf.stats import ci95_label, mean_ci95  # noqa: E402
from jaxmtf.workflows import pipeline  # noqa: E402

# Per-algorithm cuts for a CPU run (the references' values are far costlier on a CPU).
CPU_CUTS = {
    "bcq": {"vae_hidden_dims": (256, 256), "num_act_samples": 10},
    "uwac": {"vae_hidden_dims": (256, 256), "num_dropout_samples": 4, "num_eval_actions": 4},
}


def collect_dataset(pipeline: str, num_users: int, out_dir: str, seed: int):
    path = os.path.join(out_dir, f"{pipeline}.npz")
    if not os.path.exists(path):
        config = collect_base.get_base_config(pipeline)
        config.num_users, config.seed = num_users, seed
        collect.collect_and_save(config, path)
    return path


def train_and_score(algo, dataset_path, args, env_params, key):
    config = importlib.import_module(f"jaxmtf.configs.{algo}").get_config()
    config.dataset = dataset_path
    config.num_seeds, config.num_updates, config.chunk_size = args.num_seeds, args.num_updates, args.chunk_size
    config.eval_every, config.checkpoint_every = 0, 0
    for name in list(config.agent.keys()):
        if name.endswith("_hidden_dims") and args.width:
            config.agent[name] = tuple(args.width for _ in config.agent[name])
    for name, value in CPU_CUTS.get(algo, {}).items() if args.cpu_cuts else ():
        config.agent[name] = value
    for name in ("warmup", "policy_eval_start"):  # BC-only warm-ups scaled to the shorter runs
        if name in config.agent:
            config.agent[name] = min(int(config.agent[name]), args.num_updates // 10)
    workdir = os.path.join(args.work_dir, f"{algo}-{os.path.basename(dataset_path)[:-4]}")
    start = time.time()
    summary = pipeline.train_from_config(config, workdir)
    seconds = time.time() - start
    evaluator = evaluation.make_agent_evaluator(summary["agent"], env_params, args.eval_users, 0.99)
    scores = jax.device_get(evaluator(summary["state"].agent, key))
    # Every setting that differs from the reference's, the scaled warm-ups included.
    recorded = list(CPU_CUTS.get(algo, {})) + [n for n in config.agent if n.endswith("_hidden_dims")]
    recorded += [n for n in ("warmup", "policy_eval_start") if n in config.agent]
    settings = {k: config.agent[k] for k in recorded}
    return scores["undiscounted_return"][:, 0], scores["overestimation"][:, 0], seconds, settings


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algos", default="ddpg,td3,td3_bc,bcq,cql,uwac")
    parser.add_argument("--datasets", default="random,mixed,expert")
    parser.add_argument("--num_users", type=int, default=2000, help="logged sessions per dataset")
    parser.add_argument("--num_seeds", type=int, default=5)
    parser.add_argument("--num_updates", type=int, default=10_000)
    parser.add_argument("--chunk_size", type=int, default=1_000)
    parser.add_argument("--width", type=int, default=128, help="hidden width of every network (0 = config's)")
    parser.add_argument("--cpu_cuts", type=int, default=1, help="apply CPU_CUTS (BCQ/UWAC sample counts)")
    parser.add_argument("--eval_users", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work_dir", default="runs/quality")
    parser.add_argument("--out", default="")
    args = parser.parse_args()

    env_params = sim_env.default_params()
    key = jax.random.PRNGKey(args.seed + 7)
    fixed_apply = policies.fixed_policy().apply
    uniform = policies.uniform_policy(sim_env.act_dim(env_params))
    reference = {
        "random": evaluation.evaluate_policy(key, env_params, uniform.apply, None, args.eval_users),
        "expert": evaluation.evaluate_policy(key, env_params, mtf_policies.bounce_switch_policy(env_params).apply,
                                             mtf_policies.default_switch_params(env_params), args.eval_users),
        "baseline": evaluation.evaluate_policy(key, env_params, fixed_apply, sim_env.baseline_action(env_params),
                                               args.eval_users),
    }
    low, high = reference["random"]["undiscounted_return"], reference["expert"]["undiscounted_return"]
    normalise = lambda x: 100.0 * (np.asarray(x) - low) / (high - low)
    print(json.dumps({k: round(v["undiscounted_return"], 2) for k, v in reference.items()}), flush=True)

    rows = []
    for pipeline_name in args.datasets.split(","):
        path = collect_dataset(pipeline_name, args.num_users, os.path.join(args.work_dir, "data"), args.seed)
        for algo in args.algos.split(","):
            returns, overestimation, seconds, settings = train_and_score(algo, path, args, env_params, key)
            score_mean, score_ci95 = mean_ci95(normalise(returns), over="seeds")
            row = {
                "dataset": pipeline_name, "algo": algo, "score_mean": score_mean,
                "score_ci95": score_ci95, "score_ci95_over": ci95_label("seeds", len(returns)),
                "return_per_seed": returns.tolist(), "overestimation_mean": float(overestimation.mean()),
                "train_seconds": round(seconds, 1), "settings": settings,
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    result = {"reference_returns": reference, "args": vars(args), "rows": rows}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    print(f"Normalised score, mean ± {ci95_label('seeds', args.num_seeds)}:")
    print("| dataset | " + " | ".join(args.algos.split(",")) + " |")
    print("| --- |" + " --- |" * len(args.algos.split(",")))
    for pipeline_name in args.datasets.split(","):
        cells = [f"{r['score_mean']:.1f} ± {r['score_ci95']:.1f}" for r in rows if r["dataset"] == pipeline_name]
        print(f"| {pipeline_name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
