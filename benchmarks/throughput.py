"""Training throughput of every agent: updates/s per seed and in total, compile time,
achieved FLOP/s against this machine's matmul peak, and d3rlpy side by side.

    python benchmarks/throughput.py --seeds=1,8,32 --window_seconds=5 --peer --roofline \
        --out=benchmarks/results/throughput_cpu.json

Each (algorithm, seeds) pair is the training driver's own compiled chunk
(batch sampling + lax.scan of updates + metric reduction, vmapped over seeds),
on a one-step dataset with obs 32 and act 10 (the shapes of issue 5), at the
configs' default network sizes and batch sizes. Compile time is the first
call (tracing + XLA compilation + one chunk); throughput is the best of 3
windows of further chunks (benchmarks/timing.py), for jaxmtf and d3rlpy alike;
an algorithm's rows (its seed counts and groups) take their windows in turn.

FLOPs per update come from XLA's cost analysis of one compiled update (see
`flops_per_update`); the peak is the best FLOP/s of a large jitted f32
matmul, measured before every algorithm and at the end of the same run
(the best of them is the denominator; all are recorded). `--peer` (needs the `bench` extra:
`pip install -e .[bench]`) times d3rlpy on TD3+BC, CQL and BCQ with the same
dataset, network sizes and batch size (benchmarks/peer_d3rlpy.py), and the
table shows the per-seed ratio jaxmtf / d3rlpy.

The `yardstick` row is benchmarks/yardstick.py, a minimal JAX TD3+BC loop,
timed in turn with TD3+BC's one-seed chunk (one window each per round), and
TD3+BC's row shows the ratio. `--roofline` times every dot of one update
alone at its shapes (benchmarks/roofline.py): "dots alone" is the share of
the peak the update would reach if all else were free, "time in dots" the
share of the measured update time its dots take.
"""
import argparse
import importlib
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import roofline  # noqa: E402
import yardstick  # noqa: E402
from timing import best_rates_interleaved, chunk_caller, first_call_seconds  # noqa: E402

from jaxmtf.agents import make_agent  # noqa: E402
from jaxmtf.core import chunk, run_config  # noqa: E402
from jaxmtf.data import one_step_dataset  # noqa: E402

PEER_ALGOS = ("td3_bc", "cql", "bcq")
# The reference row: benchmarks/yardstick.py, timed in turn with TD3+BC's one-seed chunk (same FLOPs).
YARDSTICK = "yardstick"


def matmul_peak_flops(n: int = 2048, repeats: int = 20) -> float:
    """Best FLOP/s of a jitted [n, n] @ [n, n] f32 matmul (what XLA's dot reaches on this machine)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    matmul = jax.jit(lambda x, y: x @ y)
    jax.block_until_ready(matmul(a, a))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(matmul(a, a))
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best


def cpu_kind() -> dict:
    """The CPU's model name and its widest vector extension (/proc/cpuinfo; empty where there is none)."""
    model, flags = platform.processor(), set()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    vector = next((v for v in ("avx512f", "avx2", "avx") if v in flags), "")
    return {"cpu_model": model, "cpu_vector_extension": vector}


def machine_info(peak: float) -> dict:
    """What every benchmark JSON records about the machine, with the matmul peak of the same run."""
    return {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "cpu_count": os.cpu_count(), "processor": platform.processor(), **cpu_kind(), "jax": jax.__version__,
            "matmul_peak_gflop_per_s": round(peak / 1e9, 1)}


def compiled_updates(agent, batch, hparams, period: int = 2) -> list:
    """One update compiled per step of the delay period, the step a constant (see flops_per_update)."""
    state = agent.init(jax.random.PRNGKey(0))
    out = []
    for step in range(period):
        update = jax.jit(lambda s, b, k, step=step: agent.update(s.replace(step=jnp.int32(step)), b, k, hparams))
        out.append(update.lower(state, batch, jax.random.PRNGKey(1)).compile())
    return out


