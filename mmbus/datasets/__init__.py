from .bus_dataset import BUSDataset  # noqa: F401
