"""CEM search for the best static fusion weights: the production baseline to beat.

    python -m launch.search_static --config=launch/configs/search_static.py --workdir=runs/static
"""
import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.seed = 0  # seed of the search's users and samples
    config.env = ml_collections.ConfigDict()  # simulator parameter overrides
    config.num_generations = 10  # CEM generations
    config.population = 64  # candidates per generation, scored in one vmapped program
    config.num_elite = 8  # candidates the next generation's Gaussian is fitted to
    config.num_users = 1_000  # fresh users per generation (the same for all candidates)
    config.num_heldout_users = 4_000  # users of the final re-evaluation of the finalists
    config.init_std = 0.6  # initial std of the search distribution in action space
    config.init_at_baseline = False  # True: start at the production baseline weights and keep them a finalist
    config.eval_users = 4_000  # users of the winner's full evaluation (0 = none)
    config.eval_discount = 0.99  # discount of the reported discounted return
    return config
