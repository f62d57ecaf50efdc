"""The data path at 1M transitions: collect, save, load (checksums verified), put on device,
and the training program's memory with 1 vs 8 seeds (the dataset is shared, not copied per seed).

    python benchmarks/data_path.py --num_users=21000 --out=benchmarks/results/data_path_cpu.json

`--num_users` sessions of the `mixed` pipeline (BatchRL-MTF's behaviour:
half uniform, half Gaussian around the expert) give about 49 transitions
each. Collection time includes compiling the simulator and scoring the
behaviour policy on `eval_users` fresh users, as `launch.collect` does.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxmtf.agents import make_agent  # noqa: E402
from jaxmtf.configs import td3_bc  # noqa: E402
from jaxmtf.configs.collect import mixed  # noqa: E402
from jaxmtf.core import chunk, run_config  # noqa: E402
from jaxmtf.data import dataset as dataset_lib  # noqa: E402
from jaxmtf.data.collect import collect  # noqa: E402


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args, **kwargs))
    return out, round(time.perf_counter() - start, 2)


def program_memory(dataset, num_seeds: int) -> dict:
    """XLA's memory analysis of the compiled TD3+BC chunk: arguments and temporaries, in MB."""
    config = td3_bc.get_config()
    agent = make_agent(config, dataset.obs_dim, dataset.act_dim)
    hparams, _ = run_config.hparam_grid(agent.default_hparams, "")
    state = jax.eval_shape(lambda: chunk.init_run_state(agent, list(range(num_seeds)), 1))
    chunk_fn = chunk.make_chunk_fn(agent, int(config.batch_size), 1000, seed_group_size=0)
    memory = chunk_fn.lower(state, dataset.as_transitions(), hparams).compile().memory_analysis()
    return {"seeds": num_seeds, "argument_mb": round(memory.argument_size_in_bytes / 2**20, 1),
            "temp_mb": round(memory.temp_size_in_bytes / 2**20, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num_users", type=int, default=21_000)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    config = mixed.get_config()
    config.num_users = args.num_users
    (dataset, _), collect_s = timed(collect, config)
    with tempfile.TemporaryDirectory() as tmp:
        path, save_s = timed(dataset_lib.save, os.path.join(tmp, "mixed.npz"), dataset, {"pipeline": "mixed"})
        size_mb = round(os.path.getsize(path) / 2**20, 1)
        loaded, load_s = timed(dataset_lib.load, path)
    _, device_put_s = timed(jax.device_put, loaded.as_transitions())
    result = {
        "backend": jax.default_backend(), "cpu_count": os.cpu_count(), "num_users": args.num_users,
        "transitions": dataset.size, "file_mb": size_mb, "collect_s": collect_s, "save_s": save_s,
        "load_s": load_s, "device_put_s": device_put_s,
        "chunk_memory": [program_memory(loaded, n) for n in (1, 8)],
    }
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
