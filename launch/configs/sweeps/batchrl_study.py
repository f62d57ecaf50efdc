"""Launch config: The BatchRL-MTF study: six offline algorithms x logged datasets, seeds vmapped inside each cell.

The defaults live in the package (jaxmtf/configs/sweeps/batchrl_study.py, one comment per field), so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs.sweeps import batchrl_study


def get_config(scale: str = "full"):
    return batchrl_study.get_config(scale)
