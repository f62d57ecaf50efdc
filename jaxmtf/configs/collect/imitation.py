"""Collection pipeline 'imitation' (see jaxmtf.data.collect).

    python -m launch.collect --config=launch/configs/collect/imitation.py --output=runs/data/imitation.npz
"""
from jaxmtf.configs.collect import base


def get_config():
    return base.get_base_config("imitation")
