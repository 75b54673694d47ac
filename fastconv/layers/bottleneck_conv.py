"""Bottleneck convolutions with 1, 2 or 3 spatial axes: the family's base,
and the 1-D and 3-D layers (the 2-D one is ``BottleneckConv2D``)."""

from __future__ import annotations

import numbers

import keras
import numpy as np

from fastconv.kernels import functional
from fastconv.layers.base import BaseFastConv


class BaseBottleneckConv(BaseFastConv):
    """A bottleneck convolution for any rank: 1x1 squeeze, the kernel on few
    channels, 1x1 expand.

    ``squeeze`` (1x1, ``C_in -> B``), ``kernel`` (``*kernel_size``, ``B ->
    B``, with the strides, dilation and padding), ``expand`` (1x1, ``B ->
    filters``), then, with ``residual=True``, the input added, then bias and
    activation. ``intermediate_activation`` is applied after the squeeze and
    after the middle conv. Without it the layer is the convolution whose
    kernel is ``K[..., c, o] = sum_{b, d} squeeze[c, b] kernel[..., b, d]
    expand[d, o]`` (plus, with the residual, the identity at the tap aligned
    with the output position). The 1-D layer takes ``padding="causal"``:
    only the middle conv mixes positions, and the residual adds the current
    one.

    Cost per example: ``params = C_in B + prod(k) B^2 + B filters``, against
    ``prod(k) C_in filters`` for the dense convolution.

    Implementations: ``"bottleneck"`` (``keras.ops.conv`` three times),
    ``"dense"`` (linear layers only) and ``"auto"``; the 2-D layer adds its
    own.

    Args:
        filters: number of output channels.
        kernel_size: int or tuple of ``SPATIAL_DIMS`` ints.
        bottleneck_filters: the bottleneck width ``B``, a positive int.
        bottleneck_ratio: ``B`` as a fraction of ``filters``, a number in
            ``(0, 1]``; ``B = max(1, round(bottleneck_ratio * filters))``. Give
            at most one of ``bottleneck_filters`` and ``bottleneck_ratio``; with
            neither, the ratio is 0.25.
        intermediate_activation: activation after the squeeze and after the
            middle conv; None (the default) keeps the layer linear.
        residual: add the input to the output, before bias and activation. Needs
            ``strides=1``, ``padding="same"`` (or ``"causal"``) and as many
            input channels as ``filters`` (checked on build).
        **kwargs: every other ``BaseFastConv`` argument.
    """

    IMPLEMENTATIONS = ("bottleneck", "dense")
    TWO_D_ONLY = ("matmul",)
    CAUSAL = True

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
        causal = " or 'causal'" if self.SPATIAL_DIMS == 1 else ""
        if self.residual and (
            max(self.strides) > 1 or self.padding not in ("same", "causal")
        ):
            raise ValueError(
                f"{type(self).__name__}: residual=True needs strides=1 and "
                f"padding='same'{causal} (the output must have the input's "
                "shape), received "
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

    def _identity_tap(self) -> tuple[int, ...]:
        """The kernel tap that ``"same"`` padding aligns with the output pixel
        (``"causal"``: the last one)."""
        if self.padding == "causal":
            return (self.kernel_size[0] - 1,)
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
        return {
            "squeeze": (c_in, b),
            "kernel": (*self.kernel_size, b, b),
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

    def _dense_kernel_ops(self):
        return functional.bottleneck_dense_kernel(
            self.squeeze,
            self.kernel,
            self.expand,
            self._identity_tap() if self.residual else None,
        )

    def _cost(self, *dims):
        b = self.bottleneck_channels
        return self._sandwich_cost(*dims, b, b)

    @classmethod
    def input_channels_of(cls, factors):
        return int(factors["squeeze"].shape[0])

    @classmethod
    def _kwargs_from_factors(cls, factors):
        *taps, b, _ = factors["kernel"].shape
        return {
            "filters": int(factors["expand"].shape[1]),
            "kernel_size": tuple(int(k) for k in taps),
            "bottleneck_filters": int(b),
        }

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


@keras.saving.register_keras_serializable(package="fastconv")
class BottleneckConv1D(BaseBottleneckConv):
    """A bottleneck 1-D convolution: 1x1, a ``k`` conv on ``B`` channels, 1x1
    (see ``BaseBottleneckConv``).

    Example:
        >>> import keras, fastconv
        >>> layer = fastconv.BottleneckConv1D(
        ...     64, 3, padding="causal", residual=True)
        >>> tuple(layer(keras.ops.zeros((2, 100, 64))).shape)
        (2, 100, 64)

    Reference:
        He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    """

    SPATIAL_DIMS = 1


@keras.saving.register_keras_serializable(package="fastconv")
class BottleneckConv3D(BaseBottleneckConv):
    """A bottleneck 3-D convolution: 1x1, a ``k_d x k_h x k_w`` conv on ``B``
    channels, 1x1 (see ``BaseBottleneckConv``).

    Example:
        >>> import keras, fastconv
        >>> layer = fastconv.BottleneckConv3D(32, 3, padding="same")
        >>> tuple(layer(keras.ops.zeros((1, 4, 8, 8, 16))).shape)
        (1, 4, 8, 8, 32)

    Reference:
        He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    """

    SPATIAL_DIMS = 3
