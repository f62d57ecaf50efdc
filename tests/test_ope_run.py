"""The OPE run end to end: a collected dataset, a trained run directory, static and named policies."""
import json
import os

import numpy as np
import pytest
from conftest import small_config

from jaxmtf.configs import ope as ope_config
from jaxmtf.configs.collect import base as collect_base
from jaxmtf.data import collect
from jaxmtf.data import dataset as dataset_lib
from jaxmtf.ope import run as ope_run
from jaxmtf.ope.targets import PolicySpecError, load_policies
from jaxmtf.runs import record as record_lib
from jaxmtf.runs import rundir
from jaxmtf.sim.mtf import env as sim_env
from jaxmtf.workflows import pipeline

ESTIMATORS = {"fqe", "tis", "pdis", "wis", "wpdis", "mis", "dr", "wdr"}
EXTRA = {"ncis", "ncis_pd", "mtf_gauc"}  # issue 20's rows, on by default (model_based is off by default)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A tiny 'mixed' dataset (8-step sessions), a TD3+BC run on it with checkpoints at 10 and 20, a static vector."""
    root = tmp_path_factory.mktemp("ope")
    config = collect_base.get_base_config("mixed")
    config.num_users, config.eval_users, config.env = 24, 8, {"max_steps": 8}
    path, _ = collect.collect_and_save(config, str(root / "mixed.npz"))
    train = small_config("td3_bc", hidden=(16, 16), dataset=path, num_seeds=1)
    pipeline.train_from_config(train, str(root / "td3_bc"))
    env_params = sim_env.default_params(max_steps=8)
    static = root / "static" / "static_weights.json"
    os.makedirs(static.parent)
    rundir.write_json(str(static), {"action": (np.asarray(sim_env.baseline_action(env_params)) * 0.5).tolist()})
    return {"root": root, "dataset": path, "run": str(root / "td3_bc"), "static": str(static)}


def tiny_ope_config(logged, policies):
    config = ope_config.get_config()
    config.dataset, config.policies = logged["dataset"], policies
    config.bootstrap_replicates, config.eval_users, config.num_cells, config.num_components = 20, 8, 3, 2
    config.gauc_users = 16
    fc = config.fqe
    fc.num_updates, fc.chunk_size, fc.checkpoint_every, fc.hidden_dims, fc.num_seeds = 20, 10, 10, (16, 16), 2
    return config


def five_policies(logged):
    """5 policies in 3 groups (one compiled program each): the run's 2 checkpoints, 2 fixed vectors, a named one."""
    return f"{logged['run']}@10,{logged['run']},{logged['static']},baseline,noisy_switch"


