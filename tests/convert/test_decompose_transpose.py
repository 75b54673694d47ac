"""decompose and convert_model on keras.layers.Conv2DTranspose."""

import keras
import numpy as np
import pytest

import fastconv
from fastconv.convert.decompose import default_rank
from tests.layer_checks import random_input, relative_error, to_numpy


def built_transpose(c_in=4, filters=6, kernel_size=3, seed=0, **kwargs):
    """A built Conv2DTranspose with random kernel and bias."""
    layer = keras.layers.Conv2DTranspose(filters, kernel_size, name="up", **kwargs)
    if layer.data_format == "channels_last":
        layer.build((None, 8, 7, c_in))
    else:
        layer.build((None, c_in, 8, 7))
    rng = np.random.default_rng(seed)
    layer.set_weights(
        [
            rng.standard_normal(layer.kernel.shape).astype("float32"),
            rng.standard_normal(filters).astype("float32"),
        ]
    )
    return layer


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(strides=1, padding="valid"),
        dict(strides=1, padding="same", activation="relu"),
        dict(strides=2, padding="valid"),
        dict(strides=2, padding="same"),
        dict(strides=2, padding="valid", output_padding=1),
        dict(strides=(2, 3), padding="same", output_padding=(1, 2)),
        dict(strides=2, padding="same", data_format="channels_first"),
    ],
)
def test_exact_at_full_rank(kwargs):
    layer = built_transpose(**kwargs)
    shape = (2, 8, 7, 4) if layer.data_format == "channels_last" else (2, 4, 8, 7)
    x = random_input(shape)
    fast = fastconv.decompose(layer, "tucker", rank=(4, 6))
    assert type(fast) is fastconv.TuckerConv2DTranspose
    assert fast.name == "up_tucker" and fast.rank == (4, 6)
    assert fast.output_padding == layer.output_padding
    expected = to_numpy(layer(x))
    assert relative_error(to_numpy(fast(x)), expected) < 1e-5
    np.testing.assert_allclose(fast.dense_kernel(), to_numpy(layer.kernel), atol=1e-5)


def test_the_original_is_untouched():
    layer = built_transpose(strides=2, padding="same")
    before = [w.copy() for w in layer.get_weights()]
    config = layer.get_config()
    fastconv.decompose(layer, "tucker", rank=(2, 3))
    for old, now in zip(before, layer.get_weights(), strict=True):
        np.testing.assert_array_equal(old, now)
    assert layer.get_config() == config


def test_a_low_rank_keeps_the_ranks_asked():
    layer = built_transpose(strides=2, padding="same")
    fast = fastconv.decompose(layer, "tucker", rank=(2, 3), name="small")
    assert fast.name == "small"
    assert fast.rank == (2, 3)
    assert [tuple(w.shape) for w in fast.weights] == [
        (4, 2),
        (3, 3, 3, 2),
        (3, 6),
        (6,),
    ]
    x = random_input((2, 8, 7, 4))
    # Low rank loses some of the output, but not all of it.
    assert 1e-3 < relative_error(to_numpy(fast(x)), to_numpy(layer(x))) < 1.0


# VBMF finds no signal in a random kernel and clamps its ranks up to 1.
@pytest.mark.filterwarnings("ignore::fastconv.decomposition.RankClampedWarning")
@pytest.mark.parametrize("rank", [3, (2, 5), 0.5, "energy:0.9", "vbmf", None])
def test_rank_forms(rank):
    layer = built_transpose(strides=2, padding="same")
    fast = fastconv.decompose(layer, "tucker", rank=rank)
    r_in, r_out = fast.rank
    assert 1 <= r_in <= 4 and 1 <= r_out <= 6
    if rank is None:
        default = fastconv.decompose(layer, "tucker", rank=default_rank("tucker"))
        assert fast.rank == default.rank
    if isinstance(rank, tuple):
        assert fast.rank == rank


