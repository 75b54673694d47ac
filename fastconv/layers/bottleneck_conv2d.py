"""ResNet-style bottleneck 2-D convolution (He et al. 2016)."""

from __future__ import annotations

import numbers

import keras
import numpy as np

from fastconv.kernels import functional
from fastconv.layers.base import BaseFastConv


@keras.saving.register_keras_serializable(package="fastconv")
class BottleneckConv2D(BaseFastConv):
    """A bottleneck convolution: 1x1 squeeze, ``k x k`` on few channels, 1x1 expand.

    ``squeeze`` (1x1, ``C_in -> B``), ``kernel`` (``k_h x k_w``, ``B -> B``,
    with the strides, dilation and padding), ``expand`` (1x1, ``B -> filters``),
    then, with ``residual=True``, the input added, then bias and activation.
    ``intermediate_activation`` is applied after the squeeze and after the
    ``k x k`` conv, as in ResNet's bottleneck block. Without it the layer is the
    convolution whose kernel is
    ``K[h, w, c, o] = sum_{b, d} squeeze[c, b] kernel[h, w, b, d] expand[d, o]``
    (plus, with the residual, ``1`` at ``[t_h, t_w, c, c]``, the tap that
    ``"same"`` padding aligns with the output pixel). The 1x1 factors have no
    bias, so ``"same"`` padding of the middle conv gives exactly the dense
    kernel's ``"same"`` output.

    Cost per example: ``params = C_in B + k_h k_w B^2 + B filters`` and
    ``macs = H W C_in B + H_o W_o k_h k_w B^2 + H_o W_o B filters``, against
    ``params = k_h k_w C_in filters`` and ``macs = H_o W_o k_h k_w C_in
    filters`` for ``Conv2D`` (the residual addition, like the bias, is not a
    multiply-add). It pays off when ``B`` is well below ``C_in`` and
    ``filters``.

    Args:
        filters: number of output channels.
        kernel_size: int or pair.
        bottleneck_filters: the bottleneck width ``B``, a positive int.
        bottleneck_ratio: ``B`` as a fraction of ``filters``, a number in
            ``(0, 1]``; ``B = max(1, round(bottleneck_ratio * filters))``. Give
            at most one of ``bottleneck_filters`` and ``bottleneck_ratio``; with
            neither, the ratio is 0.25.
        intermediate_activation: activation after the squeeze and after the
            ``k x k`` conv; None (the default) keeps the layer linear.
        residual: add the input to the output, before bias and activation. Needs
            ``strides=1``, ``padding="same"`` and as many input channels as
            ``filters`` (checked on build).
        **kwargs: every other ``BaseFastConv`` argument (``strides``, ``padding``,
            ``data_format``, ``dilation_rate``, ``activation``, ``use_bias``,
            initializers, regularizers, constraints, ``implementation``).

    Example:
        >>> import keras, fastconv
        >>> layer = fastconv.BottleneckConv2D(64, 3, padding="same", residual=True)
        >>> tuple(layer(keras.ops.zeros((2, 32, 32, 64))).shape)
        (2, 32, 32, 64)
        >>> [tuple(w.shape) for w in layer.weights]
        [(64, 16), (3, 3, 16, 16), (16, 64), (64,)]

    Reference:
        He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    """

    IMPLEMENTATIONS = ("bottleneck", "matmul", "dense")
    STATIC_RULE = {"xla": "matmul", "tensorflow": "matmul", "torch": "matmul"}
    FUSED_BIAS = ("matmul",)

    def __init__(
        self,
        filters,
        kernel_size,
        bottleneck_filters=None,
        bottleneck_ratio=None,
        intermediate_activation=None,
        residual=False,
        **kwargs,
    ):
        super().__init__(filters, kernel_size, **kwargs)
        if bottleneck_filters is not None and bottleneck_ratio is not None:
            raise ValueError(
                f"{type(self).__name__}: give bottleneck_filters or "
                "bottleneck_ratio, not both, received "
                f"bottleneck_filters={bottleneck_filters!r} and "
                f"bottleneck_ratio={bottleneck_ratio!r}"
            )
        self.bottleneck_filters = self._positive_int(
            "bottleneck_filters", bottleneck_filters, allow_none=True
        )
        self.bottleneck_ratio = bottleneck_ratio
        if self.bottleneck_filters is None:
            ratio = 0.25 if bottleneck_ratio is None else bottleneck_ratio
            if (
                isinstance(ratio, bool)
                or not isinstance(ratio, numbers.Real)
                or not 0 < ratio <= 1
            ):
                raise self._error(
                    "bottleneck_ratio", ratio, "must be a number in (0, 1]"
                )
            self.bottleneck_ratio = float(ratio)
        self.intermediate_activation = self._activation(
            "intermediate_activation", intermediate_activation
        )
        if not isinstance(residual, bool | np.bool_):
            raise self._error("residual", residual, "must be a bool")
        self.residual = bool(residual)
        if self.residual and (self.strides != (1, 1) or self.padding != "same"):
            raise ValueError(
                f"{type(self).__name__}: residual=True needs strides=1 and "
                "padding='same' (the output must have the input's shape), received "
                f"residual=True with strides={self.strides!r} and "
                f"padding={self.padding!r}"
            )
        if self.implementation == "dense":
            self._require_linear("implementation='dense'")
            if self.residual:
                self._identity_tap()

    @property
    def bottleneck_channels(self) -> int:
        """The bottleneck width ``B``."""
        if self.bottleneck_filters is not None:
            return self.bottleneck_filters
        return max(1, round(self.bottleneck_ratio * self.filters))

    @property
    def is_linear(self):
        return self.intermediate_activation is keras.activations.linear

    def _nonlinear_reason(self):
        name = keras.activations.serialize(self.intermediate_activation)
        return f"intermediate_activation={name!r} acts between the factors"

    def _identity_tap(self) -> tuple[int, int]:
        """The kernel tap that ``"same"`` padding aligns with the output pixel."""
        taps = []
        for k, d in zip(self.kernel_size, self.dilation_rate, strict=True):
            offset = (k - 1) * d // 2
            if offset % d:
                raise ValueError(
                    f"{type(self).__name__}: the residual has no dense kernel for "
                    f"kernel_size={self.kernel_size!r} and "
                    f"dilation_rate={self.dilation_rate!r}: 'same' padding puts "
                    "the output pixel between two dilated taps; use an odd "
                    "kernel_size or dilation_rate=1"
                )
            taps.append(offset // d)
        return tuple(taps)

    def _factor_shapes(self, c_in):
        if self.residual and c_in != self.filters:
            raise ValueError(
                f"{type(self).__name__}: residual=True needs as many input channels "
                f"as filters, received residual=True with C_in={c_in} and "
                f"filters={self.filters}"
            )
        b = self.bottleneck_channels
        kh, kw = self.kernel_size
        return {
            "squeeze": (c_in, b),
            "kernel": (kh, kw, b, b),
            "expand": (b, self.filters),
        }

    def _linear_bottleneck(self, inputs, training, bias, expand_by_conv):
        return functional.bottleneck_plain(
            inputs,
            self.squeeze,
            self.kernel,
            self.expand,
            intermediate_activation=self.intermediate_activation,
            residual=self.residual,
            **self._conv_settings,
        )

    def _linear_matmul(self, inputs, training, bias, expand_by_conv):
        return functional.bottleneck_matmul(
            inputs,
            self.squeeze,
            self.kernel,
            self.expand,
            bias=bias,
            intermediate_activation=self.intermediate_activation,
            residual=self.residual,
            expand_by_conv=expand_by_conv,
            **self._conv_settings,
        )

    def _dense_kernel_ops(self):
        return functional.bottleneck_dense_kernel(
            self.squeeze,
            self.kernel,
            self.expand,
            self._identity_tap() if self.residual else None,
        )

    def _cost(self, h, w, c_in):
        b = self.bottleneck_channels
        return self._sandwich_cost(h, w, c_in, b, b)

    @classmethod
    def input_channels_of(cls, factors):
        return int(factors["squeeze"].shape[0])

    @classmethod
    def _kwargs_from_factors(cls, factors):
        kh, kw, b, _ = factors["kernel"].shape
        return {
            "filters": int(factors["expand"].shape[1]),
            "kernel_size": (int(kh), int(kw)),
            "bottleneck_filters": int(b),
        }

    @classmethod
    def _like_kwargs(cls, conv, c_in, ratio):
        return {"bottleneck_filters": cls._share(conv.filters, ratio)}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "bottleneck_filters": self.bottleneck_filters,
                "bottleneck_ratio": self.bottleneck_ratio,
                "intermediate_activation": keras.activations.serialize(
                    self.intermediate_activation
                ),
                "residual": self.residual,
            }
        )
        return config
