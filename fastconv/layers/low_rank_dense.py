"""A Dense layer computed through a rank-``R`` bottleneck."""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np

from fastconv._validation import is_int_at_least
from fastconv.cost import Cost, dense_cost
from fastconv.layers._factors import FactorsMixin, _factor_mapping


@keras.saving.register_keras_serializable(package="fastconv")
class LowRankDense(FactorsMixin, keras.layers.Layer):
    """``Dense`` with a rank-``R`` kernel: ``x @ kernel_in @ kernel_out + bias``.

    ``kernel_in`` (``features x rank``) then ``kernel_out`` (``rank x units``),
    then bias and activation: the ``Dense`` layer whose kernel is
    ``kernel_in @ kernel_out`` (``dense_kernel()``). Like ``Dense`` it acts on
    the last axis of an input of rank 2 or more.

    Cost per example and position: ``params = features R + R units`` and
    ``macs = features R + R units``, against ``features units`` for
    ``Dense``. It saves multiply-adds when
    ``R < features units / (features + units)``; at a larger rank it costs
    more than the ``Dense`` it stands for.

    Args:
        units: number of output features, a positive int.
        rank: the inner width ``R``, a positive int; at most ``units`` and at
            most the input's features (checked on build).
        activation: applied once, to the final output.
        use_bias: whether to add a bias to the final output.
        kernel_initializer: initializer of both factor weights.
        bias_initializer: initializer of the bias.
        kernel_regularizer: regularizer applied to both factor weights.
        bias_regularizer: regularizer of the bias.
        activity_regularizer: regularizer of the output.
        kernel_constraint: constraint applied to both factor weights.
        bias_constraint: constraint of the bias.
        **kwargs: passed to ``keras.layers.Layer`` (``name``, ``dtype``, ...).

    Example:
        >>> import keras, fastconv
        >>> layer = fastconv.LowRankDense(64, rank=8, activation="relu")
        >>> tuple(layer(keras.ops.zeros((2, 10, 32))).shape)
        (2, 10, 64)
        >>> [tuple(w.shape) for w in layer.weights]
        [(32, 8), (8, 64), (64,)]
        >>> layer.cost((None, 32))
        Cost(params=832, macs=768)

    Reference:
        Sainath et al., "Low-Rank Matrix Factorization for Deep Neural Network
        Training with High-Dimensional Output Targets", ICASSP 2013.
    """

    def __init__(
        self,
        units,
        rank,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self._check_float_policy()
        self.units = self._positive_int("units", units)
        self.rank = self._positive_int("rank", rank)
        if self.rank > self.units:
            raise self._error(
                "rank",
                rank,
                f"must be at most units={self.units} (the rank of a "
                "features x units kernel is at most units)",
            )
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
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    # ------------------------------------------------------------ properties
    @property
    def output_filters(self) -> int:
        """Number of output features (``units``), as ``set_factors`` reads it."""
        return self.units

    # ------------------------------------------------------------- the layer
    def _input_features(self, input_shape) -> int:
        try:
            shape = tuple(input_shape)
        except TypeError:
            shape = ()
        if len(shape) < 2 or shape[-1] is None:
            raise ValueError(
                f"{type(self).__name__}: input_shape must have at least 2 axes "
                "(batch, ..., features) and a known last axis, received "
                f"input_shape={input_shape!r}"
            )
        return int(shape[-1])

    def _factor_shapes(self, c_in):
        if self.rank > c_in:
            raise self._error(
                "rank",
                self.rank,
                f"must be at most the input's {c_in} features (the rank of a "
                "features x units kernel is at most features)",
            )
        return {"kernel_in": (c_in, self.rank), "kernel_out": (self.rank, self.units)}

    def build(self, input_shape):
        features = self._input_features(input_shape)
        self._add_factors(self._factor_shapes(features), self.units)
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: features})

    def call(self, inputs):
        outputs = keras.ops.matmul(
            keras.ops.matmul(inputs, self.kernel_in), self.kernel_out
        )
        if self.bias is not None:
            outputs = keras.ops.add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape)[:-1], self.units)

    # ------------------------------------------------------- cost and factors
    def cost(self, input_shape: Sequence[int | None]) -> Cost:
        """Parameters and multiply-adds of this layer for one example.

        Args:
            input_shape: ``(batch, ..., features)``, as Keras reports it (the
                batch size may be None); every other axis must be known. The
                layer need not be built.

        Returns:
            A ``fastconv.cost.Cost``: ``params`` and ``macs`` per example (the
            bias counts as parameters, not as multiply-adds; an input with
            several positions, ``(batch, steps, features)``, multiplies the
            multiply-adds by their number).
        """
        shape = tuple(input_shape)
        if len(shape) < 2 or not all(is_int_at_least(v, 1) for v in shape[1:]):
            raise ValueError(
                f"{type(self).__name__}: input_shape must be (batch, ..., features) "
                f"with known positive sizes, received input_shape={input_shape!r}"
            )
        features = int(shape[-1])
        if self.built and features != self.input_spec.axes[-1]:
            raise ValueError(
                f"{type(self).__name__}: the layer is built for "
                f"{self.input_spec.axes[-1]} input features, received "
                f"input_shape={shape!r}"
            )
        self._factor_shapes(features)  # refuses what build() would refuse
        positions = math.prod(int(v) for v in shape[1:-1])
        base = dense_cost(features, self.rank, use_bias=False) + dense_cost(
            self.rank, self.units, self.use_bias
        )
        return Cost(base.params, base.macs * positions)

    def dense_kernel(self) -> np.ndarray:
        """The equivalent ``(features, units)`` Dense kernel,
        ``kernel_in @ kernel_out``, as float32 NumPy.

        A ``keras.layers.Dense`` with this kernel, this layer's bias and
        activation computes the same output (up to rounding).

        Raises:
            ValueError: if the layer is not built.
        """
        return super().dense_kernel()

    def _dense_kernel_ops(self):
        return keras.ops.matmul(self.kernel_in, self.kernel_out)

    @classmethod
    def from_factors(cls, factors, bias=None, **kwargs):
        """A built layer whose weights are the given factors.

        Args:
            factors: ``{"kernel_in": (features, R), "kernel_out": (R, units)}``,
                or an object with such a mapping in ``.factors`` (the result of
                ``fastconv.decomposition.low_rank_decompose``).
            bias: optional bias of shape ``(units,)``; with ``use_bias`` unset,
                the layer gets a bias exactly when one is given.
            **kwargs: the other constructor arguments (``units`` and ``rank``
                are read off the factors when not given).

        Raises:
            ValueError: factors without exactly these names, of other ranks
                than 2, or values ``set_factors`` refuses.

        Example:
            >>> import numpy as np, fastconv
            >>> f = {"kernel_in": np.ones((32, 4)), "kernel_out": np.ones((4, 10))}
            >>> layer = fastconv.LowRankDense.from_factors(f)
            >>> layer.units, layer.rank, layer.use_bias
            (10, 4, False)
        """
        factors = _factor_mapping(factors, cls.__name__)
        shapes = {name: value.shape for name, value in factors.items()}
        if sorted(shapes) != ["kernel_in", "kernel_out"] or any(
            len(shape) != 2 for shape in shapes.values()
        ):
            raise ValueError(
                f"{cls.__name__}.from_factors: factors must be the 2-D arrays "
                "'kernel_in' (features, rank) and 'kernel_out' (rank, units), "
                f"received factors with shapes {shapes}"
            )
        features, rank = shapes["kernel_in"]
        kwargs = {"units": int(shapes["kernel_out"][1]), "rank": int(rank), **kwargs}
        kwargs.setdefault("use_bias", bias is not None)
        layer = cls(**kwargs)
        layer.build((None, int(features)))
        layer.set_factors(factors, bias=bias)
        return layer

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "rank": self.rank,
                **self._weight_settings_config(),
            }
        )
        return config
