"""Models (registered by :mod:`mmbus.registry`)."""
