"""Training throughput of every agent: updates/s per seed and in total, compile time.

    python benchmarks/throughput.py --algos=td3,td3_bc,bcq,cql --seeds=1,8 --out=benchmarks/results/throughput_cpu.json

Each (algorithm, seeds) pair is the training driver's own compiled chunk
(batch sampling + lax.scan of updates + metric reduction, vmapped over seeds),
on a one-step dataset with obs 32 and act 10 (the shapes of issue 5), at the
configs' default network sizes and batch sizes. Compile time is the first
call (tracing + XLA compilation + one chunk); throughput is measured over
further chunks until `min_seconds` have passed.
"""
import argparse
import importlib
import json
import os
import platform
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxmtf import training  # noqa: E402
from jaxmtf.agents import make_agent  # noqa: E402
from jaxmtf.data import one_step_dataset  # noqa: E402


def measure(algo: str, num_seeds: int, chunk_size: int, min_seconds: float, dataset) -> dict:
    config = importlib.import_module(f"launch.configs.{algo}").get_config()
    agent = make_agent(config, dataset.obs_dim, dataset.act_dim)
    hparams, _ = training.hparam_grid(agent.default_hparams, "")
    chunk_fn = training.make_chunk_fn(agent, int(config.batch_size), chunk_size)
    state = training.init_run_state(agent, list(range(num_seeds)), 1)
    data = jax.device_put(dataset.as_transitions())
    start = time.perf_counter()
    state, metrics = chunk_fn(state, data, hparams)
    jax.block_until_ready(metrics)
    compile_seconds = time.perf_counter() - start
    chunks, start = 0, time.perf_counter()
    while True:
        state, metrics = chunk_fn(state, data, hparams)
        jax.block_until_ready(metrics)
        chunks += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            break
    per_seed = chunks * chunk_size / elapsed
    return {
        "algo": algo, "num_seeds": num_seeds, "batch_size": int(config.batch_size), "chunk_size": chunk_size,
        "compile_and_first_chunk_s": round(compile_seconds, 2),
        "updates_per_s_per_seed": round(per_seed, 2), "updates_per_s_total": round(per_seed * num_seeds, 2),
        "timed_updates_per_seed": chunks * chunk_size, "timed_seconds": round(elapsed, 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algos", default="ddpg,td3,td3_bc,bcq,cql,uwac")
    parser.add_argument("--seeds", default="1,8")
    parser.add_argument("--min_seconds", type=float, default=10.0)
    parser.add_argument("--chunk_sizes", default="ddpg=200,td3=200,td3_bc=200,bcq=20,cql=20,uwac=2",
                        help="updates per compiled chunk, per algorithm (slow agents get short chunks)")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    chunk_sizes = dict((k, int(v)) for k, v in (p.split("=") for p in args.chunk_sizes.split(",")))
    dataset = one_step_dataset(num_transitions=100_000, obs_dim=32, act_dim=10)
    results = []
    for algo in args.algos.split(","):
        for num_seeds in map(int, args.seeds.split(",")):
            row = measure(algo, num_seeds, chunk_sizes.get(algo, 100), args.min_seconds, dataset)
            print(json.dumps(row), flush=True)
            results.append(row)
    machine = {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
               "cpu_count": os.cpu_count(), "processor": platform.processor(), "jax": jax.__version__}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"machine": machine, "results": results}, f, indent=2)
    print("| algorithm | seeds | batch | updates/s per seed | updates/s total | compile + first chunk (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['algo']} | {r['num_seeds']} | {r['batch_size']} | {r['updates_per_s_per_seed']} | "
              f"{r['updates_per_s_total']} | {r['compile_and_first_chunk_s']} |")


if __name__ == "__main__":
    main()
