"""Metric writers: where a run's scalars go besides its JSONL files (which stay canonical and always written).

One small interface, `MetricWriter`: ``write_scalars(step, {tag: value})``
and ``close()``. The run logger (`rundir.RunLogger`) hands every progress
line's and every evaluation's scalars to its writers, tagged
``train/<metric>/seed<s>/h<h>`` and ``eval/<metric>/seed<s>/h<h>``, with the
mean over the runs as ``<prefix>/<metric>/mean``.

- ``tensorboard``: event files in ``<workdir>/tensorboard``, through
  tensorboardX, else torch.utils.tensorboard, else TensorFlow's tf.summary
  (``pip install 'jaxmtf[tensorboard]'`` installs tensorboardX).
- ``wandb``: a Weights & Biases run (``pip install 'jaxmtf[wandb]'``) in the
  config's ``wandb_project``, mode ``wandb_mode`` ("offline" by default: files
  under ``<workdir>/wandb``, uploaded later by ``wandb sync``; "online" needs
  ``wandb login``; "disabled" writes nothing).

The training config names them (``writers = "tensorboard,wandb"``,
jaxmtf/configs/base.py); `check_writers` refuses an unknown name, or a writer
whose package is missing, before anything is built. Only the process that
writes the run directory (process 0, and not a finished run re-run) opens
writers; in a multi-host run they see process 0's runs (the JSONL files of
every process have all of them).
"""
import importlib
import math
import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Protocol

import numpy as np

KNOWN_WRITERS = ("tensorboard", "wandb")
WANDB_MODES = ("online", "offline", "disabled")
_LABELS = ("step", "seed", "hparam_index", "diverged_at_step")


class WriterError(ValueError):
    """A writer is unknown or its package is missing. The message names the field and what to install."""


class MetricWriter(Protocol):
    def write_scalars(self, step: int, scalars: Dict[str, float]) -> None: ...

    def close(self) -> None: ...


def parse_writers(value) -> List[str]:
    """"tensorboard, wandb" -> ["tensorboard", "wandb"] ("" or None: none)."""
    if not value:
        return []
    names = value.split(",") if isinstance(value, str) else list(value)
    return [n.strip() for n in names if str(n).strip()]


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False


_TENSORBOARD_BACKENDS = ("tensorboardX", "torch.utils.tensorboard", "tensorflow")


def tensorboard_backend() -> Optional[str]:
    """The first TensorBoard writer package installed, or None."""
    return next((m for m in _TENSORBOARD_BACKENDS if _importable(m)), None)


def check_writers(value, error_cls=WriterError, field: str = "writers") -> List[str]:
    """The writer names of `value`, each known and with its package installed; else `error_cls` naming the
    field, the value, the nearest known name or the package to install."""
    from jaxmtf import schema

    if value is not None and not isinstance(value, (str, list, tuple)):
        raise error_cls(f"config field '{field}': got {value!r}, expected a comma-separated string of writer names "
                        f"from {list(KNOWN_WRITERS)} ('' for none)")
    names = parse_writers(value)
    for name in names:
        if name not in KNOWN_WRITERS:
            raise error_cls(f"config field '{field}': got {name!r} in {value!r}, expected writer names from "
                            f"{list(KNOWN_WRITERS)}{schema.nearest(name, KNOWN_WRITERS)}")
    if "tensorboard" in names and tensorboard_backend() is None:
        raise error_cls(f"config field '{field}': got 'tensorboard', but no TensorBoard writer package is installed; "
                        "expected tensorboardX (pip install 'jaxmtf[tensorboard]', or pip install tensorboardX), "
                        "torch or tensorflow")
    if "wandb" in names and not _importable("wandb"):
        raise error_cls(f"config field '{field}': got 'wandb', but the wandb package is not installed; expected it "
                        "installed (pip install 'jaxmtf[wandb]', or pip install wandb)")
    return names


class TensorBoardWriter:
    """Scalars as TensorBoard events in `logdir` (tensorboardX, torch.utils.tensorboard or tf.summary)."""

    def __init__(self, logdir: str):
        backend = tensorboard_backend()
        if backend is None:
            check_writers("tensorboard")  # raises, saying what to install
        self.backend = backend
        if backend == "tensorflow":
            import tensorflow as tf

            self._tf = tf
            self._writer = tf.summary.create_file_writer(logdir)
        else:
            self._writer = importlib.import_module(backend).SummaryWriter(logdir)

    def write_scalars(self, step: int, scalars: Dict[str, float]) -> None:
        if self.backend == "tensorflow":
            with self._writer.as_default():
                for tag, value in scalars.items():
                    self._tf.summary.scalar(tag, value, step=step)
            return
        for tag, value in scalars.items():
            self._writer.add_scalar(tag, value, step)

    def close(self) -> None:
        if self.backend != "tensorflow":
            self._writer.flush()
        self._writer.close()


class WandbWriter:
    """Scalars logged to a Weights & Biases run (`wandb.init(project=..., mode=..., dir=workdir)`)."""

    def __init__(self, workdir: str, project: str = "jaxmtf", mode: str = "offline",
                 config: Optional[Dict[str, Any]] = None):
        if not _importable("wandb"):
            check_writers("wandb")  # raises, saying what to install
        import wandb

        self._run = wandb.init(project=project, mode=mode, dir=workdir, config=config,
                               name=os.path.basename(os.path.abspath(workdir)))

    def write_scalars(self, step: int, scalars: Dict[str, float]) -> None:
        self._run.log(dict(scalars), step=int(step))

    def close(self) -> None:
        self._run.finish()


def open_writers(names: Iterable[str], workdir: str, tensorboard_dir: str = "tensorboard",
                 wandb_project: str = "jaxmtf", wandb_mode: str = "offline",
                 config: Optional[Dict[str, Any]] = None) -> List[MetricWriter]:
    """The writers named (see `check_writers`), opened on `workdir`; one that fails closes those before it."""
    makers: Dict[str, Callable[[], MetricWriter]] = {
        "tensorboard": lambda: TensorBoardWriter(os.path.join(workdir, tensorboard_dir)),
        "wandb": lambda: WandbWriter(workdir, wandb_project, wandb_mode, config),
    }
    opened: List[MetricWriter] = []
    try:
        for name in dict.fromkeys(names):  # each once, in order
            opened.append(makers[name]())
    except BaseException:
        close_all(opened)
        raise
    return opened


def close_all(writers: Iterable[MetricWriter]) -> None:
    for writer in writers:
        writer.close()


def scalars_of(prefix: str, records: List[dict], labels: Iterable[str] = ()) -> Dict[str, float]:
    """One logging call's records (one per run, all of one step) as tagged scalars: per run and the runs' mean
    (finite values only; the run labels, the swept hparams' names `labels` and non-numbers left out)."""
    skip = set(_LABELS) | set(labels)
    scalars: Dict[str, float] = {}
    by_metric: Dict[str, List[float]] = {}
    for r in records:
        tag = f"seed{r.get('seed', 0)}/h{r.get('hparam_index', 0)}"
        for k, v in r.items():
            if k in skip or isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
                continue
            v = float(v)
            if not math.isfinite(v):
                continue
            scalars[f"{prefix}/{k}/{tag}"] = v
            by_metric.setdefault(k, []).append(v)
    for k, values in by_metric.items():
        scalars[f"{prefix}/{k}/mean"] = float(np.mean(values))
    return scalars
