"""BCQ, continuous (Fujimoto, Meger & Precup 2019) with the defaults of sfujim/BCQ.

    python -m launch.train --config=launch/configs/bcq.py \
        --config.dataset=runs/data/mixed.npz --config.num_seeds=4 --workdir=runs/bcq
"""
import ml_collections

from jaxmtf.configs import base


def get_config():
    config = base.get_base_config()
    config.algo = "bcq"
    config.batch_size = 100  # the reference's default mini-batch
    agent = config.agent = ml_collections.ConfigDict()
    agent.vae_hidden_dims = (750, 750)  # encoder and decoder MLP widths of the VAE
    agent.latent_dim = 0  # VAE latent size; 0 = 2 * act_dim (the reference)
    agent.actor_hidden_dims = (400, 300)  # perturbation model xi(s, a) MLP widths
    agent.critic_hidden_dims = (400, 300)  # critic MLP widths
    agent.num_critics = 2  # size of the critic ensemble (twin Q)
    agent.vae_lr = 1e-3  # Adam learning rate of the VAE (torch's default, as the reference)
    agent.actor_lr = 1e-3  # Adam learning rate of the perturbation model
    agent.critic_lr = 1e-3  # Adam learning rate of the critics
    agent.num_target_samples = 10  # VAE actions per next state in the critic target
    agent.num_act_samples = 100  # VAE actions per state that act() chooses among by Q1
    agent.discount = 0.99  # gamma (sweepable)
    agent.tau = 0.005  # polyak rate of the target networks, every update (sweepable)
    agent.lmbda = 0.75  # weight of the min in lmbda * min + (1 - lmbda) * max over critics (sweepable)
    agent.phi = 0.05  # max perturbation of a VAE action, per dimension (sweepable)
    return config
