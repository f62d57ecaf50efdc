"""Shared test helpers: small configs of every algorithm and tiny datasets; a compilation cache."""
import importlib
import shutil
import tempfile

import jax
import pytest

# A persistent XLA compilation cache for this pytest process (each xdist worker has its own).
#
# Most of the suite's time is XLA compiling on the CPU, and many tests build
# the very same programs: the same small agent's init and chunk, a resumed
# run's chunk, a second call's evaluator. jit's in-memory cache misses them
# (each call makes new closures), but their HLO is identical, so this cache
# hands back the executable that the first compilation produced: the same
# binary, so every result is bit-for-bit what a fresh compilation gives.
# The directory is new for every session and deleted at its end (nothing
# carries over from one run to the next); set through jax.config, not the
# environment, so the subprocesses that tests launch compile for themselves
# (two of them at once would race on one directory without a file lock).
# Set before anything imports jaxmtf: jax decides once, at its first
# compilation (jaxmtf's module-level arrays), whether the cache is on.
_XLA_CACHE_DIR = tempfile.mkdtemp(prefix="jaxmtf-xla-cache-")
jax.config.update("jax_compilation_cache_dir", _XLA_CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)  # default 1 s: also the mid-sized ones

from jaxmtf.agents import ALGORITHMS  # noqa: E402
from jaxmtf.data import discrete_one_step_dataset, one_step_dataset  # noqa: E402


def pytest_unconfigure(config):
    shutil.rmtree(_XLA_CACHE_DIR, ignore_errors=True)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """After each test file, its compiled programs are released (`progressive.release_programs`): an xdist
    worker runs dozens of files in one process and XLA's CPU backend keeps memory mappings for every program
    a cache holds (Linux allows 65,530). Once, with another JAX job beside the suite, a worker aborted in
    test_demo's compile late in a run and xdist hung on its replacement (cause not found); with this release
    a worker held at most ~15,500 mappings over a whole run. The persistent cache above still hands a later
    file the same executables."""
    yield
    from jaxmtf.workflows import progressive

    progressive.release_programs()


def small_config(algo: str, hidden=(32, 32), **driver_overrides):
    """The algorithm's launch config with small networks and a short run."""
    config = importlib.import_module(f"jaxmtf.configs.{algo}").get_config()
    for name in list(config.agent.keys()):
        if name.endswith("_hidden_dims"):
            config.agent[name] = hidden
    config.dataset = ""
    config.num_seeds = 2
    config.num_updates = 20
    config.chunk_size = 10
    config.batch_size = 16
    config.eval_every = 0
    config.checkpoint_every = 10
    for name, value in driver_overrides.items():
        config[name] = value
    return config


def registered_algorithms():
    """Algorithms whose agent module and launch config both import (all must)."""
    for algo, module in ALGORITHMS.items():
        importlib.import_module(f"jaxmtf.agents.{module}")
        importlib.import_module(f"jaxmtf.configs.{algo}")
    return list(ALGORITHMS)


@pytest.fixture(scope="session")
def tiny_dataset():
    return one_step_dataset(num_transitions=256, obs_dim=3, act_dim=2, seed=0)


@pytest.fixture(scope="session")
def tiny_discrete_dataset():
    return discrete_one_step_dataset(num_transitions=256, obs_dim=3, num_actions=4, seed=0)


class CompiledAgent:
    """An agent's functions, each jitted once (tests of one algorithm share it through a module fixture)."""

    def __init__(self, config, obs_dim, act_dim):
        from jaxmtf.agents import make_agent

        self.config = config
        self.agent = make_agent(config, obs_dim, act_dim)
        self.init = jax.jit(self.agent.init)
        self.update = jax.jit(self.agent.update)
        self.act = jax.jit(self.agent.act)
