"""A large convolution as a stack of 3x3 convolutions (Simonyan & Zisserman 2015)."""

from __future__ import annotations

import keras

from fastconv.cost import conv2d_cost, conv_output_length
from fastconv.kernels import functional
from fastconv.layers.base import BaseFastConv


@keras.saving.register_keras_serializable(package="fastconv")
class StackedConv2D(BaseFastConv):
    """A ``k x k`` convolution as ``n = (k - 1) / 2`` stacked 3x3 convolutions.

    ``stack_0`` (3x3, ``C_in -> M``), ``stack_1`` ... ``stack_{n-2}`` (3x3,
    ``M -> M``), ``stack_{n-1}`` (3x3, ``M -> filters``), then bias and
    activation, with ``M`` the ``intermediate_filters``. The stack has the
    receptive field of one ``k x k`` convolution (VGG's argument). Dilation
    ``d`` applies to every 3x3 and the stride only to the last one; with
    ``"same"`` padding the input is zero-padded once, as the ``k x k`` ``"same"``
    convolution would pad it, and every 3x3 runs ``"valid"``. The layer is then
    exactly the ``k x k`` convolution (dilation ``d``, stride ``s``) whose
    kernel is the full 2-D convolution of the 3x3 kernels: ``dense_kernel()``.

    With ``intermediate_activation`` set, it is applied after every 3x3 but the
    last (the layer's ``activation`` follows the last): the stack is then more
    expressive than any ``k x k`` convolution, no longer a linear map, has no
    dense kernel and cannot use ``implementation="dense"``.

    Cost per example: ``params = 9 (C_in M + (n - 2) M^2 + M filters)`` and
    ``macs = 9 (H_1 W_1 C_in M + sum_{i=2}^{n-1} H_i W_i M^2 + H_o W_o M
    filters)``, where ``H_i = H_p - 2 i d`` is the height after the ``i``-th
    3x3 (``H_p`` the input height, after the ``"same"`` padding if any;
    likewise ``W_i``) and ``H_o W_o`` is the output size, against
    ``H_o W_o k^2 C_in filters`` for ``Conv2D``. With ``M = C_in = filters``
    the parameters are ``9 n / k^2`` of the ``Conv2D``'s: ``18/25`` for a
    5x5, ``27/49`` for a 7x7. The intermediate maps of a ``"same"`` layer are
    larger than its output (the single padding is spent across the stack), so
    the multiply-adds save a little less than the parameters, and with strides
    the first ``n - 1`` convolutions run at the full input resolution: a
    strided ``StackedConv2D`` can cost more than the ``Conv2D`` it replaces.

    Args:
        filters: number of output channels.
        kernel_size: the odd int ``k >= 5`` (or a square pair of it).
        intermediate_filters: channels ``M`` between the 3x3 convolutions, a
            positive int; None (the default) means ``filters``.
        intermediate_activation: activation between the 3x3 convolutions; None
            (the default) keeps the layer linear.
        **kwargs: every other ``BaseFastConv`` argument (``strides``, ``padding``,
            ``data_format``, ``dilation_rate``, ``activation``, ``use_bias``,
            initializers, regularizers, constraints, ``implementation``).

    Example:
        >>> import keras, fastconv
        >>> layer = fastconv.StackedConv2D(64, 5, padding="same")
        >>> tuple(layer(keras.ops.zeros((2, 32, 32, 32))).shape)
        (2, 32, 32, 64)
        >>> [tuple(w.shape) for w in layer.weights]
        [(3, 3, 32, 64), (3, 3, 64, 64), (64,)]
        >>> layer.dense_kernel().shape
        (5, 5, 32, 64)

    Reference:
        Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale
        Image Recognition", ICLR 2015; Szegedy et al., "Rethinking the
        Inception Architecture for Computer Vision", CVPR 2016.
    """

    IMPLEMENTATIONS = ("stacked", "dense")

    def __init__(
        self,
        filters,
        kernel_size,
        intermediate_filters=None,
        intermediate_activation=None,
        **kwargs,
    ):
        super().__init__(filters, kernel_size, **kwargs)
        self.intermediate_filters = self._positive_int(
            "intermediate_filters", intermediate_filters, allow_none=True
        )
        if self.intermediate_filters is None:
            self.intermediate_filters = self.filters
        kh, kw = self.kernel_size
        if kh != kw or kh < 5 or kh % 2 == 0:
            raise self._error(
                "kernel_size",
                self.kernel_size,
                "must be square, odd and at least 5 (a k x k conv becomes "
                "(k - 1) / 2 stacked 3x3 convs)",
            )
        self.intermediate_activation = self._activation(
            "intermediate_activation", intermediate_activation
        )
        if self.implementation == "dense" and not self.is_linear:
            raise self._error(
                "implementation",
                self.implementation,
                "cannot be 'dense' with an intermediate_activation (the layer is "
                "not a linear map)",
            )

    @property
    def depth(self) -> int:
        """Number of stacked 3x3 convolutions, ``(k - 1) / 2``."""
        return (self.kernel_size[0] - 1) // 2

    @property
    def is_linear(self) -> bool:
        return self.intermediate_activation is keras.activations.linear

    def _nonlinear_reason(self):
        name = keras.activations.serialize(self.intermediate_activation)
        return f"intermediate_activation={name!r} acts between its 3x3 convolutions"

    def _channels(self, c_in):
        """The ``(in, out)`` channels of each 3x3 convolution."""
        m = self.intermediate_filters
        inputs = [c_in] + [m] * (self.depth - 1)
        outputs = [m] * (self.depth - 1) + [self.filters]
        return list(zip(inputs, outputs, strict=True))

    def _factor_shapes(self, c_in):
        return {
            f"stack_{i}": (3, 3, a, b) for i, (a, b) in enumerate(self._channels(c_in))
        }

    def _stack(self):
        return [getattr(self, f"stack_{i}") for i in range(self.depth)]

    def _linear_stacked(self, inputs, training, bias, expand_by_conv):
        return functional.stacked_plain(
            inputs,
            self._stack(),
            intermediate_activation=(
                None if self.is_linear else self.intermediate_activation
            ),
            **self._conv_settings,
        )

    def _dense_kernel_ops(self):
        return functional.stacked_dense_kernel(self._stack())

    def _cost(self, h, w, c_in):
        k = self.kernel_size[0]
        if self.padding == "same":
            h_out, w_out = self._output_spatial(h, w)
            h, w = (
                max(length, (out - 1) * s + (k - 1) * d + 1)
                for length, out, s, d in zip(
                    (h, w),
                    (h_out, w_out),
                    self.strides,
                    self.dilation_rate,
                    strict=True,
                )
            )
        cost = None
        for i, (a, b) in enumerate(self._channels(c_in)):
            strides = self.strides if i == self.depth - 1 else (1, 1)
            step = conv2d_cost(
                (h, w, a),
                b,
                3,
                strides=strides,
                dilation_rate=self.dilation_rate,
                use_bias=False,
            )
            cost = step if cost is None else cost + step
            h, w = (
                conv_output_length(length, 3, s, "valid", d)
                for length, s, d in zip(
                    (h, w), strides, self.dilation_rate, strict=True
                )
            )
        return cost

    @classmethod
    def _stack_names(cls, factors):
        names = []
        while f"stack_{len(names)}" in factors:
            names.append(f"stack_{len(names)}")
        if len(names) < 2:
            raise ValueError(
                f"{cls.__name__}: factors must have the names stack_0, stack_1, ... "
                f"(at least two), received factors with names {sorted(factors)}"
            )
        return names

    @classmethod
    def input_channels_of(cls, factors):
        return int(factors[cls._stack_names(factors)[0]].shape[2])

    @classmethod
    def _kwargs_from_factors(cls, factors):
        names = cls._stack_names(factors)
        return {
            "filters": int(factors[names[-1]].shape[3]),
            "kernel_size": 2 * len(names) + 1,
            "intermediate_filters": int(factors[names[0]].shape[3]),
        }

    @classmethod
    def _like_kwargs(cls, conv, c_in, ratio):
        return {"intermediate_filters": cls._share(conv.filters, ratio)}

    def get_config(self):
        config = super().get_config()
        config["intermediate_filters"] = self.intermediate_filters
        config["intermediate_activation"] = keras.activations.serialize(
            self.intermediate_activation
        )
        return config
