"""Sweeps: cells, the index, collection on demand, exact resume of an interrupted sweep, clear refusals;
the analysis loaders on a sweep directory."""
import json
import os
import shutil

import ml_collections
import numpy as np
import pytest

from jaxmtf.core.run_config import ConfigError
from jaxmtf.reporting import analysis
from jaxmtf.runs import rundir
from jaxmtf.workflows import sweep


def tiny_sweep(**overrides):
    """One algorithm x two collected datasets, 2 seeds, 40 updates: two cells, each its own program."""
    config = ml_collections.ConfigDict()
    config.algorithms = "td3_bc"
    config.datasets = ml_collections.ConfigDict({"random": "collect:random", "expert": "collect:expert"})
    config.collect = ml_collections.ConfigDict({"num_users": 12, "eval_users": 16, "seed": 0})
    config.train = ml_collections.ConfigDict({
        "num_seeds": 2, "num_updates": 40, "chunk_size": 10, "batch_size": 16, "eval_every": 20, "eval_users": 8,
        "checkpoint_every": 10,
    })
    config.hidden_width = 16
    config.agent_overrides = ml_collections.ConfigDict({"td3_bc": {"alpha": 5.0}})
    config.grids = ml_collections.ConfigDict({})
    for name, value in overrides.items():
        config[name] = value
    return config


def metrics_of(workdir):
    return {cell: rundir.read_run_records(os.path.join(workdir, "runs", cell), rundir.METRICS_FILE)
            for cell in ("td3_bc-expert", "td3_bc-random")}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("sweep") / "whole")
    return workdir, sweep.run_sweep(tiny_sweep(), workdir)


def test_cells_index_and_collected_datasets(uninterrupted):
    workdir, index = uninterrupted
    assert sorted(index["cells"]) == ["td3_bc-expert", "td3_bc-random"]
    for name, entry in index["cells"].items():
        assert entry["status"] == sweep.DONE and entry["step"] == 40 and entry["num_runs"] == 2
        assert os.path.exists(os.path.join(workdir, entry["run_dir"], rundir.SUMMARY_FILE))
        config = rundir.load_config_json(os.path.join(workdir, entry["run_dir"]))
        assert config["agent"]["alpha"] == 5.0 and config["agent"]["actor_hidden_dims"] == [16, 16]
    assert json.load(open(os.path.join(workdir, sweep.INDEX_FILE))) == index
    assert sorted(os.listdir(os.path.join(workdir, "data"))) == ["expert.json", "expert.npz", "random.json",
                                                                 "random.npz"]


def test_interrupted_and_resumed_sweep_equals_the_uninterrupted_one(uninterrupted, tmp_path):
    whole, _ = uninterrupted
    workdir = str(tmp_path / "interrupted")
    first = sweep.run_sweep(tiny_sweep(), workdir, stop_after=20)  # every cell stops half way
    assert {e["status"] for e in first["cells"].values()} == {sweep.UNFINISHED}
    assert {e["step"] for e in first["cells"].values()} == {20}
    resumed = sweep.run_sweep(tiny_sweep(), workdir)
    assert {e["status"] for e in resumed["cells"].values()} == {sweep.DONE}
    interrupted_metrics, whole_metrics = metrics_of(workdir), metrics_of(whole)
    assert interrupted_metrics.keys() == whole_metrics.keys()
    for cell in whole_metrics:
        assert [r["step"] for r in interrupted_metrics[cell]] == [r["step"] for r in whole_metrics[cell]]
        for got, want in zip(interrupted_metrics[cell], whole_metrics[cell]):
            for name in ("critic_loss", "actor_loss"):
                np.testing.assert_allclose(got[name], want[name], rtol=1e-5, err_msg=f"{cell} {name} at {got['step']}")
    # A third call finds every cell finished with its config unchanged: nothing runs.
    calls = []
    again = sweep.run_sweep(tiny_sweep(), workdir, train_fn=lambda *args: calls.append(args))
    assert calls == [] and again["cells"] == resumed["cells"]


def test_changed_collection_config_is_refused_not_mixed(uninterrupted):
    workdir, _ = uninterrupted
    changed = tiny_sweep(collect=ml_collections.ConfigDict({"num_users": 13, "eval_users": 16, "seed": 0}))
    with pytest.raises(sweep.SweepFailed,
                       match=r"datasets.random.*another collection config.*num_users: 12 there, 13 here"):
        sweep.run_sweep(changed, workdir)
    # The refusal does not undo what ran: the finished cell stays done (its error recorded beside it) ...
    entry = sweep.read_index(workdir)["cells"]["td3_bc-random"]
    assert entry["status"] == sweep.DONE and "another collection config" in entry["error"]
    # ... and the unchanged config finds every cell finished again, the stale error gone, nothing trained.
    calls = []
    index = sweep.run_sweep(tiny_sweep(), workdir, train_fn=lambda *args: calls.append(args))
    assert calls == [] and all(e["status"] == sweep.DONE and "error" not in e for e in index["cells"].values())


