"""Collection pipeline 'random' (see jaxmtf.data.collect).

    python -m launch.collect --config=launch/configs/collect/random.py --output=runs/data/random.npz
"""
from jaxmtf.configs.collect import base


def get_config():
    return base.get_base_config("random")
