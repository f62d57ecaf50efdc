"""Where a run came from: library versions, the code's commit, the device, the data's absolute path.

Recorded in every run record (`run_record.json`, key "provenance") and in a progressive run's config; never
compared on resume (an upgraded jax may resume a run: the record's other fields decide what a run is).
"""
import datetime
import functools
import importlib.metadata
import os
import platform
import subprocess
import sys
from typing import Any, Dict, Optional

import jax

PACKAGES = ("jaxmtf", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "numpy", "ml-collections")
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout, if any


def versions() -> Dict[str, Optional[str]]:
    """Installed versions of the libraries a result depends on (None: not installed as a distribution, e.g.
    jaxmtf run from a checkout without `pip install`)."""
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


@functools.lru_cache(maxsize=1)
def git_state() -> Dict[str, Any]:
    """{"commit", "dirty"} of the checkout the code runs from; both None outside a git checkout."""
    def git(*args):
        return subprocess.run(["git", "-C", _ROOT, *args], capture_output=True, text=True, timeout=10)

    if not os.path.exists(os.path.join(_ROOT, "setup.cfg")):  # an installed copy: its git, if any, is not ours
        return {"commit": None, "dirty": None}
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        status = git("status", "--porcelain", "--untracked-files=no")
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):  # no git on this machine
        return {"commit": None, "dirty": None}


def describe(dataset_path: Optional[str] = None) -> Dict[str, Any]:
    """The provenance block: versions, git commit and dirty flag, device, host, time, dataset paths."""
    device = jax.devices()[0]
    out = {"versions": versions(), "git": git_state(), "backend": jax.default_backend(),
           "device_kind": getattr(device, "device_kind", str(device)), "device_count": jax.device_count(),
           "process_count": jax.process_count(), "host": platform.node(), "machine": platform.machine(),
           "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    if dataset_path:
        out["dataset_path"] = dataset_path
        out["dataset_path_absolute"] = (os.path.abspath(dataset_path) if os.path.exists(dataset_path)
                                        else dataset_path)  # a named dataset (synthetic:..., minari:...)
    return out
