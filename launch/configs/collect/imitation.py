"""Launch config: Collection pipeline 'imitation' (see jaxmtf.data.collect).

The defaults live in the package (jaxmtf/configs/collect/imitation.py, one comment per field), so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs.collect import imitation


def get_config():
    return imitation.get_config()
