"""Launcher log plumbing: orbax writes several INFO lines per checkpoint; the launchers keep its warnings only."""
import logging as std_logging

from absl import logging


class _DropOrbaxInfo(std_logging.Filter):
    """Drops orbax's records below WARNING; passes everything else."""

    def filter(self, record) -> bool:
        return record.levelno >= std_logging.WARNING or "orbax" not in record.pathname


def quiet_orbax_logs() -> None:
    """Hides orbax's INFO lines on the absl handler and the root logger (launchers call this first)."""
    logging.get_absl_handler().addFilter(_DropOrbaxInfo())
    std_logging.getLogger().addFilter(_DropOrbaxInfo())
