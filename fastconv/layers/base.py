"""The shared base of every fastconv layer.

``BaseFastConv`` does what Keras's ``BaseConv`` does for ``Conv2D``: it takes
and validates Conv2D's arguments, creates the factor weights and the bias,
applies bias and activation once at the end, computes output shapes and
serialises the config; the argument checks, ``build`` and the output shape
are in ``ConvLayerMixin``, which the transposed ``TuckerConv2DTranspose``
shares. ``FactorsMixin`` (``layers/_factors.py``) adds the
``cost``, ``dense_kernel``, ``get_factors``/``set_factors`` and
``from_factors`` API, ``LikeMixin`` (``layers/_like.py``) ``like`` and
``like_size``; ``kernels.policy`` picks the implementation a call
runs, and ``kernels.functional`` holds the implementations themselves.

A subclass calls ``super().__init__(filters, kernel_size, **kwargs)`` first,
then validates its own arguments, and implements:

- ``_factor_shapes(c_in) -> dict[name, shape]``: the factor weights, in order;
- ``_linear_<implementation>(inputs, training, bias, expand_by_conv)`` for
  each name in ``IMPLEMENTATIONS`` but ``"dense"``: the output before bias
  and activation, usually one call of a ``kernels.functional`` function;
  those named in ``FUSED_BIAS`` add ``bias`` themselves (inside their last
  matrix product), the others receive None;
- ``_dense_kernel_ops()``: the equivalent ``(*kernel_size, C_in, C_out)``
  kernel as a tensor, for linear layers;
- ``_cost(*spatial, c_in) -> Cost``: its parameters and multiply-adds (bias
  excluded; the base adds it), ``spatial`` the ``SPATIAL_DIMS`` input sizes;
- ``input_channels_of(factors)`` and ``_kwargs_from_factors(factors)``: what
  ``from_factors`` reads off a factor mapping;
- ``_like_kwargs(conv, c_in, ratio)``: its size arguments when it stands for
  a ``Conv2D`` (``like``); none by default.

As in Keras's ``BaseConv``, one base serves 1, 2 and 3 spatial axes: a
layer class sets ``SPATIAL_DIMS`` and every tuple argument (``kernel_size``,
``strides``, ``dilation_rate``) is normalised to that many entries.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras

from fastconv._validation import is_int as _is_int
from fastconv._validation import is_int_at_least
from fastconv.kernels import conv, policy
from fastconv.kernels.dense_cache import DenseKernelCache
from fastconv.layers._factors import FactorsMixin
from fastconv.layers._like import LikeMixin

__all__ = ["BaseFastConv"]

_PADDINGS = ("valid", "same")
_CAUSAL = "causal"
#: How an error message names a tuple of each length.
_TUPLE_NAMES = {1: "a 1-tuple", 2: "a pair", 3: "a triple"}
_DATA_FORMATS = ("channels_last", "channels_first")


class ConvLayerMixin:
    """The argument checks, ``build``, output shape and channel properties of
    a fastconv convolution layer, forward (``BaseFastConv``) or transposed
    (``TuckerConv2DTranspose``, which is no ``BaseFastConv``: see its module).

    They read the class name, ``SPATIAL_DIMS``, ``CAUSAL``, the settings
    ``_init_conv_settings`` sets, ``filters``, and ``_factor_shapes``,
    ``_add_factors``, ``_output_spatial`` and ``_error`` (``FactorsMixin``).
    """

    #: Number of spatial axes of the inputs.
    SPATIAL_DIMS: int = 2
    #: Whether a 1-D layer of this form keeps causality, so takes
    #: ``padding="causal"``: every factor before the one with the kernel is
    #: pointwise, and nothing after it mixes positions.
    CAUSAL: bool = False

    # ------------------------------------------------------------ validation
    def _init_conv_settings(self, strides, padding, data_format, dilation_rate):
        """Checks and sets ``strides``, ``dilation_rate`` (not both above 1),
        ``padding`` and ``data_format`` (None: Keras's image data format)."""
        self.strides = self._int_tuple("strides", strides)
        self.dilation_rate = self._int_tuple("dilation_rate", dilation_rate)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                f"{type(self).__name__}: strides > 1 cannot be combined with "
                f"dilation_rate > 1, received strides={strides!r} and "
                f"dilation_rate={dilation_rate!r}"
            )
        self.padding = self._padding(padding)
        if data_format is None:
            data_format = keras.config.image_data_format()
        if data_format not in _DATA_FORMATS:
            raise self._error(
                "data_format", data_format, f"must be one of {_DATA_FORMATS}"
            )
        self.data_format = data_format

    def _padding(self, padding) -> str:
        causal = self.SPATIAL_DIMS == 1 and self.CAUSAL
        allowed = (*_PADDINGS, _CAUSAL) if causal else _PADDINGS
        if isinstance(padding, str) and padding.lower() == _CAUSAL and not causal:
            why = (
                "this form would not keep causality"
                if self.SPATIAL_DIMS == 1
                else "'causal' exists for 1-D layers only"
            )
            raise self._error("padding", padding, f"must be one of {allowed} ({why})")
        if not isinstance(padding, str) or padding.lower() not in allowed:
            raise self._error("padding", padding, f"must be one of {allowed}")
        return padding.lower()

    def _int_tuple(self, name: str, value) -> tuple[int, ...]:
        """An int or a tuple of ``SPATIAL_DIMS`` positive ints, as that tuple."""
        n = self.SPATIAL_DIMS
        values = (value,) * n if _is_int(value) else value
        requirement = f"must be a positive int or {_TUPLE_NAMES[n]} of them"
        try:
            values = tuple(values)
        except TypeError:
            raise self._error(name, value, requirement) from None
        if len(values) != n or not all(is_int_at_least(v, 1) for v in values):
            raise self._error(name, value, requirement)
        return tuple(int(v) for v in values)

    def _int_pair(self, name: str, value) -> tuple[int, int]:
        pair = (value, value) if _is_int(value) else value
        try:
            pair = tuple(pair)
        except TypeError:
            raise self._error(
                name, value, "must be a positive int or a pair of them"
            ) from None
        if len(pair) != 2 or not all(is_int_at_least(v, 1) for v in pair):
            raise self._error(name, value, "must be a positive int or a pair of them")
        return (int(pair[0]), int(pair[1]))

    # ------------------------------------------------------------ properties
    @property
    def channel_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 1

    @property
    def output_filters(self) -> int:
        """Number of output channels (``filters`` except for ``WideConv2D``)."""
        return self.filters

    # ------------------------------------------------------------- the layer
    def _input_channels(self, input_shape) -> int:
        ndim = self.SPATIAL_DIMS + 2
        try:
            shape = tuple(input_shape)
        except TypeError:
            shape = None
        if shape is None or len(shape) != ndim:
            raise ValueError(
                f"{type(self).__name__}: input_shape must have {ndim} axes "
                f"(batch, {self.SPATIAL_DIMS} spatial axes, channels), received "
                f"input_shape={input_shape!r}"
            )
        channels = shape[self.channel_axis]
        if channels is None:
            raise ValueError(
                f"{type(self).__name__}: the channel axis of the input must be known, "
                f"received input_shape={tuple(input_shape)!r}"
            )
        return int(channels)

    def _extra_build(self, input_shape) -> None:
        """Builds sublayers (batch norm); called at the end of ``build``."""

    def build(self, input_shape):
        c_in = self._input_channels(input_shape)
        if self.built:
            built_for = self.input_spec.axes[self.channel_axis]
            if c_in == built_for:
                return
            raise ValueError(
                f"{type(self).__name__}: the layer is built for {built_for} input "
                "channels and cannot be built again for others, received "
                f"input_shape={tuple(input_shape)!r}"
            )
        self._add_factors(self._factor_shapes(c_in), self.output_filters)
        self.input_spec = keras.layers.InputSpec(
            ndim=self.SPATIAL_DIMS + 2, axes={self.channel_axis: c_in}
        )
        self._extra_build(input_shape)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        first = 1 if self.data_format == "channels_last" else 2
        spatial = slice(first, first + self.SPATIAL_DIMS)
        shape[spatial] = self._output_spatial(*shape[spatial])
        shape[self.channel_axis] = self.output_filters
        return tuple(shape)


