"""The bad-input table beyond `launch.train` (tests/test_reliability.py holds training's, test_collect_refusals
collection's): OPE, progressive runs and sweeps, each row through the launchers' own ending (launch.common.run_job,
what `python -m launch.X` runs) in process: exit 2, one error line naming the field, the value and the
expectation, and nothing written (the directory tree is as it was)."""
import os
from typing import Callable, NamedTuple, Tuple

import ml_collections
import pytest

from jaxmtf.configs import integrated_rl
from jaxmtf.configs import ope as ope_config
from jaxmtf.configs.collect import base as collect_base
from jaxmtf.data import collect
from jaxmtf.ope.episodes import OPEDataError
from jaxmtf.ope.targets import PolicySpecError
from jaxmtf.workflows import pipeline, progressive, sweep
from launch import common


class Row(NamedTuple):
    case: str
    changes: dict  # dotted config field -> value (a config built from the package's defaults)
    needles: Tuple[str, ...]  # what the one line must say: the field, the value, the expectation


def _apply(config, changes: dict):
    for dotted, value in changes.items():
        *parents, name = dotted.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        with node.ignore_type():
            node[name] = value
    return config


def _tree(root) -> set:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files} | {
        os.path.relpath(d, root) for d, _, _ in os.walk(root)}


def _assert_refused(job: Callable[[], None], refusals, needles, root, caplog) -> None:
    before = _tree(root)
    caplog.clear()
    with caplog.at_level("ERROR"), pytest.raises(SystemExit) as ended:
        common.run_job(job, refusals)
    assert ended.value.code == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    assert _tree(root) == before  # nothing collected, trained or written


# ----------------------------------------------------------------- OPE (launch.ope)

