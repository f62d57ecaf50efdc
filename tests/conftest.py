"""Shared test helpers: small configs of every algorithm and tiny datasets."""
import importlib

import pytest

from jaxmtf.agents import ALGORITHMS
from jaxmtf.data import discrete_one_step_dataset, one_step_dataset


def small_config(algo: str, hidden=(32, 32), **driver_overrides):
    """The algorithm's launch config with small networks and a short run."""
    config = importlib.import_module(f"launch.configs.{algo}").get_config()
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
        importlib.import_module(f"launch.configs.{algo}")
    return list(ALGORITHMS)


@pytest.fixture(scope="session")
def tiny_dataset():
    return one_step_dataset(num_transitions=256, obs_dim=3, act_dim=2, seed=0)


@pytest.fixture(scope="session")
def tiny_discrete_dataset():
    return discrete_one_step_dataset(num_transitions=256, obs_dim=3, num_actions=4, seed=0)
