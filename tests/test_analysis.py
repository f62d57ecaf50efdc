"""jaxmtf.analysis reads run directories (the study notebooks: tests/test_notebooks.py)."""
import numpy as np
import pytest
from conftest import small_config

from jaxmtf import analysis, pipeline
from jaxmtf.data import collect
from launch.configs.collect import base


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny TD3 run (2 seeds x 2 settings) on simulator data, with evaluations."""
    tmp = tmp_path_factory.mktemp("analysis")
    collect_config = base.get_base_config("random")
    collect_config.num_users, collect_config.eval_users = 16, 16
    path, _ = collect.collect_and_save(collect_config, str(tmp / "random.npz"))
    config = small_config("td3", num_updates=20, eval_every=10, eval_users=8, checkpoint_every=0)
    config.dataset, config.sweep = path, "discount=0.9,0.99"
    pipeline.train_from_config(config, str(tmp / "run"))
    return str(tmp / "run")


def test_load_and_aggregate_over_seeds(run_dir):
    run = analysis.load_run(run_dir)
    metrics, evals = run["metrics"], run["eval"]
    assert len(metrics) == 2 * 2 * 2 and len(evals) == 2 * 2 * 2  # steps x seeds x settings
    assert run["config"]["algo"] == "td3" and run["summary"]["finished"]
    assert analysis.hparam_columns(metrics) == ["discount"]
    curve = analysis.aggregate(metrics, "critic_loss")
    assert len(curve) == 2 * 2 and (curve["count"] == 2).all()
    row = curve[(curve["step"] == 20) & (curve["discount"] == 0.9)].iloc[0]
    by_hand = metrics[(metrics["step"] == 20) & (metrics["discount"] == 0.9)]["critic_loss"].to_numpy()
    np.testing.assert_allclose(row["mean"], by_hand.mean(), rtol=1e-6)
    np.testing.assert_allclose(row["ci95"], 1.959964 * by_hand.std(ddof=1) / np.sqrt(2), rtol=1e-6)
    assert set(analysis.final(evals)["step"]) == {20}
    with pytest.raises(KeyError, match="metric 'nope' not logged"):
        analysis.aggregate(metrics, "nope")


def test_not_a_run_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a jaxmtf run directory"):
        analysis.load_run(str(tmp_path))
