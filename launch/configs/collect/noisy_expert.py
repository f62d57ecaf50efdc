"""Launch config: Collection pipeline 'noisy_expert' (see jaxmtf.data.collect).

The defaults live in the package (jaxmtf/configs/collect/noisy_expert.py, one comment per field), so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs.collect import noisy_expert


def get_config():
    return noisy_expert.get_config()
