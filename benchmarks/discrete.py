"""Discrete track: DQN, Double DQN, CQL-DQN and discrete BCQ on notification data from two behaviour policies.

    python benchmarks/discrete.py --out=benchmarks/results/discrete_cpu.json

For each behaviour (`epsilon_greedy`: the rule or, with probability 0.3, a
uniform count; `softmax`: counts near the rule's, temperature 1) a dataset
of `--num_users` users is collected in the notification simulator; each
agent trains `--num_seeds` seeds in one program (launch.train's path) and
is scored on the same fresh simulated users (its true value), beside the
behaviour policy's value. Then every OPE estimator (FQE, the IS family,
doubly robust, marginalised IS) evaluates the trained agents and the rule
from that dataset, each estimate beside the truth.

Scaled to the task (and to a shared 2-core CPU), each for its reason:
- target_update_interval 500 (d3rlpy: 8000): a run of 10k updates would
  copy its target once; 500 gives 20 copies, about the horizon's worth of
  value propagation (30 days, gamma 0.99).
- learning rate 3e-4 (d3rlpy: 6.25e-5, tuned for Atari runs of millions of
  updates), batch 32 and 256-256 networks as d3rlpy.
- FQE of 64-64, 4000 updates, one seed; 200 bootstrap replicates.
The output records every setting used.
"""
import argparse
import importlib
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxmtf.configs import ope as ope_config  # noqa: E402
from jaxmtf.configs.collect import notifications_epsilon_greedy, notifications_softmax  # noqa: E402
from jaxmtf.data import collect  # noqa: E402
from jaxmtf.runs import rundir  # noqa: E402
from jaxmtf.workflows import pipeline

AGENTS = ("dqn", "double_dqn", "cql_dqn", "bcq_discrete")
BEHAVIOURS = {"epsilon_greedy": notifications_epsilon_greedy, "softmax": notifications_softmax}
OPE_ESTIMATORS = ("fqe", "tis", "pdis", "wis", "wpdis", "dr", "wdr", "mis")


def collect_dataset(name, args):
    path = os.path.join(args.work_dir, "data", f"{name}.npz")
    if not os.path.exists(path):
        config = BEHAVIOURS[name].get_config()
        config.num_users, config.eval_users, config.seed = args.num_users, args.eval_users, args.seed
        collect.collect_and_save(config, path)
    return path


def train(algo, dataset_path, name, args):
    """`args.num_seeds` seeds of `algo` in one program; returns (run dir, per-seed final evaluation, seconds)."""
    config = importlib.import_module(f"jaxmtf.configs.{algo}").get_config()
    config.dataset, config.num_seeds, config.num_updates = dataset_path, args.num_seeds, args.updates
    config.chunk_size = 1_000
    config.eval_every = config.checkpoint_every = args.updates  # the final evaluation and checkpoint
    config.eval_users = args.eval_users
    config.agent.learning_rate = args.lr
    config.agent.target_update_interval = args.target_interval
    workdir = os.path.join(args.work_dir, f"{algo}-{name}")
    start = time.time()
    summary = pipeline.train_from_config(config, workdir)
    seconds = time.time() - start
    evals = [r for r in rundir.read_jsonl(os.path.join(workdir, rundir.EVAL_FILE)) if r["step"] == args.updates]
    return workdir, evals, seconds, summary.get("updates_per_second_per_run")


def ope(dataset_path, policies, name, args):
    config = ope_config.get_config()
    config.dataset, config.policies = dataset_path, ",".join(policies)
    config.bootstrap_replicates, config.eval_users = args.replicates, args.eval_users
    fc = config.fqe
    fc.num_seeds, fc.num_updates, fc.hidden_dims = 1, args.fqe_updates, (64, 64)
    fc.checkpoint_every = args.fqe_updates
    return pipeline.ope_from_config(config, os.path.join(args.work_dir, f"ope-{name}"))


def summarise_agent(evals):
    values = np.array([r["discounted_return"] for r in evals])
    undiscounted = np.array([r["undiscounted_return"] for r in evals])
    return {"discounted_mean": float(values.mean()), "discounted_std_over_seeds": float(values.std(ddof=1)),
            "undiscounted_mean": float(undiscounted.mean()), "per_seed_discounted": values.tolist(),
            "overestimation_mean": float(np.mean([r["overestimation"] for r in evals])),
            "rate_disable": float(np.mean([r["rate_disable"] for r in evals])),
            "rate_churn": float(np.mean([r["rate_churn"] for r in evals]))}


def ope_table(rows):
    """Per (policy group: algo or rule, estimator): the mean estimate and mean truth over its policies."""
    out = {}
    for row in rows:
        group = row.get("algo", row["policy"])
        entry = out.setdefault(group, {}).setdefault(row["estimator"], {"estimates": [], "truths": []})
        entry["estimates"].append(row["estimate"])
        entry["truths"].append(row["true_discounted"])
    return {g: {e: {"estimate": float(np.mean(v["estimates"])), "true": float(np.mean(v["truths"]))}
                for e, v in by.items()} for g, by in out.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num_users", type=int, default=2000, help="logged users per dataset")
    parser.add_argument("--num_seeds", type=int, default=5)
    parser.add_argument("--updates", type=int, default=10_000)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--target_interval", type=int, default=500)
    parser.add_argument("--fqe_updates", type=int, default=4_000)
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--eval_users", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work_dir", default="runs/discrete")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    start = time.time()
    results = {}
    for name in BEHAVIOURS:
        path = collect_dataset(name, args)
        provenance = json.load(open(path[:-4] + ".json"))["provenance"]
        entry = {"behaviour_value": provenance["behaviour_value"], "num_transitions": provenance["num_transitions"],
                 "agents": {}}
        run_dirs = []
        for algo in AGENTS:
            workdir, evals, seconds, rate = train(algo, path, name, args)
            entry["agents"][algo] = {**summarise_agent(evals), "train_seconds": round(seconds, 1),
                                     "updates_per_second_per_run": rate}
            run_dirs.append(workdir)
            print(json.dumps({name: {algo: entry["agents"][algo]}}), flush=True)
        ope_start = time.time()
        result = ope(path, run_dirs + ["rule"], name, args)
        rows = [r for r in result["rows"] if r["fqe_seed"] is None]
        entry["ope"] = ope_table(rows)
        entry["ope_scores"] = {k: v.get("scores") for k, v in result["report"]["estimators"].items()}
        entry["ope_seconds"] = round(time.time() - ope_start, 1)
        results[name] = entry
    output = {"args": vars(args), "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "total_seconds": round(time.time() - start, 1), "results": results}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        rundir.write_json(args.out, output)  # whole or not at all
    print(markdown(output))


def markdown(output) -> str:
    lines = ["| data | policy | true value (disc.) | seeds sd | " + " | ".join(OPE_ESTIMATORS) + " |",
             "| --- | --- | --- | --- |" + " --- |" * len(OPE_ESTIMATORS)]
    for name, entry in output["results"].items():
        lines.append(f"| {name} | behaviour | {entry['behaviour_value']['discounted_return']:.2f} | |"
                     + " |" * len(OPE_ESTIMATORS))
        for group in list(AGENTS) + ["rule"]:
            agent = entry["agents"].get(group)
            ope_row = entry["ope"][group]
            true = agent["discounted_mean"] if agent else ope_row["fqe"]["true"]
            sd = f"{agent['discounted_std_over_seeds']:.2f}" if agent else ""
            cells = [f"{ope_row[e]['estimate']:.2f}" for e in OPE_ESTIMATORS]
            lines.append(f"| {name} | {group} | {true:.2f} | {sd} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
