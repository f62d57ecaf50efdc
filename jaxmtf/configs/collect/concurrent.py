"""Collection pipeline 'concurrent' (see jaxmtf.data.collect).

    python -m launch.collect --config=launch/configs/collect/concurrent.py --output=runs/data/concurrent.npz
"""
from jaxmtf.configs.collect import base


def get_config():
    return base.get_base_config("concurrent")
