"""Collection pipeline 'noisy_expert' (see jaxmtf.data.collect).

    python -m launch.collect --config=launch/configs/collect/noisy_expert.py --output=runs/data/noisy_expert.npz
"""
from jaxmtf.configs.collect import base


def get_config():
    return base.get_base_config("noisy_expert")
