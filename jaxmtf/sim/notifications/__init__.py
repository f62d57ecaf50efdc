"""The notification-volume simulator (discrete actions) and its policies."""
