"""Datasets, sampler and transforms (registered by :mod:`mmbus.registry`), the converters to COCO and the
synthetic generator. Kept free of imports so that ``mmbus.datasets.converters`` loads without torch."""
