"""Every implementation of every layer computes the same thing, on the same weights."""

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastconv
from tests.layer_checks import random_input, relative_error, to_numpy

RTOL = 1e-4

LAYERS = {
    "CPConv2D": (fastconv.CPConv2D, {"rank": 3}),
    "TuckerConv2D": (fastconv.TuckerConv2D, {"rank": (3, 2)}),
    "DepthwiseSeparableConv2D": (fastconv.DepthwiseSeparableConv2D, {}),
    "FactorizedConv2D": (fastconv.FactorizedConv2D, {}),
    "BottleneckConv2D": (fastconv.BottleneckConv2D, {"bottleneck_filters": 2}),
}
# StackedConv2D and WideConv2D have one implementation besides "dense"; their
# own test files check that pair.


def _runs(layer, impl) -> bool:
    """Whether ``layer`` can run ``impl``: all can, but ``dense`` needs a
    linear layer. (``allowed_implementations``, what ``"auto"`` measures, also
    leaves out implementations that are another one on this backend.)"""
    return impl != "dense" or layer.is_linear


def _layers_on_one_set_of_weights(cls, kwargs, input_shape, seed):
    """``(implementation, layer)`` for each implementation of ``cls(**kwargs)``
    that can run, built for ``input_shape``, all with the same random weights
    (drawn with ``seed``)."""
    first = None
    for impl in cls.IMPLEMENTATIONS:
        layer = cls(**kwargs, implementation=impl)
        layer.build(input_shape)
        if first is None:
            first = layer
            rng = np.random.default_rng(seed)
            weights = [
                rng.standard_normal(w.shape).astype("float32")
                for w in layer.get_weights()
            ]
            layer.set_weights(weights)
        else:
            layer.set_weights(first.get_weights())
        if _runs(layer, impl):
            yield impl, layer


def _outputs_by_implementation(cls, kwargs, input_shape, seed=0):
    """Output of each implementation of ``cls(**kwargs)``, all on one set of weights."""
    x = random_input(input_shape, seed=seed)
    return {
        impl: to_numpy(layer(x))
        for impl, layer in _layers_on_one_set_of_weights(
            cls, kwargs, input_shape, seed + 1
        )
    }


def _assert_all_equal(outputs):
    names = list(outputs)
    ref = outputs[names[0]]
    for name in names[1:]:
        assert outputs[name].shape == ref.shape, (name, outputs[name].shape)
        err = relative_error(outputs[name], ref)
        assert err < RTOL, f"{name} differs from {names[0]} by {err:.3g}"


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize(
    "conv_kwargs, input_shape",
    [
        (dict(kernel_size=3, padding="same"), (2, 8, 8, 4)),
        (dict(kernel_size=(3, 5), strides=2, padding="same"), (2, 9, 8, 4)),
        (dict(kernel_size=(5, 3), strides=(1, 2), padding="valid"), (1, 9, 10, 4)),
        (dict(kernel_size=3, dilation_rate=2, padding="same"), (2, 9, 9, 4)),
        (
            dict(kernel_size=3, padding="same", data_format="channels_first"),
            (2, 4, 7, 8),
        ),
        (
            dict(
                kernel_size=(2, 3),
                strides=2,
                padding="valid",
                data_format="channels_first",
            ),
            (1, 4, 9, 8),
        ),
    ],
)
def test_implementations_agree(name, conv_kwargs, input_shape):
    cls, extra = LAYERS[name]
    outputs = _outputs_by_implementation(
        cls, {"filters": 4, **conv_kwargs, **extra}, input_shape
    )
    assert len(outputs) == len(cls.IMPLEMENTATIONS)
    _assert_all_equal(outputs)


@given(
    name=st.sampled_from(["CPConv2D", "TuckerConv2D", "DepthwiseSeparableConv2D"]),
    k=st.tuples(st.integers(2, 5), st.integers(1, 5)),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 2),
    padding=st.sampled_from(["valid", "same"]),
    data_format=st.sampled_from(["channels_last", "channels_first"]),
    use_bias=st.booleans(),
    size=st.tuples(st.integers(9, 12), st.integers(9, 12)),
    c_in=st.integers(1, 5),
)
def test_implementations_agree_random(
    name, k, stride, dilation, padding, data_format, use_bias, size, c_in
):
    if stride > 1:
        dilation = 1
    cls, extra = LAYERS[name]
    if name == "CPConv2D":
        extra = {"rank": 2}
    if name == "TuckerConv2D":
        extra = {"rank": (1, 2)}
    kwargs = dict(
        filters=3,
        kernel_size=k,
        strides=stride,
        dilation_rate=dilation,
        padding=padding,
        data_format=data_format,
        use_bias=use_bias,
        **extra,
    )
    if data_format == "channels_last":
        shape = (2, *size, c_in)
    else:
        shape = (2, c_in, *size)
    _assert_all_equal(_outputs_by_implementation(cls, kwargs, shape))


