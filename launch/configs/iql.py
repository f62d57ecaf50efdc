"""Launch config: IQL (Kostrikov et al. 2022) with the defaults of ikostrikov/implicit_q_learning
(configs/mujoco_config.py).

The defaults live in the package (jaxmtf/configs/iql.py, one comment per field), so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs import iql


def get_config():
    return iql.get_config()