def test_a_done_cell_whose_run_directory_was_deleted_trains_again(tmp_path):
    workdir, calls = str(tmp_path / "sweep"), []

    def fake_train(train_config, run_dir, stop_after):  # a finished run directory, without the training
        calls.append(os.path.basename(run_dir))
        os.makedirs(run_dir, exist_ok=True)
        rundir.write_json(os.path.join(run_dir, rundir.SUMMARY_FILE), {"finished": True})
        return {"finished": True, "step": 40, "num_runs": 2}

    sweep.run_sweep(tiny_sweep(), workdir, train_fn=fake_train)
    assert sorted(calls) == ["td3_bc-expert", "td3_bc-random"]
    shutil.rmtree(os.path.join(workdir, "runs", "td3_bc-random"))
    calls.clear()
    index = sweep.run_sweep(tiny_sweep(), workdir, train_fn=fake_train)
    assert calls == ["td3_bc-random"] and index["cells"]["td3_bc-random"]["status"] == sweep.DONE
    # force_new_run: the index, the cells' run directories and the collected data go; every cell trains again.
    calls.clear()
    marker = os.path.join(workdir, "runs", "td3_bc-expert", "stale")
    open(marker, "w").close()
    index = sweep.run_sweep(tiny_sweep(force_new_run=True), workdir, train_fn=fake_train)
    assert sorted(calls) == ["td3_bc-expert", "td3_bc-random"] and not os.path.exists(marker)


@pytest.mark.parametrize("content, message", [
    ("[]", r"sweep index .*sweep.json': got list, expected an object with keys 'cells' and 'datasets'"),
    ("{}", r"got keys \[\], expected an object with keys 'cells' and 'datasets'"),
    ('{"cells": [], "datasets": {}}', r"field 'cells': got list, expected an object"),
    ('{"cells": {"td3_bc-random": {"status": "finished"}}, "datasets": {}}',
     r"field 'cells.td3_bc-random.status': got 'finished', expected one of pending, running, done"),
    ('{"cells": {', r"got invalid JSON"),
])
def test_a_damaged_sweep_index_is_refused_before_anything_runs(tmp_path, content, message):
    workdir = tmp_path / "sweep"
    workdir.mkdir()
    (workdir / sweep.INDEX_FILE).write_text(content)
    with pytest.raises(rundir.RunDirError, match=message):
        sweep.run_sweep(tiny_sweep(), str(workdir), train_fn=lambda *args: pytest.fail("trained"))
    assert set(os.listdir(workdir)) <= {sweep.INDEX_FILE, "run.lock"}  # nothing collected or trained
    assert (workdir / sweep.INDEX_FILE).read_text() == content  # left as it was


@pytest.mark.parametrize("overrides, message", [
    ({"algorithms": "td3_bc,nope"}, r"no training config jaxmtf/configs/nope.py"),
    ({"algorithms": ""}, r"'algorithms': got '', expected at least one name"),
    ({"datasets": ml_collections.ConfigDict({"x": "collect:nope"})}, r"unknown pipeline 'nope'"),
    ({"datasets": ml_collections.ConfigDict({"x": "/no/such.npz"})}, r"'datasets.x': got '/no/such.npz', no such file"),
    ({"collect": ml_collections.ConfigDict({"num_userz": 3})}, r"'collect.num_userz': not a collection config field"),
    ({"agent_overrides": ml_collections.ConfigDict({"td3_bc": {"alhpa": 1.0}})}, r"agent_overrides.td3_bc.alhpa"),
    ({"train": ml_collections.ConfigDict({"num_seedz": 2})}, r"'train.num_seedz': not a driver field"),
    ({"grids": ml_collections.ConfigDict({"td3_bc": "alpah=1,2"})}, r"sweep.alpah"),
    ({"train": ml_collections.ConfigDict({"num_seeds": 0})}, r"num_seeds"),
])
def test_bad_sweep_configs_are_named_before_anything_is_written(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        sweep.run_sweep(tiny_sweep(**overrides), str(tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()


def test_load_sweep_scores_and_curves(uninterrupted):
    workdir, _ = uninterrupted
    loaded = analysis.load_sweep(workdir)
    assert set(loaded["index"]["cell"]) == {"td3_bc-expert", "td3_bc-random"}
    evals = loaded["eval"]
    assert set(evals["dataset"]) == {"random", "expert"} and set(evals["variant"]) == {"td3_bc"}
    assert len(evals) == 2 * 2 * 2  # datasets x evaluations x seeds
    refs = analysis.reference_returns(workdir)
    scores = analysis.final_scores(evals, low=refs["random"], high=refs["expert"])
    assert len(scores) == 4 and set(scores["step"]) == {40}
    row = scores.iloc[0]
    assert row["score"] == pytest.approx(
        100 * (row["undiscounted_return"] - refs["random"]) / (refs["expert"] - refs["random"]))
    matrices = analysis.score_matrices(scores, datasets=["random", "expert"])
    assert matrices["td3_bc"].shape == (2, 2)
    table = analysis.interval_table(matrices, reps=100)
    iqm = table[table["aggregate"] == "IQM"].iloc[0]
    assert iqm["ci_low"] <= iqm["estimate"] <= iqm["ci_high"]
    curves = analysis.overestimation_curves(evals)
    assert {"mean_q", "mean_true"} <= set(curves.columns) and len(curves) == 2 * 2


def test_loaders_tolerate_a_truncated_last_line_and_name_a_missing_sweep(uninterrupted, tmp_path):
    import shutil

    workdir = str(tmp_path / "copy")
    shutil.copytree(uninterrupted[0], workdir)
    with open(os.path.join(workdir, "runs", "td3_bc-random", rundir.EVAL_FILE), "a") as f:
        f.write('{"step": 60, "seed": 0, "undiscounted')  # a kill in the middle of a write
    assert len(analysis.load_sweep(workdir)["eval"]) == 2 * 2 * 2
    with pytest.raises(FileNotFoundError, match="not a jaxmtf sweep directory"):
        analysis.load_sweep(str(tmp_path))
