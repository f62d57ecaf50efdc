"""Every OPE estimator scored against simulator truth (DOPE's metrics), on two behaviour datasets.

    python benchmarks/ope_validation.py --out=benchmarks/results/ope_validation_cpu.json

Policies of clearly different value: uniform random, the production
baseline, a static CEM vector, the switch rule and a noisy copy of it, and
TD3+BC, BCQ and CQL trained on the `mixed` data at two budgets (two
checkpoints of one run). Each is evaluated by every estimator from the
`mixed` and the `exploration_box` datasets and rolled out in the simulator
for its true discounted return. Per estimator and dataset: relative error,
Spearman's rank correlation with the truth, regret@1 and @3 of the policy
it would pick, and the share of 95% intervals that cover the true value.

Issue 20's rows come too: NCIS (`--ncis_cap`), MTF-GAUC (`--gauc_users`,
`--gauc_weight`; a ranking metric in [0, 1], so read its Spearman and
regret, not its relative error) and, with `--model_based`, model-based OPE
(`--model_members`, `--model_updates`, `--model_horizon`).

Variants (benchmarks/README.md, "2026-12-07"): `--target_sigma` (the
smoothing of the deterministic targets), `--datasets` (a subset, or "" for
none), `--truth_draws N` (the truth's own rank stability: Spearman between
N independent draws of `--eval_users` users). The OPE run directories are
per dataset and smoothing (`ope-DATASET-sigmaS`): FQE resumes there.

CPU budget: the defaults cut network widths, run lengths and FQE's size
(flags below) so the whole benchmark fits on a shared 2-core machine; the
output records every setting used.
"""
import argparse
import importlib
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.quality import collect_dataset  # noqa: E402
from jaxmtf.configs import ope as ope_config  # noqa: E402
from jaxmtf.configs import search_static as static_config  # noqa: E402
from jaxmtf.data import dataset as dataset_lib  # noqa: E402
from jaxmtf.ope import run as ope_run  # noqa: E402
from jaxmtf.ope import scoring, targets  # noqa: E402
from jaxmtf.runs import rundir  # noqa: E402
from jaxmtf.workflows import pipeline

TRAINED = ("td3_bc", "bcq", "cql")
METRICS = ("relative_error", "spearman", "regret@1", "regret@3", "coverage")
# Two deliberately bad static vectors, so that the true values spread (the others lie within ~15%):
# weight on clicks only (clickbait burns the averse majority) and every weight at its minimum.
BAD_VECTORS = {"click_only": (1.0, -1.0, -1.0, -1.0, -1.0, -1.0), "all_minimum": (-1.0,) * 6}


def static_weights(args) -> str:
    path = os.path.join(args.work_dir, "static", "static_weights.json")
    if not os.path.exists(path):
        config = static_config.get_config()
        config.num_generations, config.population, config.num_users = 6, 32, 300
        config.num_heldout_users, config.eval_users = 1000, 0
        os.makedirs(os.path.dirname(path), exist_ok=True)
        rundir.write_json(path, pipeline.search_static(config))
    return path


