"""Launch config: Notification simulator, behaviour 'epsilon_greedy': the rule, or a uniform count
with probability epsilon.

The defaults live in the package (jaxmtf/configs/collect/notifications_epsilon_greedy.py, one comment per field),
so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs.collect import notifications_epsilon_greedy


def get_config():
    return notifications_epsilon_greedy.get_config()
