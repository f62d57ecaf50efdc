"""Launch config: Discrete CQL (Kumar et al. 2020) on a Double DQN, with d3rlpy's DiscreteCQLConfig defaults.

The defaults live in the package (jaxmtf/configs/cql_dqn.py, one comment per field), so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs import cql_dqn


def get_config():
    return cql_dqn.get_config()
