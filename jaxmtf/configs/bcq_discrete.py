"""Discrete BCQ (Fujimoto et al. 2019) with d3rlpy's DiscreteBCQConfig defaults.

    python -m launch.train --config=launch/configs/bcq_discrete.py \
        --config.dataset=runs/data/notif_eps.npz --config.num_seeds=4 --workdir=runs/bcq_discrete
"""
import ml_collections

from jaxmtf.configs import base


def get_config():
    config = base.get_base_config()
    config.algo = "bcq_discrete"
    config.batch_size = 32  # d3rlpy's mini-batch
    agent = config.agent = ml_collections.ConfigDict()
    agent.critic_hidden_dims = (256, 256)  # Q-network MLP widths, then a Linear head per action
    agent.imitator_hidden_dims = (256, 256)  # behaviour model G(a|s) MLP widths, logits per action
    agent.num_critics = 1  # Q ensemble size
    agent.learning_rate = 6.25e-5  # Adam learning rate of the critic and the imitator (one optimiser)
    agent.target_update_interval = 8_000  # updates between hard copies of Q into the target network
    agent.discount = 0.99  # gamma (sweepable)
    agent.threshold = 0.3  # tau: keep actions with G(a|s) / max G > tau (action_flexibility; sweepable)
    agent.beta = 0.5  # weight of the imitator's logits penalty mean(logits^2) (sweepable)
    return config
