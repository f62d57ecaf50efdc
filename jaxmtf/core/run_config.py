"""The training config's driver fields: validation, the parsed `Driver` settings, the seeds x hparams grid.

Everything here runs before anything is built or written, so a bad config
fails with one line naming the field, the value and what was expected
(`ConfigError`), not with a shape error inside jit. `DRIVER_FIELDS` is the
table of the driver's fields: a new driver field needs a spec there (an
unknown field is refused, with the nearest known names), and each agent
module's `CONFIG_FIELDS` is the table of its `config.agent`.
"""
import dataclasses
import itertools
from typing import Dict, List, NamedTuple, Optional, Tuple

import jax.numpy as jnp

from jaxmtf import agents, schema
from jaxmtf.agents import common
from jaxmtf.runs import writers as writers_lib


class ConfigError(ValueError):
    """A training config field is missing or inconsistent. The message names it."""


def _sweep_like(value) -> bool:
    return isinstance(value, str) or (hasattr(value, "items") and all(isinstance(k, str) for k in value))


# The driver's fields (jaxmtf/configs/base.py documents each); required ones every training config has.
DRIVER_FIELDS = {
    "algo": schema.choice(list(agents.ALGORITHMS)),
    "agent": schema.Field(lambda v: hasattr(v, "items"), "a ConfigDict of the agent's fields"),
    "dataset": schema.string(required=False),
    "num_seeds": schema.integer(1),
    "seed": schema.integer(0, 2**32 - 1),  # PRNGKey takes a uint32
    "num_updates": schema.integer(1),
    "batch_size": schema.integer(1),
    "chunk_size": schema.integer(1),
    "eval_every": schema.integer(0, required=False),
    "eval_users": schema.integer(1, required=False),
    "eval_discount": schema.real(0, 1, required=False),
    "eval_episodes": schema.integer(1, required=False),
    "checkpoint_every": schema.integer(0, required=False),
    # At least one: a run must leave a checkpoint to resume from (0 finished with none).
    "keep_checkpoints": schema.integer(1, required=False),
    "normalize_observations": schema.boolean(required=False),
    "tensorboard": schema.boolean(required=False),
    "writers": schema.Field(lambda v: isinstance(v, str), "a comma-separated string of writer names "
                            f"from {list(writers_lib.KNOWN_WRITERS)} ('' for none)", False),
    "wandb_project": schema.string(required=False),
    "wandb_mode": schema.choice(writers_lib.WANDB_MODES, required=False),
    "ref_min_score": schema.optional(schema.real()),
    "ref_max_score": schema.optional(schema.real()),
    "shard_runs": schema.boolean(required=False),
    "seed_group_size": schema.optional(schema.integer(0)),
    "sweep": schema.Field(_sweep_like, "a string 'name=v1,v2;other=v3' or a mapping name -> values", False),
    "force_new_run": schema.boolean(required=False),
    # Progressive training's rounds (IntegratedRL-MTF configs); jaxmtf.workflows.progressive checks its fields.
    "progressive": schema.Field(lambda v: hasattr(v, "items"), "a ConfigDict of progressive training's fields", False),
}


def validate_config(config) -> None:
    """Checks the driver's fields, the agent's fields and the sweep of a training config before anything
    is built; raises ConfigError naming the field, the value and what was expected."""
    schema.check_fields(config, DRIVER_FIELDS, "", ConfigError)
    agents.check_agent_config(config, ConfigError)
    seed_group_field(config)
    check_chunk_multiples(config)
    if int(config.seed) + int(config.num_seeds) - 1 > 2**32 - 1:
        raise ConfigError(f"config field 'seed': got {config.seed}, expected seed + num_seeds - 1 <= {2**32 - 1}")
    check_sweep_values(config)
    writers_field(config)
    reference_scores(config)


