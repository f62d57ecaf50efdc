"""Every run records where it came from (versions, commit, device, data path), and a resume that changes one
hyperparameter is refused naming that field and its two values."""
import json
import os
import re

import jax
import pytest
from conftest import small_config

from jaxmtf.core import training
from jaxmtf.runs import checkpoint, provenance
from jaxmtf.runs import record as record_lib


def test_provenance_block_by_hand_checks():
    block = provenance.describe("does/not/exist.npz")
    assert block["versions"]["jax"] == jax.__version__ and block["versions"]["jaxlib"]
    assert set(provenance.PACKAGES) <= set(block["versions"])
    assert block["backend"] == jax.default_backend() and block["device_kind"]
    commit = block["git"]["commit"]
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit)
    assert block["git"]["dirty"] in (None, True, False)
    assert block["dataset_path_absolute"] == "does/not/exist.npz"  # a name, not a file: kept as given
    here = os.path.abspath(__file__)
    assert provenance.describe(os.path.relpath(here))["dataset_path_absolute"] == here


def test_run_record_holds_provenance_and_a_resume_ignores_it_but_names_a_changed_hparam(tiny_dataset, tmp_path):
    workdir = str(tmp_path / "run")
    config = small_config("td3_bc", num_seeds=1, num_updates=10, chunk_size=10, checkpoint_every=10)
    training.train(config, tiny_dataset, workdir)
    path = os.path.join(workdir, record_lib.RECORD_FILE)
    with open(path) as f:
        record = json.load(f)
    assert record["provenance"]["versions"]["flax"] and record["provenance"]["device_kind"]
    record["provenance"]["versions"]["jax"] = "0.0.1"  # as if written by an older jax: not a reason to refuse
    with open(path, "w") as f:
        json.dump(record, f)
    config.num_updates = 20
    assert training.train(config, tiny_dataset, workdir)["finished"]
    config.agent.alpha = 5.0
    config.num_updates = 30
    with pytest.raises(checkpoint.CheckpointError) as err:
        training.train(config, tiny_dataset, workdir)
    assert "checkpoint field 'agent.alpha'" in str(err.value)
    assert "got 5.0 in this run, expected the saved 2.5" in str(err.value)
