"""Launch config: UWAC (Wu et al. 2021) with the defaults of apple/ml-uwac's examples/UWAC_hdf5_d4rl.py (UWAC_Dropout).

The defaults live in the package (jaxmtf/configs/uwac.py, one comment per field), so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs import uwac


def get_config():
    return uwac.get_config()
