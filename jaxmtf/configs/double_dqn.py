"""Double DQN (van Hasselt et al. 2016), offline: the DQN config with the online critic choosing a_t (d3rlpy DoubleDQN).

    python -m launch.train --config=launch/configs/double_dqn.py \
        --config.dataset=runs/data/notif_eps.npz --config.num_seeds=4 --workdir=runs/double_dqn
"""
from jaxmtf.configs import dqn


def get_config():
    config = dqn.get_config()
    config.algo = "double_dqn"
    config.agent.double_q = True  # the target's action by argmax of the online Q, its value by Q'
    return config
