"""Launch config: Collection pipeline 'baseline' (see jaxmtf.data.collect).

The defaults live in the package (jaxmtf/configs/collect/baseline.py, one comment per field), so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs.collect import baseline


def get_config():
    return baseline.get_config()
