"""The shared base of every fastconv layer.

``BaseFastConv`` does what Keras's ``BaseConv`` does for ``Conv2D``: it takes
and validates Conv2D's arguments, creates the bias, applies bias and activation
once at the end, computes output shapes, serialises the config, and gives every
layer the same ``cost``, ``dense_kernel``, ``get_factors``/``set_factors`` and
``from_factors`` API. A subclass declares its factor weights and how to compute
its linear part; it stays short.

A subclass implements:

- ``_validate_rest()`` (optional): checks of its own constructor arguments;
- ``_factor_shapes(c_in) -> dict[name, shape]``: the factor weights, in order;
- ``_linear_<implementation>(inputs)`` for each name in ``IMPLEMENTATIONS``:
  the output before bias and activation; those named in ``FUSED_BIAS`` also
  take ``bias=`` and add it themselves (inside their last matrix product);
- ``_dense_kernel_ops()``: the equivalent ``(k_h, k_w, C_in, C_out)`` kernel as
  a tensor, for linear layers;
- ``_cost(h, w, c_in) -> Cost``: its parameters and multiply-adds (bias
  excluded; the base adds it).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import keras
import numpy as np

from fastconv._validation import is_int as _is_int
from fastconv._validation import is_int_at_least, is_number
from fastconv.cost import Cost, conv2d_cost, conv_output_length, spatial_dims
from fastconv.kernels import autotune
from fastconv.kernels.ops import (
    pointwise_matmul,
    same_padding_widths,
    shifted_conv,
    shifted_depthwise,
    torch_conv,
    unfolded_conv,
)

__all__ = ["BaseFastConv"]

_PADDINGS = ("valid", "same")
_DATA_FORMATS = ("channels_last", "channels_first")
#: The static rule picks the dense kernel below this FLOP ratio to Conv2D.
DENSE_BELOW_RATIO = 1.2
#: ... and, for inference on eager PyTorch, when the equivalent Conv2D would do
#: fewer multiply-adds than this (the time is then per-op overhead).
DENSE_TINY_MACS = 5_000_000
#: Configuration entries that do not change how long the linear part takes.
_CONFIG_UNTIMED = frozenset(
    {
        "name",
        "trainable",
        "dtype",
        "implementation",
        "activation",
        "kernel_initializer",
        "bias_initializer",
        "kernel_regularizer",
        "bias_regularizer",
        "activity_regularizer",
        "kernel_constraint",
        "bias_constraint",
    }
)


@functools.cache
def _tf_cpu_only() -> bool:
    """True on the TensorFlow backend when it sees no GPU."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.config.list_logical_devices("GPU")


