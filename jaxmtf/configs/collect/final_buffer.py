"""Collection pipeline 'final_buffer' (see jaxmtf.data.collect).

    python -m launch.collect --config=launch/configs/collect/final_buffer.py --output=runs/data/final_buffer.npz
"""
from jaxmtf.configs.collect import base


def get_config():
    return base.get_base_config("final_buffer")
