"""Launch config: TD3 (Fujimoto et al. 2018) with the defaults of sfujim/TD3.

The defaults live in the package (jaxmtf/configs/td3.py, one comment per field), so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs import td3


def get_config():
    return td3.get_config()
