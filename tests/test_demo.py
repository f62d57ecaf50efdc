"""The README's main job, on tiny settings: collect, search, train, score, table."""
import json

from jaxmtf import pipeline
from launch.configs import demo


def test_demo_writes_the_results_table(tmp_path):
    config = demo.get_config()
    config.eval_users = 16
    config.collect.num_users, config.collect.eval_users = 16, 16
    config.static.num_generations, config.static.population, config.static.num_elite = 1, 4, 2
    config.static.num_users, config.static.num_heldout_users = 8, 8
    config.train.num_seeds, config.train.num_updates, config.train.chunk_size = 2, 20, 10
    config.train.eval_every = config.train.checkpoint_every = 20
    config.train.eval_users, config.train.batch_size = 8, 16
    config.train.agent.actor_hidden_dims = config.train.agent.critic_hidden_dims = (16,)
    table = pipeline.run_demo(config, str(tmp_path))
    lines = table.splitlines()
    assert lines[0].startswith("| policy | return (undiscounted)")
    names = [line.split("|")[1].strip() for line in lines[2:]]
    assert names[:4] == ["behaviour (mixed, logged the data)", "production baseline weights",
                         "best static weights (CEM)", "hand-written state-dependent (switch)"]
    assert names[4:] == ["td3_bc seed 0", "td3_bc seed 1", "td3_bc mean over 2 seeds (CI over seeds)"]
    results = json.load(open(tmp_path / "results.json"))
    assert all(results[name]["session_length"] >= 1 for name in names)
    assert (tmp_path / "results.md").read_text().strip() == table
    assert (tmp_path / "train" / "eval.jsonl").exists() and (tmp_path / "data" / "mixed.json").exists()
