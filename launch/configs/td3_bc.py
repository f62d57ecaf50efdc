"""Launch config: TD3+BC (Fujimoto & Gu 2021) with the defaults of sfujim/TD3_BC.

The defaults live in the package (jaxmtf/configs/td3_bc.py, one comment per field), so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs import td3_bc


def get_config():
    return td3_bc.get_config()
