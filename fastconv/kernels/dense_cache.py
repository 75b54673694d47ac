"""A layer's reconstructed dense kernel, kept between calls where that is safe."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras

__all__ = ["DenseKernelCache"]


class DenseKernelCache:
    """The dense kernel, rebuilt only when a factor has changed where that can
    be known: eager PyTorch outside autograd (inference, ``predict``), where
    every in-place write to a tensor (``assign``, an optimizer step) moves
    its version counter. Everywhere else (a ``tf.function`` or ``jax.jit``
    trace, or a gradient to take) it is rebuilt on every call. For a small
    layer the rebuild costs nearly as much as the convolution: CP's dense
    kernel took about 70 us to build, the 8x8x32 convolution 90 us (eager
    PyTorch, this project's CPU).

    Attributes:
        key: what the kept kernel was built from (dtype, and each factor's
            identity, storage and version), or None.
        kernel: the kept kernel, or None.
    """

    def __init__(self):
        self.key = None
        self.kernel = None

    def get(self, build: Callable, factors: Sequence, dtype: str):
        """``build()``, or the kernel it returned last time if ``factors``
        (Keras variables) and ``dtype`` have not changed since."""
        if keras.backend.backend() != "torch":
            return build()
        import torch

        if torch.is_grad_enabled():
            return build()
        try:
            key = (dtype,) + tuple(
                (id(t), t.data_ptr(), t._version) for t in (v.value for v in factors)
            )
        except RuntimeError:  # inference-mode tensors keep no version counter
            return build()
        if self.key == key:
            return self.kernel
        kernel = build()
        self.key, self.kernel = key, kernel
        return kernel
