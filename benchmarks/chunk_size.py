"""Chunk size and the host loop: TD3+BC's whole training loop against a bare scan of its update.

    python benchmarks/chunk_size.py --chunk_sizes=10,50,200,1000 --num_updates=2000 \
        --out=benchmarks/results/chunk_size_cpu.json
    python benchmarks/chunk_size.py --table_from=A.json,B.json   # one table of saved runs (e.g. two commits)
    python benchmarks/chunk_size.py --host_only --out=benchmarks/results/chunk_size_host_cpu.json

Each chunk size runs `training.train` end to end, as a launcher does: every
chunk's metrics pulled to the host and written to metrics.jsonl with a
progress line, evaluation off, one checkpoint at the end. Its rate is the
run summary's updates/s per run (the updates after the first chunk, i.e.
without compilation, over their wall time, the final checkpoint included),
the best of `--repeats` fresh runs (the best-of rule of benchmarks/timing.py).
Two loops (`--modes`): `overlapped`, the driver as it is (each chunk is
dispatched before the previous chunk's metrics are pulled and logged), and
`blocking`, the same driver with every chunk call waited for before it
returns, so the host logs while the device idles: the loop before commit
307da51. The runs alternate between the modes and chunk sizes, repeat by
repeat, so that a machine whose load drifts disturbs both alike.
The reference is the same agent's update with in-program batch sampling in a
`lax.scan` of `--reference_chunk` updates per call and no host work between
updates: the driver's own chunk, timed by benchmarks/throughput.py's
`measure` (best of 3 windows). Dataset and config as in throughput.py: one
step, 100,000 transitions, obs 32, act 10, the launch config's networks and
batch size.

`--host_only` times instead the host's own work on one chunk's metrics, the
chunk already finished: pulling them, one record per run, the metrics.jsonl
lines and the progress line (the loop's `_log_chunk`). That is what the
overlapped loop hides behind the next chunk, and what a blocking loop adds to
every chunk.
"""
import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import throughput  # noqa: E402  (benchmarks/: launch config, chunk timing, matmul peak, machine)

from jaxmtf.core import chunk, loop, sharding, training  # noqa: E402
from jaxmtf.core.run_config import Driver  # noqa: E402
from jaxmtf.data import one_step_dataset  # noqa: E402

ALGO = "td3_bc"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def loop_config(chunk_size: int, num_updates: int, num_seeds: int):
    config = throughput.benchmark_config(ALGO)
    config.num_seeds, config.num_updates, config.chunk_size = num_seeds, num_updates, chunk_size
    config.eval_every = 0  # evaluation off
    config.checkpoint_every = 0  # one checkpoint, after the last chunk
    return config


@contextlib.contextmanager
def blocking_chunks():
    """Every chunk the driver builds waits for its result before returning (no overlap)."""
    real = chunk.make_chunk_fn

    def make_chunk_fn(*args, **kwargs):
        chunk_fn = real(*args, **kwargs)
        return lambda *chunk_args: jax.block_until_ready(chunk_fn(*chunk_args))

    chunk.make_chunk_fn = make_chunk_fn
    try:
        yield
    finally:
        chunk.make_chunk_fn = real


def train_once(mode: str, chunk_size: int, num_updates: int, num_seeds: int, dataset) -> dict:
    """One whole training run in a fresh run directory (so it compiles): its summary's timings."""
    with (tempfile.TemporaryDirectory() as workdir,
          blocking_chunks() if mode == "blocking" else contextlib.nullcontext()):
        summary = training.train(loop_config(chunk_size, num_updates, num_seeds), dataset, workdir)
    return {k: summary[k] for k in ("updates_per_second_per_run", "compile_and_first_chunk_seconds")}


def measure_loops(modes, chunk_sizes, num_updates: int, num_seeds: int, repeats: int, dataset) -> list:
    """The best of `repeats` runs of each (mode, chunk size), the runs alternating between them."""
    runs = {(mode, c): [] for c in chunk_sizes for mode in modes}
    for _ in range(repeats):
        for mode, chunk_size in runs:
            runs[mode, chunk_size].append(train_once(mode, chunk_size, num_updates, num_seeds, dataset))
            print(json.dumps({"mode": mode, "chunk_size": chunk_size, **runs[mode, chunk_size][-1]}), flush=True)
    rows = []
    for (mode, chunk_size), summaries in runs.items():
        best = max(summaries, key=lambda s: s["updates_per_second_per_run"])
        rows.append({
            "loop": f"training.train, {mode}", "chunk_size": chunk_size, "num_seeds": num_seeds,
            "updates_per_s_per_seed": round(best["updates_per_second_per_run"], 2),
            "compile_and_first_chunk_s": round(best["compile_and_first_chunk_seconds"], 2),
            "timed_updates_per_seed": num_updates - chunk_size, "repeats": summaries,
        })
    return rows


