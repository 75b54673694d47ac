"""The per-layer profiler: rows, counts, nesting, modes, files and bad input.

Every model is tiny and every measurement is one round with no warm-up: these
tests check what is reported, never how fast anything is.
"""

import json

import keras
import numpy as np
import pytest

import fastconv
from fastconv.profile import format_table, load_json, plot, profile

L = keras.layers
FAST = dict(warmup=0, repeats=1, jit=False)


def small_cnn():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            L.Conv2D(4, 3, activation="relu", name="conv"),
            L.MaxPooling2D(2, name="pool"),
            L.Dropout(0.5, name="drop"),
            L.Flatten(name="flat"),
            L.Dense(3, name="dense"),
        ],
        name="small_cnn",
    )


@pytest.fixture(scope="module")
def cnn_profile():
    return profile(small_cnn(), batch_size=2, **FAST)


def test_one_row_per_layer_in_order(cnn_profile):
    assert [r.path for r in cnn_profile.layers] == [
        "conv",
        "pool",
        "drop",
        "flat",
        "dense",
    ]
    assert [r.class_name for r in cnn_profile.layers] == [
        "Conv2D",
        "MaxPooling2D",
        "Dropout",
        "Flatten",
        "Dense",
    ]
    assert cnn_profile.batch_size == 2
    assert cnn_profile.layers[0].input_shape == (2, 8, 8, 1)
    assert cnn_profile.layers[0].output_shape == (2, 6, 6, 4)
    assert cnn_profile.layers[-1].output_shape == (2, 3)


def test_counts_match_hand_computed_values(cnn_profile):
    conv, pool, _, _, dense = cnn_profile.layers
    # Conv2D(4, 3x3) on 8x8x1: 3*3*1*4 + 4 weights, 6*6 outputs * 4 * 9 MACs.
    assert (conv.params, conv.macs_per_example) == (40, 1296)
    # Dense(3) on 3*3*4 = 36 features.
    assert (dense.params, dense.macs_per_example) == (111, 108)
    assert (pool.params, pool.macs_per_example) == (0, 0)
    assert cnn_profile.params == 151 == small_cnn().count_params()
    # float32 output of the conv at batch 2, and everything it moves.
    assert conv.activation_bytes == 2 * 6 * 6 * 4 * 4
    assert conv.bytes_moved == 2 * 8 * 8 * 4 + 40 * 4 + 2 * 6 * 6 * 4 * 4
    assert conv.arithmetic_intensity == pytest.approx(2 * 1296 / conv.bytes_moved)
    assert all(r.macs_modelled for r in cnn_profile.layers)


def test_train_mode_times_forward_and_backward(cnn_profile):
    assert cnn_profile.mode == "train"
    for row in cnn_profile.layers:
        assert row.forward is not None and row.step is not None, row.note
        assert len(row.forward.samples_ns) == 1
        assert row.backward_s == pytest.approx(row.step_s - row.forward_s)
    assert cnn_profile.model_step is not None
    assert cnn_profile.model_s == cnn_profile.model_step.median
    assert cnn_profile.gap_s == pytest.approx(
        cnn_profile.model_s - sum(r.step_s for r in cnn_profile.layers)
    )


def test_inference_mode_has_no_backward():
    result = profile(small_cnn(), (8, 8, 1), mode="inference", batch_size=3, **FAST)
    assert result.batch_size == 3
    assert all(r.step is None and r.backward_s is None for r in result.layers)
    assert result.model_step is None and result.model_s == result.model_forward.median
    assert "bwd ms" not in result.table()


def test_shares_and_table(cnn_profile):
    data = cnn_profile.as_dict()
    for key in ("time_share", "params_share", "macs_share"):
        assert sum(r[key] for r in data["layers"]) == pytest.approx(1.0)
    assert data["layers"][0]["macs_share"] == pytest.approx(1296 / (1296 + 108))
    table = str(cnn_profile)
    for row in cnn_profile.layers:
        assert row.path in table
    assert "sum of the per-layer times" in table and "gap" in table