@pytest.mark.parametrize("implementation", ["separable", "matmul", "shift"])
def test_separable_with_batchnorm_has_no_dense_and_agrees(implementation):
    kwargs = dict(
        filters=4,
        kernel_size=3,
        padding="same",
        intermediate_batchnorm=True,
        intermediate_activation="relu",
    )
    layer = fastconv.DepthwiseSeparableConv2D(**kwargs, implementation=implementation)
    assert layer.allowed_implementations() == ("separable", "matmul", "shift")
    ref = fastconv.DepthwiseSeparableConv2D(**kwargs, implementation="separable")
    x = random_input((2, 6, 6, 3))
    ref(x)
    layer.build(x.shape)
    layer.set_weights(ref.get_weights())
    for training in (False, True):
        y = to_numpy(layer(x, training=training))
        assert relative_error(y, to_numpy(ref(x, training=training))) < RTOL


@pytest.mark.parametrize(
    "name", ["CPConv2D", "TuckerConv2D", "DepthwiseSeparableConv2D"]
)
def test_saved_with_one_implementation_loads_with_any_other(name, tmp_path):
    cls, extra = LAYERS[name]
    x = random_input((2, 8, 8, 4))
    inputs = keras.Input((8, 8, 4))
    first = cls.IMPLEMENTATIONS[0]
    model = keras.Model(
        inputs, cls(4, 3, padding="same", implementation=first, **extra)(inputs)
    )
    expected = to_numpy(model(x))
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    saved = tmp_path / "model.keras"
    model.save(saved)
    loaded = keras.saving.load_model(saved)
    assert loaded.layers[-1].implementation == first
    for impl in (*cls.IMPLEMENTATIONS[1:], "auto"):
        inputs = keras.Input((8, 8, 4))
        other = keras.Model(
            inputs, cls(4, 3, padding="same", implementation=impl, **extra)(inputs)
        )
        other.load_weights(path)
        assert relative_error(to_numpy(other(x)), expected) < RTOL
        # The weights of the loaded .keras model, by name, fit too.
        names = [w.path.split("/")[-1] for w in other.layers[-1].weights]
        assert names == [w.path.split("/")[-1] for w in loaded.layers[-1].weights]


def test_unknown_implementation_names_the_choices():
    with pytest.raises(ValueError, match="'shift'.*received implementation='fft'"):
        fastconv.CPConv2D(4, 3, rank=2, implementation="fft")


