"""Fields every training config shares (the driver's); algorithm configs add `agent`."""
import ml_collections


def get_base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.algo = ""  # agent module, see jaxmtf.agents.ALGORITHMS
    config.dataset = "synthetic:one_step"  # path of a jaxmtf .npz dataset, or "synthetic:one_step"
    config.num_seeds = 4  # seeds trained together in one vmapped program
    config.seed = 0  # first seed; run i uses seed + i
    config.num_updates = 100_000  # gradient updates per run
    config.batch_size = 256  # transitions per update, sampled uniformly with replacement
    config.chunk_size = 1_000  # updates per compiled lax.scan call; logging happens between chunks
    config.eval_every = 10_000  # updates between evaluations (multiple of chunk_size; 0 = never)
    config.eval_users = 512  # simulated users per evaluation of each run (the same users for every run)
    config.eval_discount = 0.99  # discount of the evaluated discounted return
    config.eval_episodes = 10  # episodes per evaluation of each run in a minari: dataset's environment
    config.checkpoint_every = 10_000  # updates between orbax checkpoints (multiple of chunk_size)
    # most recent checkpoints kept on disk (>= 1; older ones are the fallback of a corrupt one)
    config.keep_checkpoints = 3
    config.normalize_observations = False  # standardise states with dataset mean and std + 1e-3
    config.tensorboard = False  # also write TensorBoard summaries (needs jaxmtf[tensorboard]); = writers "tensorboard"
    # Metric writers besides the JSONL files (which stay the record), comma-separated:
    # "tensorboard" (jaxmtf[tensorboard]), "wandb" (jaxmtf[wandb]); e.g. "tensorboard,wandb".
    config.writers = ""
    config.wandb_project = "jaxmtf"  # the Weights & Biases project of the "wandb" writer
    # The "wandb" writer's mode: "offline" (files under workdir/wandb, `wandb sync` uploads them), "online", "disabled".
    config.wandb_mode = "offline"
    # Minari datasets: an evaluation's returns D4RL-normalised, 100 (r - min) / (max - min), when both are given.
    config.ref_min_score = ml_collections.config_dict.placeholder(float)
    config.ref_max_score = ml_collections.config_dict.placeholder(float)
    config.shard_runs = True  # split the seeds (or settings) over all devices (of every process, multi-host)
    # Seeds vmapped at a time, groups looped inside the compiled chunk: 0 = all at once;
    # None (auto) = 1 on a CPU (a loop of the one-seed program: keeps its throughput), all at once on GPU/TPU.
    config.seed_group_size = ml_collections.config_dict.placeholder(int)
    # Swept hparams, "name=v1,v2;other=v3"; the cartesian grid x seeds is one program.
    config.sweep = ""
    # Start afresh in a workdir that holds another run: deletes its checkpoints and logs first (explicitly).
    config.force_new_run = False
    return config
