"""Off-policy evaluation of trained policies on a logged dataset (jaxmtf.ope).

    python -m launch.ope --config=launch/configs/ope.py --config.dataset=runs/data/mixed.npz \
        --config.policies=runs/td3_bc,runs/static/static_weights.json,baseline --workdir=runs/ope

Writes WORKDIR/ope.jsonl (one row per estimator, policy and FQE seed, with
the true value beside each estimate when the dataset came from the
simulator), WORKDIR/ope_report.json (selection by estimate and by lower
confidence bound, and each estimator's scores against the truth) and the
FQE run directory WORKDIR/fqe (resumable).
"""
import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.dataset = ""  # path of a jaxmtf .npz dataset (IS rows need its behaviour_log_prob)
    config.policies = ""  # comma-separated: launch.train run dirs (DIR or DIR@STEP), static_weights.json, or names
    config.seed = 0  # seed of the targets' action samples, the k-means cells and the bootstrap
    config.discount = 0.99  # gamma of the estimated (and true) discounted return
    config.target_sigma = 0.2  # std of the truncated Gaussian that gives deterministic targets a density for IS
    config.target_epsilon = 0.1  # discrete datasets: deterministic targets act epsilon-greedy for IS (probabilities)
    config.max_weight = 0.0  # clip every cumulative importance weight at this value (0 = no clipping)
    config.noisy_switch_sigma = 0.3  # std of the named policy 'noisy_switch' around the switch rule
    config.num_cells = 16  # k-means cells of the state for marginalised IS
    config.num_components = 4  # principal components of the standardised observation the cells are fitted on
    config.bootstrap_replicates = 500  # resamples of the episodes for every confidence interval
    config.ci_level = 0.95  # level of the percentile bootstrap intervals
    config.eval_users = 2_000  # simulated users that measure each policy's true value (0 = no truth)
    config.top_k = 3  # k of the scores best@k, worst@k, mean@k, regret@k: the k policies an estimator ranks highest
    # support without a logged centre: behaviour density below this times the uniform density of the action space
    config.support_threshold = 0.1
    config.fqe = fqe_config()  # Fitted Q Evaluation: d3rlpy's FQEConfig but where said
    # ----- issue 20: NCIS, MTF-GAUC and model-based OPE (rows by jaxmtf/ope/extra_rows.py) -----
    config.ncis_cap = 10.0  # NCIS ('ncis', 'ncis_pd' rows): cap c of every importance ratio before normalising
    config.gauc_users = 200  # MTF-GAUC ('mtf_gauc' rows): simulated users per policy (0 = off; MTF simulator only)
    config.gauc_weight = "impressions"  # MTF-GAUC: a user's weight: 'impressions' (the paper's), 'reward', 'uniform'
    config.model_based = model_based_config()  # model-based OPE ('model_based' rows): a dynamics ensemble
    return config


def fqe_config():
    """Fitted Q Evaluation's fields (config.fqe)."""
    fqe = ml_collections.ConfigDict()
    fqe.num_seeds = 2  # FQE critics trained per policy (seeds vmapped in one program; rows also give their mean)
    fqe.seed = 0  # first FQE seed
    fqe.num_updates = 10_000  # gradient updates per critic
    fqe.batch_size = 100  # transitions per update (d3rlpy)
    fqe.chunk_size = 1_000  # updates per compiled chunk
    # Adam step size. d3rlpy: 1e-4 (and a target copy every 100 updates); on the default simulator
    # (gamma 0.99, sessions of up to 100 steps) its values were still rising by ~15 per 1000 updates
    # after 6000 (benchmarks/README.md, OPE), so both are faster here.
    fqe.learning_rate = 3e-4
    fqe.hidden_dims = (256, 256)  # critic MLP (d3rlpy's default encoder)
    fqe.num_critics = 1  # critics per FQE model (d3rlpy's n_critics)
    fqe.target_update_interval = 20  # hard copy of the critic into its target every this many updates (d3rlpy: 100)
    # draws per state of the evaluated policy's action for FQE's target and V(s) (their mean; a deterministic
    # target is smoothed first; discrete actions use the exact sum over actions instead)
    fqe.num_action_samples = 8
    # the conservative pick's lower bound of FQE and DR (mean over FQE seeds): bootstrap lower bound minus this
    # times the seeds' spread (std) of the estimate
    fqe.lcb_coef = 1.0
    fqe.checkpoint_every = 5_000  # updates between checkpoints of the FQE run directory
    fqe.keep_checkpoints = 2  # FQE checkpoints kept
    fqe.eval_every = 0  # the driver's evaluation hook: unused by FQE
    fqe.seed_group_size = ml_collections.config_dict.placeholder(int)  # as the training driver's (None = auto)
    return fqe


def model_based_config():
    """Model-based OPE's fields (config.model_based)."""
    mb = ml_collections.ConfigDict()
    mb.enabled = False  # fit the ensemble and add its rows (off by default: it trains one more driver program)
    mb.num_members = 3  # ensemble members (the driver's seeds, vmapped in one program)
    mb.seed = 0  # first member's seed
    mb.hidden_dims = (64, 64)  # each member's MLP (reward, next-observation and session-end heads on one trunk)
    mb.learning_rate = 1e-3  # Adam step size
    mb.num_updates = 2_000  # gradient updates per member
    mb.batch_size = 256  # transitions per update
    mb.chunk_size = 1_000  # updates per compiled chunk
    mb.horizon = 100  # steps of every model rollout from a logged first state (the simulator's max_steps)
    mb.lcb_coef = 1.0  # lower bound = mean - lcb_coef * std over members (also the rows' interval half-width)
    mb.checkpoint_every = 2_000  # updates between checkpoints of WORKDIR/model_based
    mb.keep_checkpoints = 1  # checkpoints kept
    mb.eval_every = 0  # the driver's evaluation hook: unused
    mb.seed_group_size = ml_collections.config_dict.placeholder(int)  # as the training driver's (None = auto)
    return mb