def writers_field(config) -> List[str]:
    """The writers the config asks for (`writers`, and "tensorboard" for `tensorboard=True`), each known and
    installed; a ConfigError names the field, the nearest known name or the package to install."""
    names = writers_lib.check_writers(config.get("writers", ""), ConfigError)
    if config.get("tensorboard", False) and "tensorboard" not in names:
        names += writers_lib.check_writers("tensorboard", ConfigError, field="tensorboard")
    return names


def reference_scores(config) -> Optional[Tuple[float, float]]:
    """(ref_min_score, ref_max_score) for the D4RL-normalised score, None when not both are given."""
    lo, hi = config.get("ref_min_score", None), config.get("ref_max_score", None)
    if lo is None and hi is None:
        return None
    if lo is None or hi is None:
        missing = "ref_min_score" if lo is None else "ref_max_score"
        raise ConfigError(f"config field '{missing}': got None, expected a number (the normalised score needs both "
                          "ref_min_score and ref_max_score)")
    if not float(hi) > float(lo):
        raise ConfigError(f"config field 'ref_max_score': got {hi}, expected a number > ref_min_score={lo}")
    return float(lo), float(hi)


def check_chunk_multiples(config) -> None:
    for field in ("eval_every", "checkpoint_every", "num_updates"):
        value = int(config.get(field, 0) or 0)
        if value and value % int(config.chunk_size):
            raise ConfigError(
                f"config field '{field}': got {value}, expected a multiple of chunk_size={config.chunk_size} "
                "(not a multiple of chunk_size: logging, evaluation and checkpoints happen between chunks)"
            )


def check_sweep_values(config) -> None:
    """Every swept value is a value its agent field accepts (the same spec as the config's)."""
    sweep = config.get("sweep", None)
    sweep = parse_sweep(sweep) if isinstance(sweep, str) else dict(sweep or {})
    for name, values in sweep.items():
        spec = agents.agent_field(config.algo, name)
        for value in values:
            if spec is not None and not spec.check(value):
                raise schema.field_error(ConfigError, f"sweep.{name}", value, spec.expected)


def check_against_dataset(config, num_transitions: int) -> None:
    """Cross-field rules between the config and the dataset.

    A batch larger than the dataset is refused: batches are sampled with
    replacement, so it would run, but every batch would repeat transitions
    and the stated batch size would not be the effective one.
    """
    if int(config.batch_size) > num_transitions:
        raise ConfigError(
            f"config field 'batch_size': got {config.batch_size}, expected at most the dataset's "
            f"{num_transitions} transitions"
        )


def check_action_space(config, dataset) -> None:
    """A discrete agent needs a dataset of discrete actions, and a continuous agent a continuous one."""
    discrete = agents.is_discrete(config.algo)
    if discrete != dataset.is_discrete:
        kind = "discrete (integer) actions" if dataset.is_discrete else "continuous actions"
        want = ("a discrete agent (dqn, double_dqn, cql_dqn, bcq_discrete)" if dataset.is_discrete
                else "a continuous agent (td3, bcq, cql, ...)")
        raise ConfigError(f"config field 'algo': got {config.algo!r}, which is "
                          f"{'discrete' if discrete else 'continuous'}, but the dataset has {kind}; expected {want}")


def seed_group_field(config):
    """config.seed_group_size checked: None (auto) or an int >= 0."""
    value = config.get("seed_group_size", None)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ConfigError(f"config field 'seed_group_size': got {value!r}, expected None (auto) or an integer >= 0")
    return value


def parse_sweep(spec: str) -> Dict[str, List[float]]:
    """"alpha=1,2.5,5;discount=0.9,0.99" -> {"alpha": [1, 2.5, 5], "discount": [0.9, 0.99]}."""
    sweep = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, sep, values = part.partition("=")
        try:
            if not sep:
                raise ValueError
            parsed = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(
                f"config field 'sweep': cannot parse {part!r}, expected name=v1,v2,... (settings joined by ';')"
            )
        if name.strip() in sweep:
            raise ConfigError(f"config field 'sweep': got {spec!r}, expected each hparam named once "
                              f"({name.strip()!r} twice)")
        sweep[name.strip()] = parsed
    return sweep


