"""What every run launcher shares: the --config/--workdir flags, how its command line is parsed, and how a run
ends.

`main(job)` replaces absl's app.run: a bad command line (a mistyped `--config.field`, a value of the wrong type)
is one line naming the flag and the nearest known field, and exit 2, as any other refused input.

A launcher's job runs under `run_job`: orbax's INFO lines hidden; SIGTERM/SIGINT (the driver checkpoints
after the current chunk and raises Preempted) exit 128 + the signal's number, so the same command resumes;
a refused input (a bad config, dataset, checkpoint: one line naming the field) logs that line and exits 2
rather than printing a traceback.
"""
import re
import sys
from typing import Callable, List, Tuple

from absl import app, flags, logging
from ml_collections import config_flags

from jaxmtf.core import loop
from jaxmtf.workflows import pipeline
from launch import logs


def define_config_and_workdir(config_help: str, workdir_help: str) -> Tuple:
    """The required --config (a get_config() file, locked) and --workdir flags."""
    config = config_flags.DEFINE_config_file("config", None, config_help, lock_config=True)
    workdir = flags.DEFINE_string("workdir", None, workdir_help)
    flags.mark_flags_as_required(["config", "workdir"])
    return config, workdir


def run_job(job: Callable[[], None], refusals: Tuple[type, ...] = ()) -> None:
    """Runs `job()`; pre-emption exits 128 + signum, a refusal (pipeline.REFUSALS + `refusals`) exits 2."""
    logs.quiet_orbax_logs()
    try:
        job()
    except loop.Preempted as stopped:  # the loop has logged its one line
        sys.exit(128 + stopped.signum)
    except (*pipeline.REFUSALS, *refusals) as refused:  # a bad input: its one line, not a traceback
        logging.error("%s", refused)
        sys.exit(2)


def command_line_error(argv: List[str], error: Exception) -> str:
    """The one line for a command line that flag parsing refused: the flag as given, what is wrong, and the
    nearest known field where ml_collections suggests one."""
    text = str(error)
    if isinstance(error, (AttributeError, KeyError)):  # ml_collections: an unknown field, repr'd messages inside
        name = re.search(r"[A-Za-z_]\w*", text)
        name = name.group(0) if name else "?"
        given = next((a for a in argv[1:] if a.startswith("--config.") and
                      name in re.split(r"[.=]", a[len("--config."):])), "--config")
        suggestion = re.search(r'Did you mean "([^"]+)"', text)
        near = f"; did you mean {suggestion.group(1)!r}?" if suggestion else ""
        return f"flag {given}: config field {name!r} unknown, expected a known field{near}"
    first = text.splitlines()[0] if text.strip() else type(error).__name__
    return first if first.startswith("flag ") else f"flag parsing: {first}"  # absl's own names the flag


def parse_flags(argv: List[str]) -> List[str]:
    """absl's flag parsing, with a refused command line as one line and exit 2 (no traceback, no usage dump)."""
    try:
        return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
        print(f"{argv[0]}: {command_line_error(argv, e)}", file=sys.stderr)
        sys.exit(2)


def main(main_fn: Callable[[List[str]], None]) -> None:
    """app.run(main_fn) with `parse_flags`."""
    app.run(main_fn, flags_parser=parse_flags)
