"""Launcher log plumbing: orbax writes several INFO lines per checkpoint, and jax an INFO line for every
accelerator backend it cannot find ("Unable to initialize backend 'tpu' ... libtpu.so" on every CPU machine);
the launchers keep their warnings only."""
import logging as std_logging

from absl import logging


class _DropLibraryInfo(std_logging.Filter):
    """Drops orbax's records below WARNING and jax's missing-backend INFO lines; passes everything else."""

    def filter(self, record) -> bool:
        if record.levelno >= std_logging.WARNING:
            return True
        if "orbax" in record.pathname:
            return False
        return not (record.pathname.endswith("xla_bridge.py")
                    and str(record.msg).startswith("Unable to initialize backend"))


def quiet_orbax_logs() -> None:
    """Hides orbax's INFO lines and jax's missing-backend line on the absl handler and the root logger
    (launchers call this first)."""
    logging.get_absl_handler().addFilter(_DropLibraryInfo())
    std_logging.getLogger().addFilter(_DropLibraryInfo())
