"""Launch config: Off-policy evaluation of trained policies on a logged dataset (jaxmtf.ope).

The defaults live in the package (jaxmtf/configs/ope.py, one comment per field), so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs import ope


def get_config():
    return ope.get_config()
