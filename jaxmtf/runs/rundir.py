"""Run-directory writers: config.json, metrics.jsonl, eval.jsonl, summary.json.

JSONL is always written (one JSON object per logged step, seed and hparam
setting) and is the canonical record; TensorBoard and Weights & Biases are
optional writers of the same scalars (`jaxmtf.runs.writers`). Non-finite floats are
written as null so every line is strict JSON. In a run of several processes
(multi-host), each process writes the records of the runs it holds to its
own files, `metrics.process{i}.jsonl` and so on; `run_files` finds them all.

Crash safety: JSON files are written whole or not at all (write a temporary
file, fsync it, rename it over the old one, fsync the directory). JSONL
files are appended to; a kill in the middle of a write can leave a partial
last line, which the readers skip and the resume truncation removes, with a
warning naming the file. A bad line anywhere else is not a crash artefact:
it is refused (`RunDirError`, naming the file and the line).
"""
import glob
import json
import math
import os
import shutil
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np
from absl import logging as absl_logging

from jaxmtf.runs import writers as writers_lib

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.jsonl"
SUMMARY_FILE = "summary.json"


def _plain(value):
    """numpy / jax scalars and arrays to JSON-safe Python values (NaN/Inf -> None)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(np.asarray(value).tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunDirError(ValueError):
    """A run directory's file is damaged in a way no crash produces. The message names the file."""


def fsync_dir(path: str) -> None:
    """Makes a rename in directory `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str, text: str) -> None:
    """Writes `text` to `path` whole or not at all: temp file, fsync, rename, fsync the directory."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def write_npz(path: str, **arrays) -> None:
    """numpy arrays to `path` (.npz) whole or not at all, like `write_atomic` (read with allow_pickle=False)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def write_json(path: str, obj: Any) -> None:
    """Writes atomically (see `write_atomic`) so a kill never leaves half a file."""
    write_atomic(path, json.dumps(_plain(obj), indent=2, sort_keys=True))


def _parse_lines(path: str, text: str) -> "tuple[List[Dict[str, Any]], bool]":
    """(rows, whether a partial last line was dropped); a bad line before the last is a RunDirError."""
    lines = text.split("\n")
    rows, partial = [], False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if any(rest.strip() for rest in lines[number:]):
                raise RunDirError(
                    f"run file '{path}': got a line that is not JSON at line {number} ({e.msg}), expected one "
                    "JSON object per line (only the last line can be partial after a kill)"
                ) from e
            partial = True
    return rows, partial


def json_line(record: Dict[str, Any]) -> str:
    """One strict-JSON line (non-finite floats as null) of a record."""
    return json.dumps(_plain(record)) + "\n"


def read_jsonl(path: str) -> List[Dict[str, Any]]:
    """The records of a JSONL file ([] if it does not exist); a partial last line is skipped with a warning."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows, partial = _parse_lines(str(path), f.read())
    if partial:
        absl_logging.warning("%s: skipped a partial last line (a kill in the middle of a write)", path)
    return rows


