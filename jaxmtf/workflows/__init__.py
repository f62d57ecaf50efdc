"""Workflows built on the core: the demo, sweeps, progressive training, the MTF comparison, the study."""
