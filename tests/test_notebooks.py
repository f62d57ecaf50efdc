"""Every study notebook executes at SCALE=small (so none can rot), and the committed copies hold the
outputs of a full run (figures included), so a reader on a code host sees them without running anything."""
import glob
import os

import nbformat
import pytest

from jaxmtf.reporting import notebooks

NOTEBOOKS = sorted(glob.glob(os.path.join(notebooks.ROOT, "notebooks", "0*.ipynb")))
NAMES = [os.path.basename(p) for p in NOTEBOOKS]


def printed(notebook) -> str:
    return "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))


def figures(notebook) -> int:
    return sum("image/png" in o.get("data", {})
               for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_the_five_study_notebooks_exist():
    assert NAMES == ["01_quickstart.ipynb", "02_algorithms_vs_data.ipynb", "03_overestimation.ipynb",
                     "04_ope.ipynb", "05_mtf_methods.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_committed_copy_holds_full_scale_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    assert "SCALE = full" in printed(notebook), f"{path}: not executed at full scale"
    assert figures(notebook) >= 1, f"{path}: no figure in the committed outputs"
    assert not any(o.get("output_type") == "error" for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert "FINDINGS_" not in "".join(c.source for c in notebook.cells), f"{path}: findings not written"


@pytest.fixture(scope="module")
def small_study(tmp_path_factory, monkeypatch_module):
    """One small study directory shared by the notebooks, executed in order (02 runs the sweep, 03 and 04
    read it, skipping its finished cells)."""
    workdir = tmp_path_factory.mktemp("study")
    monkeypatch_module.setenv("SCALE", "small")
    monkeypatch_module.setenv("JAXMTF_RUNS_DIR", str(workdir))
    return workdir


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_notebook_executes_at_small_scale(path, small_study):
    notebook = nbformat.read(path, as_version=4)
    executed = notebooks.execute_notebook(notebook, cwd=notebooks.ROOT, timeout=900)
    assert "SCALE = small" in printed(executed)
    assert figures(executed) >= 1
