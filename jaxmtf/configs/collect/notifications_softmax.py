"""Notification simulator, behaviour 'softmax': counts near the rule's likelier, softmax(-(a - rule(s))^2 / T).

    python -m launch.collect --config=launch/configs/collect/notifications_softmax.py \
        --output=runs/data/notif_softmax.npz
"""
from jaxmtf.configs.collect import base


def get_config():
    config = base.get_base_config("softmax")
    config.simulator = "notifications"  # the discrete simulator (jaxmtf.sim.notifications.env)
    config.num_users = 2_000  # users logged, 30 days each at most
    config.temperature = 1.0  # rule's count ~0.6, +-1 ~0.22 each, +-2 ~0.01: narrow exploration
    return config