def flops_per_update(compiled) -> float:
    """XLA's count of the floating-point operations of one update of one seed (`compiled_updates`).

    The count is taken on the compiled update with the step counter a
    constant, so XLA drops the branch of a delayed update (TD3's actor and
    targets) that is not taken; averaged over `period` consecutive steps.
    (Cost analysis counts a lax.cond as taken every time, and a lax.scan
    body once whatever its length, so the chunk itself cannot be measured.)
    """
    costs = [c.cost_analysis() for c in compiled]
    return sum((c[0] if isinstance(c, list) else c)["flops"] for c in costs) / len(costs)


def benchmark_config(algo: str):
    """The algorithm's launch config, timed in its steady state. `name[field=value;...]` is a variant
    row with those agent fields set, e.g. `uwac[dropout_masks=hash]`."""
    name, _, overrides = algo.partition("[")
    config = importlib.import_module(f"jaxmtf.configs.{name}").get_config()
    for pair in filter(None, overrides.rstrip("]").split(";")):
        field, value = pair.split("=")
        config.agent[field] = type(config.agent[field])(value)
    if name == "cql":
        # Past the reference's 40k behaviour-cloning updates the policy loss goes through the
        # critics (what d3rlpy does from the first update); time that, the longer phase.
        config.agent.policy_eval_start = 0
    return config


def prepare(algo: str, num_seeds: int, chunk_size: int, dataset, seed_group: int):
    """(the row's fixed fields with the compile time, a call of one more chunk) of the driver's chunk."""
    config = benchmark_config(algo)
    agent = make_agent(config, dataset.obs_dim, dataset.act_dim)
    hparams, _ = run_config.hparam_grid(agent.default_hparams, "")
    chunk_fn = chunk.make_chunk_fn(agent, int(config.batch_size), chunk_size, seed_group)
    state = chunk.init_run_state(agent, list(range(num_seeds)), 1)
    one_chunk = chunk_caller(chunk_fn, (state, jax.device_put(dataset.as_transitions()), hparams), 1)
    compile_seconds = first_call_seconds(one_chunk)
    row = {"algo": algo, "num_seeds": num_seeds, "seed_group_size": seed_group, "batch_size": int(config.batch_size),
           "chunk_size": chunk_size, "compile_and_first_chunk_s": round(compile_seconds, 2)}
    return row, one_chunk


def prepare_yardstick(chunk_size: int, dataset):
    """The same for benchmarks/yardstick.py, the minimal JAX TD3+BC loop (one seed)."""
    init, train = yardstick.make(dataset.obs_dim, dataset.act_dim)
    arrays = jax.device_put({k: getattr(dataset, k) for k in ("observations", "actions", "rewards",
                                                              "next_observations", "terminals")})
    one_chunk = chunk_caller(lambda state, data: (train(state, data, chunk_size),),
                             (init(jax.random.PRNGKey(0)), arrays), 1)
    compile_seconds = first_call_seconds(one_chunk)
    row = {"algo": YARDSTICK, "num_seeds": 1, "seed_group_size": 0, "batch_size": 256, "chunk_size": chunk_size,
           "compile_and_first_chunk_s": round(compile_seconds, 2)}
    return row, one_chunk


def with_rate(row: dict, rate: float, flops: float) -> dict:
    """The row with its updates/s and FLOP/s filled in."""
    total = rate * row["num_seeds"]
    return {**row, "updates_per_s_per_seed": round(rate, 2), "updates_per_s_total": round(total, 2),
            "mflop_per_update": round(flops / 1e6, 1), "gflop_per_s": round(flops * total / 1e9, 2)}


def with_fractions(row: dict, peak: float) -> dict:
    """The row's FLOP/s (and its dots' ceiling) as shares of the run's peak."""
    row = {**row, "fraction_of_peak": round(row["gflop_per_s"] * 1e9 / peak, 3)}
    if "dot_gflop_per_s" in row:
        row["dot_ceiling_fraction"] = round(row["dot_gflop_per_s"] * 1e9 / peak, 3)
    return row


