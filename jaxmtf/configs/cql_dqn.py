"""Discrete CQL (Kumar et al. 2020) on a Double DQN, with d3rlpy's DiscreteCQLConfig defaults.

    python -m launch.collect --config=launch/configs/collect/notifications_epsilon_greedy.py \
        --output=runs/data/notif_eps.npz
    python -m launch.train --config=launch/configs/cql_dqn.py \
        --config.dataset=runs/data/notif_eps.npz --config.num_seeds=4 --workdir=runs/cql_dqn
"""
import ml_collections

from jaxmtf.configs import base


def get_config():
    config = base.get_base_config()
    config.algo = "cql_dqn"
    config.batch_size = 32  # d3rlpy's mini-batch
    agent = config.agent = ml_collections.ConfigDict()
    agent.critic_hidden_dims = (256, 256)  # Q-network MLP widths, then a Linear head per action
    agent.num_critics = 1  # Q ensemble size; each critic gets its own penalty
    agent.learning_rate = 6.25e-5  # Adam learning rate
    agent.target_update_interval = 8_000  # updates between hard copies of Q into the target network
    agent.discount = 0.99  # gamma (sweepable)
    agent.alpha = 1.0  # weight of the penalty logsumexp_a Q(s, a) - Q(s, a_data) (sweepable)
    return config
