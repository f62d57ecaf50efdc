"""IntegratedRL-MTF (arXiv 2404.17589, "UnifiedRL"): the agent as the paper writes it, and its progressive rounds.

Progressive training on the default simulator (one budget of sessions split
over 5 rounds, each: collect with the box around the deployed policy, train
warm-started from it, evaluate, redeploy):

    python -m launch.progressive --config=launch/configs/integrated_rl.py --workdir=runs/integrated_rl

One choice back to the earlier reading of the paper (the ablations of
benchmarks/mtf_progressive.py), or all of them ("earlier"):

    python -m launch.progressive --config=launch/configs/integrated_rl.py:quadratic_penalty --workdir=...

The agent alone on a dataset that logs its exploration centre (`behaviour_centre`):

    python -m launch.train --config=launch/configs/integrated_rl.py \
        --config.dataset=runs/data/exploration_box.npz --config.num_seeds=4 --workdir=runs/integrated_rl_agent
"""
import ml_collections

from jaxmtf.configs import td3

# The default simulator's reward weights (sim.mtf.env.EnvParams.reward_weights) split into the paper's two
# critic groups: watch time (the long view) and the other behaviours (click, like, comment, follow, forward).
TWO_GROUPS = ((0.0, 1.0, 0.0, 0.0, 0.0, 0.0), (1.0, 0.0, 2.0, 3.0, 5.0, 3.0))

# One-at-a-time ablations: each sets one earlier choice back (name -> (agent fields, progressive fields)).
VARIANTS = {
    "logged_anchor": ({"box_anchor": "logged_action"}, {}),  # box around the logged action, not mu_bp(s)
    "quadratic_penalty": ({"penalty_shape": "quadratic"}, {}),  # mean_d excess^2 instead of the exponential
    "smoothing": ({"policy_noise": 0.2}, {}),  # TD3's target smoothing noise (sigma 0.2 > the box's 0.15)
    "min_target": ({"target_reduction": "min"}, {}),  # every critic bootstraps from the ensemble's min
    "small_ensemble": ({"num_critics": 2}, {}),  # 2 critics per group instead of 10
    "one_group": ({"reward_groups": ()}, {}),  # one critic group on the scalar reward
    "td3_bc_scaling": ({"q_scaling": "td3_bc"}, {}),  # lambda = alpha / mean|Q| on the Q terms
    "no_warm_start": ({}, {"warm_start": "none"}),  # every round from a fresh actor
    # The penalty's weight eta (open in the paper; 1 by default): ten times, to keep the actor inside the box.
    "strong_penalty": ({"box_weight": 10.0}, {}),
    # Not an earlier choice: what a wider trusted region buys (the box of the data and of the agent, 0.3).
    "wide_box": ({"box_half_width": 0.3}, {"box_half_width": 0.3}),
    # The implementation before issue 19, all choices at once.
    "earlier": ({"box_anchor": "logged_action", "penalty_shape": "quadratic", "policy_noise": 0.2,
                 "target_reduction": "min", "num_critics": 4, "reward_groups": (), "q_scaling": "td3_bc",
                 "discount_decay": 1.0}, {"warm_start": "none"}),
}


def get_config(variant: str = ""):
    config = td3.get_config()
    config.algo = "integrated_rl"
    config.num_updates = 20_000  # gradient updates per run (per round in progressive training)
    config.eval_every = 0  # evaluations during a round's training (progressive rounds evaluate at their end)
    config.checkpoint_every = 2_000  # updates between checkpoints (multiple of chunk_size)
    agent = config.agent
    agent.num_critics = 10  # critics per group (the paper's 24: launch/configs/integrated_rl_paper.py)
    agent.reward_groups = TWO_GROUPS  # per-task reward weights, one row per critic group; () = the scalar reward
    agent.group_weights = ()  # w_g of each group's value in the actor loss; () = all 1
    agent.discount = 0.9  # gamma, the paper's (sweepable)
    agent.policy_noise = 0.0  # target smoothing noise: 0, the paper's deterministic target action mu'(s')
    agent.target_reduction = "own"  # "own": y_gj bootstraps from Q'_gj (the paper's); "min" / "mean" over the group
    agent.box_half_width = 0.15  # eps of the exploration box: no actor penalty, no discount decay inside it
    agent.box_anchor = "centre"  # the box around mu_bp(s) logged with the data, or "logged_action"
    agent.penalty_shape = "exponential"  # d(mu(s)): "exponential" outside the box (the paper's), or "quadratic"
    agent.penalty_scale = 0.03  # s of d = sum_d exp(excess_d / s) - 1, in action units (open in the paper)
    agent.box_weight = 1.0  # eta, weight of d in the actor loss (sweepable; open in the paper)
    agent.discount_decay = 10.0  # kappa of phi = exp(-kappa L1 excess of mu'(s') beyond the box) (sweepable)
    agent.disagreement_weight = 1.0  # lambda, weight of the groups' critic std in the actor loss (sweepable)
    agent.q_scaling = "none"  # "none" (the paper's) or "td3_bc": the Q terms times alpha / mean|Q|
    agent.alpha = 2.5  # alpha of q_scaling "td3_bc" (sweepable; unused with "none")
    config.progressive = progressive_config(exploration="box")
    return apply_variant(config, variant)


def apply_variant(config, variant: str):
    """The config with one named VARIANTS entry applied ("" = the paper's method)."""
    if not variant:
        return config
    if variant not in VARIANTS:
        raise ValueError(f"config variant {variant!r}: unknown (known: {', '.join(sorted(VARIANTS))})")
    agent_fields, progressive_fields = VARIANTS[variant]
    for name, value in agent_fields.items():
        config.agent[name] = value
    for name, value in progressive_fields.items():
        config.progressive[name] = value
    return config


def progressive_config(exploration: str) -> ml_collections.ConfigDict:
    """The fields of jaxmtf.workflows.progressive: rounds, collection, warm start and evaluation."""
    p = ml_collections.ConfigDict()
    p.rounds = 5  # rounds of collect, train, evaluate, redeploy (the paper's 5)
    p.budget_sessions = 10_000  # sessions collected per seed over ALL rounds; each round collects budget / rounds
    p.exploration = exploration  # "box" around the deployed policy, "mixed" (BatchRL-MTF), "uniform"
    p.box_half_width = 0.15  # eps of mu_ep = clip(mu_bp + U(-eps, eps)); equals agent.box_half_width
    p.box_mode = "clip"  # "clip" (the paper's literal clip, atoms on the faces) or "truncate" (box cut to [-1, 1])
    p.noise_sigma = 0.1  # std of the Gaussian half of "mixed", around the baseline (BatchRL-MTF's 0.1)
    p.train_on = "all"  # "all": every round's data so far, or "newest": this round's only
    p.warm_start = "actor"  # each round starts from the deployed policy: "actor", "actor_critic", or "none"
    p.eval_users = 2_000  # fresh users scoring every policy of a round (the same users every round)
    p.eval_seed = 12345  # key of those users
    p.env = ml_collections.ConfigDict()  # simulator parameter overrides, e.g. {"max_steps": 20}
    return p
