"""Hooks (registered by :mod:`mmbus.registry`)."""
