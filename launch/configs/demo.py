"""Launch config: The main job on small defaults: collect, search the static baseline, train, evaluate.

The defaults live in the package (jaxmtf/configs/demo.py, one comment per field), so the library and
notebooks read the same ones after a plain `pip install`. Copy this file to change them, or override a field
on the command line (--config.FIELD=VALUE).
"""
from jaxmtf.configs import demo


def get_config():
    return demo.get_config()