def test_json_and_png_are_written(cnn_profile, tmp_path):
    cnn_profile.to_json(tmp_path / "out" / "profile.json")
    cnn_profile.plot(tmp_path / "out" / "profile.png")
    data = load_json(tmp_path / "out" / "profile.json")
    assert data["kind"] == "fastconv.profile"
    assert [r["path"] for r in data["layers"]] == [r.path for r in cnn_profile.layers]
    assert data["layers"][0]["step"]["samples_ns"]
    assert data["environment"]["backend"] == keras.backend.backend()
    assert data["total"]["params"] == 151
    png = (tmp_path / "out" / "profile.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # A saved profile prints and draws again without the model.
    assert format_table(data) == cnn_profile.table()
    plot(data, tmp_path / "again.png", title="again")
    assert (tmp_path / "again.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "other.json").write_text(json.dumps({"kind": "other"}))
    with pytest.raises(ValueError, match="not a fastconv profile"):
        load_json(tmp_path / "other.json")


def test_nested_models_get_paths_and_merges_are_timed():
    block = keras.Sequential(
        [keras.Input((6, 6, 4)), L.Conv2D(4, 3, padding="same", name="conv")],
        name="block",
    )
    inputs = keras.Input((6, 6, 4), name="image")
    x = block(inputs)
    x = L.Add(name="add")([x, inputs])
    inner_in = keras.Input((6, 6, 4))
    head = keras.Model(
        inner_in,
        L.Dense(2, name="dense")(L.GlobalAveragePooling2D(name="gap")(inner_in)),
        name="head",
    )
    model = keras.Model(inputs, head(x), name="outer")
    result = profile(model, batch_size=2, **FAST)
    assert [r.path for r in result.layers] == [
        "block/conv",
        "add",
        "head/gap",
        "head/dense",
    ]
    add = result.layers[1]
    assert add.class_name == "Add"
    assert add.forward is not None and add.step is not None, add.note
    assert result.params == model.count_params() == (9 * 4 * 4 + 4) + (4 * 2 + 2)
    assert result.layers[0].macs_per_example == 6 * 6 * 9 * 4 * 4


def test_shared_layer_counts_its_parameters_once():
    dense = L.Dense(3, name="shared")
    a, b = keras.Input((5,)), keras.Input((5,))
    model = keras.Model([a, b], L.Concatenate(name="cat")([dense(a), dense(b)]))
    result = profile(model, batch_size=2, **FAST)
    assert [r.path for r in result.layers] == ["shared", "shared[1]", "cat"]
    assert [r.params for r in result.layers] == [18, 0, 0]
    assert [r.macs_per_example for r in result.layers] == [15, 15, 0]
    assert "shared layer" in result.layers[1].note
    assert result.params == model.count_params()


def test_a_sample_batch_sets_the_batch_size_and_builds_the_model():
    model = keras.Sequential([L.Dense(4, name="d1"), L.Dense(2, name="d2")])
    x = np.ones((5, 3), "float32")
    result = profile(model, x, mode="inference", **FAST)
    assert result.batch_size == 5
    assert [r.params for r in result.layers] == [16, 10]
    same = profile(model, x, mode="inference", batch_size=5, **FAST)
    assert same.layers[0].input_shape == (5, 3)


def test_a_bare_layer_is_one_row():
    result = profile(L.Dense(2, name="lonely"), (4,), batch_size=2, **FAST)
    assert [(r.path, r.params) for r in result.layers] == [("lonely", 10)]


# Hand-computed counts of every fastconv layer on a 6x6x4 input, "same"
# padding, 8 filters (biases are parameters, not multiply-adds).
FASTCONV_COUNTS = [
    # CP rank 4: R (C_in + k_h + k_w + F) + F; 36 (C_in R + 3 R + 3 R + R F).
    ("CPConv2D", dict(kernel_size=3, rank=4), 80, 36 * (16 + 12 + 12 + 32)),
    # Tucker (2, 4): C_in R_in + 9 R_in R_out + R_out F + F.
    ("TuckerConv2D", dict(kernel_size=3, rank=(2, 4)), 120, 36 * (8 + 72 + 32)),
    # k x 1 then 1 x k through M = 2 channels.
    ("FactorizedConv2D", dict(kernel_size=3, intermediate_filters=2), 80, 36 * 72),
    # 1x1 squeeze to B = 2, 3x3 on 2 channels, 1x1 expand.
    ("BottleneckConv2D", dict(kernel_size=3, bottleneck_filters=2), 68, 36 * 60),
    # depthwise 3x3 then pointwise 4 -> 8.
    ("DepthwiseSeparableConv2D", dict(kernel_size=3), 76, 36 * (36 + 32)),
    # 5x5 as two 3x3 (M = 8): the input padded once to 10x10, 8x8 after the first.
    ("StackedConv2D", dict(kernel_size=5), 9 * (32 + 64) + 8, 9 * (64 * 32 + 36 * 64)),
    # one conv of width round(8 * sqrt(4)) = 16.
    ("WideConv2D", dict(kernel_size=3, merged_layers=4), 9 * 4 * 16 + 16, 36 * 9 * 64),
]


@pytest.mark.parametrize(
    "name, kwargs, params, macs", FASTCONV_COUNTS, ids=[c[0] for c in FASTCONV_COUNTS]
)
def test_fastconv_layer_counts(name, kwargs, params, macs):
    layer = getattr(fastconv, name)(8, padding="same", name="fast", **kwargs)
    model = keras.Sequential([keras.Input((6, 6, 4)), layer])
    result = profile(model, batch_size=2, mode="inference", **FAST)
    (row,) = result.layers
    assert (row.path, row.class_name) == ("fast", name)
    assert (row.params, row.macs_per_example) == (params, macs)
    assert row.macs_modelled and row.forward is not None


def test_unmodelled_layers_are_flagged():
    model = keras.Sequential([keras.Input((8, 2)), L.Conv1D(3, 3, name="c1")])
    result = profile(model, batch_size=2, mode="inference", **FAST)
    assert not result.layers[0].macs_modelled
    assert "not modelled for Conv1D" in result.table()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(mode="eval"),
            r"mode must be one of \('train', 'inference'\), "
            r"received mode='eval'",
        ),
        (
            dict(batch_size=0),
            "batch_size must be a positive int, received batch_size=0",
        ),
        (dict(batch_size=2.5), "received batch_size=2.5"),
        (dict(repeats=0), "repeats must be an int >= 1, received repeats=0"),
        (dict(jit="maybe"), "received jit='maybe'"),
        (dict(inputs=(8, 0, 1)), "positive int, received inputs=\\(8, 0, 1\\)"),
        (dict(inputs="28x28"), "received inputs='28x28'"),
    ],
)
def test_bad_arguments_name_the_argument_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        profile(small_cnn(), **kwargs)


def test_unbuilt_model_without_inputs():
    model = keras.Sequential([L.Dense(2)])
    with pytest.raises(ValueError, match="not built .* received inputs=None"):
        profile(model)


def test_not_a_model():
    with pytest.raises(ValueError, match="received model of type str"):
        profile("model.keras", (3,))


def test_inputs_that_do_not_fit_the_model():
    with pytest.raises(ValueError, match=r"cannot run on inputs of shape\(s\)"):
        profile(small_cnn(), (5, 5, 3), **FAST)
