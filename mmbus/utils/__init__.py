"""Small helpers; :mod:`mmbus.utils.io` has no heavy imports."""
