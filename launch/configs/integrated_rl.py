"""IntegratedRL-MTF (arXiv 2404.17589): the agent, and its progressive rounds of explore, train, redeploy.

Progressive training on the default simulator (5 rounds, each: collect with
the box around the current policy, train, evaluate, redeploy):

    python -m launch.progressive --config=launch/configs/integrated_rl.py --workdir=runs/integrated_rl

The agent alone on any dataset (the `progressive` fields are then unused):

    python -m launch.train --config=launch/configs/integrated_rl.py \
        --config.dataset=runs/data/exploration_box.npz --config.num_seeds=4 --workdir=runs/integrated_rl_agent
"""
import ml_collections

from launch.configs import td3


def get_config():
    config = td3.get_config()
    config.algo = "integrated_rl"
    config.num_updates = 20_000  # gradient updates per run (per round in progressive training)
    config.eval_every = 0  # evaluations during a round's training (progressive rounds evaluate at their end)
    config.checkpoint_every = 2_000  # updates between checkpoints (multiple of chunk_size)
    agent = config.agent
    agent.num_critics = 4  # critic ensemble size (nn.vmap); its std is the disagreement penalty
    agent.discount = 0.9  # gamma, the paper's (sweepable)
    agent.box_half_width = 0.15  # eps of the exploration box: no actor penalty, no discount decay inside it
    agent.alpha = 2.5  # lambda = alpha / mean|Q| scales the Q term, as TD3+BC (sweepable)
    agent.box_weight = 1.0  # rho, weight of the quadratic penalty outside the box (sweepable)
    agent.discount_decay = 1.0  # kappa: gamma_t = gamma exp(-kappa L1 excess of a_t beyond the box) (sweepable)
    agent.disagreement_weight = 1.0  # beta, weight of the ensemble std in the actor objective (sweepable)
    agent.target_reduction = "min"  # how the target reduces the ensemble: "min" (TD3's) or "mean"
    config.progressive = progressive_config(exploration="box")
    return config


def progressive_config(exploration: str) -> ml_collections.ConfigDict:
    """The fields of jaxmtf.progressive: rounds, collection and evaluation."""
    p = ml_collections.ConfigDict()
    p.rounds = 5  # rounds of collect, train, evaluate, redeploy (the paper's 5)
    p.exploration = exploration  # collection policy: "box" around the current policy, "mixed" (BatchRL-MTF), "uniform"
    p.box_half_width = 0.15  # eps of pi_explore = clip(pi_current + U(-eps, eps)); equals agent.box_half_width
    p.box_mode = "clip"  # "clip" (the paper's literal clip, atoms on the faces) or "truncate" (box cut to [-1, 1])
    p.noise_sigma = 0.3  # std of the Gaussian half of "mixed", around the baseline
    p.num_users = 2_000  # sessions collected per round and seed (the per-round exploration budget)
    p.train_on = "all"  # "all": every round's data so far, or "newest": this round's only
    p.eval_users = 2_000  # fresh users scoring every policy of a round (the same users every round)
    p.eval_seed = 12345  # key of those users
    p.env = ml_collections.ConfigDict()  # simulator parameter overrides, e.g. {"max_steps": 20}
    return p
