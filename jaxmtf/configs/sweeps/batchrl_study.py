"""The BatchRL-MTF study: six offline algorithms x logged datasets, seeds vmapped inside each cell.

    python -m launch.sweep --config=launch/configs/sweeps/batchrl_study.py --workdir=runs/study
    python -m launch.sweep --config=launch/configs/sweeps/batchrl_study.py:small --workdir=/tmp/study

Scales (the `:SCALE` suffix; the notebooks read the SCALE environment variable):
  small      minutes on a laptop CPU: what CI executes the notebooks at.
  full       what benchmarks/README.md and the committed notebooks report, sized for a
             shared 2-core CPU: 5 algorithms (no UWAC) x 3 datasets, 3 seeds, 5,000 updates, 64-wide nets.
  reference  all six algorithms and datasets, 5 seeds, 30,000 updates and the algorithms' own widths:
             for an accelerator or a long CPU run (not measured here).

Budget (full): 5,000 updates with the BC warm-ups of CQL (policy_eval_start) and
UWAC (warmup) cut from 40,000 to 1,000, so both train their actors on Q for 4,000
updates, i.e. well past their warm-ups (the quality table's 3,000 updates with
300-step warm-ups were too short for CQL to recover). Datasets: random, mixed and
expert (= the BCQ paper's imitation setting: the expert, no noise). The final
buffer, `concurrent` and the online `imitation` each cost an online TD3 run
first and are in `reference` (small and full leave them out to fit the CPU).
"""
import ml_collections

ALGORITHMS = "ddpg,td3,td3_bc,bcq,cql,uwac"
ALL_DATASETS = ("random", "mixed", "expert", "final_buffer", "concurrent", "imitation")


def get_config(scale: str = "full"):
    if scale not in ("small", "full", "reference"):
        raise ValueError(f"batchrl_study scale: got {scale!r}, expected small, full or reference")
    config = ml_collections.ConfigDict()
    config.scale = scale  # recorded in the index; the presets below
    # launch/configs names, comma-separated. small: two, to keep CI's notebook runs short; full: UWAC left
    # out (its three cells would have added ~30 minutes to a run that already took 99 on the shared CPU).
    config.algorithms = {"small": "ddpg,td3_bc", "full": "ddpg,td3,td3_bc,bcq,cql", "reference": ALGORITHMS}[scale]
    # Dataset name -> a path, or "collect:PIPELINE" (collected once into WORKDIR/data/NAME.npz).
    datasets = {"small": ("random", "expert"), "full": ALL_DATASETS[:3], "reference": ALL_DATASETS}[scale]
    config.datasets = ml_collections.ConfigDict({name: f"collect:{name}" for name in datasets})

    # Overrides of every collection config (launch/configs/collect/base.py's fields).
    collect = config.collect = ml_collections.ConfigDict()
    collect.seed = 0  # users and behaviour noise of every dataset
    collect.num_users = {"small": 120, "full": 1_500, "reference": 2_000}[scale]  # logged sessions
    collect.eval_users = {"small": 200, "full": 2_000, "reference": 2_000}[scale]  # users scoring each behaviour
    online = collect.online = ml_collections.ConfigDict()  # the online runs of final_buffer/concurrent/imitation
    online.iterations = {"small": 300, "full": 1_500, "reference": 3_000}[scale]  # env steps per user slot
    online.random_iterations = {"small": 50, "full": 200, "reference": 200}[scale]  # uniform warm-up iterations

    # Driver fields every cell shares (launch/configs/base.py's).
    train = config.train = ml_collections.ConfigDict()
    train.num_seeds = {"small": 2, "full": 3, "reference": 5}[scale]  # seeds vmapped in each cell
    train.seed = 0  # first seed
    train.num_updates = {"small": 200, "full": 5_000, "reference": 30_000}[scale]  # updates per run
    train.chunk_size = {"small": 100, "full": 500, "reference": 1_000}[scale]  # updates per compiled scan
    train.eval_every = {"small": 100, "full": 1_000, "reference": 2_000}[scale]  # ground-truth evaluations
    train.eval_users = {"small": 64, "full": 500, "reference": 1_000}[scale]  # users per evaluation
    train.checkpoint_every = {"small": 100, "full": 1_000, "reference": 5_000}[scale]  # resume granularity
    # Every *_hidden_dims layer of every algorithm this wide (0 = the algorithms' own, 256).
    config.hidden_width = {"small": 32, "full": 64, "reference": 0}[scale]

    # Per-algorithm agent fields changed from the launch configs (each a deviation, with its reason).
    warm_up = {"small": 50, "full": 1_000, "reference": 5_000}[scale]
    config.agent_overrides = ml_collections.ConfigDict({
        # The references' 40k BC warm-ups are longer than these runs; cut so the actors train on Q.
        "cql": {"policy_eval_start": warm_up},
        # Same for UWAC's MMD-only warm-up; 4 dropout passes and 4 evaluation actions (reference: 100, 10)
        # and a 256-256 VAE (reference 750-750) keep a CPU cell within minutes.
        "uwac": {"warmup": warm_up, **({} if scale == "reference" else
                                        {"num_dropout_samples": 4, "num_eval_actions": 4,
                                         "vae_hidden_dims": (256, 256)})},
        # BCQ: a 256-256 VAE (reference 750-750) and 10 VAE actions per state at act time (reference 100:
        # an evaluation of 3 seeds x 500 users took 2.5 minutes with 100 on the shared CPU), as in
        # benchmarks/quality.py's CPU cuts.
        "bcq": {} if scale == "reference" else {"vae_hidden_dims": (256, 256), "num_act_samples": 10},
    })
    # Per-algorithm hparam grids ("name=v1,v2;other=v3"): each grid is vmapped with the seeds in one program.
    # TD3+BC's alpha around the reference's 2.5 (cheap: TD3+BC is the fastest cell).
    config.grids = ml_collections.ConfigDict({"td3_bc": "alpha=2.5,10" if scale == "small" else "alpha=1,2.5,10"})
    # Start the sweep afresh: deletes its index, cell run directories and collected data first (explicitly).
    config.force_new_run = False
    return config
