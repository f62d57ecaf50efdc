"""TD3+BC (Fujimoto & Gu 2021) with the defaults of sfujim/TD3_BC.

    python -m launch.train --config=launch/configs/td3_bc.py \
        --config.dataset=runs/data/mixed.npz --config.num_seeds=4 --workdir=runs/td3_bc
"""
from jaxmtf.configs import td3


def get_config():
    config = td3.get_config()
    config.algo = "td3_bc"
    config.normalize_observations = True  # the reference standardises states
    config.agent.alpha = 2.5  # lambda = alpha / mean|Q| weighs RL against BC (sweepable)
    return config
