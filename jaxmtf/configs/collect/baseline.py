"""Collection pipeline 'baseline' (see jaxmtf.data.collect).

    python -m launch.collect --config=launch/configs/collect/baseline.py --output=runs/data/baseline.npz
"""
from jaxmtf.configs.collect import base


def get_config():
    return base.get_base_config("baseline")
