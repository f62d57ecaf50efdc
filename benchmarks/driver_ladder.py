"""From the minimal JAX TD3+BC loop to the training driver's chunk, one step at a time.

    python benchmarks/driver_ladder.py --window_seconds=10 --out=benchmarks/results/driver_ladder_cpu.json

Every rung adds one thing the driver does to the rung before it, and all rungs
are timed in the same run, at the same chunk size, on the same data (one-step
dataset, obs 32, act 10, 100,000 rows; batch 256; 256-256 networks):

  yardstick          benchmarks/yardstick.py: sfujim's update in one lax.scan, nothing else
  agent update       jaxmtf's TD3+BC agent.update in the same bare scan (its losses, networks and
                     optimiser), the batch sampled as the driver does, hparams constants, metrics dropped
  + metrics          the update's metrics stacked by the scan and reduced with nanmean at the end
  + divergence check the driver's check: the trained parameters after every update, the whole
                     state once more at the chunk's end (jaxmtf.core.chunk.parameters_finite)
  + traced hparams   the hparams passed in as arrays rather than folded constants
  + size-1 axes      vmapped setting and seed axes of size 1 (what the driver compiled before)
  driver chunk       jaxmtf.core.chunk.make_chunk_fn itself: size-1 axes taken out, the state donated

`--old_check` adds a rung with the check the driver had before (every float
leaf of the state after every update) in place of the chunk-end check.
Beside each rate: XLA's instruction and fusion counts of the compiled program
(its optimised HLO text), and the CPU kind and matmul peak of the same run.
"""
import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import yardstick  # noqa: E402
from throughput import machine_info, matmul_peak_flops  # noqa: E402
from timing import best_rates_interleaved, chunk_caller  # noqa: E402

from jaxmtf.agents import make_agent  # noqa: E402
from jaxmtf.configs import td3_bc  # noqa: E402
from jaxmtf.core import chunk, run_config  # noqa: E402
from jaxmtf.data import one_step_dataset  # noqa: E402

OBS_DIM, ACT_DIM, BATCH = 32, 10, 256


def hlo_counts(compiled) -> dict:
    """Instructions and fusions in the optimised HLO of a compiled program (all computations)."""
    lines = [line.strip() for line in compiled.as_text().splitlines()]
    instructions = [line for line in lines if " = " in line and not line.startswith(("HloModule", "//"))]
    return {"hlo_instructions": len(instructions),
            "hlo_fusions": sum(" fusion(" in line for line in instructions)}


def bare_scan(agent, chunk_size, keep_metrics, check):
    """One run's chunk as a bare scan: (state, key, data, hparams) -> (state, key, metrics).

    check: None, "params" (the driver's: the trained parameters after every update, the whole state at
    the end) or "every_leaf" (the driver's check before: every float leaf after every update).
    """

    def run(state, key, data, hparams):
        def one_update(carry, _):
            state, key, diverged_at = carry
            key, k_batch, k_update = jax.random.split(key, 3)
            idx = jax.random.randint(k_batch, (BATCH,), 0, data.rewards.shape[0])
            state, metrics = agent.update(state, jax.tree.map(lambda x: x[idx], data), k_update, hparams)
            if check:
                finite = chunk.all_finite(state) if check == "every_leaf" else chunk.parameters_finite(state)
                diverged_at = chunk.mark_divergence(diverged_at, finite, state.step)
            return (state, key, diverged_at), (metrics if keep_metrics else None)

        carry = (state, key, jnp.int32(chunk.NOT_DIVERGED))
        (state, key, diverged_at), metrics = jax.lax.scan(one_update, carry, None, length=chunk_size)
        if check == "params":
            diverged_at = chunk.mark_divergence(diverged_at, chunk.all_finite(state), state.step)
        if keep_metrics:
            metrics = jax.tree.map(lambda m: jnp.nanmean(m, axis=0), metrics)
        return state, key, {"diverged_at": diverged_at, **(metrics or {})}

    return run


