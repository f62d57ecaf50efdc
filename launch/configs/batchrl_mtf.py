"""BatchRL-MTF (Zhang et al., KDD 2022, arXiv 2208.04560) as progressive training's comparison.

One round of mixed exploration (half uniform random, half a truncated
Gaussian around the production baseline), the same number of sessions per
round as IntegratedRL-MTF's, then BCQ-style offline training (BatchRL-MTF's
learner is BCQ; the sfujim/BCQ defaults of launch/configs/bcq.py).

    python -m launch.progressive --config=launch/configs/batchrl_mtf.py --workdir=runs/batchrl_mtf
"""
from launch.configs import bcq, integrated_rl


def get_config():
    config = bcq.get_config()
    config.num_updates = 20_000  # gradient updates of the one round (as IntegratedRL-MTF's per round)
    config.eval_every = 0  # evaluations during training (the round evaluates at its end)
    config.checkpoint_every = 2_000  # updates between checkpoints (multiple of chunk_size)
    config.agent.discount = 0.9  # gamma, as IntegratedRL-MTF's, so the two differ in method, not horizon
    config.progressive = integrated_rl.progressive_config(exploration="mixed")
    config.progressive.rounds = 1  # BatchRL-MTF trains once on one batch of logged data
    return config
