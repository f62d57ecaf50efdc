"""jaxmtf.reporting.analysis reads run directories (the study notebooks: tests/test_notebooks.py)."""
import numpy as np
import pandas as pd
import pytest
from conftest import small_config

from jaxmtf.configs.collect import base
from jaxmtf.data import collect
from jaxmtf.reporting import analysis
from jaxmtf.workflows import pipeline


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
    # Two seeds: Student-t with 1 degree of freedom, t_{0.975, 1} = 12.706.
    np.testing.assert_allclose(row["ci95"], 12.706205 * by_hand.std(ddof=1) / np.sqrt(2), rtol=1e-6)
    assert set(analysis.final(evals)["step"]) == {20}
    with pytest.raises(KeyError, match="metric 'nope' not logged"):
        analysis.aggregate(metrics, "nope")


def test_score_table_intervals_are_student_t_over_seeds_and_say_so():
    scores = pd.DataFrame({"variant": ["a"] * 3 + ["b"] * 3, "dataset": ["d"] * 6, "seed": [0, 1, 2] * 2,
                           "score": [1.0, 2.0, 6.0, 10.0, 10.0, 10.0]})
    table = analysis.aggregate(scores, "score", by=["variant", "dataset"])
    # a: mean 3, std sqrt(7), 3 seeds: t_{0.975, 2} = 4.303, so 4.303 sqrt(7) / sqrt(3) = 6.57 (the normal: 2.99).
    np.testing.assert_allclose(table["ci95"], [4.302653 * np.sqrt(7.0) / np.sqrt(3.0), 0.0], rtol=1e-6)
    out = analysis.score_table(scores, with_ci=True)
    assert out.loc["a", "d"] == "3.0 ± 6.6" and out.loc["b", "d"] == "10.0 ± 0.0"
    assert out.columns.name == "dataset: mean ± 95% CI (Student-t over 3 seeds)"
    one_seed = analysis.aggregate(scores[scores["seed"] == 0], "score", by=["variant", "dataset"])
    assert one_seed["ci95"].isna().all()  # one seed: no interval (NaN), not a zero one
    users = analysis.aggregate(scores, "score", by=["variant", "dataset"], over="users")
    np.testing.assert_allclose(users["ci95"], [1.959964 * np.sqrt(7.0) / np.sqrt(3.0), 0.0], rtol=1e-6)


def test_learning_curves_of_one_run_and_variants_in_natural_order(run_dir):
    evals = analysis.load_run(run_dir)["eval"]  # one run directory: no sweep's variant or dataset columns
    curves = analysis.learning_curves(evals)
    assert list(curves["variant"].unique()) == ["td3[discount=0.9]", "td3[discount=0.99]"]
    assert len(curves) == 2 * 2 and (curves["count"] == 2).all() and set(curves["dataset"]) == {""}
    scores = pd.DataFrame({"variant": ["a[alpha=10.0]", "a[alpha=2.5]", "a[alpha=1.0]"] * 2, "dataset": ["d"] * 6,
                           "seed": [0, 0, 0, 1, 1, 1], "score": np.arange(6.0)})
    order = ["a[alpha=1.0]", "a[alpha=2.5]", "a[alpha=10.0]"]  # as numbers, not as strings sort them
    assert list(analysis.aggregate(scores, "score", by=["variant", "dataset"])["variant"]) == order
    assert list(analysis.score_table(scores, with_ci=True).index) == order


def test_not_a_run_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a jaxmtf run directory"):
        analysis.load_run(str(tmp_path))


def test_overestimation_grid_labels_its_symlog_axes():
    """Every panel gets at least two labelled ticks in view (matplotlib's symlog labels decades only: one tick on
    a panel spanning 20-300), and an axis label on each row and the bottom."""
    import matplotlib

    matplotlib.use("Agg")
    from jaxmtf.reporting import plots

    steps = np.array([1000, 2000, 3000])
    table = pd.DataFrame({
        "dataset": ["mixed"] * 3 + ["random"] * 3, "variant": ["td3_bc"] * 6, "step": np.tile(steps, 2),
        "mean_q": [20.0, 60.0, 140.0, 5.0, 2000.0, 9000.0], "ci95_q": [1.0] * 6,
        "mean_true": [120.0] * 6, "ci95_true": [2.0] * 6})
    fig = plots.overestimation_grid(table)
    fig.canvas.draw()
    for ax in fig.axes:
        low, high = ax.get_ylim()
        labelled = [t for t in ax.get_yticklabels() if t.get_text() and low <= t.get_position()[1] <= high]
        assert len(labelled) >= 2, [t.get_text() for t in labelled]
        assert "Q(s0, pi(s0)) and true return" in ax.get_ylabel()
    assert fig.axes[-1].get_xlabel() == "update"


def test_interval_tables_and_plot_list_variants_in_natural_order():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxmtf.reporting import plots

    rng = np.random.default_rng(0)
    names = ["td3_bc[alpha=10.0]", "bcq", "td3_bc[alpha=2.5]", "td3_bc[alpha=1.0]"]
    matrices = {name: rng.normal(size=(3, 2)) for name in names}
    natural = ["bcq", "td3_bc[alpha=1.0]", "td3_bc[alpha=2.5]", "td3_bc[alpha=10.0]"]
    table = analysis.interval_table(matrices, reps=20)
    assert list(table["variant"].unique()) == natural
    assert list(analysis.improvement_table(matrices, against="bcq", reps=20)["variant"]) == natural[1:]
    fig, ax = plt.subplots()
    plots.intervals(ax, table, "IQM")
    top_to_bottom = [t.get_text() for t in ax.get_yticklabels()][::-1]
    assert top_to_bottom == natural
    plt.close(fig)