def measure_reference(num_seeds: int, chunk_size: int, window_seconds: float, dataset) -> dict:
    group = sharding.seed_group_size(Driver.of(loop_config(chunk_size, chunk_size, num_seeds)), None)  # as the loop's
    row = throughput.measure(ALGO, num_seeds, chunk_size, window_seconds, dataset, group)
    return {"loop": "bare lax.scan (reference)", **row}


def host_seconds_per_chunk(num_seeds: int, dataset, iterations: int) -> float:
    """Mean seconds of the loop's host step on a finished chunk's metrics (`loop._log_chunk`)."""
    with tempfile.TemporaryDirectory() as workdir:
        run = training.set_up(loop_config(10, 10, num_seeds), dataset, workdir)
        _, metrics = run.chunk_fn(run.state, run.data, run.hparams)
        jax.block_until_ready(metrics)
        clock = loop._Clock(0, 10)
        start = time.perf_counter()
        for _ in range(iterations):
            loop._log_chunk(run, 10, metrics, clock, 10)
        seconds = (time.perf_counter() - start) / iterations
        run.checkpointer.close()
        run.logger.close()
    return seconds


def git_commit() -> str:
    done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def markdown(saved_runs) -> str:
    first = saved_runs[0]["machine"]
    lines = [
        f"{first['cpu_model'] or first['processor']} ({first['cpu_vector_extension']}), {first['cpu_count']} cores; "
        + "; ".join(f"matmul peak {s['machine']['matmul_peak_gflop_per_s']:.0f} GFLOP/s in the run at {s['commit']}"
                    for s in saved_runs),
        "",
        "| commit | loop | chunk size | seeds | updates/s per seed | vs bare scan | compile + first chunk (s) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for saved in saved_runs:
        reference = saved["reference"]["updates_per_s_per_seed"]
        for r in [saved["reference"]] + saved["results"]:
            lines.append(
                f"| {saved['commit']} | {r['loop']} | {r['chunk_size']} | {r['num_seeds']} "
                f"| {r['updates_per_s_per_seed']:.1f} "
                f"| {r['updates_per_s_per_seed'] / reference:.1%} | {r['compile_and_first_chunk_s']} |"
            )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunk_sizes", default="10,50,200,1000")
    parser.add_argument("--modes", default="overlapped,blocking", help="loops to time: overlapped, blocking")
    parser.add_argument("--num_updates", type=int, default=2000, help="updates per run; a multiple of every chunk size")
    parser.add_argument("--num_seeds", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="whole runs per chunk size; the best is reported")
    parser.add_argument("--reference_chunk", type=int, default=2000, help="updates per call of the bare scan")
    parser.add_argument("--window_seconds", type=float, default=4.0, help="each of the reference's 3 timing windows")
    parser.add_argument("--host_only", action="store_true", help="only time the host's work per chunk")
    parser.add_argument("--host_iterations", type=int, default=500)
    parser.add_argument("--out", default="")
    parser.add_argument("--table_from", default="", help="only print the table of results JSONs (comma-separated)")
    args = parser.parse_args()
    if args.table_from:
        runs = []
        for path in args.table_from.split(","):
            with open(path) as f:
                runs.append(json.load(f))
        print(markdown(runs))
        return
    chunk_sizes = [int(c) for c in args.chunk_sizes.split(",")]
    if any(args.num_updates % c for c in chunk_sizes):
        parser.error(f"--num_updates={args.num_updates} is not a multiple of every chunk size {chunk_sizes}")
    commit = git_commit()  # before the runs: the code they time
    dataset = one_step_dataset(num_transitions=100_000, obs_dim=32, act_dim=10)
    if args.host_only:
        host = {"commit": commit, "command": " ".join(sys.argv), "num_seeds": args.num_seeds,
                "machine": throughput.machine_info(throughput.matmul_peak_flops()),
                "host_ms_per_chunk": round(
                    1e3 * host_seconds_per_chunk(args.num_seeds, dataset, args.host_iterations), 3)}
        _write(args.out, host)
        print(json.dumps(host))
        return
    peak = throughput.matmul_peak_flops()
    reference = measure_reference(args.num_seeds, args.reference_chunk, args.window_seconds, dataset)
    print(json.dumps(reference), flush=True)
    modes = args.modes.split(",")
    if not set(modes) <= {"overlapped", "blocking"}:
        parser.error(f"--modes: expected overlapped and/or blocking, got {args.modes}")
    results = measure_loops(modes, chunk_sizes, args.num_updates, args.num_seeds, args.repeats, dataset)
    saved = {"machine": throughput.machine_info(peak), "commit": commit, "command": " ".join(sys.argv),
             "reference": reference, "results": results}
    _write(args.out, saved)
    print(markdown([saved]))


def _write(path: str, obj) -> None:
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(obj, f, indent=2)


if __name__ == "__main__":
    main()
