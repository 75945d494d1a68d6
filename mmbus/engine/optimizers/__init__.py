from .auto_amp_optim_wrapper import AutoAmpOptimWrapper  # noqa: F401
