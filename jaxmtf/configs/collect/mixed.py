"""Collection pipeline 'mixed' (see jaxmtf.data.collect).

    python -m launch.collect --config=launch/configs/collect/mixed.py --output=runs/data/mixed.npz
"""
from jaxmtf.configs.collect import base


def get_config():
    return base.get_base_config("mixed")
