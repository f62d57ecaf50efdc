"""Executes the study notebooks with nbclient at a SCALE (CI: small; the committed copies: full).

    SCALE=full python -m jaxmtf.reporting.notebooks --inplace notebooks/0*.ipynb

The kernel runs in the repository root (the notebooks write runs/ there) and inherits SCALE and
JAXMTF_RUNS_DIR (jaxmtf.workflows.study) from this process's environment.
"""
import argparse
import os
import time

import nbformat
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout


def execute(path: str, timeout: int = 3600, cwd: str = ROOT):
    """The notebook at `path`, executed (outputs filled in); raises nbclient's CellExecutionError on a failing cell."""
    return execute_notebook(nbformat.read(path, as_version=4), timeout, cwd)


def execute_notebook(notebook, timeout: int = 3600, cwd: str = ROOT):
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": cwd}}).execute()
    return notebook


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--inplace", action="store_true", help="write the outputs into the notebook files")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = parser.parse_args()
    for path in args.paths:
        start = time.time()
        notebook = execute(path, args.timeout)
        if args.inplace:
            nbformat.write(notebook, path)
        print(f"{path}: executed at SCALE={os.environ.get('SCALE', 'small')} in {time.time() - start:.0f} s",
              flush=True)


if __name__ == "__main__":
    main()
