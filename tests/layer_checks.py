"""Our own layer test helper, in the spirit of Keras's internal ``run_layer_test``.

``check_layer(cls, kwargs, input_shape)`` runs, for one layer configuration:
symbolic and eager calls with the output shape, one training step inside
``model.fit``, the ``get_config``/``from_config`` round trip, ``.keras`` and
``.weights.h5`` round trips with identical outputs, and both mixed-precision
policies. ``assert_matches_conv2d(layer, x)`` checks a linear layer against a
plain ``keras.layers.Conv2D`` (``Conv1D``, ``Conv3D`` for the other ranks)
that uses its ``dense_kernel()``.
"""

from __future__ import annotations

import keras
import numpy as np

RTOL = 1e-4


def to_numpy(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def random_input(shape, seed=0, dtype="float32") -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def relative_error(actual, expected) -> float:
    actual = np.asarray(actual, dtype="float64")
    expected = np.asarray(expected, dtype="float64")
    denom = max(np.linalg.norm(expected), 1e-30)
    return float(np.linalg.norm(actual - expected) / denom)


def _model(layer, input_shape):
    inputs = keras.Input(shape=input_shape[1:], batch_size=None)
    return keras.Model(inputs, layer(inputs))


_CONV_LAYERS = {1: "Conv1D", 2: "Conv2D", 3: "Conv3D"}


def reference_conv2d_output(layer, x) -> np.ndarray:
    """Output of a plain Conv1D/Conv2D/Conv3D (the layer's ``SPATIAL_DIMS``)
    with ``layer.dense_kernel()`` and its bias.

    Runs in channels_last (TensorFlow's CPU convolutions take nothing else)
    and transposes back for channels_first layers.
    """
    rank = layer.SPATIAL_DIMS
    channels_first = layer.data_format == "channels_first"
    to_last = (0, *range(2, rank + 2), 1)
    to_first = (0, rank + 1, *range(1, rank + 1))
    x_last = np.transpose(x, to_last) if channels_first else x
    kernel = layer.dense_kernel()
    ref = getattr(keras.layers, _CONV_LAYERS[rank])(
        kernel.shape[-1],
        kernel.shape[:rank],
        strides=layer.strides,
        padding=layer.padding,
        dilation_rate=layer.dilation_rate,
        activation=layer.activation,
        use_bias=layer.use_bias,
        data_format="channels_last",
        dtype="float32",
    )
    ref.build(x_last.shape)
    weights = [kernel] + ([to_numpy(layer.bias)] if layer.use_bias else [])
    ref.set_weights(weights)
    y = to_numpy(ref(x_last))
    return np.transpose(y, to_first) if channels_first else y


def assert_matches_conv2d(layer, x, rtol=RTOL) -> None:
    """The layer's output equals the dense convolution of its rank with its
    dense kernel, within ``rtol``."""
    y = to_numpy(layer(x))
    y_ref = reference_conv2d_output(layer, x)
    assert y.shape == y_ref.shape, (y.shape, y_ref.shape)
    err = relative_error(y, y_ref)
    assert err < rtol, f"relative error {err:.3g} >= {rtol} for {layer.get_config()}"


def check_layer(
    cls,
    kwargs,
    input_shape,
    tmp_path,
    *,
    train=True,
    saving=True,
    mixed_precision=True,
) -> None:
    """Run the standard checks for one layer configuration.

    Args:
        cls: the layer class.
        kwargs: its constructor arguments.
        input_shape: full input shape, batch first.
        tmp_path: a directory for the saving checks.
        train: run one training step with ``model.fit``.
        saving: check ``.keras`` and ``.weights.h5`` round trips.
        mixed_precision: check the ``mixed_float16`` and ``mixed_bfloat16`` policies.
    """
    x = random_input(input_shape)
    layer = cls(**kwargs)

    # Symbolic call and output shape.
    symbolic = layer(keras.KerasTensor(input_shape))
    expected_shape = layer.compute_output_shape(input_shape)
    assert tuple(symbolic.shape) == tuple(expected_shape)

    # Eager call.
    y = to_numpy(layer(x))
    assert y.shape == tuple(expected_shape)
    assert np.all(np.isfinite(y))

    # Config round trip.
    config = layer.get_config()
    clone = cls.from_config(config)
    assert clone.get_config() == config

    model = _model(cls(**kwargs), input_shape)
    if train:
        before = [to_numpy(w).copy() for w in model.trainable_weights]
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        target = random_input((input_shape[0], *model.output.shape[1:]), seed=1)
        history = model.fit(x, target, epochs=1, batch_size=input_shape[0], verbose=0)
        assert np.isfinite(history.history["loss"][0])
        after = [to_numpy(w) for w in model.trainable_weights]
        assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))

    if saving:
        y_model = to_numpy(model(x))
        path = tmp_path / "model.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        np.testing.assert_array_equal(to_numpy(loaded(x)), y_model)
        assert type(loaded.layers[-1]) is cls

        weights_path = tmp_path / "model.weights.h5"
        model.save_weights(weights_path)
        fresh = _model(cls(**kwargs), input_shape)
        fresh.load_weights(weights_path)
        np.testing.assert_array_equal(to_numpy(fresh(x)), y_model)

    if mixed_precision:
        for policy in ("mixed_float16", "mixed_bfloat16"):
            mp_layer = cls(**kwargs, dtype=policy)
            out = mp_layer(x)
            assert keras.backend.standardize_dtype(out.dtype) == policy.split("_")[1]
            assert all(w.dtype == "float32" for w in mp_layer.weights)
            assert np.all(np.isfinite(to_numpy(keras.ops.cast(out, "float32"))))
