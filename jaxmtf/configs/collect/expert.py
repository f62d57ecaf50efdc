"""Collection pipeline 'expert' (see jaxmtf.data.collect).

    python -m launch.collect --config=launch/configs/collect/expert.py --output=runs/data/expert.npz
"""
from jaxmtf.configs.collect import base


def get_config():
    return base.get_base_config("expert")
