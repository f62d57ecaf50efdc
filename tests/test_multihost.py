"""Two processes joined by jax.distributed (127.0.0.1, CPU) equal one process."""
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

from jaxmtf.runs import rundir
from launch import distributed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = [
    "--config=launch/configs/td3.py", "--config.dataset=synthetic:one_step", "--config.num_seeds=2",
    "--config.chunk_size=100", "--config.checkpoint_every=100", "--config.eval_every=0", "--config.batch_size=32",
    "--config.agent.actor_hidden_dims=(32,32)", "--config.agent.critic_hidden_dims=(32,32)",
]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(workdir, num_updates, *extra):
    return [sys.executable, "-m", "launch.train", *CONFIG, f"--config.num_updates={num_updates}",
            f"--workdir={workdir}", *extra]


def _check(returncode, stderr):
    assert returncode == 0, stderr[-3000:]


def test_two_processes_equal_one(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    address = f"127.0.0.1:{_free_port()}"
    procs = [
        subprocess.Popen(
            _train(two, 300, f"--coordinator_address={address}", "--num_processes=2", f"--process_id={i}"),
            cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=300)
        _check(proc.returncode, stderr)
    # Each process logged the seed it holds, in its own file; one checkpoint holds both.
    for i in range(2):
        rows = rundir.read_jsonl(two / f"metrics.process{i}.jsonl")
        assert {r["seed"] for r in rows} == {i} and len(rows) == 3
    assert not (two / "metrics.jsonl").exists()

    # One process resumes the two-process checkpoint (the seeds' shards of both processes),
    # and a separate single process runs the same config from scratch: the logs agree.
    # These two run one after the other and compile the same single-process programs: the second
    # reads the first's executables from a compilation cache of their own (the very same binaries).
    env = {**ENV, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "xla_cache")}
    for command in (_train(two, 400), _train(one, 400)):
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        _check(done.returncode, done.stderr)
    combined = rundir.read_run_records(two, "metrics.jsonl")
    single = rundir.read_run_records(one, "metrics.jsonl")
    assert [(r["step"], r["seed"]) for r in combined] == [(r["step"], r["seed"]) for r in single]
    assert len(single) == 8
    for a, b in zip(combined, single):
        for name in ("critic_loss", "actor_loss", "q_mean", "target_mean"):
            np.testing.assert_allclose(a[name], b[name], rtol=1e-5, err_msg=f"{name} at step {a['step']}")
    summary = rundir.read_summary(two)
    assert summary["finished"] and summary["step"] == 400


def test_multihost_flags_go_together():
    """A partial set of the multi-host flags is refused; none of them means one process."""
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver(num_processes=2, process_id=0):
        with pytest.raises(flags.ValidationError, match="go together"):
            distributed.initialize()
    distributed.initialize()  # no flags: nothing to join
    assert jax.process_count() == 1
