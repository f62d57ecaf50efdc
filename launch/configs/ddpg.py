"""Launch config: DDPG as sfujim's OurDDPG: TD3 with one critic, no target smoothing, no delay.

The defaults live in the package (jaxmtf/configs/ddpg.py, one comment per field), so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs import ddpg


def get_config():
    return ddpg.get_config()