def update_programs(algo: str, dataset) -> list:
    config = benchmark_config(algo)
    if "dropout_pass_batch" in config.agent:
        # UWAC's dropout passes run in a lax.map whose body XLA counts once: count them
        # all in one batch instead (the same work and results, more memory).
        config.agent.dropout_pass_batch = config.agent.num_dropout_samples
    agent = make_agent(config, dataset.obs_dim, dataset.act_dim)
    batch = jax.tree.map(lambda x: jnp.asarray(x[: int(config.batch_size)]), dataset.as_transitions())
    hparams = {name: jnp.float32(value) for name, value in agent.default_hparams.items()}
    return compiled_updates(agent, batch, hparams)


def measure_peer(algo: str, dataset, window_seconds: float) -> dict:
    import peer_d3rlpy  # the bench extra: torch + d3rlpy

    config = benchmark_config(algo)
    return peer_d3rlpy.measure(
        algo, dataset.observations, dataset.actions, dataset.rewards, dataset.next_observations,
        dataset.terminals, batch_size=int(config.batch_size), window_seconds=window_seconds,
    )


def _percent(x) -> str:
    return "" if x is None else f"{x:.0%}"


def _vs_yardstick(row, reference) -> str:
    """TD3+BC's one-seed rate over the yardstick's, timed in turn in the same run."""
    if reference is None or row["algo"] != "td3_bc" or row["num_seeds"] != 1:
        return ""
    return f"{row['updates_per_s_per_seed'] / reference:.2f}x"


