"""TD3 (Fujimoto et al. 2018) with the defaults of sfujim/TD3.

    python -m launch.train --config=launch/configs/td3.py \
        --config.dataset=runs/data/mixed.npz --config.num_seeds=4 --workdir=runs/td3
"""
import ml_collections

from jaxmtf.configs import base


def get_config():
    config = base.get_base_config()
    config.algo = "td3"
    agent = config.agent = ml_collections.ConfigDict()
    agent.actor_hidden_dims = (256, 256)  # actor MLP widths
    agent.critic_hidden_dims = (256, 256)  # critic MLP widths
    agent.num_critics = 2  # size of the critic ensemble (twin Q)
    agent.actor_lr = 3e-4  # Adam learning rate of the actor
    agent.critic_lr = 3e-4  # Adam learning rate of the critics
    agent.policy_delay = 2  # critic updates per actor and target update
    agent.discount = 0.99  # gamma (sweepable)
    agent.tau = 0.005  # polyak rate of the target networks (sweepable)
    agent.policy_noise = 0.2  # std of target policy smoothing noise (sweepable)
    agent.noise_clip = 0.5  # clip of the smoothing noise (sweepable)
    return config
