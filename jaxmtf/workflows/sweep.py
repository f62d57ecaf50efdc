"""Studies: algorithms x datasets, each cell one compiled program over its settings x seeds.

A sweep config (jaxmtf/configs/sweeps/*.py) names algorithms (jaxmtf/configs
names), datasets (paths, or `collect:PIPELINE` collected on demand into
WORKDIR/data and reused), per-algorithm hparam grids, and the driver fields
every cell shares. Each (algorithm, dataset) cell is one standard run
directory, WORKDIR/runs/ALGO-DATASET, trained by the driver (one program,
settings x seeds vmapped), so a cell resumes exactly, refuses a changed
config, and is a no-op once finished. WORKDIR/sweep.json is the index:
every cell's algorithm, dataset, path, status and timing, rewritten
atomically at each change, so a notebook can read a sweep that is still
running and a killed sweep loses nothing but the unsaved chunk of its
current cell. Statuses: pending, running, done, unfinished (stopped with a
checkpoint: pre-empted, or `stop_after`), failed (a refused input, with its
message). A cell left "running" in an index whose run.lock nobody holds was
killed (SIGKILL, or a signal before its first chunk); the next call resumes it.

    python -m launch.sweep --config=launch/configs/sweeps/batchrl_study.py --workdir=runs/study
"""
import dataclasses
import hashlib
import importlib
import json
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional

from absl import logging

from jaxmtf import schema
from jaxmtf.agents import make_agent
from jaxmtf.core.run_config import ConfigError, hparam_grid, validate_config
from jaxmtf.data import collect
from jaxmtf.data import dataset as dataset_lib
from jaxmtf.runs import rundir, workdir_lock
from jaxmtf.workflows import pipeline

INDEX_FILE = "sweep.json"
COLLECT_PREFIX = "collect:"
# Cell statuses in the index.
PENDING, RUNNING, DONE, UNFINISHED, FAILED = "pending", "running", "done", "unfinished", "failed"


@dataclasses.dataclass(frozen=True)
class Cell:
    algo: str  # a jaxmtf/configs name (ddpg is TD3's config without its tricks)
    dataset: str  # a key of the sweep's `datasets`

    @property
    def name(self) -> str:
        return f"{self.algo}-{self.dataset}"


def cells(config) -> List[Cell]:
    """The sweep's cells in the order they run: algorithms outer, in the config's order (so a costly
    algorithm listed last does not hold up the others' results), datasets inner (each is collected at its
    first cell and reused)."""
    datasets = _names(",".join(config.datasets.keys()), "datasets")
    return [Cell(algo, name) for algo in _names(config.algorithms, "algorithms") for name in datasets]


def _names(value: str, field: str) -> List[str]:
    names = [n.strip() for n in str(value).split(",") if n.strip()]
    if not names:
        raise ConfigError(f"sweep config field '{field}': got {value!r}, expected at least one name")
    if len(set(names)) != len(names):
        raise ConfigError(f"sweep config field '{field}': got {value!r}, expected each name once")
    return names


def algorithm_config(algo: str):
    """jaxmtf/configs/ALGO.py's get_config()."""
    try:
        module = importlib.import_module(f"jaxmtf.configs.{algo}")
    except ModuleNotFoundError as missing:
        raise ConfigError(
            f"sweep config field 'algorithms': no training config jaxmtf/configs/{algo}.py ({missing}); "
            "run from the repository root"
        ) from None
    return module.get_config()


def cell_config(config, cell: Cell, dataset_path: str):
    """The training config of one cell: the algorithm's own config, then the sweep's shared driver fields,
    widths, agent overrides and grid (each override is checked against the algorithm's fields)."""
    train = algorithm_config(cell.algo)
    train.dataset = dataset_path
    for name, value in config.train.items():
        if name not in train:
            raise ConfigError(f"sweep config field 'train.{name}': not a driver field of jaxmtf/configs/{cell.algo}.py")
        train[name] = value
    if config.hidden_width:
        for name in train.agent:
            if name.endswith("_hidden_dims"):
                train.agent[name] = tuple(int(config.hidden_width) for _ in train.agent[name])
    for name, value in config.agent_overrides.get(cell.algo, {}).items():
        if name not in train.agent:
            raise ConfigError(
                f"sweep config field 'agent_overrides.{cell.algo}.{name}': got {name!r}, expected an agent field of "
                f"{cell.algo}{schema.nearest(name, list(train.agent))} (its fields: {sorted(train.agent)})"
            )
        train.agent[name] = value
    train.sweep = config.grids.get(cell.algo, "")
    return train


