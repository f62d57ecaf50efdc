"""BatchRL-MTF (Zhang et al., KDD 2022, arXiv 2208.04560) as its paper configures it, a config of progressive training.

One round that spends the whole session budget on BatchRL-MTF's exploration
(half random actions, half N(current policy, 0.1^2), the current policy being
the production baseline), then BCQ trained offline with the paper's settings:
perturbation bound 0.15, gamma 0.95, batch 256, critic learning rate 2e-5.

    python -m launch.progressive --config=launch/configs/batchrl_mtf.py --workdir=runs/batchrl_mtf
"""
from jaxmtf.configs import bcq, integrated_rl


def get_config():
    config = bcq.get_config()
    config.num_updates = 20_000  # gradient updates of the one round
    config.eval_every = 0  # evaluations during training (the round evaluates at its end)
    config.checkpoint_every = 2_000  # updates between checkpoints (multiple of chunk_size)
    config.batch_size = 256  # the paper's mini-batch (sfujim/BCQ: 100)
    config.agent.discount = 0.95  # gamma, the paper's (sweepable)
    config.agent.phi = 0.15  # perturbation bound, the paper's (sfujim/BCQ: 0.05) (sweepable)
    config.agent.critic_lr = 2e-5  # the paper's critic learning rate (sfujim/BCQ: 1e-3)
    config.progressive = integrated_rl.progressive_config(exploration="mixed")
    config.progressive.rounds = 1  # BatchRL-MTF trains once, on the whole budget of logged sessions
    # The paper's random half is "random Gaussian" actions; jaxmtf's uniform random on [-1, 1]^A stands in
    # (both cover the action box; the uniform's density is exact for OPE).
    config.progressive.noise_sigma = 0.1  # std of the Gaussian half around the current policy (the paper's 0.1)
    config.progressive.warm_start = "none"  # one round: nothing to start from
    return config
