"""Launch config: IntegratedRL-MTF (arXiv 2404.17589, "UnifiedRL"): the agent as the paper writes it,
and its progressive rounds.

The defaults live in the package (jaxmtf/configs/integrated_rl.py, one comment per field), so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs import integrated_rl


def get_config(variant: str = ""):
    return integrated_rl.get_config(variant)
