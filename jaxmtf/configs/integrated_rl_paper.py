"""IntegratedRL-MTF at the paper's ensemble size: 2 critic groups x 24 critics (launch/configs/integrated_rl.py has 10).

    python -m launch.progressive --config=launch/configs/integrated_rl_paper.py --workdir=runs/integrated_rl_paper
"""
from jaxmtf.configs import integrated_rl


def get_config(variant: str = ""):
    config = integrated_rl.get_config(variant)
    config.agent.num_critics = 24  # critics per group, the paper's m = 24
    return config
