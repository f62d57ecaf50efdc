"""NCIS, MTF-GAUC and model-based rows in a whole (tiny) OPE run: written and reported like the others."""
import json
import os

from jaxmtf.configs import ope as ope_config
from jaxmtf.configs.collect import base as collect_base
from jaxmtf.data import collect
from jaxmtf.runs import rundir
from jaxmtf.workflows import pipeline

NEW = {"ncis", "ncis_pd", "mtf_gauc", "model_based"}


def test_new_estimators_run_from_the_ope_run(tmp_path):
    collect_config = collect_base.get_base_config("exploration_box")
    collect_config.num_users, collect_config.eval_users, collect_config.env = 16, 4, {"max_steps": 6}
    path, _ = collect.collect_and_save(collect_config, str(tmp_path / "box.npz"))
    static = tmp_path / "static" / "static_weights.json"
    os.makedirs(static.parent)
    rundir.write_json(str(static), {"action": [0.5, 0.5, -1.0, -1.0, -1.0, -1.0]})
    config = ope_config.get_config()
    # two fixed vectors: one group, so every program (truth, GAUC, model rollout) compiles once
    config.dataset, config.policies = path, f"baseline,{static}"
    # no true values (eval_users 0): their rollout is run.py's; tests/test_ope_extra.py checks that the new rows
    # copy them and that the report scores the new estimators
    config.bootstrap_replicates, config.eval_users, config.num_cells, config.num_components = 20, 0, 3, 2
    config.gauc_users = 8
    fc = config.fqe
    fc.num_updates, fc.chunk_size, fc.checkpoint_every, fc.hidden_dims, fc.num_seeds = 10, 10, 10, (16,), 1
    mb = config.model_based
    mb.enabled, mb.num_updates, mb.chunk_size, mb.checkpoint_every, mb.hidden_dims, mb.horizon = (
        True, 20, 10, 20, (16,), 6)
    result = pipeline.ope_from_config(config, str(tmp_path / "ope"))
    rows = [json.loads(line) for line in open(tmp_path / "ope" / "ope.jsonl")]
    new = [r for r in rows if r["estimator"] in NEW]
    assert {r["estimator"] for r in new} == NEW and len(new) == 2 * len(NEW)
    for r in new:
        assert r["fqe_seed"] is None and r["ci_low"] <= r["ci_high"]
    assert all(0.0 <= r["estimate"] <= 1.0 for r in new if r["estimator"] == "mtf_gauc")
    assert all(r["ncis_cap"] == 10.0 for r in new if r["estimator"].startswith("ncis"))
    mbr = [r for r in new if r["estimator"] == "model_based"]
    assert all(r["lower_bound"] == r["ci_low"] and r["num_members"] == 3 for r in mbr)
    report = result["report"]["estimators"]
    assert NEW <= set(report) and all("selection" in report[name] for name in NEW)
    assert os.path.isdir(tmp_path / "ope" / "model_based")
