"""The factor API and cost that every fastconv layer shares.

``FactorsMixin`` gives a layer ``cost``, ``dense_kernel``,
``get_factors``/``set_factors``/``factor_shapes`` and ``from_factors``, from
what the layer declares:

- ``_factor_shapes(c_in) -> dict[name, shape]``: the factor weights, in order;
- ``_dense_kernel_ops()``: the equivalent ``(*kernel_size, C_in, C_out)``
  kernel as a tensor, for linear layers;
- ``_cost(*spatial, c_in) -> Cost``: its parameters and multiply-adds (bias
  excluded; ``cost`` adds it);
- ``input_channels_of(factors)`` and ``_kwargs_from_factors(factors)``: what a
  factor mapping says of the constructor arguments;
- ``is_linear`` and ``_nonlinear_reason()``, for a layer that is not always a
  linear map (``is_linear`` is True by default).

It also checks and serializes the arguments every such layer takes
(``_init_weight_settings``, ``_weight_settings_config``,
``_check_float_policy``), with errors that name the layer, the argument and
the value received (``_error``, ``_positive_int``, ``_activation``).

It reads the convolution settings of ``BaseFastConv`` (``kernel_size``,
``strides``, ``padding``, ``dilation_rate``, ``data_format``,
``output_filters``, ``use_bias``, ``SPATIAL_DIMS``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np

from fastconv._validation import check_array, check_arrays, is_int_at_least
from fastconv.cost import Cost, conv_cost, conv_output_length, spatial_shape

__all__ = ["FactorsMixin"]


class FactorsMixin:
    """Factor API and cost of a fastconv layer (see the module docstring)."""

    # ------------------------------------------------------------- cost
    def cost(self, input_shape: Sequence[int | None]) -> Cost:
        """Parameters and multiply-adds of this layer for one example.

        Args:
            input_shape: ``(H, W, C)`` or ``(batch, H, W, C)`` (channels first:
                ``(C, H, W)``), in this layer's data format; with one spatial
                axis per ``SPATIAL_DIMS`` (``(L, C)``, ``(D, H, W, C)``). The
                layer need not be built.

        Returns:
            A ``fastconv.cost.Cost`` with ``params`` and ``macs`` (per example;
            biases count as parameters, not as multiply-adds).
        """
        spatial, c_in = spatial_shape(input_shape, self.data_format, self.SPATIAL_DIMS)
        if self.built and c_in != self.input_spec.axes[self.channel_axis]:
            raise ValueError(
                f"{type(self).__name__}: the layer is built for "
                f"{self.input_spec.axes[self.channel_axis]} input channels, "
                f"received input_shape={tuple(input_shape)!r}"
            )
        self._factor_shapes(c_in)  # refuses what build() would refuse
        base = self._cost(*spatial, c_in)
        if self.use_bias:
            base = base + Cost(self.output_filters, 0)
        return base

    def _cost(self, *dims: int) -> Cost:
        raise NotImplementedError

    def _output_spatial(self, *spatial: int | None) -> tuple[int | None, ...]:
        """The output's spatial sizes for input sizes ``spatial`` (None for an
        unknown one); a causal output is as long as a ``"same"`` one."""
        padding = "same" if self.padding == "causal" else self.padding
        return tuple(
            conv_output_length(length, k, s, padding, d)
            for length, k, s, d in zip(
                spatial,
                self.kernel_size,
                self.strides,
                self.dilation_rate,
                strict=True,
            )
        )

    def _pointwise_cost(self, spatial, c_in: int, c_out: int) -> Cost:
        """Cost of a 1x1 convolution from ``c_in`` to ``c_out`` channels on an
        input of spatial sizes ``spatial``, bias excluded."""
        ones = (1,) * len(spatial)
        return conv_cost(spatial, c_in, c_out, ones, ones)

    def _spatial_conv_cost(self, *dims: int) -> Cost:
        """Cost of the layer's own convolution (its kernel size, strides,
        padding and dilation) for ``dims = (*spatial, c_in, c_out)``: from
        ``c_in`` to ``c_out`` channels on an input of spatial sizes
        ``spatial``, bias excluded."""
        *spatial, c_in, c_out = dims
        return conv_cost(
            spatial,
            c_in,
            c_out,
            self.kernel_size,
            self.strides,
            self.padding,
            self.dilation_rate,
        )

    def _sandwich_cost(self, *dims: int) -> Cost:
        """Cost of 1x1 ``c_in -> r_in``, the spatial conv ``r_in -> r_out``, 1x1
        ``r_out -> output_filters`` (the Tucker-2 and bottleneck shapes), for
        ``dims = (*spatial, c_in, r_in, r_out)``."""
        *spatial, c_in, r_in, r_out = dims
        cost = self._pointwise_cost(spatial, c_in, r_in)
        cost = cost + self._spatial_conv_cost(*spatial, r_in, r_out)
        out = self._output_spatial(*spatial)
        return cost + self._pointwise_cost(out, r_out, self.output_filters)

    def _macs_per_example(self, input_shape) -> tuple[int, int] | None:
        """(this layer's, the equivalent dense convolution's) multiply-adds
        per example, or None if a dimension of the example is unknown."""
        n = self.SPATIAL_DIMS + 1
        shape = tuple(input_shape)[-n:]
        if len(shape) < n or any(d is None for d in shape):
            return None
        spatial, c_in = spatial_shape(shape, self.data_format, self.SPATIAL_DIMS)
        mine = self._cost(*spatial, c_in).macs
        dense = self._spatial_conv_cost(*spatial, c_in, self.output_filters)
        return mine, dense.macs

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
        if len(shape) < self.SPATIAL_DIMS + 2 or shape[0] is None or macs is None:
            return float("inf")
        return shape[0] * macs[1]

    # ---------------------------------------------------------- factors
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

    @property
    def is_linear(self) -> bool:
        """Whether the layer, before its bias and activation, is a linear map
        (True unless the layer says otherwise)."""
        return True

    def _nonlinear_reason(self) -> str:
        return ""

    def dense_kernel(self) -> np.ndarray:
        """The equivalent dense ``(*kernel_size, C_in, C_out)`` kernel, as NumPy.

        A ``keras.layers.Conv2D`` (``Conv1D``, ``Conv3D`` for the other ranks)
        with this kernel, this layer's bias and the same
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

    def _factor_shapes(self, c_in: int) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def factor_shapes(self, input_channels: int) -> dict[str, tuple[int, ...]]:
        """The shapes of the factor weights for ``input_channels`` input channels."""
        return dict(
            self._factor_shapes(self._positive_int("input_channels", input_channels))
        )

    # ------------------------------------------------------- arguments
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

    def _activation(self, name: str, value):
        """``keras.activations.get(value)``, failing with this layer's message."""
        try:
            return keras.activations.get(value)
        except ValueError:
            raise self._error(
                name, value, "must be None, an activation name or a callable"
            ) from None

    def _init_weight_settings(
        self,
        activation,
        use_bias,
        kernel_initializer,
        bias_initializer,
        kernel_regularizer,
        bias_regularizer,
        kernel_constraint,
        bias_constraint,
    ) -> None:
        """Checks and sets the activation, ``use_bias`` and the weights'
        initializers, regularizers and constraints (the activity regularizer
        goes to ``keras.layers.Layer``); ``_weight_settings_config`` serializes
        them back."""
        self.activation = self._activation("activation", activation)
        if not isinstance(use_bias, bool | np.bool_):
            raise self._error("use_bias", use_bias, "must be a bool")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)

    def _check_float_policy(self) -> None:
        """Refuses a dtype policy whose variables are not floating point."""
        if not keras.backend.is_float_dtype(self.dtype_policy.variable_dtype):
            raise ValueError(
                f"{type(self).__name__}: dtype must be a floating-point dtype or "
                "policy (float32, mixed_float16, ...), received "
                f"dtype={self.dtype_policy.name!r}"
            )

    def _weight_settings_config(self) -> dict:
        """The config entries of the activation, the bias and the weights'
        initializers, regularizers and constraints, serialized."""
        return {
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": keras.regularizers.serialize(
                self.activity_regularizer
            ),
            "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
            "bias_constraint": keras.constraints.serialize(self.bias_constraint),
        }

    def _add_factors(self, shapes: Mapping[str, tuple], bias_size: int) -> None:
        """Creates the factor weights ``shapes`` names (with the kernel's
        initializer, regularizer and constraint) and, if the layer has one,
        its bias of ``bias_size`` entries (with the bias's)."""
        self._factor_names = []
        for name, shape in shapes.items():
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
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(bias_size,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
                trainable=True,
            )

    def set_weights(self, weights) -> None:
        """Keras's ``set_weights``, checking the count, every shape and that
        every value is finite before any weight is assigned, so that after an
        error the layer is as it was."""
        weights = list(weights)
        if len(weights) != len(self.weights):
            raise ValueError(
                f"{type(self).__name__}: set_weights: layer {self.name!r} has "
                f"{len(self.weights)} weights, received {len(weights)} arrays"
            )
        for variable, value in zip(self.weights, weights, strict=True):
            array = np.asarray(keras.ops.convert_to_numpy(value))
            if tuple(array.shape) != tuple(variable.shape):
                raise ValueError(
                    f"{type(self).__name__}: set_weights: the weight "
                    f"{variable.name!r} of layer {self.name!r} has shape "
                    f"{tuple(variable.shape)}, received an array of shape "
                    f"{tuple(array.shape)}"
                )
            if np.issubdtype(array.dtype, np.number) and not np.all(np.isfinite(array)):
                raise ValueError(
                    f"{type(self).__name__}: set_weights: the weight "
                    f"{variable.name!r} of layer {self.name!r} holds NaN or Inf; "
                    "every weight must be finite"
                )
        super().set_weights(weights)

    def set_factors(self, factors, bias=None) -> None:
        """Set the factor weights (and optionally the bias).

        Args:
            factors: a mapping name -> array with exactly this layer's factor names
                and shapes, or an object with such a mapping in ``.factors`` (the
                results of ``fastconv.decomposition``).
            bias: array of shape ``(output_filters,)``; None leaves the bias as is.

        Raises:
            ValueError: on missing or unexpected names, wrong shapes, values that
                are not finite real numbers (or overflow the weights' dtype);
                every value is checked before any weight is assigned, so after
                an error the layer is as it was.
        """
        self._require_built("set_factors()")
        owner = type(self).__name__
        expected = {
            name: tuple(getattr(self, name).shape) for name in self._factor_names
        }
        dtype = self.variable_dtype
        factors = check_arrays(owner, _factor_mapping(factors, owner), expected, dtype)
        if bias is not None:
            if not self.use_bias:
                raise ValueError(
                    f"{owner}: a bias was given but the layer has use_bias=False"
                )
            bias = check_array(owner, "bias", bias, (self.output_filters,), dtype)
        for name in self._factor_names:
            getattr(self, name).assign(factors[name])
        if bias is not None:
            self.bias.assign(bias)

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
        try:
            read = cls._kwargs_from_factors(factors)
            c_in = cls.input_channels_of(factors)
        except (KeyError, IndexError, ValueError) as exc:
            shapes = {name: value.shape for name, value in factors.items()}
            raise ValueError(
                f"{cls.__name__}.from_factors: factors must have the names and "
                f"number of dimensions of a {cls.__name__}'s weights, received "
                f"factors with shapes {shapes} ({type(exc).__name__}: {exc})"
            ) from None
        kwargs = {**read, **kwargs}
        kwargs.setdefault("use_bias", bias is not None)
        layer = cls(**kwargs)
        spatial = (None,) * cls.SPATIAL_DIMS
        if layer.data_format == "channels_last":
            layer.build((None, *spatial, c_in))
        else:
            layer.build((None, c_in, *spatial))
        layer.set_factors(factors, bias=bias)
        return layer

    @classmethod
    def _kwargs_from_factors(cls, factors: Mapping[str, np.ndarray]) -> dict:
        raise NotImplementedError


def _factor_mapping(factors, owner: str) -> dict[str, np.ndarray]:
    if hasattr(factors, "factors") and not isinstance(factors, Mapping):
        factors = factors.factors
    if not isinstance(factors, Mapping):
        raise TypeError(
            f"{owner}: factors must be a mapping of name -> array or a decomposition "
            f"result with .factors, received {type(factors).__name__}"
        )
    return {
        str(k): check_array(owner, f"factor {str(k)!r}", v) for k, v in factors.items()
    }
