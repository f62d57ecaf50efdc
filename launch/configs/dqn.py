"""Launch config: DQN (Mnih et al. 2015), offline, on discrete actions, with d3rlpy's DQNConfig defaults.

The defaults live in the package (jaxmtf/configs/dqn.py, one comment per field), so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs import dqn


def get_config():
    return dqn.get_config()
