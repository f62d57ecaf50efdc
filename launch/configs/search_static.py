"""Launch config: CEM search for the best static fusion weights: the production baseline to beat.

The defaults live in the package (jaxmtf/configs/search_static.py, one comment per field), so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs import search_static


def get_config():
    return search_static.get_config()