def test_ope_rows_report_and_resume(logged):
    config = tiny_ope_config(logged, five_policies(logged))
    workdir = str(logged["root"] / "ope")
    result = pipeline.ope_from_config(config, workdir)
    rows = [json.loads(line) for line in open(os.path.join(workdir, "ope.jsonl"))]
    assert rows == json.loads(json.dumps(rundir._plain(result["rows"])))
    names = {ope_run.policy_key(r) for r in rows}
    assert names == {"td3_bc@10/seed0/h0", "td3_bc@20/seed0/h0", "static:static", "baseline", "noisy_switch(sigma=0.3)"}
    for name in names:
        mine = [r for r in rows if ope_run.policy_key(r) == name]
        assert {r["estimator"] for r in mine} == ESTIMATORS | EXTRA
        # FQE and DR per FQE seed and averaged over them; the IS family once.
        assert sorted(str(r["fqe_seed"]) for r in mine if r["estimator"] == "dr") == ["0", "1", "None"]
        assert [r["fqe_seed"] for r in mine if r["estimator"] == "wis"] == [None]
    for r in rows:
        assert np.isfinite(r["true_discounted"]) and r["ci_low"] <= r["ci_high"]
        if r["estimator"] in ("fqe", "wis", "wpdis", "mis", "wdr"):
            assert np.isfinite(r["estimate"]), r
        # Every row (FQE's too) estimates the smoothed policy of a deterministic target, and carries its width,
        # that policy's truth and, apart, the unsmoothed policy's.
        stochastic = r["policy"] == "noisy_switch(sigma=0.3)"
        if r["estimator"] == "mtf_gauc":  # a ranking metric of the policy's own fused scores, not a value
            assert r["evaluated_policy"] == ope_run.policy_key(r) and "target_sigma" not in r
            continue
        assert r["target_sigma"] == (None if stochastic else 0.2)
        assert r["evaluated_policy"] == (r["policy"] if stochastic else f"gaussian(0.2) of {ope_run.policy_key(r)}")
        assert ("true_discounted_unsmoothed" in r) == (not stochastic)
        assert 0.0 <= r["outside_support"] <= 1.0
        if r["estimator"] != "fqe":
            assert r["ess"] >= 1.0 - 1e-4
    report = json.load(open(os.path.join(workdir, "ope_report.json")))
    assert set(report["estimators"]) == ESTIMATORS | EXTRA and "fqe" in report["seconds"]
    assert isinstance(report["warnings"], list)
    for entry in report["estimators"].values():
        assert entry["selection"]["by_lower_bound"] in names
        assert -1.0 <= entry["scores"]["spearman"] <= 1.0 and 0.0 <= entry["scores"]["coverage"] <= 1.0
        assert entry["selection"]["best_true_value"] >= entry["selection"]["true_value_by_estimate"]
        scores = entry["scores"]
        assert scores["top_k"] == 3 and scores["worst@3"] <= scores["mean@3"] <= scores["best@3"]
    # The FQE run directory resumes: a second fit restores its final checkpoint and trains nothing.
    metrics = open(os.path.join(workdir, "fqe", "metrics.jsonl")).read()
    dataset = dataset_lib.load(logged["dataset"])
    labels = json.load(open(os.path.join(workdir, "fqe", record_lib.RECORD_FILE)))["policies"]
    next_actions = np.zeros((5, dataset.size, 1, dataset.act_dim), np.float32)
    next_weights = np.ones((5, dataset.size, 1), np.float32)
    with pytest.raises(Exception, match="checkpoint field 'data_fingerprint'"):  # other actions: refused
        ope_run.fit_fqe(config, dataset, next_actions, next_weights, labels, os.path.join(workdir, "fqe"))
    assert open(os.path.join(workdir, "fqe", "metrics.jsonl")).read() == metrics


def test_a_dataset_without_densities_gets_fqe_and_gauc_only(logged, tmp_path):
    dataset = dataset_lib.load(logged["dataset"])
    provenance = dataset_lib.read_sidecar(logged["dataset"])["provenance"]
    path = dataset_lib.save(str(tmp_path / "no_density.npz"), dataset.replace(behaviour_log_prob=None), provenance)
    # The same policies as the test above (stochastic and deterministic ones): the same shapes, so the
    # target, FQE and truth programs are the ones it compiled (the compilation cache's, see conftest).
    config = tiny_ope_config(logged, five_policies(logged))
    config.dataset = path
    result = pipeline.ope_from_config(config, str(tmp_path / "ope"))
    assert {r["estimator"] for r in result["rows"]} == {"fqe", "mtf_gauc"}  # MTF-GAUC needs no densities
    assert "'behaviour_log_prob' is missing" in result["report"]["refused"]["reason"]
    assert set(result["report"]["estimators"]) == {"fqe", "mtf_gauc"}


def test_unknown_policy_spec_is_named(logged, tmp_path):
    config = tiny_ope_config(logged, "baseline,no_such_policy")
    with pytest.raises(PolicySpecError, match="'no_such_policy' is neither a run directory"):
        pipeline.ope_from_config(config, str(tmp_path / "ope"))


def test_named_policies_load_and_merge():
    env_params = sim_env.default_params()
    config = ope_config.get_config()
    groups = load_policies("random,switch,baseline,noisy_switch", env_params, config, sim_env.obs_dim(env_params),
                           sim_env.act_dim(env_params))
    assert [[label["policy"] for label in g.labels] for g in groups] == [["random"], ["switch"], ["baseline"],
                                                                 ["noisy_switch(sigma=0.3)"]]
    assert [g.stochastic for g in groups] == [True, False, False, True]
    with pytest.raises(PolicySpecError, match="needs the simulator"):
        load_policies("baseline", None, config, 4, 6)