class BaseFastConv(keras.layers.Layer):
    """Base class of the fastconv 2-D convolution layers.

    Args:
        filters: number of output channels.
        kernel_size: int or pair ``(k_h, k_w)``.
        strides: int or pair; applied to the spatial factor(s) only.
        padding: ``"valid"`` or ``"same"`` (case-insensitive).
        data_format: ``"channels_last"`` or ``"channels_first"``; defaults to
            ``keras.config.image_data_format()``.
        dilation_rate: int or pair; applied to the spatial factor(s) only.
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
    #: otherwise (see ``static_implementation``); missing keys use
    #: ``IMPLEMENTATIONS[0]``.
    STATIC_RULE: Mapping[str, str] = {}
    #: Implementations that end in a matrix product and add the bias inside it
    #: (their ``_linear_<name>`` takes ``bias=``).
    FUSED_BIAS: tuple[str, ...] = ()
    #: Smallest kernel size the layer accepts on each axis.
    MIN_KERNEL: int = 1

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
        self.filters = self._positive_int("filters", filters)
        self.kernel_size = self._int_pair("kernel_size", kernel_size)
        if min(self.kernel_size) < self.MIN_KERNEL:
            raise self._error(
                "kernel_size",
                kernel_size,
                f"must be at least {self.MIN_KERNEL} on each axis "
                "(this layer factorises a spatial kernel)",
            )
        self.strides = self._int_pair("strides", strides)
        self.dilation_rate = self._int_pair("dilation_rate", dilation_rate)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                f"{type(self).__name__}: strides > 1 cannot be combined with "
                f"dilation_rate > 1, received strides={strides!r} and "
                f"dilation_rate={dilation_rate!r}"
            )
        if not isinstance(padding, str) or padding.lower() not in _PADDINGS:
            raise self._error("padding", padding, f"must be one of {_PADDINGS}")
        self.padding = padding.lower()
        if data_format is None:
            data_format = keras.config.image_data_format()
        if data_format not in _DATA_FORMATS:
            raise self._error(
                "data_format", data_format, f"must be one of {_DATA_FORMATS}"
            )
        self.data_format = data_format
        self.activation = keras.activations.get(activation)
        if not isinstance(use_bias, bool | np.bool_):
            raise self._error("use_bias", use_bias, "must be a bool")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        allowed = ("auto", *self.IMPLEMENTATIONS)
        if implementation not in allowed:
            raise self._error(
                "implementation", implementation, f"must be one of {allowed}"
            )
        self.implementation = implementation
        self._validate_rest()
        self.input_spec = keras.layers.InputSpec(ndim=4)

    # ------------------------------------------------------------ validation
    def _error(self, name: str, value, requirement: str) -> ValueError:
        return ValueError(
            f"{type(self).__name__}: {name} {requirement}, received {name}={value!r}"
        )

    def _positive_int(self, name: str, value, allow_none: bool = False):
        if value is None and allow_none:
            return None
        if not is_int_at_least(value, 1):
            raise self._error(name, value, "must be a positive int")
        return int(value)

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

    def _activation(self, name: str, value):
        """``keras.activations.get(value)``, failing with this layer's message."""
        try:
            return keras.activations.get(value)
        except ValueError:
            raise self._error(
                name, value, "must be None, an activation name or a callable"
            ) from None

    def _validate_rest(self) -> None:
        """Checks of a subclass's own constructor arguments."""

    # --------------------------------------------------------------- helpers
    @property
    def channel_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 1

    @property
    def output_filters(self) -> int:
        """Number of output channels (``filters`` except for ``WideConv2D``)."""
        return self.filters

    @property
    def is_linear(self) -> bool:
        """Whether the layer, before its bias and activation, is a linear map."""
        return True

    def _conv(self, x, kernel, strides=1, padding="valid", dilation_rate=1, fast=False):
        """``keras.ops.conv``; with ``fast``, PyTorch's own op on PyTorch
        (``kernels.ops.torch_conv``: the plain compositions keep Keras's)."""
        if fast and keras.backend.backend() == "torch":
            return torch_conv(
                x, kernel, strides, padding, dilation_rate, self.data_format
            )
        if self.data_format == "channels_first" and _tf_cpu_only():
            # TensorFlow's CPU Conv2D kernel takes NHWC only.
            x = keras.ops.transpose(x, (0, 2, 3, 1))
            y = keras.ops.conv(
                x, kernel, strides, padding, "channels_last", dilation_rate
            )
            return keras.ops.transpose(y, (0, 3, 1, 2))
        return keras.ops.conv(
            x,
            kernel,
            strides=strides,
            padding=padding,
            data_format=self.data_format,
            dilation_rate=dilation_rate,
        )

    def _depthwise(
        self, x, kernel, strides=1, padding="valid", dilation_rate=1, fast=False
    ):
        """``keras.ops.depthwise_conv``; ``fast`` as for ``_conv``."""
        strides = (strides, strides) if isinstance(strides, int) else tuple(strides)
        if fast and keras.backend.backend() == "torch":
            return torch_conv(
                x, kernel, strides, padding, dilation_rate, self.data_format, True
            )
        if strides[0] != strides[1] and keras.backend.backend() == "tensorflow":
            # TensorFlow's depthwise kernel takes equal strides only: pad as the
            # strided conv would, convolve densely, then keep every s-th row/column.
            dilation = (
                (dilation_rate, dilation_rate)
                if isinstance(dilation_rate, int)
                else tuple(dilation_rate)
            )
            if padding == "same":
                k = kernel.shape[:2]
                x = self._same_padding(x, k, strides, dilation)
            x = keras.ops.depthwise_conv(
                x, kernel, 1, "valid", self.data_format, dilation
            )
            sh, sw = strides
            if self.data_format == "channels_last":
                return x[:, ::sh, ::sw, :]
            return x[:, :, ::sh, ::sw]
        return keras.ops.depthwise_conv(
            x,
            kernel,
            strides=strides,
            padding=padding,
            data_format=self.data_format,
            dilation_rate=dilation_rate,
        )

    def _spatial_conv(self, x, kernel, fast=False):
        """The layer's own ``k_h x k_w`` convolution: its strides, padding and
        dilation; ``fast`` as for ``_conv``."""
        return self._conv(
            x,
            kernel,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            fast=fast,
        )

    def _fast_depthwise(self, x, kernel, strides=1, padding="valid", dilation_rate=1):
        return self._depthwise(x, kernel, strides, padding, dilation_rate, fast=True)

    def _spatial_conv_cost(self, h: int, w: int, c_in: int, c_out: int) -> Cost:
        """Cost of ``_spatial_conv`` from ``c_in`` to ``c_out`` channels on an
        ``h x w`` input, bias excluded."""
        return conv2d_cost(
            (h, w, c_in),
            c_out,
            self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            use_bias=False,
        )

    def _sandwich_cost(self, h: int, w: int, c_in: int, r_in: int, r_out: int):
        """Cost of 1x1 ``c_in -> r_in``, ``_spatial_conv`` ``r_in -> r_out``, 1x1
        ``r_out -> output_filters`` (the Tucker-2 and bottleneck shapes)."""
        cost = conv2d_cost((h, w, c_in), r_in, 1, use_bias=False)
        cost = cost + self._spatial_conv_cost(h, w, r_in, r_out)
        ho, wo = self._output_hw(h, w)
        return cost + conv2d_cost(
            (ho, wo, r_out), self.output_filters, 1, use_bias=False
        )

    def _pointwise(self, x, matrix, bias=None):
        """A 1x1 convolution by a ``(C_in, C_out)`` matrix, then ``bias``."""
        kernel = keras.ops.reshape(matrix, (1, 1, *matrix.shape))
        return self._add_bias(self._conv(x, kernel), bias)

    def _pointwise_matmul(self, x, matrix, bias=None):
        """A 1x1 convolution by a ``(C_in, C_out)`` matrix, as a matrix product,
        with ``bias`` added inside it where the backend can (``kernels.ops``).

        Except for an expansion (``C_in < C_out``) in inference on
        TensorFlow's CPU without XLA, where ``call`` sets ``_expand_by_conv``:
        there TensorFlow's 1x1 convolution (oneDNN) with its bias ran
        forward 0.99-1.21x as fast as ``MatMul`` and ``BiasAdd`` at eight
        expanding shapes (``C_in`` 8 to 256; 1.12x at batch 64, 32x32,
        32 -> 128). In a training step it was slower at all ten shapes
        tried (0.64-0.98x), and forward it lost on 128 -> 32 (0.88x)."""
        if self.__dict__.get("_expand_by_conv") and matrix.shape[0] < matrix.shape[1]:
            return self._pointwise(x, matrix, bias)
        return pointwise_matmul(x, matrix, self.data_format, bias)

    def _slices_possible(self, x, strides, padding) -> bool:
        """Whether shifted slices can compute this convolution: not with
        ``"same"`` padding and strides > 1 on an unknown spatial size."""
        strides = (strides, strides) if isinstance(strides, int) else tuple(strides)
        spatial = x.shape[1:3] if self.data_format == "channels_last" else x.shape[2:]
        return not (padding == "same" and max(strides) > 1 and None in tuple(spatial))

    def _shifted(self, x, kernel, strides=1, padding="valid", dilation_rate=1):
        """A depthwise convolution as a sum of shifted slices (``kernels.ops``),
        or ``_fast_depthwise`` where the slices cannot be cut
        (``_slices_possible``)."""
        if not self._slices_possible(x, strides, padding):
            return self._fast_depthwise(x, kernel, strides, padding, dilation_rate)
        return shifted_depthwise(
            x, kernel, strides, padding, dilation_rate, self.data_format
        )

    def _shifted_conv(
        self, x, kernel, strides=1, padding="valid", dilation_rate=1, unfold=False
    ):
        """A convolution by shifted slices: their sum, each times its tap's
        matrix (``kernels.ops.shifted_conv``), or with ``unfold`` one product
        of them side by side (``kernels.ops.unfolded_conv``); ``_conv`` where
        the slices cannot be cut (``_slices_possible``)."""
        if not self._slices_possible(x, strides, padding):
            return self._conv(x, kernel, strides, padding, dilation_rate, fast=True)
        op = unfolded_conv if unfold else shifted_conv
        return op(x, kernel, strides, padding, dilation_rate, self.data_format)

    def _same_padding(self, x, kernel_size, strides, dilation_rate):
        """Zero-pad ``x`` as a ``"same"`` conv with these settings would.

        Lets a stack of ``"valid"`` convs reproduce one ``"same"`` conv exactly.
        """
        shape = keras.ops.shape(x)
        spatial = shape[1:3] if self.data_format == "channels_last" else shape[2:4]
        pads = [
            same_padding_widths(length, k, s, d)
            for length, k, s, d in zip(
                spatial, kernel_size, strides, dilation_rate, strict=True
            )
        ]
        if self.data_format == "channels_last":
            widths = [(0, 0), pads[0], pads[1], (0, 0)]
        else:
            widths = [(0, 0), (0, 0), pads[0], pads[1]]
        return keras.ops.pad(x, widths)

    def _input_channels(self, input_shape) -> int:
        channels = input_shape[self.channel_axis]
        if channels is None:
            raise ValueError(
                f"{type(self).__name__}: the channel axis of the input must be known, "
                f"received input_shape={tuple(input_shape)!r}"
            )
        return int(channels)

    # ------------------------------------------------------------ the layer
    def _factor_shapes(self, c_in: int) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def _extra_build(self, input_shape) -> None:
        """Builds sublayers (batch norm); called at the end of ``build``."""

    def build(self, input_shape):
        c_in = self._input_channels(input_shape)
        self._factor_names = []
        for name, shape in self._factor_shapes(c_in).items():
            weight = self.add_weight(
                name=name,
                shape=shape,
                initializer=self.kernel_initializer,
                regularizer=self.kernel_regularizer,
                constraint=self.kernel_constraint,
                trainable=True,
            )
            setattr(self, name, weight)
            self._factor_names.append(name)
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.output_filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
                trainable=True,
            )
        else:
            self.bias = None
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={self.channel_axis: c_in})
        self._extra_build(input_shape)

    def allowed_implementations(self) -> tuple[str, ...]:
        """The concrete implementations this layer can run (``"dense"`` needs a
        linear layer)."""
        return tuple(
            name for name in self.IMPLEMENTATIONS if name != "dense" or self.is_linear
        )

    def static_implementation(
        self, input_shape, compilation: str = "eager", training: bool = False
    ) -> str:
        """The static rule: what ``"auto"`` runs when it does not measure.

        The reconstructed dense kernel when the layer saves less than
        ``1 / DENSE_BELOW_RATIO`` of a ``Conv2D``'s multiply-adds (running
        several small ops costs more than the saving), or, for inference on
        eager PyTorch, when even that ``Conv2D`` would do fewer than
        ``DENSE_TINY_MACS`` (the time is then per-op overhead, and one
        convolution with a cached kernel has the least); else the class's
        ``STATIC_RULE`` entry for ``"xla"`` when the code is compiled by XLA
        (``compilation``, see ``fastconv.kernels.autotune.compilation_mode``),
        or for the Keras backend's name otherwise; else the first of
        ``IMPLEMENTATIONS``. The entries are the implementations measured
        fastest at most points of ``benchmarks/layers.py`` (docs/performance.md).
        """
        allowed = self.allowed_implementations()
        if "dense" in allowed and self._flop_ratio(input_shape) < DENSE_BELOW_RATIO:
            return "dense"
        if (
            "dense" in allowed
            and not training
            and compilation == "eager"
            and keras.backend.backend() == "torch"
            and self._dense_macs(input_shape) < DENSE_TINY_MACS
        ):
            return "dense"
        key = "xla" if compilation == "xla" else keras.backend.backend()
        choice = self.STATIC_RULE.get(key, allowed[0])
        return choice if choice in allowed else allowed[0]

    def _macs_per_example(self, input_shape) -> tuple[int, int] | None:
        """(this layer's, the equivalent Conv2D's) multiply-adds per example,
        or None if a dimension of the example is unknown."""
        shape = tuple(input_shape)[-3:]
        if len(shape) < 3 or any(d is None for d in shape):
            return None
        h, w, c_in = spatial_dims(shape, self.data_format)
        mine = self._cost(h, w, c_in).macs
        return mine, self._spatial_conv_cost(h, w, c_in, self.output_filters).macs

    def _flop_ratio(self, input_shape) -> float:
        """Multiply-adds of a Conv2D over this layer's, or inf if unknown."""
        macs = self._macs_per_example(input_shape)
        if macs is None or not macs[0]:
            return float("inf")
        return macs[1] / macs[0]

    def _dense_macs(self, input_shape) -> float:
        """Multiply-adds of the equivalent Conv2D on the whole batch, or inf if
        a dimension is unknown."""
        shape = tuple(input_shape)
        macs = self._macs_per_example(shape)
        if len(shape) < 4 or shape[0] is None or macs is None:
            return float("inf")
        return shape[0] * macs[1]

    def _resolve_implementation(self, inputs, training=None) -> str:
        """The concrete implementation to run for these inputs."""
        if self.implementation != "auto":
            return self.implementation
        shape = tuple(None if d is None else int(d) for d in inputs.shape)
        compilation = autotune.compilation_mode(inputs)
        memo_key = (shape, bool(training), compilation)
        memo = self.__dict__.setdefault("_auto_choices", {})
        if memo_key in memo:
            return memo[memo_key]
        static = self.static_implementation(shape, compilation, bool(training))
        known = None not in shape
        macs = shape[0] * self.cost(shape[1:]).macs if known else 0
        config = {
            k: v for k, v in self.get_config().items() if k not in _CONFIG_UNTIMED
        }
        request = autotune.Request(
            layer=self,
            input_shape=shape,
            dtype=keras.backend.standardize_dtype(inputs.dtype),
            training=bool(training),
            candidates=self.allowed_implementations(),
            static=static,
            macs=macs,
            compilation=compilation,
            config=config,
        )
        choice = autotune.choose(request)
        if known:
            memo[memo_key] = choice
        return choice

    def _linear(self, inputs, impl, training=None, bias=None):
        """The implementation ``impl``'s output; ``bias`` only for those in
        ``FUSED_BIAS``."""
        kwargs = {} if bias is None else {"bias": bias}
        return getattr(self, f"_linear_{impl}")(inputs, **kwargs)

    def call(self, inputs, training=None):
        impl = self._resolve_implementation(inputs, training)
        # Read by _pointwise_matmul while this call traces (a Python flag).
        self.__dict__["_expand_by_conv"] = (
            not training
            and keras.backend.backend() == "tensorflow"
            and _tf_cpu_only()
            and self.data_format == "channels_last"
            and autotune.compilation_mode(inputs) == "graph"
        )
        if self.use_bias and impl in self.FUSED_BIAS:
            # The implementation adds the bias in its last matrix product.
            outputs = self._linear(inputs, impl, training, bias=self.bias)
        else:
            outputs = self._add_bias(self._linear(inputs, impl, training), self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def _add_bias(self, outputs, bias):
        """``outputs`` plus ``bias`` (``None``: nothing) along the channel axis."""
        if bias is not None:
            if self.data_format == "channels_last":
                outputs = keras.ops.add(outputs, bias)
            else:
                bias = keras.ops.reshape(bias, (1, self.output_filters, 1, 1))
                # Not keras.ops.add: on TensorFlow it turns this into a BiasAdd
                # over the LAST axis whenever the output width equals filters
                # (Keras 3.15); the operator is a plain broadcasting add.
                outputs = outputs + bias
        return outputs

    def _linear_dense(self, inputs):
        """Compute with the reconstructed dense kernel, as a plain Conv2D would."""
        return self._spatial_conv(inputs, self._dense_kernel_cached(), fast=True)

    def _dense_kernel_cached(self):
        """``_dense_kernel_ops()``, rebuilt only when a factor has changed
        where that can be known: eager PyTorch outside autograd (inference,
        ``predict``), where every in-place write to a tensor (``assign``, an
        optimizer step) moves its version counter. Everywhere else (a
        ``tf.function`` or ``jax.jit`` trace, or a gradient to take) it is
        rebuilt on every call. For a small layer the rebuild costs nearly as
        much as the convolution: CP's dense kernel took about 70 us to build,
        the 8x8x32 convolution 90 us (eager PyTorch, this project's CPU)."""
        if keras.backend.backend() != "torch":
            return self._dense_kernel_ops()
        import torch

        if torch.is_grad_enabled():
            return self._dense_kernel_ops()
        try:
            key = (self.compute_dtype,) + tuple(
                (id(t), t.data_ptr(), t._version)
                for t in (getattr(self, n).value for n in self._factor_names)
            )
        except RuntimeError:  # inference-mode tensors keep no version counter
            return self._dense_kernel_ops()
        cached = self.__dict__.get("_dense_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        kernel = self._dense_kernel_ops()
        self.__dict__["_dense_cache"] = (key, kernel)
        return kernel

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        if self.data_format == "channels_last":
            h_axis, w_axis, c_axis = 1, 2, 3
        else:
            c_axis, h_axis, w_axis = 1, 2, 3
        shape[h_axis] = conv_output_length(
            shape[h_axis],
            self.kernel_size[0],
            self.strides[0],
            self.padding,
            self.dilation_rate[0],
        )
        shape[w_axis] = conv_output_length(
            shape[w_axis],
            self.kernel_size[1],
            self.strides[1],
            self.padding,
            self.dilation_rate[1],
        )
        shape[c_axis] = self.output_filters
        return tuple(shape)

    # ------------------------------------------------------------ the API
    def cost(self, input_shape: Sequence[int | None]) -> Cost:
        """Parameters and multiply-adds of this layer for one example.

        Args:
            input_shape: ``(H, W, C)`` or ``(batch, H, W, C)`` (channels first:
                ``(C, H, W)``), in this layer's data format. The layer need not
                be built.

        Returns:
            A ``fastconv.cost.Cost`` with ``params`` and ``macs`` (per example;
            biases count as parameters, not as multiply-adds).
        """
        h, w, c_in = spatial_dims(input_shape, self.data_format)
        base = self._cost(h, w, c_in)
        if self.use_bias:
            base = base + Cost(self.output_filters, 0)
        return base

    def _cost(self, h: int, w: int, c_in: int) -> Cost:
        raise NotImplementedError

    def _output_hw(self, h: int, w: int) -> tuple[int, int]:
        return (
            conv_output_length(
                h,
                self.kernel_size[0],
                self.strides[0],
                self.padding,
                self.dilation_rate[0],
            ),
            conv_output_length(
                w,
                self.kernel_size[1],
                self.strides[1],
                self.padding,
                self.dilation_rate[1],
            ),
        )

    def _require_built(self, what: str) -> None:
        if not self.built:
            raise ValueError(
                f"{type(self).__name__}: {what} needs a built layer; call the layer on "
                "an input or call layer.build(input_shape) first"
            )

    def _require_linear(self, what: str) -> None:
        if not self.is_linear:
            raise ValueError(
                f"{type(self).__name__}: {what} exists only for a linear layer, and "
                f"this one is not: {self._nonlinear_reason()}"
            )

    def _nonlinear_reason(self) -> str:
        return ""

    def dense_kernel(self) -> np.ndarray:
        """The equivalent dense ``(k_h, k_w, C_in, C_out)`` kernel, as NumPy.

        A ``keras.layers.Conv2D`` with this kernel, this layer's bias and the same
        strides, padding, dilation, data format and activation computes the same
        output (up to rounding).

        Raises:
            ValueError: if the layer is not built, or not a linear map.
        """
        self._require_built("dense_kernel()")
        self._require_linear("dense_kernel()")
        return keras.ops.convert_to_numpy(self._dense_kernel_ops()).astype("float32")

    def _dense_kernel_ops(self):
        raise NotImplementedError

    def get_factors(self) -> dict[str, np.ndarray]:
        """The factor weights as NumPy arrays, by name (bias excluded)."""
        self._require_built("get_factors()")
        return {
            name: keras.ops.convert_to_numpy(getattr(self, name))
            for name in self._factor_names
        }

    def factor_shapes(self, input_channels: int) -> dict[str, tuple[int, ...]]:
        """The shapes of the factor weights for ``input_channels`` input channels."""
        return dict(
            self._factor_shapes(self._positive_int("input_channels", input_channels))
        )

    def set_factors(self, factors, bias=None) -> None:
        """Set the factor weights (and optionally the bias).

        Args:
            factors: a mapping name -> array with exactly this layer's factor names
                and shapes, or an object with such a mapping in ``.factors`` (the
                results of ``fastconv.decomposition``).
            bias: array of shape ``(output_filters,)``; None leaves the bias as is.

        Raises:
            ValueError: on missing or unexpected names, or wrong shapes.
        """
        self._require_built("set_factors()")
        factors = _factor_mapping(factors, type(self).__name__)
        expected = {
            name: tuple(getattr(self, name).shape) for name in self._factor_names
        }
        unknown = sorted(set(factors) - set(expected))
        missing = sorted(set(expected) - set(factors))
        if unknown or missing:
            raise ValueError(
                f"{type(self).__name__}: factors must have exactly the names "
                f"{sorted(expected)}, received factors with names {sorted(factors)} "
                f"(missing {missing}, unexpected {unknown})"
            )
        for name, shape in expected.items():
            value = np.asarray(factors[name])
            if value.shape != shape:
                raise ValueError(
                    f"{type(self).__name__}: factor {name!r} must have shape {shape}, "
                    f"received shape {value.shape}"
                )
        if bias is not None:
            bias = np.asarray(bias)
            if not self.use_bias:
                raise ValueError(
                    f"{type(self).__name__}: a bias was given but the layer has "
                    "use_bias=False"
                )
            if bias.shape != (self.output_filters,):
                raise ValueError(
                    f"{type(self).__name__}: bias must have shape "
                    f"({self.output_filters},), received shape {bias.shape}"
                )
        for name in self._factor_names:
            variable = getattr(self, name)
            variable.assign(np.asarray(factors[name]).astype(variable.dtype))
        if bias is not None:
            self.bias.assign(bias.astype(self.bias.dtype))

    @classmethod
    def input_channels_of(cls, factors: Mapping[str, np.ndarray]) -> int:
        """Number of input channels implied by a factor mapping."""
        raise NotImplementedError

    @classmethod
    def from_factors(cls, factors, bias=None, **kwargs):
        """A built layer whose weights are the given factors.

        Args:
            factors: as for ``set_factors``.
            bias: optional bias of shape ``(filters,)``; with ``use_bias`` unset,
                the layer gets a bias exactly when one is given.
            **kwargs: the layer's constructor arguments except those the factors
                determine (``filters`` and ranks are read off the factors when
                not given).

        Example:
            >>> import numpy as np, fastconv
            >>> f = {"pointwise_in": np.ones((8, 4)), "vertical": np.ones((3, 4)),
            ...      "horizontal": np.ones((3, 4)), "pointwise_out": np.ones((4, 16))}
            >>> fastconv.CPConv2D.from_factors(f).filters
            16
        """
        factors = _factor_mapping(factors, cls.__name__)
        kwargs = {**cls._kwargs_from_factors(factors), **kwargs}
        kwargs.setdefault("use_bias", bias is not None)
        layer = cls(**kwargs)
        c_in = cls.input_channels_of(factors)
        if layer.data_format == "channels_last":
            layer.build((None, None, None, c_in))
        else:
            layer.build((None, c_in, None, None))
        layer.set_factors(factors, bias=bias)
        return layer

    @classmethod
    def _kwargs_from_factors(cls, factors: Mapping[str, np.ndarray]) -> dict:
        raise NotImplementedError

    @classmethod
    def like(cls, conv, ratio=0.25, *, input_channels=None, **overrides):
        """A fresh, unbuilt layer of this class standing for ``conv``.

        It has the ``Conv2D``'s ``filters``, ``kernel_size``, ``strides``,
        ``padding``, ``data_format``, ``dilation_rate``, ``activation`` and
        ``use_bias`` (not its name, initializers, regularizers, constraints or
        weights: a fresh layer is trained, or filled from a decomposition by
        ``fastconv.convert``), and the size that ``like_size(conv, ratio)``
        gives. ``fastconv.suggest_replacements`` and the benchmark's variants
        build their layers this way.

        Args:
            conv: the ``keras.layers.Conv2D`` to stand for (ungrouped).
            ratio: the size as a fraction of the channels, a number in
                ``(0, 1]``; see ``like_size``.
            input_channels: the ``Conv2D``'s input channels; needed only when
                ``conv`` is not built, else read off its kernel.
            **overrides: constructor arguments of this class that replace those
                read off ``conv`` or given by the size rule (``name``,
                ``implementation``, ...).

        Returns:
            The layer, not built.

        Raises:
            TypeError: if ``conv`` is not a ``keras.layers.Conv2D``.
            ValueError: on a grouped ``conv``, a ``ratio`` outside ``(0, 1]``,
                missing or inconsistent ``input_channels``, or arguments the
                layer rejects for this configuration.

        Example:
            >>> import keras, fastconv
            >>> conv = keras.layers.Conv2D(128, 3, padding="same")
            >>> layer = fastconv.CPConv2D.like(conv, input_channels=64)
            >>> (layer.filters, layer.kernel_size, layer.padding, layer.rank)
            (128, (3, 3), 'same', 32)
        """
        size = cls.like_size(conv, ratio, input_channels=input_channels)
        kwargs = {
            "filters": conv.filters,
            "kernel_size": tuple(conv.kernel_size),
            "strides": tuple(conv.strides),
            "padding": conv.padding,
            "data_format": conv.data_format,
            "dilation_rate": tuple(conv.dilation_rate),
            "activation": conv.activation,
            "use_bias": conv.use_bias,
            **size,
            **overrides,
        }
        return cls(**kwargs)

    @classmethod
    def like_size(cls, conv, ratio=0.25, *, input_channels=None) -> dict:
        """The size arguments that ``like(conv, ratio)`` gives this class.

        One rule for every layer: ranks and inner widths are ``ratio`` of the
        channels, ``max(1, round(ratio * channels))``. CP: ``rank`` of
        ``filters``, at most the kernel's largest CP rank; Tucker-2: ``rank``
        ``(R_in, R_out)`` of ``(C_in, filters)``; bottleneck:
        ``bottleneck_filters`` of ``filters``; factorized and stacked:
        ``intermediate_filters`` of ``filters``; depthwise separable: none
        (its size is the ``Conv2D``'s). ``WideConv2D`` raises a ``TypeError``:
        it stands for a stack of convolutions (``fastconv.wide_replacement``).

        Args:
            conv, ratio, input_channels: as for ``like``.

        Returns:
            A dict of constructor arguments, e.g. ``{"rank": 32}``.

        Raises:
            TypeError, ValueError: as for ``like``.
        """
        where = f"{cls.__name__}.like"
        if not isinstance(conv, keras.layers.Conv2D):
            raise TypeError(
                f"{where}: conv must be a keras.layers.Conv2D, received conv of "
                f"type {type(conv).__name__}"
            )
        if conv.groups != 1:
            raise ValueError(
                f"{where}: conv must be an ungrouped Conv2D (the fast layers have "
                f"no groups), received conv with groups={conv.groups}"
            )
        if not (is_number(ratio) and 0 < ratio <= 1):
            raise ValueError(
                f"{where}: ratio must be a number in (0, 1], received ratio={ratio!r}"
            )
        if input_channels is not None and not is_int_at_least(input_channels, 1):
            raise ValueError(
                f"{where}: input_channels must be a positive int, received "
                f"input_channels={input_channels!r}"
            )
        if conv.built:
            c_in = int(conv.kernel.shape[-2])
            if input_channels is not None and int(input_channels) != c_in:
                raise ValueError(
                    f"{where}: input_channels must match the built conv's "
                    f"{c_in} input channels, received input_channels="
                    f"{input_channels!r}"
                )
        elif input_channels is None:
            raise ValueError(
                f"{where}: input_channels is needed for a conv that is not built "
                "(its kernel says how many input channels it has), received "
                "input_channels=None"
            )
        else:
            c_in = int(input_channels)
        return cls._like_kwargs(conv, c_in, float(ratio))

    @classmethod
    def _like_kwargs(cls, conv, c_in: int, ratio: float) -> dict:
        """The size arguments of ``like`` for a ``Conv2D`` from ``c_in``
        channels (arguments already checked); none by default."""
        return {}

    @staticmethod
    def _share(channels: int, ratio: float) -> int:
        """``ratio`` of ``channels``, rounded, at least 1: the size rule of
        ``like_size``."""
        return max(1, round(channels * ratio))

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
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(
                    self.kernel_regularizer
                ),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "activity_regularizer": keras.regularizers.serialize(
                    self.activity_regularizer
                ),
                "kernel_constraint": keras.constraints.serialize(
                    self.kernel_constraint
                ),
                "bias_constraint": keras.constraints.serialize(self.bias_constraint),
                "implementation": self.implementation,
            }
        )
        return config


def _factor_mapping(factors, owner: str) -> dict[str, np.ndarray]:
    if hasattr(factors, "factors") and not isinstance(factors, Mapping):
        factors = factors.factors
    if not isinstance(factors, Mapping):
        raise TypeError(
            f"{owner}: factors must be a mapping of name -> array or a decomposition "
            f"result with .factors, received {type(factors).__name__}"
        )
    return {str(k): np.asarray(v) for k, v in factors.items()}
