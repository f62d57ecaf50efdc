"""What the launchers run, importable from a notebook: load data, train, evaluate."""
from typing import Any, Dict

from absl import logging

from jaxmtf import training
from jaxmtf.data import dataset as dataset_lib
from jaxmtf.data import synthetic
from jaxmtf.types import Dataset

SYNTHETIC_PREFIX = "synthetic:"


def load_dataset(spec: str) -> Dataset:
    """A dataset file path, or `synthetic:one_step` for the built-in one-step task."""
    if spec.startswith(SYNTHETIC_PREFIX):
        name = spec[len(SYNTHETIC_PREFIX):]
        if name != "one_step":
            raise ValueError(f"config field 'dataset': unknown synthetic dataset {name!r} (known: one_step)")
        return synthetic.one_step_dataset()
    return dataset_lib.load(spec)


def train_from_config(config, workdir: str) -> Dict[str, Any]:
    """Loads `config.dataset` and trains on it in `workdir` (resuming if possible)."""
    if not config.get("dataset"):
        raise ValueError("config field 'dataset': empty; give --config.dataset=PATH")
    dataset = load_dataset(config.dataset)
    logging.info("dataset %s: %d transitions, obs %d, act %d", config.dataset, dataset.size, dataset.obs_dim, dataset.act_dim)
    return training.train(config, dataset, workdir)


class _DropOrbaxInfo:
    """A logging filter: orbax logs several INFO lines per checkpoint; keep its warnings."""

    def filter(self, record) -> bool:
        return record.levelno >= 30 or "orbax" not in record.pathname


def quiet_orbax_logs() -> None:
    """Hides orbax's INFO lines on the absl handler (launchers call this)."""
    import logging as std_logging

    logging.get_absl_handler().addFilter(_DropOrbaxInfo())
    std_logging.getLogger().addFilter(_DropOrbaxInfo())
