"""Launch config: IntegratedRL-MTF at the paper's ensemble size: 2 critic groups x 24 critics
(launch/configs/integrated_rl.py has 10).

The defaults live in the package (jaxmtf/configs/integrated_rl_paper.py, one comment per field), so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs import integrated_rl_paper


def get_config(variant: str = ""):
    return integrated_rl_paper.get_config(variant)
