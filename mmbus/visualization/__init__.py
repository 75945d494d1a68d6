from .bus_det_visualizer import BUSDetVisualizer  # noqa: F401