@pytest.mark.parametrize("name", list(LAYERS))
def test_dense_kernel_cache_follows_every_weight_change(name):
    """``dense`` may keep its kernel between inference calls (eager PyTorch):
    a changed factor, by ``assign``, ``set_weights`` or an optimizer step,
    must still change the output."""
    cls, kwargs = LAYERS[name]
    shape = (2, 6, 6, 4)
    x = random_input(shape, seed=3)
    layer = cls(
        filters=4, kernel_size=3, padding="same", implementation="dense", **kwargs
    )
    layer.build(shape)

    def reference():
        conv = keras.layers.Conv2D(4, 3, padding="same")
        conv.build(shape)
        conv.set_weights([layer.dense_kernel(), to_numpy(layer.bias)])
        return to_numpy(conv(x))

    def predict():
        if keras.backend.backend() != "torch":
            return to_numpy(layer(x, training=False))
        import torch

        with torch.no_grad():  # where the cache is used
            return to_numpy(layer(x, training=False))

    if keras.backend.backend() == "torch":
        import torch

        with torch.no_grad():
            first = layer(x, training=False)
            kernel = layer._dense_cache.kernel
            layer(x, training=False)
            assert layer._dense_cache.kernel is kernel  # reused
        np.testing.assert_allclose(to_numpy(first), reference(), rtol=1e-4, atol=1e-5)
    factor = getattr(layer, layer._factor_names[0])
    factor.assign(2.0 * keras.ops.convert_to_numpy(factor))
    np.testing.assert_allclose(predict(), reference(), rtol=1e-4, atol=1e-5)
    layer.set_weights([w * 0.5 for w in layer.get_weights()])
    np.testing.assert_allclose(predict(), reference(), rtol=1e-4, atol=1e-5)
    before = predict()
    model = keras.Sequential([keras.Input(shape[1:]), layer])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.train_on_batch(x, np.ones((2, 6, 6, 4), "float32"))
    after = to_numpy(model.predict(x, verbose=0))
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, reference(), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="only a tf.function trace leaves the spatial size unknown in a call",
)
@pytest.mark.parametrize(
    "cls, kwargs, implementation",
    [
        (fastconv.CPConv2D, {"rank": 3}, "shift"),
        (fastconv.DepthwiseSeparableConv2D, {}, "shift"),
        (fastconv.FactorizedConv2D, {}, "shift"),
        (fastconv.FactorizedConv2D, {}, "unfold"),
    ],
)
def test_slices_with_unknown_size_strides_and_same_padding(cls, kwargs, implementation):
    """Shifted slices need the spatial size for "same" padding with strides.
    Traced without one (as Keras's ``reduce_retracing`` may do), ``shift``
    and ``unfold`` fall back to a convolution."""
    import tensorflow as tf

    layer = cls(
        4, 3, strides=2, padding="same", implementation=implementation, **kwargs
    )
    x = random_input((2, 7, 9, 3), seed=5)
    layer.build(x.shape)
    run = tf.function(
        lambda t: layer(t), input_signature=[tf.TensorSpec((None, None, None, 3))]
    )
    conv = keras.layers.Conv2D(4, 3, strides=2, padding="same")
    conv.build(x.shape)
    conv.set_weights([layer.dense_kernel(), to_numpy(layer.bias)])
    assert relative_error(to_numpy(run(x)), to_numpy(conv(x))) < RTOL


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="a TensorFlow graph rule"
)
@pytest.mark.parametrize("implementation", ["fused", "matmul"])
def test_tensorflow_inference_expands_by_conv_and_agrees(implementation):
    """In a TensorFlow graph at inference, the expanding 1x1 (rank -> filters)
    runs as a 1x1 Conv2D; in a training step as a MatMul. Both agree with
    eager execution."""
    import tensorflow as tf

    layer = fastconv.CPConv2D(
        8, 3, rank=3, padding="same", implementation=implementation
    )
    x = random_input((2, 6, 5, 4), seed=7)
    layer.build(x.shape)
    eager = to_numpy(layer(x))
    for training in (False, True):
        run = tf.function(lambda t, training=training: layer(t, training=training))
        assert relative_error(to_numpy(run(x)), eager) < RTOL
        ops = [n.op for n in run.get_concrete_function(x).graph.as_graph_def().node]
        assert ops.count("MatMul") == (2 if training else 1), ops
        assert ("Conv2D" in ops) == (not training), ops


def _training_gradients(layer, x, mode):
    """Gradients of a training step (input, then every trainable weight):
    ``mode`` "eager" runs it as written (a GradientTape on TensorFlow), "graph"
    and "xla" compiled as ``fastconv.timing.make_grad_step`` compiles it."""
    from fastconv.timing import make_grad_step

    if mode == "eager" and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        cotangent = np.random.default_rng(0).standard_normal(
            tuple(layer.compute_output_shape(x.shape))
        )
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x, training=True)
        grads = tape.gradient(
            out,
            [x, *layer.trainable_variables],
            output_gradients=tf.constant(cotangent, out.dtype),
        )
    else:
        grads = make_grad_step(layer, x, jit=mode == "xla")()
    return [to_numpy(g) for g in keras.tree.flatten(grads)]


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize(
    "data_format, mode",
    [
        ("channels_last", "eager"),
        ("channels_last", "graph"),
        ("channels_last", "xla"),
        ("channels_first", "graph"),
    ],
)
def test_training_gradients_agree(name, data_format, mode):
    """A training step's gradients (input and every weight) are the same for
    every implementation, eager and compiled. 3 -> 8 channels and small ranks
    make the last 1x1s expand by 2 or more, which takes TensorFlow's joined
    bias gradient (``kernels.ops._tf_matmul_bias``)."""
    cls, extra = LAYERS[name]
    extra = {**extra, "rank": 2} if name == "CPConv2D" else extra
    shape = (2, 6, 5, 3) if data_format == "channels_last" else (2, 3, 6, 5)
    x = random_input(shape, seed=11)
    kwargs = dict(filters=8, kernel_size=3, padding="same", data_format=data_format)
    grads = {
        impl: _training_gradients(layer, x, mode)
        for impl, layer in _layers_on_one_set_of_weights(
            cls, {**kwargs, **extra}, shape, seed=12
        )
    }
    names = list(grads)
    assert len(names) > 1
    for impl in names[1:]:
        assert len(grads[impl]) == len(grads[names[0]])
        for got, ref in zip(grads[impl], grads[names[0]], strict=True):
            assert relative_error(got, ref) < RTOL, (impl, names[0])
