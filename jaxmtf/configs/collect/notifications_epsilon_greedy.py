"""Notification simulator, behaviour 'epsilon_greedy': the rule, or a uniform count with probability epsilon.

    python -m launch.collect --config=launch/configs/collect/notifications_epsilon_greedy.py \
        --output=runs/data/notif_eps.npz
"""
from jaxmtf.configs.collect import base


def get_config():
    config = base.get_base_config("epsilon_greedy")
    config.simulator = "notifications"  # the discrete simulator (jaxmtf.sim.notifications.env)
    config.num_users = 2_000  # users logged, 30 days each at most
    config.epsilon = 0.3  # share of uniform counts: every count is logged in every state
    return config
