"""DDPG as sfujim's OurDDPG: TD3 with one critic, no target smoothing, no delay.

    python -m launch.train --config=launch/configs/ddpg.py \
        --config.dataset=runs/data/mixed.npz --config.num_seeds=4 --workdir=runs/ddpg
"""
from jaxmtf.configs import td3


def get_config():
    config = td3.get_config()
    config.algo = "ddpg"
    config.agent.num_critics = 1  # a single critic: the target is Q'(s', pi'(s'))
    config.agent.policy_delay = 1  # actor and targets update every step
    config.agent.policy_noise = 0.0  # no target policy smoothing
    config.agent.noise_clip = 0.0  # (unused without noise)
    return config
