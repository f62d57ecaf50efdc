"""The multi-task fusion session simulator, its reference policies, static search and oracle."""
