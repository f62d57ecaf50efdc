"""UWAC (Wu et al. 2021) with the defaults of apple/ml-uwac's examples/UWAC_hdf5_d4rl.py (UWAC_Dropout).

    python -m launch.train --config=launch/configs/uwac.py \
        --config.dataset=runs/data/mixed.npz --config.num_seeds=4 --workdir=runs/uwac
"""
import ml_collections

from jaxmtf.configs import base


def get_config():
    config = base.get_base_config()
    config.algo = "uwac"
    config.batch_size = 256  # the example script's batch_size
    agent = config.agent = ml_collections.ConfigDict()
    agent.actor_hidden_dims = (256, 256)  # tanh-Gaussian policy MLP widths (layer_size M = 256)
    agent.critic_hidden_dims = (256, 256)  # MC-dropout critic MLP widths, twin critics
    agent.vae_hidden_dims = (750, 750)  # behaviour VAE encoder and decoder widths (BEAR's VAEPolicy)
    agent.dropout_rate = 0.1  # critic dropout after each hidden layer, on in every pass (--drop_rate)
    # Spectral norm on every critic layer (targets too), one power iteration per training forward (--SN, True).
    agent.spectral_norm = True
    agent.num_dropout_samples = 100  # stochastic passes for the mean and variance of Q (FlattenDropout_Mlp.multiple)
    agent.dropout_pass_batch = 10  # dropout passes computed together (memory vs parallelism; results equal)
    # The masks' generator: "threefry" (JAX's, flax's nn.Dropout) or "hash" (networks.hashed_keep_mask: a
    # counter hash, keep probability 0.899994 for 0.9; UWAC ~x faster on a CPU, benchmarks/README.md).
    agent.dropout_masks = "threefry"
    agent.num_target_actions = 10  # policy actions at s' whose best value is the target
    agent.num_samples_mmd_match = 4  # policy and VAE actions per state in the MMD
    agent.num_eval_actions = 100  # act: argmax of Q1 over this many policy samples (--num_samples); 0 = tanh(mean)
    agent.kernel = "gaussian"  # MMD kernel: "gaussian" or "laplacian" (--kernel_type)
    agent.mmd_sigma = 20.0  # kernel width, exp(-d / (2 sigma)) (--mmd_sigma)
    agent.warmup = 40_000  # updates during which the policy trains on the MMD term alone
    agent.actor_lr = 1e-4  # Adam learning rate of the policy (--policy_lr)
    agent.critic_lr = 3e-4  # Adam learning rate of the critics (--qf_lr)
    agent.vae_lr = 3e-4  # Adam learning rate of the VAE (hard-coded in the trainer)
    agent.alpha_lr = 1e-3  # Adam learning rate of log alpha, the MMD Lagrange multiplier
    agent.use_exp_weight = True  # weight clamp(exp(-beta Var)); False: clamp(beta / Var)
    agent.clip_bottom = 0.0  # lower clamp of the weight (--clip_bottom)
    agent.clip_top = 1.0  # upper clamp of the weight (--clip_top)
    agent.var_pi = True  # also weight the actor's Q term by its uncertainty (--var_Pi, True in the example)
    agent.q_penalty = 0.0  # coefficient of the optional relu(Q) * Var critic penalty (--q_penalty)
    agent.use_exp_penalty = False  # penalise relu(Q) * exp(Var) instead (--use_exp_penalty)
    agent.discount = 0.99  # gamma (sweepable)
    agent.tau = 0.005  # polyak rate of the target critics, every update (sweepable)
    agent.beta = 0.5  # uncertainty down-weighting strength (sweepable)
    agent.target_mmd_thresh = 0.07  # MMD threshold eps of the Lagrangian (sweepable)
    return config
