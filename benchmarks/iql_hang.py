"""Reproduces the IQL hang on XLA CPU (benchmarks/README.md, "Does progressive training climb?"): IQL's initial
run state for N seeds, then block_until_ready. On the 2-core AMD EPYC of this workspace (jax 0.10) 1 and 2 seeds
return in ~3 s and 3 or more never return (the host waits on a buffer, every XLA thread idle), eager or jitted
init alike; the nets' inits alone, vmapped over 5 seeds, return. Run it under a timeout:

    timeout -s KILL 60 python benchmarks/iql_hang.py 3 || echo "hung (or failed)"
"""
import sys
import time

import jax

from jaxmtf.agents import make_agent
from jaxmtf.configs import iql
from jaxmtf.core import sharding


def main(num_seeds: int, width: int = 64) -> None:
    config = iql.get_config()
    for name in [n for n in config.agent if n.endswith("_hidden_dims")]:
        config.agent[name] = (width, width)
    agent = make_agent(config, 41, 12)  # the default simulator's observation and action sizes
    start = time.time()
    jax.block_until_ready(sharding.init_on_devices(agent, list(range(num_seeds)), 1, None, None))
    print(f"{num_seeds} seeds: initial state in {time.time() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
