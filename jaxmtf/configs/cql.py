"""CQL (Kumar et al. 2020), continuous actions, with the defaults of aviralkumar2907/CQL.

The reference's Gym MuJoCo setting (README: `--lagrange_thresh=-1
--min_q_weight=5.0 --policy_lr=1e-4 --min_q_version=3`): no Lagrange,
min_q_weight 5, deterministic backup, 40k steps of behaviour cloning first.

    python -m launch.train --config=launch/configs/cql.py \
        --config.dataset=runs/data/mixed.npz --config.num_seeds=4 --workdir=runs/cql
"""
import ml_collections

from jaxmtf.configs import base


def get_config():
    config = base.get_base_config()
    config.algo = "cql"
    agent = config.agent = ml_collections.ConfigDict()
    agent.actor_hidden_dims = (256, 256, 256)  # tanh-Gaussian policy MLP widths (layer_size 256, 3 layers)
    agent.critic_hidden_dims = (256, 256, 256)  # Q-function MLP widths
    agent.num_critics = 2  # Q ensemble size; targets and the policy use the min over it (num_qs)
    agent.actor_lr = 1e-4  # Adam lr of the policy and of log alpha (policy_lr)
    agent.critic_lr = 3e-4  # Adam lr of the Q-functions and of log alpha' (qf_lr)
    agent.automatic_entropy_tuning = True  # learn alpha toward entropy -|A|; False: alpha = 1
    agent.num_random = 10  # actions of each kind (uniform, pi(s), pi(s')) in the logsumexp
    agent.temperature = 1.0  # temp of the logsumexp (temp)
    agent.deterministic_backup = True  # no entropy term in the TD target
    agent.max_q_backup = False  # target: max over 10 policy actions at s' (then min over critics)
    agent.with_lagrange = False  # learn alpha' so that the penalty stays near lagrange_threshold
    agent.policy_eval_start = 40_000  # updates of behaviour cloning (alpha log pi - log pi(a|s)) first
    agent.discount = 0.99  # gamma (sweepable)
    agent.tau = 0.005  # polyak rate of the target Q-functions, every update (sweepable)
    agent.min_q_weight = 5.0  # weight of the conservative penalty, CQL's alpha (sweepable)
    agent.lagrange_threshold = 5.0  # tau of CQL-Lagrange, target_action_gap (sweepable with Lagrange)
    return config