def check_sweep_config(config) -> List[Cell]:
    """The cells, once every name and field of the sweep config is checked (ConfigError before anything is
    collected or written): algorithms, dataset specs, collection overrides, driver fields, agent overrides.
    Overrides and grids of algorithms left out of `algorithms` are unused (a preset's subset runs as it is)."""
    all_cells = cells(config)
    for name, spec in config.datasets.items():
        if str(spec).startswith(COLLECT_PREFIX):
            collection_config(config, str(spec)[len(COLLECT_PREFIX):])
        elif not os.path.exists(str(spec)):
            raise ConfigError(f"sweep config field 'datasets.{name}': got {spec!r}, no such file")
    for algo in {cell.algo for cell in all_cells}:  # the training config of each algorithm, grid included
        train = cell_config(config, Cell(algo, next(iter(config.datasets.keys()))), "")
        validate_config(train)
        # The grid's names against the agent's sweepable hparams (building an agent compiles nothing).
        hparam_grid(make_agent(train, 1, 1).default_hparams, train.get("sweep", None))
    return all_cells


# ----------------------------------------------------------------------------- datasets


def dataset_path(config, name: str, workdir: str) -> str:
    """The file of dataset `name`: its path, or WORKDIR/data/NAME.npz, collected now if it is not there yet.

    A cached collection is reused only if its sidecar records the same collection config (a changed config
    is refused, naming the dataset, rather than silently mixing two datasets under one name).
    """
    spec = str(config.datasets[name])
    if not spec.startswith(COLLECT_PREFIX):
        if not os.path.exists(spec):
            raise ConfigError(f"sweep config field 'datasets.{name}': got {spec!r}, no such file")
        return spec
    pipeline_name = spec[len(COLLECT_PREFIX):]
    collect_config = collection_config(config, pipeline_name)
    path = os.path.join(workdir, "data", f"{name}.npz")
    wanted = json.loads(collect_config.to_json())  # as the sidecar will hold it (tuples as lists)
    if os.path.exists(path):
        recorded = dataset_lib.read_sidecar(path)["provenance"].get("collection_config")
        differences = _differences(recorded, wanted, _as_json(_pipeline_config(pipeline_name)))
        if differences:
            raise ConfigError(
                f"sweep config field 'datasets.{name}': {path} was collected with another collection config "
                f"({differences}); use a new workdir or dataset name"
            )
        return path
    logging.info("collecting dataset %s (%s) into %s", name, spec, path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    dataset, provenance = collect.collect(collect_config)
    provenance["collection_config"] = wanted
    return dataset_lib.save(path, dataset, provenance)


def _pipeline_config(pipeline_name: str):
    """jaxmtf/configs/collect/PIPELINE.py's get_config()."""
    try:
        module = importlib.import_module(f"jaxmtf.configs.collect.{pipeline_name}")
    except ModuleNotFoundError:
        raise ConfigError(
            f"sweep config field 'datasets': unknown pipeline {pipeline_name!r} (known: {', '.join(collect.PIPELINES)})"
        ) from None
    return module.get_config()


def _as_json(config) -> Dict[str, Any]:
    return json.loads(config.to_json())


def collection_config(config, pipeline_name: str):
    """The pipeline's collection config (jaxmtf/configs/collect/PIPELINE.py) with the sweep's `collect` overrides."""
    collect_config = _pipeline_config(pipeline_name)
    for name, value in config.collect.items():
        if name == "online":
            for online_name, online_value in value.items():
                collect_config.online[online_name] = online_value
        elif name in collect_config:
            collect_config[name] = value
        else:
            raise ConfigError(f"sweep config field 'collect.{name}': not a collection config field")
    try:
        collect.validate_config(collect_config)
    except ConfigError as e:  # the sweep's `collect` overrides are where a user set it
        raise ConfigError("sweep " + str(e).replace("config field '", "config field 'collect.", 1)) from None
    return collect_config


def _differences(recorded, wanted, defaults) -> str:
    """What differs between a cached dataset's recorded collection config and the wanted one ("" if nothing).

    A field the recorded config lacks (added to the collection configs after that dataset was collected)
    counts as the same when the wanted value is that field's default: the dataset was collected as if it
    had been set to it.
    """
    if not isinstance(recorded, dict):
        return "its sidecar records none"
    keys = sorted(k for k in set(recorded) | set(wanted) if recorded.get(k) != wanted.get(k)
                  and not (k not in recorded and wanted.get(k) == defaults.get(k)))
    return ", ".join(f"{k}: {recorded.get(k)!r} there, {wanted.get(k)!r} here" for k in keys)


# ----------------------------------------------------------------------------- the index


STATUSES = (PENDING, RUNNING, DONE, UNFINISHED, FAILED)


def read_index(workdir: str) -> Dict[str, Any]:
    """WORKDIR/sweep.json: {"cells": {name: entry}, "datasets": {name: path}}; an empty index if absent.

    A damaged index (not that shape, an entry without a known status) is refused naming what is wrong: the
    sweep does not guess which cells ran (delete the file to rebuild it: finished cells resume from their run
    directories)."""
    path = os.path.join(workdir, INDEX_FILE)
    if not os.path.exists(path):
        return {"cells": {}, "datasets": {}}
    index = rundir.read_json(path)
    fix = f"(delete {path} to rebuild it from the run directories)"
    if not isinstance(index, dict) or set(index) != {"cells", "datasets"}:
        got = type(index).__name__ if not isinstance(index, dict) else f"keys {sorted(index)}"
        raise rundir.RunDirError(f"sweep index '{path}': got {got}, expected an object with keys 'cells' and "
                                 f"'datasets' {fix}")
    for field in ("cells", "datasets"):
        if not isinstance(index[field], dict):
            raise rundir.RunDirError(f"sweep index '{path}' field '{field}': got {type(index[field]).__name__}, "
                                     f"expected an object {fix}")
    for name, entry in index["cells"].items():
        if not isinstance(entry, dict) or entry.get("status") not in STATUSES:
            status = entry.get("status") if isinstance(entry, dict) else entry
            raise rundir.RunDirError(f"sweep index '{path}' field 'cells.{name}.status': got {status!r}, expected "
                                     f"one of {', '.join(STATUSES)} {fix}")
    return index


def _write_index(workdir: str, index: Dict[str, Any]) -> None:
    rundir.write_json(os.path.join(workdir, INDEX_FILE), index)


def run_dir(workdir: str, cell: Cell) -> str:
    return os.path.join(workdir, "runs", cell.name)


# ----------------------------------------------------------------------------- running


class Progress:
    """Cells done, updates/s and ETA: a tqdm bar on a terminal, one log line per cell otherwise."""

    def __init__(self, total: int, done: int):
        self.total, self.done, self.seconds, self.timed = total, done, 0.0, 0
        self._bar = None
        if sys.stderr.isatty():
            try:
                import tqdm

                self._bar = tqdm.tqdm(total=total, initial=done, unit="cell", dynamic_ncols=True)
            except ImportError:  # tqdm is optional: fall back to log lines
                pass

    def finished(self, cell: Cell, seconds: float, updates_per_second: Optional[float], skipped=False) -> None:
        self.done += 1
        if skipped:  # finished in an earlier call: counts as done, not in the ETA's mean
            if self._bar is not None:
                self._bar.update(1)
            return
        self.seconds += seconds
        self.timed += 1
        eta = self.seconds / self.timed * (self.total - self.done)
        rate = f"{updates_per_second:,.0f} updates/s" if updates_per_second else "no timed chunk"
        if self._bar is not None:
            self._bar.set_postfix_str(f"{cell.name}: {rate}")
            self._bar.update(1)
        else:
            logging.info("sweep: %d/%d cells done; %s took %.0f s (%s); ETA %.0f min",
                         self.done, self.total, cell.name, seconds, rate, eta / 60)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def run_sweep(config, workdir: str, stop_after: Optional[int] = None,
              train_fn: Optional[Callable] = None) -> Dict[str, Any]:
    """Runs every cell of `config` not finished yet; returns the index (also WORKDIR/sweep.json).

    Cells run one after another, datasets collected before their first cell.
    A cell that fails on a bad input is marked failed with its message and the
    sweep goes on; `SweepFailed` at the end names them. `stop_after` ends each
    cell after that many updates (tests use it to interrupt a sweep); the next
    call resumes the cells exactly. `train_fn(train_config, run_dir, stop_after)`
    is `pipeline.train_from_config` by default.
    """
    train_fn = train_fn or pipeline.train_from_config
    all_cells = check_sweep_config(config)
    os.makedirs(workdir, exist_ok=True)
    lock = workdir_lock.WorkdirLock(workdir)
    lock.acquire()
    try:
        if config.get("force_new_run", False):  # explicit: what the sweep wrote goes, nothing else
            rundir.force_new_run(workdir, (INDEX_FILE, "runs", "data"))
        index = read_index(workdir)
        # The index lists this config's cells (those of an earlier config keep their run directories).
        index["cells"] = {cell.name: index["cells"].get(cell.name) or {
            "algo": cell.algo, "dataset": cell.dataset, "run_dir": os.path.relpath(run_dir(workdir, cell), workdir),
            "status": PENDING} for cell in all_cells}
        index["datasets"] = {name: path for name, path in index["datasets"].items() if name in config.datasets}
        _write_index(workdir, index)
        paths = {}  # dataset name -> file, resolved (and collected) at its first cell
        progress = Progress(len(all_cells), 0)
        for cell in all_cells:
            _run_cell(config, workdir, cell, index, paths, train_fn, stop_after, progress)
        progress.close()
    finally:
        lock.release()
    failed = [name for name, entry in index["cells"].items() if "error" in entry]
    if failed:
        raise SweepFailed(f"{len(failed)} cell(s) refused: " + "; ".join(
            f"{n} ({index['cells'][n]['status']}): {index['cells'][n]['error']}" for n in failed))
    return index


class SweepFailed(RuntimeError):
    """Some cells were refused (bad input); the message names each with its error."""


def config_digest(train_config) -> str:
    """A short hash of a cell's training config: a finished cell is skipped only if its config is unchanged."""
    return hashlib.sha256(train_config.to_json(sort_keys=True).encode()).hexdigest()[:16]


def _refused(workdir, index, cell, refused) -> None:
    """Records the refusal's message on the cell (the sweep goes on with the next cell). A cell that had run
    keeps its status: its run directory still holds what an earlier config trained ("done" stays "done"); one
    that never ran is "failed"."""
    entry = index["cells"][cell.name]
    entry["error"] = str(refused)
    if entry["status"] in (PENDING, RUNNING, FAILED):
        entry["status"] = FAILED
    _write_index(workdir, index)
    logging.error("sweep: cell %s refused: %s", cell.name, refused)


def _run_cell(config, workdir, cell, index, paths, train_fn, stop_after, progress) -> None:
    entry = index["cells"][cell.name]
    try:
        if cell.dataset not in paths:
            paths[cell.dataset] = index["datasets"][cell.dataset] = dataset_path(config, cell.dataset, workdir)
        train_config = cell_config(config, cell, paths[cell.dataset])
    except pipeline.REFUSALS as refused:
        return _refused(workdir, index, cell, refused)
    digest = config_digest(train_config)
    if entry["status"] == DONE and entry.get("config_digest") == digest:
        if os.path.exists(os.path.join(run_dir(workdir, cell), rundir.SUMMARY_FILE)):
            if entry.pop("error", None) is not None:  # an earlier call's refusal no longer holds
                _write_index(workdir, index)
            progress.finished(cell, 0.0, entry.get("updates_per_second"), skipped=True)
            return
        logging.warning("sweep: cell %s is marked done but %s holds no finished run (deleted?): training it "
                        "again", cell.name, run_dir(workdir, cell))
    entry.update(status=RUNNING, dataset_path=paths[cell.dataset], config_digest=digest)
    _write_index(workdir, index)
    start = time.time()
    try:
        summary = train_fn(train_config, run_dir(workdir, cell), stop_after)
    except pipeline.REFUSALS as refused:
        return _refused(workdir, index, cell, refused)
    except BaseException:  # pre-emption, a kill, a bug: the cell resumes from its checkpoint next time
        entry.update(status=UNFINISHED)
        _write_index(workdir, index)
        raise
    seconds = time.time() - start
    rate = summary.get("updates_per_second_per_run")
    entry.update(
        status=DONE if summary.get("finished") else UNFINISHED, step=int(summary["step"]),
        num_runs=int(summary["num_runs"]), seconds=round(entry.get("seconds", 0.0) + seconds, 1),
        updates_per_second=None if rate is None else rate * int(summary["num_runs"]),
        diverged_runs=sum(d["diverged_at_step"] is not None for d in summary.get("diverged_at_step", [])),
    )
    entry.pop("error", None)
    _write_index(workdir, index)
    if entry["status"] == DONE:
        progress.finished(cell, seconds, entry["updates_per_second"])