@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A small logged dataset (the random pipeline) that a valid OPE config would evaluate."""
    path = str(tmp_path_factory.mktemp("ope_data") / "random.npz")
    config = collect_base.get_base_config("random")
    config.num_users, config.eval_users = 6, 4
    collect.collect_and_save(config, path)
    return path


OPE_ROWS = [
    Row("negative seed", {"seed": -1}, ("'seed'", "got -1", "in [0, 4294967295]")),
    Row("zero discount", {"discount": 0.0}, ("'discount'", "got 0.0", "(0, 1]")),
    Row("discount above 1", {"discount": 1.5}, ("'discount'", "got 1.5", "(0, 1]")),
    Row("zero target sigma", {"target_sigma": 0.0}, ("'target_sigma'", "got 0.0", "> 0")),
    Row("target epsilon above 1", {"target_epsilon": 1.5}, ("'target_epsilon'", "got 1.5", "(0, 1]")),
    Row("negative max weight", {"max_weight": -1.0}, ("'max_weight'", "got -1.0", ">= 0")),
    Row("zero switch sigma", {"noisy_switch_sigma": 0.0}, ("'noisy_switch_sigma'", "got 0.0", "> 0")),
    Row("no cells", {"num_cells": 0}, ("'num_cells'", "got 0", ">= 1")),
    Row("no components", {"num_components": 0}, ("'num_components'", "got 0", ">= 1")),
    Row("one replicate", {"bootstrap_replicates": 1}, ("'bootstrap_replicates'", "got 1", ">= 2")),
    Row("ci level 1", {"ci_level": 1.0}, ("'ci_level'", "got 1.0", "(0, 1)")),
    Row("negative eval users", {"eval_users": -1}, ("'eval_users'", "got -1", ">= 0")),
    Row("string discount", {"discount": "high"}, ("'discount'", "got 'high'", "a finite number")),
    Row("no FQE seeds", {"fqe.num_seeds": 0}, ("'fqe.num_seeds'", "got 0", ">= 1")),
    Row("no FQE updates", {"fqe.num_updates": 0}, ("'fqe.num_updates'", "got 0", ">= 1")),
    Row("FQE batch 0", {"fqe.batch_size": 0}, ("'fqe.batch_size'", "got 0", ">= 1")),
    Row("FQE chunk 0", {"fqe.chunk_size": 0}, ("'fqe.chunk_size'", "got 0", ">= 1")),
    Row("FQE learning rate 0", {"fqe.learning_rate": 0.0}, ("'fqe.learning_rate'", "got 0.0", "> 0")),
    Row("FQE widths", {"fqe.hidden_dims": (0, 16)}, ("'fqe.hidden_dims'", "got (0, 16)",)),
    Row("FQE critics 0", {"fqe.num_critics": 0}, ("'fqe.num_critics'", "got 0", ">= 1")),
    Row("FQE target interval 0", {"fqe.target_update_interval": 0}, ("'fqe.target_update_interval'", "got 0")),
    Row("FQE action samples 0", {"fqe.num_action_samples": 0}, ("'fqe.num_action_samples'", "got 0", ">= 1")),
    Row("FQE keeps no checkpoint", {"fqe.keep_checkpoints": 0}, ("'fqe.keep_checkpoints'", "got 0", ">= 1")),
    Row("FQE evaluation", {"fqe.eval_every": 5}, ("'fqe.eval_every'", "got 5")),
    Row("FQE checkpoint not chunks", {"fqe.checkpoint_every": 7}, ("checkpoint_every", "7", "multiple")),
    Row("FQE seed group", {"fqe.seed_group_size": -1}, ("'fqe.seed_group_size'", "got -1")),
    Row("unknown OPE field", {"polices": "baseline"}, ("'polices'", "unknown", "did you mean 'policies'")),
    Row("unknown FQE field", {"fqe.num_update": 5}, ("'fqe.num_update'", "unknown", "did you mean 'num_updates'")),
    Row("no policies", {"policies": ""}, ("policies", "empty")),
    Row("mistyped policy", {"policies": "basline"}, ("'basline'", "did you mean 'baseline'")),
    Row("missing run step", {"policies": "nowhere@abc"}, ("'nowhere@abc'", "is neither a run directory")),
    Row("missing dataset", {"dataset": "no/such.npz"}, ("no/such.npz",)),
]


@pytest.mark.parametrize("row", OPE_ROWS, ids=[r.case for r in OPE_ROWS])
def test_ope_refusals(row, logged, tmp_path, caplog):
    config = ope_config.get_config()
    config.dataset, config.policies, config.eval_users = logged, "baseline", 4
    config.fqe.num_updates, config.fqe.chunk_size, config.fqe.checkpoint_every = 10, 5, 10
    _apply(config, row.changes)
    workdir = str(tmp_path / "ope")
    _assert_refused(lambda: pipeline.ope_from_config(config, workdir), (OPEDataError, PolicySpecError),
                    row.needles, tmp_path, caplog)


# ----------------------------------------------------------------- progressive runs (launch.progressive)

PROGRESSIVE_ROWS = [
    Row("no rounds", {"progressive.rounds": 0}, ("'progressive.rounds'", "got 0", ">= 1")),
    Row("no budget", {"progressive.budget_sessions": 0}, ("'progressive.budget_sessions'", "got 0", ">= 1")),
    Row("budget under rounds", {"progressive.budget_sessions": 1},
        ("budget_sessions", "rounds", "at least one session per round")),
    Row("unknown exploration", {"progressive.exploration": "boxx"}, ("'progressive.exploration'", "got 'boxx'")),
    Row("zero box", {"progressive.box_half_width": 0.0}, ("'progressive.box_half_width'", "got 0.0", "(0, 1]")),
    Row("box past the range", {"progressive.box_half_width": 1.5}, ("'progressive.box_half_width'", "got 1.5")),
    Row("unknown box mode", {"progressive.box_mode": "wrap"}, ("'progressive.box_mode'", "got 'wrap'")),
    Row("zero noise", {"progressive.noise_sigma": 0.0}, ("'progressive.noise_sigma'", "got 0.0", "> 0")),
    Row("negative noise", {"progressive.noise_sigma": -0.1}, ("'progressive.noise_sigma'", "got -0.1", "> 0")),
    Row("unknown train_on", {"progressive.train_on": "oldest"}, ("'progressive.train_on'", "got 'oldest'")),
    Row("unknown warm start", {"progressive.warm_start": "critic"}, ("'progressive.warm_start'", "got 'critic'")),
    Row("one eval user", {"progressive.eval_users": 1}, ("'progressive.eval_users'", "got 1", ">= 2")),
    Row("negative eval seed", {"progressive.eval_seed": -1}, ("'progressive.eval_seed'", "got -1", ">= 0")),
    Row("env not a mapping", {"progressive.env": 3}, ("'progressive.env'", "got 3", "a mapping")),
    Row("unknown simulator parameter", {"progressive.env": {"slate_sise": 8}},
        ("'progressive.env.slate_sise'", "unknown")),
    Row("unknown progressive field", {"progressive.round": 2},
        ("'progressive.round'", "unknown", "did you mean 'rounds'")),
    Row("old num_users", {"progressive.num_users": 10}, ("'progressive.num_users'", "budget_sessions")),
    Row("a sweep", {"sweep": "discount=0.9,0.99"}, ("'sweep'", "one setting per chain")),
    Row("agent box differs", {"agent.box_half_width": 0.3},
        ("'progressive.box_half_width'", "agent.box_half_width=0.3")),
    Row("discount above 1", {"agent.discount": 1.5}, ("'agent.discount'", "got 1.5")),
    Row("no critics", {"agent.num_critics": 0}, ("'agent.num_critics'", "got 0", ">= 2")),
    Row("unknown anchor", {"agent.box_anchor": "center"}, ("'agent.box_anchor'", "got 'center'")),
    Row("unknown penalty", {"agent.penalty_shape": "cubic"}, ("'agent.penalty_shape'", "got 'cubic'")),
    Row("unknown target reduction", {"agent.target_reduction": "max"}, ("'agent.target_reduction'", "got 'max'")),
    Row("unknown q scaling", {"agent.q_scaling": "cql"}, ("'agent.q_scaling'", "got 'cql'")),
    Row("unknown agent field", {"agent.box_wieght": 1.0}, ("'agent.box_wieght'", "did you mean 'box_weight'")),
    Row("no seeds", {"num_seeds": 0}, ("'num_seeds'", "got 0", ">= 1")),
    Row("batch 0", {"batch_size": 0}, ("'batch_size'", "got 0", ">= 1")),
    Row("updates not chunks", {"num_updates": 7}, ("'num_updates'", "7", "multiple")),
]


@pytest.mark.parametrize("row", PROGRESSIVE_ROWS, ids=[r.case for r in PROGRESSIVE_ROWS])
def test_progressive_refusals(row, tmp_path, caplog):
    config = integrated_rl.get_config()
    config.num_seeds, config.num_updates, config.chunk_size, config.checkpoint_every = 1, 4, 2, 2
    config.progressive.rounds, config.progressive.budget_sessions, config.progressive.eval_users = 2, 8, 4
    _apply(config, row.changes)
    workdir = str(tmp_path / "chain")
    _assert_refused(lambda: progressive.run_progressive(config, workdir), (), row.needles, tmp_path, caplog)


# ----------------------------------------------------------------- sweeps (launch.sweep)

def _sweep_config():
    config = ml_collections.ConfigDict()
    config.algorithms = "td3_bc"
    config.datasets = ml_collections.ConfigDict({"random": "collect:random"})
    config.collect = ml_collections.ConfigDict({"num_users": 8, "eval_users": 8, "seed": 0})
    config.train = ml_collections.ConfigDict({"num_seeds": 1, "num_updates": 4, "chunk_size": 2,
                                              "batch_size": 8, "eval_every": 0, "checkpoint_every": 2})
    config.hidden_width = 8
    config.agent_overrides = ml_collections.ConfigDict({})
    config.grids = ml_collections.ConfigDict({})
    return config


SWEEP_ROWS = [
    Row("mistyped algorithm", {"algorithms": "td3_bcc"}, ("'algorithms'", "td3_bcc")),
    Row("missing dataset file", {"datasets": {"x": "/no/such.npz"}}, ("'datasets.x'", "/no/such.npz", "no such file")),
    Row("unknown pipeline", {"datasets": {"x": "collect:mixd"}}, ("mixd", "unknown pipeline")),
    Row("no collection users", {"collect.num_users": 0}, ("num_users", "got 0", ">= 1")),
    Row("unknown collection field", {"collect.num_userz": 3}, ("'collect.num_userz'",)),
    Row("no training seeds", {"train.num_seeds": 0}, ("'num_seeds'", "got 0", ">= 1")),
    Row("unknown training field", {"train.num_update": 4}, ("'train.num_update'",)),
    Row("negative alpha", {"agent_overrides": {"td3_bc": {"alpha": -1.0}}}, ("'agent.alpha'", "got -1.0", ">= 0")),
    Row("unknown agent field", {"agent_overrides": {"td3_bc": {"alpa": 1.0}}},
        ("'agent_overrides.td3_bc.alpa'", "did you mean 'alpha'")),
    Row("unknown grid hparam", {"grids": {"td3_bc": "alpa=1,2"}}, ("'sweep.alpa'", "sweepable")),
]


@pytest.mark.parametrize("row", SWEEP_ROWS, ids=[r.case for r in SWEEP_ROWS])
def test_sweep_refusals(row, tmp_path, caplog):
    config = _apply(_sweep_config(), {k: ml_collections.ConfigDict(v) if isinstance(v, dict) else v
                                      for k, v in row.changes.items()})
    workdir = str(tmp_path / "sweep")
    _assert_refused(lambda: sweep.run_sweep(config, workdir), (sweep.SweepFailed,), row.needles, tmp_path, caplog)


def test_launchers_hide_library_info_lines_but_not_warnings():
    """orbax's INFO lines and jax's "Unable to initialize backend 'tpu'" line are dropped; warnings and the
    project's own lines pass."""
    import logging

    from launch.logs import _DropLibraryInfo

    def passes(path, level, msg):
        return _DropLibraryInfo().filter(logging.LogRecord("x", level, path, 1, msg, (), None))

    assert not passes("/site/jax/_src/xla_bridge.py", logging.INFO, "Unable to initialize backend '%s': %s")
    assert not passes("/site/orbax/checkpoint/checkpoint_manager.py", logging.INFO, "Saving checkpoint")
    assert passes("/site/orbax/checkpoint/checkpoint_manager.py", logging.WARNING, "a warning")
    assert passes("/site/jax/_src/xla_bridge.py", logging.INFO, "another line")
    assert passes("/repo/jaxmtf/training.py", logging.INFO, "update 10/20")
