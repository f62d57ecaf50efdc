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
