"""Launch config: BCQ, continuous (Fujimoto, Meger & Precup 2019) with the defaults of sfujim/BCQ.

The defaults live in the package (jaxmtf/configs/bcq.py, one comment per field), so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs import bcq


def get_config():
    return bcq.get_config()
