"""AutoAmpOptimWrapper: mixed precision on a GPU, plain float32 elsewhere, from one config.

mmengine's ``AmpOptimWrapper`` refuses to build without CUDA (or NPU/MLU), so a GPU config with it cannot
run its CPU smoke test, and a CPU config without it wastes the GPU's bf16 units. This builder returns
``AmpOptimWrapper(dtype, loss_scale, ...)`` where an accelerator is present and ``OptimWrapper(...)``
otherwise, so the same config trains on both.
"""
from mmengine.device import is_cuda_available, is_mlu_available, is_npu_available
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
def AutoAmpOptimWrapper(dtype='bfloat16', loss_scale='dynamic', **kwargs):  # noqa: N802 (a registry type)
    """``AmpOptimWrapper`` with ``dtype`` / ``loss_scale`` on an accelerator, else ``OptimWrapper``."""
    if is_cuda_available() or is_npu_available() or is_mlu_available():
        return AmpOptimWrapper(dtype=dtype, loss_scale=loss_scale, **kwargs)
    return OptimWrapper(**kwargs)
