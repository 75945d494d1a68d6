"""Metrics (registered by :mod:`mmbus.registry`)."""
