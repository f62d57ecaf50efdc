"""Import of a local Minari dataset (built here with Minari's DataCollector; nothing downloaded)."""
import gymnasium as gym
import minari
import numpy as np
import pytest

from jaxmtf import data


@pytest.fixture()
def pendulum_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    env = minari.DataCollector(gym.make("Pendulum-v1", max_episode_steps=20))
    env.action_space.seed(0)
    env.reset(seed=0)
    for _ in range(3):
        env.reset()
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
    env.create_dataset("jaxmtftest/pendulum-random-v0", algorithm_name="random")
    env.close()
    return "jaxmtftest/pendulum-random-v0"


def test_from_minari_converts_and_rescales(pendulum_dataset, tmp_path):
    source = minari.load_dataset(pendulum_dataset)
    dataset, provenance = data.from_minari(pendulum_dataset)
    assert dataset.size == 3 * 20 and dataset.obs_dim == 3 and dataset.act_dim == 1
    assert provenance["action_low"] == [-2.0] and provenance["action_high"] == [2.0]
    first = next(iter(source.iterate_episodes()))
    n = len(first.actions)
    np.testing.assert_allclose(np.asarray(dataset.actions[:n, 0]), first.actions[:, 0] / 2.0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(dataset.observations[:n]), first.observations[:-1], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(dataset.next_observations[:n]), first.observations[1:], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(dataset.rewards[:n]), first.rewards, rtol=1e-6)
    # Pendulum never terminates; each episode is cut by the 20-step time limit.
    assert float(np.sum(dataset.terminals)) == 0 and float(np.sum(dataset.timeouts)) == 3
    assert len(np.unique(np.asarray(dataset.episode_ids))) == 3
    # It saves and loads as any jaxmtf dataset.
    loaded = data.load(data.save(str(tmp_path / "pendulum.npz"), dataset, provenance))
    np.testing.assert_array_equal(np.asarray(loaded.actions), np.asarray(dataset.actions))


def test_from_minari_rejects_discrete_actions(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    env = minari.DataCollector(gym.make("CartPole-v1", max_episode_steps=5))
    env.reset(seed=0)
    for _ in range(5):
        if any(env.step(env.action_space.sample())[2:4]):
            break
    env.create_dataset("jaxmtftest/cartpole-v0")
    with pytest.raises(data.DatasetError, match="'actions': .* not a Box"):
        data.from_minari("jaxmtftest/cartpole-v0")


def test_train_launcher_spec_reads_minari(pendulum_dataset):
    from jaxmtf.workflows import pipeline

    dataset = pipeline.load_dataset(f"minari:{pendulum_dataset}")
    assert dataset.size == 60 and dataset.act_dim == 1


def test_minari_dataset_is_evaluated_in_its_environment(pendulum_dataset, tmp_path):
    """Training on a minari: dataset scores each run in minari's recovered environment every eval_every updates,
    with D4RL's normalised score for the given reference scores."""
    import jax
    from conftest import small_config

    from jaxmtf.runs import rundir
    from jaxmtf.workflows import pipeline

    lo, hi = -1500.0, -100.0
    config = small_config("td3", dataset=f"minari:{pendulum_dataset}", eval_every=10, eval_episodes=2,
                          ref_min_score=lo, ref_max_score=hi)
    summary = pipeline.train_from_config(config, str(tmp_path / "run"))
    records = rundir.read_jsonl(str(tmp_path / "run" / rundir.EVAL_FILE))
    assert sorted((r["step"], r["seed"]) for r in records) == [(10, 0), (10, 1), (20, 0), (20, 1)]
    for r in records:
        assert np.isfinite(r["undiscounted_return"]) and r["undiscounted_return"] < 0  # Pendulum's costs
        assert r["episode_length"] == 20  # the dataset's time limit, recovered with its environment
        assert r["normalized_score"] == pytest.approx(100 * (r["undiscounted_return"] - lo) / (hi - lo))
    # The final evaluation is the policy's return in the environment: replay seed 0's run by hand.
    agent, state = summary["agent"], summary["state"].agent
    run0 = jax.tree.map(lambda x: x[0, 0], state.replace(step=None)).replace(step=state.step)
    env = minari.load_dataset(pendulum_dataset).recover_environment()
    total = 0.0
    for episode in range(2):
        obs, _ = env.reset(seed=12345 + episode)
        done = False
        while not done:
            action = np.asarray(agent.act(run0, np.asarray(obs, np.float32)[None], jax.random.PRNGKey(0))[0])
            obs, reward, terminated, truncated, _ = env.step((2.0 * np.clip(action, -1, 1)).astype(np.float32))
            total, done = total + reward, terminated or truncated
    final = [r for r in records if r["step"] == 20 and r["seed"] == 0][0]
    assert final["undiscounted_return"] == pytest.approx(total / 2, rel=1e-4)


def test_dataset_reference_scores_are_the_fallback(pendulum_dataset, tmp_path):
    from jaxmtf.core import gym_evaluation

    assert gym_evaluation.dataset_reference_scores(minari.load_dataset(pendulum_dataset)) is None
    env = minari.DataCollector(gym.make("Pendulum-v1", max_episode_steps=5))
    env.reset(seed=0)
    for _ in range(5):
        env.step(env.action_space.sample())
    env.create_dataset("jaxmtftest/pendulum-refs-v0", ref_min_score=-900.0, ref_max_score=-150.0)
    source = minari.load_dataset("jaxmtftest/pendulum-refs-v0")
    assert gym_evaluation.dataset_reference_scores(source) == (-900.0, -150.0)
    assert gym_evaluation.normalized_score(-525.0, -900.0, -150.0) == pytest.approx(50.0)


def test_reference_scores_come_in_pairs():
    from conftest import small_config

    from jaxmtf.core import run_config

    with pytest.raises(run_config.ConfigError, match="'ref_max_score': got None"):
        run_config.validate_config(small_config("td3", ref_min_score=0.0))
    with pytest.raises(run_config.ConfigError, match="'ref_max_score': got 1.0, expected a number > ref_min_score"):
        run_config.validate_config(small_config("td3", ref_min_score=2.0, ref_max_score=1.0))
