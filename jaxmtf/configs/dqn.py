"""DQN (Mnih et al. 2015), offline, on discrete actions, with d3rlpy's DQNConfig defaults.

    python -m launch.train --config=launch/configs/dqn.py \
        --config.dataset=runs/data/notif_eps.npz --config.num_seeds=4 --workdir=runs/dqn

d3rlpy's target_update_interval 8000 suits its long (Atari) runs; a short run
scales it with --config.agent.target_update_interval (benchmarks/discrete.py).
"""
import ml_collections

from jaxmtf.configs import base


def get_config():
    config = base.get_base_config()
    config.algo = "dqn"
    config.batch_size = 32  # d3rlpy's (and the Nature DQN's) mini-batch
    agent = config.agent = ml_collections.ConfigDict()
    agent.critic_hidden_dims = (256, 256)  # Q-network MLP widths, then a Linear head per action (d3rlpy VectorEncoder)
    agent.num_critics = 1  # Q ensemble size (n_critics): argmax by the mean, value by the min
    agent.learning_rate = 6.25e-5  # Adam learning rate
    agent.target_update_interval = 8_000  # updates between hard copies of Q into the target network
    agent.double_q = False  # False: DQN's target argmax over Q'; True: Double DQN (argmax over Q)
    agent.discount = 0.99  # gamma (sweepable)
    return config
