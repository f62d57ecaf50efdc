"""Runs split over several devices equal the single-device program (4 fake CPU devices)."""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import sys, jax, numpy as np
    sys.path.insert(0, "tests")
    from conftest import small_config
    from jaxmtf.core import training
    from jaxmtf.data import one_step_dataset

    assert jax.local_device_count() == 4, jax.devices()
    data = one_step_dataset(num_transitions=256, obs_dim=3, act_dim=2)
    out = {}
    for shard in (True, False):
        config = small_config("td3", num_seeds=4, shard_runs=shard, checkpoint_every=10)
        first = training.train(config, data, f"{sys.argv[1]}/{shard}", stop_after=10)  # checkpoint, then resume
        out[shard] = training.train(config, data, f"{sys.argv[1]}/{shard}")["state"]
    leaf = jax.tree.leaves(out[True].agent.actor)[0]
    assert len(leaf.sharding.device_set) == 4, leaf.sharding
    assert len(jax.tree.leaves(out[False].agent.actor)[0].sharding.device_set) == 1
    for a, b in zip(jax.tree.leaves(out[True]), jax.tree.leaves(out[False]), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # Settings shard when seeds do not divide: 1 seed x 4 settings.
    config = small_config("td3", num_seeds=1, checkpoint_every=0)
    config.sweep = "discount=0.9,0.95,0.97,0.99"
    state = training.train(config, data, f"{sys.argv[1]}/h")["state"]
    assert len(jax.tree.leaves(state.agent.actor)[0].sharding.device_set) == 4
    print("SHARDED_OK")
    """
)


def test_sharded_runs_equal_unsharded(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "SHARDED_OK" in done.stdout, done.stderr[-3000:]
