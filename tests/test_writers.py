"""Metric writers (jaxmtf.runs.writers): TensorBoard and Weights & Biases, faked here (no package needed)."""
import os
import sys
import types

import numpy as np
import pytest
from conftest import small_config

from jaxmtf.core import run_config, training
from jaxmtf.runs import rundir, writers


class FakeSummaryWriter:
    """tensorboardX.SummaryWriter's add_scalar / flush / close, recording what arrives."""

    instances = []

    def __init__(self, logdir):
        self.logdir, self.scalars, self.closed = logdir, [], False
        FakeSummaryWriter.instances.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, float(value), int(step)))

    def flush(self):
        pass

    def close(self):
        self.closed = True


class FakeWandbRun:
    def __init__(self, **kwargs):
        self.kwargs, self.logged, self.finished = kwargs, [], False

    def log(self, data, step=None):
        self.logged.append((int(step), dict(data)))

    def finish(self):
        self.finished = True


@pytest.fixture()
def fakes(monkeypatch):
    """Fake tensorboardX and wandb modules in sys.modules; returns (the summary writers made, the wandb runs)."""
    FakeSummaryWriter.instances = []
    runs = []

    def init(**kwargs):
        runs.append(FakeWandbRun(**kwargs))
        return runs[-1]

    monkeypatch.setitem(sys.modules, "tensorboardX", types.SimpleNamespace(SummaryWriter=FakeSummaryWriter))
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    return FakeSummaryWriter.instances, runs


def test_unknown_writer_is_refused_naming_the_nearest(fakes):
    with pytest.raises(run_config.ConfigError, match=r"config field 'writers': got 'tensorbord'.*did you mean "
                                                      r"'tensorboard'"):
        run_config.validate_config(small_config("td3", writers="wandb,tensorbord"))
    with pytest.raises(run_config.ConfigError, match="config field 'wandb_mode'"):
        run_config.validate_config(small_config("td3", writers="wandb", wandb_mode="offine"))
    assert writers.parse_writers(" tensorboard , wandb ") == ["tensorboard", "wandb"]
    run_config.validate_config(small_config("td3", writers="tensorboard,wandb"))


def test_missing_packages_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.raises(run_config.ConfigError, match=r"'writers': got 'wandb'.*pip install 'jaxmtf\[wandb\]'"):
        run_config.validate_config(small_config("td3", writers="wandb"))
    for module in ("tensorboardX", "torch.utils.tensorboard", "tensorflow"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(run_config.ConfigError, match=r"'writers': got 'tensorboard'.*jaxmtf\[tensorboard\]"):
        run_config.validate_config(small_config("td3", writers="tensorboard"))
    with pytest.raises(run_config.ConfigError, match=r"'tensorboard'.*tensorboardX"):
        run_config.validate_config(small_config("td3", tensorboard=True))


def test_scalars_of_tags_runs_and_means():
    records = [{"step": 5, "seed": 0, "hparam_index": 0, "loss": 1.0, "diverged_at_step": None},
               {"step": 5, "seed": 1, "hparam_index": 0, "loss": 3.0, "diverged_at_step": None},
               {"step": 5, "seed": 2, "hparam_index": 0, "loss": None, "diverged_at_step": 3}]
    assert writers.scalars_of("train", records) == {"train/loss/seed0/h0": 1.0, "train/loss/seed1/h0": 3.0,
                                                    "train/loss/mean": 2.0}
    swept = [{**r, "alpha": 2.5} for r in records]  # a swept hparam's value labels the run: not a scalar
    assert writers.scalars_of("train", swept, labels=["alpha"]) == writers.scalars_of("train", records)


def test_training_run_sends_eval_returns_to_the_writers(fakes, tiny_dataset, tmp_path):
    summary_writers, wandb_runs = fakes
    config = small_config("td3", writers="tensorboard,wandb", wandb_project="proj", eval_every=10)
    calls = []

    def eval_fn(agent, agent_states, step):  # a stand-in evaluation: a return per run that depends on the step
        calls.append(step)
        return {"undiscounted_return": np.asarray([[step + 0.5], [step + 1.5]], np.float32)}

    training.train(config, tiny_dataset, str(tmp_path), eval_fn=eval_fn)
    assert calls == [10, 20]
    logged = rundir.read_jsonl(os.path.join(tmp_path, rundir.EVAL_FILE))
    want = {(r["step"], f"eval/undiscounted_return/seed{r['seed']}/h{r['hparam_index']}"): r["undiscounted_return"]
            for r in logged}
    assert len(want) == 4

    (tb,) = summary_writers
    assert tb.logdir == os.path.join(tmp_path, "tensorboard") and tb.closed
    got_tb = {(step, tag): value for tag, value, step in tb.scalars if tag.startswith("eval/undiscounted_return/seed")}
    assert got_tb == pytest.approx(want)
    assert any(tag.startswith("train/critic_loss/") for tag, _, _ in tb.scalars)  # the progress lines' scalars
    assert ("eval/undiscounted_return/mean", 11.0, 10) in tb.scalars

    (run,) = wandb_runs
    assert run.finished
    assert run.kwargs["project"] == "proj" and run.kwargs["mode"] == "offline" and run.kwargs["dir"] == str(tmp_path)
    assert run.kwargs["config"]["writers"] == "tensorboard,wandb"
    got_wandb = {(step, tag): value for step, data in run.logged for tag, value in data.items()
                 if tag.startswith("eval/undiscounted_return/seed")}
    assert got_wandb == pytest.approx(want)
    # JSONL stays the record: metrics.jsonl has every chunk
    assert {r["step"] for r in rundir.read_jsonl(os.path.join(tmp_path, rundir.METRICS_FILE))} == {10, 20}