def test_a_tucker_conv2d_transpose_is_decomposed_again():
    layer = fastconv.decompose(built_transpose(strides=2), "tucker", rank=(4, 6))
    smaller = fastconv.decompose(layer, "tucker", rank=(2, 2))
    assert type(smaller) is fastconv.TuckerConv2DTranspose
    assert smaller.rank == (2, 2) and smaller.strides == (2, 2)


@pytest.mark.parametrize("method", ["cp", "factorized", "separable", "auto", "svd"])
def test_other_methods_are_refused(method):
    layer = built_transpose()
    with pytest.raises(ValueError, match="layer 'up' is a Conv2DTranspose") as caught:
        fastconv.decompose(layer, method, rank=2)
    assert f"received method={method!r}" in str(caught.value)


def test_an_unbuilt_layer_is_refused():
    layer = keras.layers.Conv2DTranspose(4, 3, name="up")
    with pytest.raises(ValueError, match="layer 'up' is not built"):
        fastconv.decompose(layer, "tucker", rank=2)


def test_an_option_tucker_does_not_take_is_refused():
    with pytest.raises(TypeError, match="takes no option 'init'"):
        fastconv.decompose(built_transpose(), "tucker", rank=2, init="random")


def decoder():
    """A tiny U-Net-like decoder: down, up by Conv2DTranspose, skip, 1x1."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 4))
    skip = keras.layers.Conv2D(6, 3, padding="same", name="stem")(inputs)
    down = keras.layers.Conv2D(6, 3, strides=2, padding="same", name="down")(skip)
    up = keras.layers.Conv2DTranspose(
        6, 3, strides=2, padding="same", bias_initializer="random_normal", name="up"
    )(down)
    merged = keras.layers.Concatenate(name="merge")([skip, up])
    outputs = keras.layers.Conv2D(3, 1, name="head")(merged)
    return keras.Model(inputs, outputs)


def test_convert_model_converts_conv2d_transpose_exactly_at_full_rank(tmp_path):
    model = decoder()
    before = [w.copy() for w in model.get_weights()]
    x = random_input((2, 8, 8, 4))
    new, report = fastconv.convert_model(
        model, "tucker", rank=(6, 6), layers=["up"], progress=False
    )
    assert type(new.get_layer("up_tucker")) is fastconv.TuckerConv2DTranspose
    rows = {row.name: row for row in report.rows}
    assert rows["up"].converted and rows["up"].new_type == "TuckerConv2DTranspose"
    assert rows["up"].macs_before == 4 * 4 * 9 * 6 * 6
    assert relative_error(to_numpy(new(x)), to_numpy(model(x))) < 1e-5
    for old, now in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, now)
    path = tmp_path / "converted.keras"
    new.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(to_numpy(loaded(x)), to_numpy(new(x)))


@pytest.mark.filterwarnings("ignore::fastconv.ConversionAccuracyWarning")
@pytest.mark.filterwarnings("ignore::fastconv.decomposition.RankClampedWarning")
def test_convert_model_auto_means_tucker_for_conv2d_transpose():
    new, report = fastconv.convert_model(
        decoder(), "auto", rank=0.5, max_error=0.9, progress=False
    )
    rows = {row.name: row for row in report.rows}
    assert rows["up"].converted and rows["up"].method == "tucker"
    assert type(new.get_layer("up_tucker")) is fastconv.TuckerConv2DTranspose


@pytest.mark.filterwarnings("ignore::fastconv.ConversionAccuracyWarning")
def test_convert_model_keeps_conv2d_transpose_with_another_method():
    new, report = fastconv.convert_model(decoder(), "cp", rank=2, progress=False)
    rows = {row.name: row for row in report.rows}
    assert not rows["up"].converted
    assert rows["up"].decision == (
        "kept: a Conv2DTranspose takes method 'tucker' only, not 'cp'"
    )
    assert type(new.get_layer("up")) is keras.layers.Conv2DTranspose
    assert rows["down"].converted
