"""Collection pipeline 'exploration_box' (see jaxmtf.data.collect).

    python -m launch.collect --config=launch/configs/collect/exploration_box.py --output=runs/data/exploration_box.npz
"""
from jaxmtf.configs.collect import base


def get_config():
    return base.get_base_config("exploration_box")
