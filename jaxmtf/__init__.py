"""jaxmtf: offline reinforcement learning for multi-task fusion, in JAX."""

__version__ = "0.1.0"