def rungs(agent, hparams, data, chunk_size, old_check):
    """[(name, jitted fn, its arguments, how many of them it carries)] from the yardstick to the driver."""
    constants = {k: jnp.float32(v[0]) for k, v in hparams.items()}
    one = agent.init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    init, train = yardstick.make(OBS_DIM, ACT_DIM, BATCH)
    arrays = {k: getattr(data, k) for k in ("observations", "actions", "rewards", "next_observations", "terminals")}
    out = [("yardstick", jax.jit(lambda s, d: (train(s, d, chunk_size),)), (init(key), arrays), 1)]
    ladder = [("agent update", False, None), ("+ metrics", True, None), ("+ divergence check", True, "params")]
    if old_check:
        ladder.append(("+ metrics, the old check instead (every leaf, every update)", True, "every_leaf"))
    for name, keep, check in ladder:
        run = bare_scan(agent, chunk_size, keep, check)
        out.append((name, jax.jit(lambda s, k, d, run=run: run(s, k, d, constants)), (one, key, data), 2))
    run = bare_scan(agent, chunk_size, True, "params")
    out.append(("+ traced hparams", jax.jit(run), (one, key, data, constants), 2))
    axes = chunk.common.agent_axes(one)
    over_h = jax.vmap(run, in_axes=(axes, 0, None, 0), out_axes=(axes, 0, 0))
    over_s = jax.vmap(over_h, in_axes=(axes, 0, None, None), out_axes=(axes, 0, 0))
    state = chunk.init_run_state(agent, [0], 1)
    out.append(("+ vmapped setting and seed axes of size 1", jax.jit(over_s),
                (state.agent, state.key, data, hparams), 2))
    out.append(("driver chunk (size-1 axes taken out, state donated)", chunk.make_chunk_fn(agent, BATCH, chunk_size),
                (state, data, hparams), 1))
    return out


def time_rungs(rung_list, chunk_size, window_seconds, rounds):
    """Each rung's HLO counts and best rate, the rungs timed in turn (timing.best_rates_interleaved)."""
    callers, rows = [], []
    for name, fn, args, num_carried in rung_list:
        compiled = fn.lower(*args).compile()  # compiled once: its HLO counted, then called
        rows.append({"rung": name, **hlo_counts(compiled)})
        callers.append(chunk_caller(compiled, args, num_carried))
        callers[-1]()  # warm up
    for row, rate in zip(rows, best_rates_interleaved(callers, chunk_size, window_seconds, rounds)):
        row["updates_per_s"] = round(rate, 1)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunk_size", type=int, default=200)
    parser.add_argument("--window_seconds", type=float, default=5.0, help="one rung's window in each round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of windows; each rung's best is reported")
    parser.add_argument("--old_check", action="store_true", help="also time the per-update check of every leaf")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    dataset = one_step_dataset(num_transitions=100_000, obs_dim=OBS_DIM, act_dim=ACT_DIM)
    data = jax.device_put(dataset.as_transitions())
    config = td3_bc.get_config()
    agent = make_agent(config, OBS_DIM, ACT_DIM)
    hparams, _ = run_config.hparam_grid(agent.default_hparams, "")
    peak = matmul_peak_flops()
    results = time_rungs(rungs(agent, hparams, data, args.chunk_size, args.old_check), args.chunk_size,
                         args.window_seconds, args.rounds)
    base = results[0]["updates_per_s"]
    print(f"\nmatmul peak {peak / 1e9:.0f} GFLOP/s; chunk {args.chunk_size}\n")
    print("| rung | updates/s | vs yardstick | HLO instructions | fusions |\n| --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['rung']} | {r['updates_per_s']} | {r['updates_per_s'] / base:.2f}x | {r['hlo_instructions']} "
              f"| {r['hlo_fusions']} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": machine_info(peak), "command": " ".join(sys.argv), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