class BaseFastConv(ConvLayerMixin, FactorsMixin, LikeMixin, keras.layers.Layer):
    """Base class of the fastconv convolution layers (1, 2 or 3 spatial axes).

    Args:
        filters: number of output channels.
        kernel_size: int or tuple of ``SPATIAL_DIMS`` ints (a pair
            ``(k_h, k_w)`` in 2-D).
        strides: int or tuple; applied to the spatial factor(s) only.
        padding: ``"valid"`` or ``"same"`` (case-insensitive); 1-D layers whose
            form keeps causality (``CAUSAL``) also take ``"causal"``, as
            ``keras.layers.Conv1D`` does.
        data_format: ``"channels_last"`` or ``"channels_first"``; defaults to
            ``keras.config.image_data_format()``.
        dilation_rate: int or tuple; applied to the spatial factor(s) only.
        activation: applied once, to the final output.
        use_bias: whether to add a bias to the final output.
        kernel_initializer: initializer of every factor weight.
        bias_initializer: initializer of the bias.
        kernel_regularizer: regularizer applied to every factor weight.
        bias_regularizer: regularizer of the bias.
        activity_regularizer: regularizer of the output.
        kernel_constraint: constraint applied to every factor weight.
        bias_constraint: constraint of the bias.
        implementation: how to compute the layer: ``"auto"`` or one of the
            class's ``IMPLEMENTATIONS``. Weights do not depend on it.
        **kwargs: passed to ``keras.layers.Layer`` (``name``, ``dtype``, ...).
    """

    #: Concrete ways to compute the layer, first one is the static default.
    IMPLEMENTATIONS: tuple[str, ...] = ("conv",)
    #: The static rule's choice under XLA (key ``"xla"``) and per Keras backend
    #: otherwise (see ``kernels.policy.static_implementation``); missing keys
    #: use ``IMPLEMENTATIONS[0]``.
    STATIC_RULE: Mapping[str, str] = {}
    #: Implementations that end in a matrix product and add the bias inside it.
    FUSED_BIAS: tuple[str, ...] = ()
    #: Smallest kernel size the layer accepts on each axis.
    MIN_KERNEL: int = 1
    #: Implementations of the family's 2-D layer that this rank does not have;
    #: a request for one is refused with that reason.
    TWO_D_ONLY: tuple[str, ...] = ()

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        implementation="auto",
        **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self._check_float_policy()
        self.filters = self._positive_int("filters", filters)
        self.kernel_size = self._int_tuple("kernel_size", kernel_size)
        if min(self.kernel_size) < self.MIN_KERNEL:
            raise self._error(
                "kernel_size",
                kernel_size,
                f"must be at least {self.MIN_KERNEL} on each axis "
                "(this layer factorises a spatial kernel)",
            )
        self._init_conv_settings(strides, padding, data_format, dilation_rate)
        self._init_weight_settings(
            activation,
            use_bias,
            kernel_initializer,
            bias_initializer,
            kernel_regularizer,
            bias_regularizer,
            kernel_constraint,
            bias_constraint,
        )
        allowed = ("auto", *self.IMPLEMENTATIONS)
        if implementation not in allowed:
            requirement = f"must be one of {allowed}"
            if implementation in self.TWO_D_ONLY:
                requirement += f" ({implementation!r} exists for the 2-D layer only)"
            raise self._error("implementation", implementation, requirement)
        self.implementation = implementation
        self.input_spec = keras.layers.InputSpec(ndim=self.SPATIAL_DIMS + 2)
        #: ``"auto"``'s choices per (input shape, training, compilation).
        self._auto_choices = {}
        self._dense_cache = DenseKernelCache()

    # ------------------------------------------------------------ properties
    @property
    def _conv_settings(self) -> dict:
        """The convolution settings, as ``kernels.functional`` takes them."""
        return {
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
            "data_format": self.data_format,
        }

    # ------------------------------------------------------------- the layer
    def allowed_implementations(self) -> tuple[str, ...]:
        """The concrete implementations this layer can run (``"dense"`` needs a
        linear layer)."""
        return tuple(
            name for name in self.IMPLEMENTATIONS if name != "dense" or self.is_linear
        )

    def static_implementation(
        self, input_shape, compilation: str = "eager", training: bool = False
    ) -> str:
        """What ``"auto"`` runs on ``input_shape`` when it does not measure:
        ``kernels.policy.static_implementation`` for this layer."""
        return policy.static_implementation(
            self.allowed_implementations(),
            self.STATIC_RULE,
            flop_ratio=self._flop_ratio(input_shape),
            dense_macs=self._dense_macs(input_shape),
            compilation=compilation,
            training=training,
        )

    def call(self, inputs, training=None):
        dtype = keras.backend.standardize_dtype(inputs.dtype)
        if dtype == "bool" or "int" in dtype:
            # Keras autocasts only float inputs; integer images (uint8 pixels)
            # are cast here, as keras.layers.Dense does on every backend.
            inputs = keras.ops.cast(inputs, self.compute_dtype)
        impl = policy.resolve_implementation(self, inputs, training, self._auto_choices)
        expand_by_conv = policy.expand_by_conv(inputs, training, self.data_format)
        fused = self.use_bias and impl in self.FUSED_BIAS
        outputs = self._linear(
            inputs, impl, training, self.bias if fused else None, expand_by_conv
        )
        if not fused:
            outputs = conv.add_bias(outputs, self.bias, self.data_format)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def _linear(self, inputs, impl, training, bias, expand_by_conv):
        """The implementation ``impl``'s output; ``bias`` (or None) only for
        those in ``FUSED_BIAS``."""
        if impl == "dense":
            return self._linear_dense(inputs)
        method = getattr(self, f"_linear_{impl}")
        return method(inputs, training, bias, expand_by_conv)

    def _linear_dense(self, inputs):
        """Compute with the reconstructed dense kernel, as a plain convolution
        layer (``Conv1D``, ``Conv2D``, ``Conv3D``) would."""
        kernel = self._dense_cache.get(
            self._dense_kernel_ops,
            [getattr(self, name) for name in self._factor_names],
            self.compute_dtype,
        )
        return conv.conv(inputs, kernel, **self._conv_settings, fast=True)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "data_format": self.data_format,
                "dilation_rate": self.dilation_rate,
                **self._weight_settings_config(),
                "implementation": self.implementation,
            }
        )
        return config
