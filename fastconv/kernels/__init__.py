"""How the fast layers compute: building blocks and the measured choice of "auto".

``ops``: the shifted multiply-add depthwise convolution and the 1x1 convolution
as a matrix product, in ``keras.ops``. ``conv``: the convolutions the layers
are made of, dispatched per backend. ``functional``: every layer's
implementations and dense kernels as pure functions of tensors. ``policy``:
the static rule and the autotune request. ``dense_cache``: the dense kernel
kept between eager PyTorch inference calls. ``autotune``: the choice among a layer's
implementations, measured once per shape and mode and cached on disk.
``allocator``: ``keep_freed_memory``, the C-library setting that stops every
call of a JAX or PyTorch layer from paying for fresh pages.
"""

from fastconv.kernels.allocator import keep_freed_memory
from fastconv.kernels.autotune import (
    autotune_enabled,
    cache_path,
    load_cache,
    measure_implementations,
    speedup_over,
)
from fastconv.kernels.ops import pointwise_matmul, shifted_depthwise

__all__ = [
    "autotune_enabled",
    "cache_path",
    "keep_freed_memory",
    "load_cache",
    "measure_implementations",
    "pointwise_matmul",
    "shifted_depthwise",
    "speedup_over",
]
