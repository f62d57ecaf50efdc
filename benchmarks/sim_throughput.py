"""User-steps per second of the simulator, one jitted rollout per user count.

    python benchmarks/sim_throughput.py [--users 1024,4096,16384,65536] [--steps 100]
    python benchmarks/sim_throughput.py --sequential   # the margin study of benchmarks/simulator.md

Two programs: ``rollout`` (stores the whole trajectory, what data collection
runs) and ``evaluate`` (returns only, what search/evaluation run). Compile is
excluded (a warm-up call with the same shapes), results are blocked on. Prints
a markdown table and writes benchmarks/sim_throughput.json.
"""
import argparse
import json
import os
import time

import jax
import numpy as np

from jaxmtf.sim import policies as P
from jaxmtf.sim.mtf import env as E
from jaxmtf.sim.mtf import policies as mtf_policies
from jaxmtf.sim.rollout import evaluate, rollout
from jaxmtf.stats import ci95_label, paired_difference


def bench(fn, num_users, steps, reps):
    params = E.EnvParams()
    pol = P.fixed_policy().apply
    a = E.baseline_action(params)
    jax.block_until_ready(fn(jax.random.PRNGKey(0), params, pol, a, num_users, steps))  # compile + warm-up
    times = []
    for r in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(jax.random.PRNGKey(r + 1), params, pol, a, num_users, steps))
        times.append(time.perf_counter() - t0)
    best = min(times)
    return num_users * steps / best, best


def sequential(gens=10, pop=64, elite=8, users=500, eval_users=8000):
    """Strong CEM for the best static vector vs the hand-written switch rule, paired users."""
    from jaxmtf.sim.mtf.static_search import search_static_weights
    params = E.EnvParams()
    fixed = P.fixed_policy().apply
    extra = jax.numpy.stack([E.baseline_action(params), E.click_greedy_action(params),
                             E.satisfaction_action(params), jax.numpy.asarray(mtf_policies.PRONE_ACTION),
                             jax.numpy.asarray(mtf_policies.AVERSE_ACTION)])
    t0 = time.perf_counter()
    best, hist = search_static_weights(jax.random.PRNGKey(0), params, num_generations=gens, population=pop,
                                       num_elite=elite, num_users=users, num_heldout_users=4000,
                                       extra_finalists=extra)
    print(f"CEM {gens} gens x {pop} candidates x {users} users (CRN) in {time.perf_counter() - t0:.0f}s")
    print("  per-generation best:", np.round(np.asarray(hist["gen_best_score"]), 1))
    print("  held-out finalists:", np.round(np.asarray(hist["heldout_scores"]), 1))
    print("  best static action:", np.round(np.asarray(best), 3), f"held-out {float(hist['best_score']):.1f}")
    key = jax.random.PRNGKey(2024)
    static = np.asarray(evaluate(key, params, fixed, best, eval_users)["undiscounted"], np.float64)
    sw = mtf_policies.bounce_switch_policy(params)
    switch_params = mtf_policies.default_switch_params(params)
    adapt = np.asarray(evaluate(key, params, sw.apply, switch_params, eval_users)["undiscounted"],
                       np.float64)
    diff, half = paired_difference(adapt, static)  # over the paired users: the normal interval
    print(f"fresh paired users ({eval_users}): static {static.mean():.1f}, switch {adapt.mean():.1f}, "
          f"diff {diff:.1f} ({ci95_label('users', eval_users)}: {diff - half:.1f} .. {diff + half:.1f}), "
          f"relative {diff / static.mean():.1%} (CI {(diff - half) / static.mean():.1%} .. "
          f"{(diff + half) / static.mean():.1%})")
    for name, a in (("click-greedy", E.click_greedy_action(params)), ("satisfaction", E.satisfaction_action(params)),
                    ("baseline", E.baseline_action(params))):
        r = evaluate(key, params, fixed, a, eval_users)
        print(f"  {name}: first-step reward {float(r['first_reward'].mean()):.2f}, "
              f"session return {float(r['undiscounted'].mean()):.1f}, length {float(r['length'].mean()):.1f}")
    traj = rollout(jax.random.PRNGKey(21), params, fixed, E.baseline_action(params), 4000)
    v = np.asarray(traj.valid)
    rates = np.asarray(traj.task_responses).sum((0, 1)) / (v.sum() * params.slate_size)
    print("baseline per-item rates", dict(zip(params.task_names, np.round(rates, 4).tolist())),
          "ratio to KuaiRand", np.round(rates / np.asarray(E.KUAIRAND_RATES), 3).tolist(),
          f"mean session length {v.sum(0).mean():.1f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", default="1024,4096,16384,65536")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sequential", action="store_true", help="run the margin study instead")
    ap.add_argument("--gens", type=int, default=10, help="--sequential: CEM generations")
    ap.add_argument("--pop", type=int, default=64, help="--sequential: CEM population")
    ap.add_argument("--cem_users", type=int, default=500, help="--sequential: users per candidate")
    args = ap.parse_args()
    if args.sequential:
        return sequential(gens=args.gens, pop=args.pop, elite=max(4, args.pop // 8), users=args.cem_users)
    rows = []
    print(f"device: {jax.devices()[0].device_kind}, N=50 candidates, L=6, {args.steps} steps per rollout")
    print("| program | users | user-steps/s | seconds |\n|---|---|---|---|")
    for name, fn in (("evaluate", evaluate), ("rollout", rollout)):
        for u in map(int, args.users.split(",")):
            if name == "rollout" and u * args.steps * 2 * E.obs_dim(E.EnvParams()) * 4 > 4e9:
                continue  # the stored trajectory would not fit comfortably in host memory
            sps, sec = bench(fn, u, args.steps, args.reps)
            rows.append(dict(program=name, users=u, steps=args.steps, user_steps_per_s=sps, seconds=sec))
            print(f"| {name} | {u} | {sps:,.0f} | {sec:.2f} |", flush=True)
    out = os.path.join(os.path.dirname(__file__), "sim_throughput.json")
    with open(out, "w") as f:
        json.dump(dict(device=str(jax.devices()[0]), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
