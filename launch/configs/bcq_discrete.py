"""Launch config: Discrete BCQ (Fujimoto et al. 2019) with d3rlpy's DiscreteBCQConfig defaults.

The defaults live in the package (jaxmtf/configs/bcq_discrete.py, one comment per field), so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs import bcq_discrete


def get_config():
    return bcq_discrete.get_config()
