"""Launch config: Double DQN (van Hasselt et al. 2016), offline: the DQN config with the online critic
choosing a_t (d3rlpy DoubleDQN).

The defaults live in the package (jaxmtf/configs/double_dqn.py, one comment per field), so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs import double_dqn


def get_config():
    return double_dqn.get_config()