def truncate_jsonl(path: str, max_step: int) -> None:
    """Drops lines logged after `max_step` (work lost since the last checkpoint, redone on resume), and a
    partial last line, with a warning naming the file. Rewrites the file only if something goes."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        rows, partial = _parse_lines(path, f.read())
    if partial:
        absl_logging.warning("%s: removed a partial last line (a kill in the middle of a write)", path)
    kept = [r for r in rows if r["step"] <= max_step]
    if partial or len(kept) < len(rows):
        write_atomic(path, "".join(json.dumps(row) + "\n" for row in kept))


def process_file(filename: str, process_index: int = 0, process_count: int = 1) -> str:
    """`metrics.jsonl` for a single process, `metrics.process{i}.jsonl` for process i of several."""
    if process_count == 1:
        return filename
    stem, ext = os.path.splitext(filename)
    return f"{stem}.process{process_index}{ext}"


def run_files(workdir: str, filename: str) -> List[str]:
    """The existing files of a run holding `filename`'s records: its own and every process's."""
    stem, ext = os.path.splitext(filename)
    paths = [os.path.join(workdir, filename)] + sorted(glob.glob(os.path.join(workdir, f"{stem}.process*{ext}")))
    return [p for p in paths if os.path.exists(p)]


def per_run_records(
    step: int, values: Dict[str, np.ndarray], run_labels: List[Dict[str, Any]], held: Optional[np.ndarray] = None
) -> Iterable[dict]:
    """Splits [S, H] arrays into one record per (seed, hparam setting); only the `held` runs if given."""
    flat = {k: np.asarray(v).reshape(len(run_labels)) for k, v in values.items()}
    held = np.ones(len(run_labels), bool) if held is None else np.asarray(held).reshape(len(run_labels))
    for i, label in enumerate(run_labels):
        if held[i]:
            yield {"step": int(step), **label, **{k: v[i].item() for k, v in flat.items()}}


class RunLogger:
    """Appends records to the run directory's JSONL files, and hands their scalars to the metric writers
    (`jaxmtf.runs.writers`: TensorBoard, Weights & Biases) if it has any.

    Process i of n (n > 1) writes its own files (see `process_file`). `use_tensorboard` (the driver's
    `tensorboard` field) adds a TensorBoard writer on `<workdir>/tensorboard`; `writers` are writers
    opened already (`writers.open_writers`), closed by `close`.
    """

    def __init__(self, workdir: str, use_tensorboard: bool = False, process_index: int = 0, process_count: int = 1,
                 writers: Sequence[Any] = ()):
        self.workdir = workdir
        self._name = lambda filename: process_file(filename, process_index, process_count)
        os.makedirs(workdir, exist_ok=True)
        self.writers = list(writers)
        self.label_keys: set = set()  # the swept hparams' names: labels of a record, not scalars to write
        if use_tensorboard and not any(isinstance(w, writers_lib.TensorBoardWriter) for w in self.writers):
            self.writers.append(writers_lib.TensorBoardWriter(os.path.join(workdir, self._name("tensorboard"))))

    def _append(self, filename: str, records: Iterable[dict]) -> None:
        with open(os.path.join(self.workdir, self._name(filename)), "a") as f:
            for record in records:
                f.write(json.dumps(_plain(record)) + "\n")

    def _write(self, prefix: str, records: List[dict]) -> None:
        if not self.writers or not records:
            return
        scalars = writers_lib.scalars_of(prefix, records, self.label_keys)
        for writer in self.writers:
            writer.write_scalars(int(records[0]["step"]), scalars)

    def log_metrics(self, records: List[dict]) -> None:
        self._append(METRICS_FILE, records)
        self._write("train", records)

    def log_eval(self, records: List[dict]) -> None:
        self._append(EVAL_FILE, records)
        self._write("eval", records)

    def truncate_after(self, step: int) -> None:
        for name in (METRICS_FILE, EVAL_FILE):
            truncate_jsonl(os.path.join(self.workdir, self._name(name)), step)

    def sync(self) -> None:
        """fsyncs the JSONL files, so that the lines up to a checkpoint survive a machine crash too."""
        for name in (METRICS_FILE, EVAL_FILE):
            path = os.path.join(self.workdir, self._name(name))
            if os.path.exists(path):
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def write_summary(self, summary: Dict[str, Any]) -> None:
        write_json(os.path.join(self.workdir, self._name(SUMMARY_FILE)), summary)

    def close(self) -> None:
        writers, self.writers = self.writers, []
        writers_lib.close_all(writers)


def read_run_records(workdir: str, filename: str) -> List[Dict[str, Any]]:
    """Every process's records of `filename` (metrics.jsonl or eval.jsonl), ordered by step, seed, setting."""
    rows = [row for path in run_files(workdir, filename) for row in read_jsonl(path)]
    return sorted(rows, key=lambda r: (r["step"], r.get("seed", 0), r.get("hparam_index", 0)))


def read_summary(workdir: str) -> Dict[str, Any]:
    """summary.json, or the processes' summaries with their final metrics joined ({} if none yet)."""
    summaries = [read_json(path) for path in run_files(workdir, SUMMARY_FILE)]
    if not summaries:
        return {}
    final = [row for s in summaries for row in s.get("final_metrics", [])]
    return {**summaries[0], "final_metrics": sorted(final, key=lambda r: (r.get("seed", 0), r.get("hparam_index", 0)))}


def read_json(path: str) -> Any:
    """A JSON file of the run directory; damaged JSON is a RunDirError naming the file."""
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise RunDirError(f"run file '{path}': got invalid JSON ({e.msg} at line {e.lineno}), expected a JSON "
                          "document (the driver writes them atomically: was it edited?)") from e


def load_config_json(workdir: str) -> Optional[Dict[str, Any]]:
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    return read_json(path)


def force_new_run(workdir: str, patterns: Iterable[str]) -> None:
    """force_new_run's deletion: every path under `workdir` matching a glob pattern, with one warning naming
    what went (nothing else in the folder is touched)."""
    gone = sorted(p for pattern in patterns for p in glob.glob(os.path.join(workdir, pattern)))
    for path in gone:
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    if gone:
        absl_logging.warning("force_new_run: deleted %s", ", ".join(os.path.basename(p) for p in gone))
