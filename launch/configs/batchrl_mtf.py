"""Launch config: BatchRL-MTF (Zhang et al., KDD 2022, arXiv 2208.04560) as its paper configures it,
a config of progressive training.

The defaults live in the package (jaxmtf/configs/batchrl_mtf.py, one comment per field), so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs import batchrl_mtf


def get_config():
    return batchrl_mtf.get_config()
