"""The main job on small defaults: collect, search the static baseline, train, evaluate.

    python -m launch.demo --workdir=runs/demo
"""
import ml_collections

from jaxmtf.configs import td3_bc
from jaxmtf.configs.collect import base as collect_base


def get_config():
    config = ml_collections.ConfigDict()
    config.seed = 0  # seed of the whole job (collection, search, training, evaluation)
    config.eval_users = 2_000  # fresh users on which every policy of the table is scored (the same users)
    config.eval_discount = 0.99  # discount of the reported discounted return
    # The logged dataset: BatchRL-MTF's mixture of random and noisy-expert sessions.
    config.collect = collect_base.get_base_config("mixed")
    config.collect.num_users = 1_000  # logged sessions
    config.collect.eval_users = 1_000  # users that measure the behaviour policy's value
    # The static-weight baseline (CEM), kept small for the demo.
    config.static = ml_collections.ConfigDict()
    config.static.num_generations = 6  # CEM generations
    config.static.population = 32  # candidates per generation
    config.static.num_elite = 6  # elite size
    config.static.num_users = 300  # users per generation
    config.static.num_heldout_users = 1_000  # users re-scoring the finalists
    config.static.init_std = 0.6  # initial search std
    # Start CEM at the production baseline weights and keep them a finalist, so that the winner scores at
    # least the baseline on the held-out users (without it, this small search ended below the baseline).
    config.static.init_at_baseline = True
    # The offline agent: TD3+BC, 4 seeds in one program.
    config.train = td3_bc.get_config()
    config.train.num_seeds = 4  # seeds trained together
    config.train.num_updates = 5_000  # updates per seed
    config.train.chunk_size = 1_000  # updates per compiled chunk
    config.train.eval_every = 5_000  # evaluate at the end
    config.train.eval_users = 500  # users per evaluation during training
    config.train.checkpoint_every = 5_000  # checkpoint at the end
    return config
