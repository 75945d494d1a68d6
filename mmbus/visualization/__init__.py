"""Visualisers (registered by :mod:`mmbus.registry`)."""