def markdown(results, peak) -> str:
    one_seed = {r["algo"]: r["updates_per_s_total"] for r in results if r["num_seeds"] == 1}
    reference = one_seed.get(YARDSTICK)
    lines = [
        f"matmul peak (jitted 2048 x 2048 f32): {peak / 1e9:.0f} GFLOP/s",
        "",
        "| algorithm | seeds | seed group | batch | MFLOP/update | updates/s per seed | updates/s total "
        "| total vs 1 seed "
        "| GFLOP/s (% of peak) | dots alone (% of peak) | time in dots | vs yardstick "
        "| compile + first chunk (s) | d3rlpy updates/s | jaxmtf total / d3rlpy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        scaling = r["updates_per_s_total"] / one_seed[r["algo"]] if r["algo"] in one_seed else float("nan")
        peer = r.get("peer_updates_per_s")
        # d3rlpy trains one seed per process; on a machine that one run fills, N seeds take N runs one
        # after another, so N seeds of jaxmtf compare with d3rlpy's single-run rate by their total.
        peer_cells = ("", "") if peer is None else (f"{peer:.3g}", f"{r['updates_per_s_total'] / peer:.1f}x")
        lines.append(
            f"| {r['algo']} | {r['num_seeds']} | {r['seed_group_size'] or 'all'} | {r['batch_size']} "
            f"| {r['mflop_per_update']:.0f} "
            f"| {r['updates_per_s_per_seed']:.4g} | {r['updates_per_s_total']:.4g} | {scaling:.0%} "
            f"| {r['gflop_per_s']:.1f} ({r['fraction_of_peak']:.0%}) | {_percent(r.get('dot_ceiling_fraction'))} "
            f"| {_percent(r.get('time_in_dots'))} "
            f"| {_vs_yardstick(r, reference)} | {r['compile_and_first_chunk_s']} "
            f"| {peer_cells[0]} | {peer_cells[1]} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algos", default="ddpg,td3,td3_bc,bcq,cql,uwac,uwac[dropout_masks=hash],iql",
                        help="algorithms, or variants name[field=value;...] with agent fields set")
    parser.add_argument("--seeds", default="1,8,32")
    parser.add_argument("--window_seconds", type=float, default=5.0,
                        help="length of each of the 3 timing windows; the best window is reported")
    parser.add_argument("--chunk_sizes", default="ddpg=200,td3=200,td3_bc=200,bcq=20,cql=20,uwac=2,iql=200",
                        help="updates per compiled chunk, per algorithm (slow agents get short chunks)")
    parser.add_argument("--seeds_for", default="uwac=1,8",
                        help="per-algorithm seed lists replacing --seeds, e.g. 'uwac=1,8;cql=1,8'")
    parser.add_argument("--seed_groups", default="0,2",
                        help="seed_group_size values to time (0 = all seeds vmapped at once; g = g at a time)")
    parser.add_argument("--roofline", action="store_true",
                        help="also time each dot of one update alone (benchmarks/roofline.py): the ceiling")
    parser.add_argument("--peer", action="store_true", help="also time d3rlpy on td3_bc, cql, bcq (bench extra)")
    parser.add_argument("--out", default="")
    parser.add_argument("--table_from", default="", help="only print the table of a results JSON written by --out")
    args = parser.parse_args()
    if args.table_from:
        with open(args.table_from) as f:
            saved = json.load(f)
        print(markdown(saved["results"], saved["machine"]["matmul_peak_gflop_per_s"] * 1e9))
        return
    groups = [int(g) for g in args.seed_groups.split(",")]
    seeds_for = dict(p.split("=") for p in args.seeds_for.split(";") if p)
    chunk_sizes = dict((k, int(v)) for k, v in (p.split("=") for p in args.chunk_sizes.split(",")))
    dataset = one_step_dataset(num_transitions=100_000, obs_dim=32, act_dim=10)
    # The peak is measured before every algorithm and the best taken: on a shared machine one
    # measurement swung from 175 to 261 GFLOP/s between runs, and the highest is the honest denominator.
    peaks = []
    results, peers = [], {}
    for algo in args.algos.split(","):
        peaks.append(matmul_peak_flops())
        print(json.dumps({"matmul_peak_gflop_per_s": round(peaks[-1] / 1e9, 1)}), flush=True)
        programs = update_programs(algo, dataset)
        flops = flops_per_update(programs)
        ceiling = roofline.dot_roofline(programs) if args.roofline else None
        base = algo.partition("[")[0]  # a variant's algorithm
        if args.peer and algo in PEER_ALGOS:
            peers[algo] = measure_peer(algo, dataset, args.window_seconds)
            print(json.dumps(peers[algo]), flush=True)
        seed_counts = map(int, seeds_for.get(base, args.seeds).split(","))
        chunk_size = chunk_sizes.get(base, 100)
        # Every row of the algorithm (and the yardstick beside TD3+BC) compiled first, then timed in turn,
        # one window each per round: seed scaling compares rates of the same minutes of a shared machine.
        prepared = [prepare(algo, n, chunk_size, dataset, g) for n in seed_counts for g in groups if g < n or g == 0]
        if algo == "td3_bc":
            prepared.append(prepare_yardstick(chunk_size, dataset))
        rates = best_rates_interleaved([call for _, call in prepared], chunk_size, args.window_seconds)
        for (row, _), rate in zip(prepared, rates):
            row = with_rate(row, rate, flops)
            if algo in peers and row["algo"] != YARDSTICK:
                row["peer_updates_per_s"] = peers[algo]["updates_per_s"]
            if ceiling and row["num_seeds"] == 1 and row["algo"] != YARDSTICK:
                row["dot_gflop_per_s"] = round(ceiling["dot_gflop_per_s"], 1)
                row["time_in_dots"] = round(ceiling["dot_seconds"] * rate, 3)
            print(json.dumps(row), flush=True)
            results.append(row)
    peaks.append(matmul_peak_flops())
    peak = max(peaks)
    results = [with_fractions(row, peak) for row in results]
    machine = {**machine_info(peak), "matmul_peaks_gflop_per_s": [round(p / 1e9, 1) for p in peaks]}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"machine": machine, "command": " ".join(sys.argv), "results": results,
                       "peer": list(peers.values())}, f, indent=2)
    print(markdown(results, peak))


if __name__ == "__main__":
    main()