def hparam_grid(default_hparams: common.HParams, sweep) -> Tuple[common.HParams, List[Dict[str, float]]]:
    """The cartesian grid of `sweep` over the defaults.

    `sweep` is a mapping name -> list of values, or its string form
    "name=v1,v2;other=v3" (what `--config.sweep` takes). Returns hparams with
    leaves of shape [H], and one label per setting holding the swept values
    (empty dicts when nothing is swept, H = 1).
    """
    sweep = parse_sweep(sweep) if isinstance(sweep, str) else dict(sweep or {})
    for name, values in sweep.items():
        if name not in default_hparams:
            raise ConfigError(
                f"config field 'sweep.{name}': got {name!r}, expected a sweepable hyperparameter of this agent "
                f"(not a sweepable hparam{schema.nearest(name, list(default_hparams))}; "
                f"sweepable: {sorted(default_hparams)})"
            )
        if len(values) == 0:
            raise ConfigError(f"config field 'sweep.{name}': got [], expected a non-empty list of values")
        if len(set(map(float, values))) != len(values):
            raise ConfigError(
                f"config field 'sweep.{name}': got {list(values)}, expected distinct values (a repeated value "
                "trains the same runs twice)"
            )
    names = sorted(sweep)
    settings = list(itertools.product(*(sweep[n] for n in names))) or [()]
    labels = [dict(zip(names, map(float, values))) for values in settings]
    hparams = {
        name: jnp.asarray([label.get(name, float(default)) for label in labels], jnp.float32)
        for name, default in default_hparams.items()
    }
    return hparams, labels


@dataclasses.dataclass(frozen=True)
class Driver:
    """The driver's settings of a config, read once (`Driver.of`) and then by attribute.

    Absent optional fields take their "off" value here (no evaluation, no
    checkpoints between the last one, no sharding opt-out): FQE's and other
    agent-like configs carry only the fields they use. jaxmtf/configs/base.py
    documents each field and holds a training run's usual values.
    """
    num_updates: int
    batch_size: int
    chunk_size: int
    algo: str = ""
    dataset: str = ""
    eval_every: int = 0
    checkpoint_every: int = 0
    keep_checkpoints: int = 3
    normalize_observations: bool = False
    tensorboard: bool = False
    writers: str = ""  # comma-separated metric writers (jaxmtf.runs.writers)
    wandb_project: str = "jaxmtf"
    wandb_mode: str = "offline"
    shard_runs: bool = True
    seed_group_size: Optional[int] = None  # None: automatic (sharding.seed_group_size)
    force_new_run: bool = False

    @classmethod
    def of(cls, config) -> "Driver":
        """The driver's fields of `config` (a ConfigDict or mapping); the config's own checks (validate_config,
        ope.config) have run before, so only seed_group_size's form is checked here."""
        values = {f.name: config[f.name] for f in dataclasses.fields(cls) if f.name in config}
        values = {k: v for k, v in values.items() if v is not None or k == "seed_group_size"}
        values["seed_group_size"] = seed_group_field(config)
        for name in ("num_updates", "batch_size", "chunk_size", "eval_every", "checkpoint_every", "keep_checkpoints"):
            if name in values:
                values[name] = int(values[name] or 0)
        return cls(**values)


class RunGrid(NamedTuple):
    """The S x H runs of one program: seeds, and the hparam settings every seed trains."""
    seeds: List[int]
    hparams: common.HParams  # leaves [H]
    labels: List[Dict[str, float]]  # one per setting: its swept values ({} when nothing is swept)


def run_grid(config, default_hparams: common.HParams) -> RunGrid:
    """config.num_seeds seeds from config.seed, times the grid of config.sweep over the agent's defaults."""
    hparams, labels = hparam_grid(default_hparams, config.get("sweep", None))
    return RunGrid([int(config.seed) + i for i in range(int(config.num_seeds))], hparams, labels)
