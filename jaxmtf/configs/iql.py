"""IQL (Kostrikov et al. 2022) with the defaults of ikostrikov/implicit_q_learning (configs/mujoco_config.py).

The actor's learning rate decays (cosine) to 0 over agent.max_steps updates:
give it the run's num_updates (the reference's max_steps is its run length).

    python -m launch.train --config=launch/configs/iql.py \
        --config.dataset=runs/data/mixed.npz --config.num_seeds=4 \
        --config.num_updates=100000 --config.agent.max_steps=100000 --workdir=runs/iql
"""
import ml_collections

from jaxmtf.configs import base


def get_config():
    config = base.get_base_config()
    config.algo = "iql"
    agent = config.agent = ml_collections.ConfigDict()
    agent.actor_hidden_dims = (256, 256)  # Gaussian policy MLP widths (hidden_dims)
    agent.critic_hidden_dims = (256, 256)  # Q-function MLP widths
    agent.value_hidden_dims = (256, 256)  # V-function MLP widths
    agent.num_critics = 2  # Q ensemble size; V's regression target and the advantage use the min of the targets
    agent.actor_lr = 3e-4  # Adam lr of the policy, the start of its schedule
    agent.critic_lr = 3e-4  # Adam lr of the Q-functions
    agent.value_lr = 3e-4  # Adam lr of the V-function
    agent.actor_lr_schedule = "cosine"  # "cosine": actor_lr to 0 over max_steps; "constant" (opt_decay_schedule)
    agent.max_steps = config.num_updates  # length of the cosine schedule: keep it equal to num_updates
    agent.max_weight = 100.0  # clip of the advantage weights exp(temperature * (Q - V))
    agent.discount = 0.99  # gamma (sweepable)
    agent.tau = 0.005  # polyak rate of the target Q-functions, every update (sweepable)
    agent.expectile = 0.7  # tau of the expectile regression of V on Q (sweepable)
    agent.temperature = 3.0  # beta, inverse temperature of the advantage weights (sweepable)
    return config