def bad_vectors(args):
    paths = []
    for name, action in BAD_VECTORS.items():
        path = os.path.join(args.work_dir, "static_" + name, "static_weights.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        rundir.write_json(path, {"action": list(action)})
        paths.append(path)
    return paths


def close_scores(rows, report):
    """DOPE's metrics over the policies that are not BAD_VECTORS: can the estimator rank close policies?"""
    out = {}
    for estimator in report["estimators"]:
        chosen = [r for r in rows if r["estimator"] == estimator and r["fqe_seed"] is None  # as ope_report
                  and not r["policy"].startswith(tuple(f"static:static_{n}" for n in BAD_VECTORS))]
        out[estimator] = scoring.score_estimator(
            [r["estimate"] for r in chosen], [r["true_discounted"] for r in chosen],
            [r["ci_low"] for r in chosen], [r["ci_high"] for r in chosen])
    return out


def train(algo: str, dataset_path: str, args) -> str:
    """One seed of `algo`, checkpointed at a fifth of the budget and at the end; returns its run dir."""
    config = importlib.import_module(f"jaxmtf.configs.{algo}").get_config()
    config.dataset, config.num_seeds, config.num_updates = dataset_path, 1, args.train_updates
    config.chunk_size = config.checkpoint_every = args.train_updates // 5
    config.eval_every, config.keep_checkpoints = 0, 5
    for name in list(config.agent.keys()):
        if name.endswith("_hidden_dims"):
            config.agent[name] = (args.width, args.width)
    for name in ("warmup", "policy_eval_start"):  # BC-only warm-ups scaled to the shorter runs
        if name in config.agent:
            config.agent[name] = min(int(config.agent[name]), args.train_updates // 10)
    if algo == "bcq":
        config.agent.num_act_samples = 10  # the quality benchmark's CPU cut
    workdir = os.path.join(args.work_dir, f"{algo}-mixed")
    pipeline.train_from_config(config, workdir)
    return workdir


def ope(dataset_path: str, policies, args, name: str):
    config = ope_config.get_config()
    config.dataset, config.policies = dataset_path, ",".join(policies)
    config.bootstrap_replicates, config.eval_users = args.replicates, args.eval_users
    config.target_sigma = args.target_sigma
    fc = config.fqe
    fc.num_seeds, fc.num_updates, fc.hidden_dims = args.fqe_seeds, args.fqe_updates, (args.fqe_width, args.fqe_width)
    fc.learning_rate, fc.target_update_interval = args.fqe_lr, args.fqe_target_interval
    fc.checkpoint_every = args.fqe_updates
    # issue 20's estimators (the report's table lists every estimator it scored)
    config.ncis_cap, config.gauc_users, config.gauc_weight = args.ncis_cap, args.gauc_users, args.gauc_weight
    mb = config.model_based
    mb.enabled, mb.num_members, mb.horizon = args.model_based, args.model_members, args.model_horizon
    mb.num_updates = mb.checkpoint_every = args.model_updates
    mb.chunk_size = min(mb.chunk_size, args.model_updates)
    start = time.time()
    result = pipeline.ope_from_config(config, os.path.join(args.work_dir, f"ope-{name}-sigma{args.target_sigma:g}"))
    return result, time.time() - start, config.to_dict()


def truth_stability(dataset_path: str, policies, args):
    """The truth's own rank stability: every policy's true value (as the rows score it) on `--truth_draws`
    independent draws of `--eval_users` users (common users across policies within a draw, as in the OPE run);
    Spearman between every two draws. An estimator's Spearman is only meaningful below this ceiling."""
    import jax
    import numpy as np
    from scipy.stats import spearmanr

    config = ope_config.get_config()
    config.policies, config.target_sigma = ",".join(policies), args.target_sigma
    data, env_params = dataset_lib.load(dataset_path), pipeline.dataset_simulator(dataset_path)
    groups = targets.load_policies(config.policies, env_params, config, data.obs_dim, data.act_dim, data.num_actions)
    draws = []
    for draw in range(args.truth_draws):
        key = jax.random.PRNGKey(1000 + draw)
        draws.append(np.concatenate([np.asarray(targets.true_values(g, env_params, key, args.eval_users,
                                                                     float(config.discount))["true_discounted"])
                                     for g in ope_run.evaluated_groups(groups, config, data.num_actions)]))
    pairs = [(i, j) for i in range(len(draws)) for j in range(i + 1, len(draws))]
    return {"values": [d.tolist() for d in draws], "users_per_draw": args.eval_users,
            "spearman_between_draws": [float(spearmanr(draws[i], draws[j]).statistic) for i, j in pairs]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num_users", type=int, default=1000, help="logged sessions per dataset")
    parser.add_argument("--train_updates", type=int, default=10_000, help="the larger training budget")
    parser.add_argument("--width", type=int, default=64, help="hidden width of the trained agents")
    parser.add_argument("--fqe_updates", type=int, default=10_000)
    parser.add_argument("--fqe_seeds", type=int, default=1)
    parser.add_argument("--fqe_width", type=int, default=128)
    parser.add_argument("--fqe_lr", type=float, default=3e-4)
    parser.add_argument("--fqe_target_interval", type=int, default=20)
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--eval_users", type=int, default=2000)
    parser.add_argument("--target_sigma", type=float, default=ope_config.get_config().target_sigma,
                        help="std of the truncated Gaussian that smooths the deterministic targets")
    parser.add_argument("--datasets", default="mixed,exploration_box",
                        help="comma-separated, of these two (empty: none)")
    parser.add_argument("--truth_draws", type=int, default=0,
                        help="also measure the truth's rank stability over this many independent user draws")
    parser.add_argument("--ncis_cap", type=float, default=10.0, help="NCIS: cap of every importance ratio")
    parser.add_argument("--gauc_users", type=int, default=200, help="MTF-GAUC: simulated users (0 = no rows)")
    parser.add_argument("--gauc_weight", default="impressions", choices=("impressions", "reward", "uniform"))
    parser.add_argument("--model_based", action="store_true", help="add the model-based OPE rows")
    parser.add_argument("--model_members", type=int, default=3)
    parser.add_argument("--model_updates", type=int, default=2000, help="a multiple of 1000, or below 1000")
    parser.add_argument("--model_horizon", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work_dir", default="runs/ope_validation")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    start = time.time()

    data = {name: collect_dataset(name, args.num_users, os.path.join(args.work_dir, "data"), args.seed)
            for name in ("mixed", "exploration_box")}
    policies = ["random", "baseline", static_weights(args), "switch", "noisy_switch"] + bad_vectors(args)
    for algo in TRAINED:
        workdir = train(algo, data["mixed"], args)
        policies += [f"{workdir}@{args.train_updates // 5}", f"{workdir}@{args.train_updates}"]
    prepared = time.time() - start

    results, stability = {}, None
    if args.truth_draws > 1:
        stability = truth_stability(data["mixed"], policies, args)
        print(json.dumps({"truth_stability": stability["spearman_between_draws"]}), flush=True)
    for name in [n for n in args.datasets.split(",") if n]:
        path = data[name]
        result, seconds, config = ope(path, policies, args, name)
        rows = [r for r in result["rows"] if r["fqe_seed"] is None]
        results[name] = {"report": result["report"], "close_scores": close_scores(rows, result["report"]),
                         "seconds": round(seconds, 1), "config": config,
                         "num_transitions": dataset_lib.load(path).size, "rows": rows}
        print(json.dumps({name: {k: v.get("scores") for k, v in result["report"]["estimators"].items()}}), flush=True)
    output = {"args": vars(args), "cpu": platform.processor() or platform.machine(),
              "prepare_seconds": round(prepared, 1), "total_seconds": round(time.time() - start, 1),
              "results": results, **({"truth_stability": stability} if stability else {})}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        rundir.write_json(args.out, output)  # whole or not at all
    print(markdown(output))


def markdown(output) -> str:
    lines = ["| dataset | estimator | " + " | ".join(METRICS) + " | Spearman, close policies |",
             "| --- | --- |" + " --- |" * (len(METRICS) + 1)]
    for name, result in output["results"].items():
        for estimator, entry in sorted(result["report"]["estimators"].items()):
            cells = [f"{entry['scores'][m]:.3f}" for m in METRICS]
            close = result["close_scores"][estimator]["spearman"]
            lines.append(f"| {name} | {estimator} | " + " | ".join(cells) + f" | {close:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
