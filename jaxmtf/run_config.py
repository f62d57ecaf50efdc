"""The training config's driver fields: validation and the hparam sweep grid.

Everything here runs before anything is built, so a bad config fails with a
message naming the field (`ConfigError`), not with a shape error inside jit.
"""
import itertools
from typing import Dict, List, Tuple

import jax.numpy as jnp

from jaxmtf.agents import common


class ConfigError(ValueError):
    """A training config field is missing or inconsistent. The message names it."""


def validate_config(config) -> None:
    """Checks the driver's fields of a training config before anything is built."""
    for field in ("algo", "agent", "num_updates", "chunk_size", "batch_size", "num_seeds", "seed"):
        if field not in config:
            raise ConfigError(f"config field '{field}': missing")
    for field in ("num_updates", "chunk_size", "batch_size", "num_seeds"):
        if int(config[field]) <= 0:
            raise ConfigError(f"config field '{field}': must be positive, got {config[field]}")
    seed_group_field(config)
    for field in ("eval_every", "checkpoint_every", "num_updates"):
        value = int(config.get(field, 0) or 0)
        if value and value % int(config.chunk_size):
            raise ConfigError(
                f"config field '{field}': {value} is not a multiple of chunk_size={config.chunk_size} "
                "(logging, evaluation and checkpoints happen between chunks)"
            )


def seed_group_field(config):
    """config.seed_group_size checked: None (auto) or an int >= 0."""
    value = config.get("seed_group_size", None)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ConfigError(f"config field 'seed_group_size': expected None (auto) or an integer >= 0, got {value!r}")
    return value


def parse_sweep(spec: str) -> Dict[str, List[float]]:
    """"alpha=1,2.5,5;discount=0.9,0.99" -> {"alpha": [1, 2.5, 5], "discount": [0.9, 0.99]}."""
    sweep = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, sep, values = part.partition("=")
        try:
            if not sep:
                raise ValueError
            sweep[name.strip()] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"config field 'sweep': cannot parse {part!r} (expected name=v1,v2,...; settings joined by ';')")
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
                f"config field 'sweep.{name}': not a sweepable hyperparameter of this agent "
                f"(sweepable: {sorted(default_hparams)})"
            )
        if len(values) == 0:
            raise ConfigError(f"config field 'sweep.{name}': empty list of values")
    names = sorted(sweep)
    settings = list(itertools.product(*(sweep[n] for n in names))) or [()]
    labels = [dict(zip(names, map(float, values))) for values in settings]
    hparams = {
        name: jnp.asarray([label.get(name, float(default)) for label in labels], jnp.float32)
        for name, default in default_hparams.items()
    }
    return hparams, labels
