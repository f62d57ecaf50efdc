"""Launch config: CQL (Kumar et al. 2020), continuous actions, with the defaults of aviralkumar2907/CQL.

The defaults live in the package (jaxmtf/configs/cql.py, one comment per field), so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs import cql


def get_config():
    return cql.get_config()
