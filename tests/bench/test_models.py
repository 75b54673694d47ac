"""Reference networks, variants, the registry and model costs."""

import keras
import pytest

import fastconv
from fastconv.bench import models

from .conftest import tiny_net

SCRATCH = [n for n, v in models.VARIANTS.items() if v.kind == "scratch"]


def test_builtin_variants_cover_every_technique_of_the_issue():
    assert set(models.VARIANTS) >= {
        "baseline",
        "factorized",
        "stacked",
        "bottleneck",
        "wide",
        "separable",
        "cp",
        "tucker",
        "converted-cp",
        "converted-tucker",
    }
    assert models.VARIANTS["baseline"].kind == "baseline"
    assert models.VARIANTS["converted-cp"].kind == "converted"
    assert models.VARIANTS["converted-cp"].convert["method"] == "cp"
    assert models.VARIANTS["cp"].kind == "scratch"


def test_mnist_baseline_is_the_two_conv_net():
    model = models.build_model("mnist", "baseline", (28, 28, 1), 10)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size) for c in convs] == [(32, (3, 3)), (64, (5, 5))]
    kinds = [type(layer).__name__ for layer in model.layers]
    assert "MaxPooling2D" in kinds and "Dropout" in kinds and kinds[-1] == "Dense"
    assert model.output_shape == (None, 10)


def test_cifar_baseline_is_vgg_style_3x3_of_64_to_256():
    model = models.build_model("cifar10", "baseline", (32, 32, 3), 10)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert [c.filters for c in convs] == [64, 64, 128, 128, 256, 256]
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize(
    "variant, layer_class",
    [
        ("factorized", fastconv.FactorizedConv2D),
        ("stacked", fastconv.StackedConv2D),
        ("bottleneck", fastconv.BottleneckConv2D),
        ("separable", fastconv.DepthwiseSeparableConv2D),
        ("cp", fastconv.CPConv2D),
        ("tucker", fastconv.TuckerConv2D),
    ],
)
def test_mnist_variant_replaces_conv2_only(variant, layer_class):
    model = models.build_model("mnist", variant, (28, 28, 1), 10)
    assert isinstance(model.get_layer("conv1"), keras.layers.Conv2D)
    assert isinstance(model.get_layer("conv2"), layer_class)
    assert model.output_shape == (None, 10)


def test_cifar_wide_merges_each_stack_into_one_layer():
    model = models.build_model("cifar10", "wide", (32, 32, 3), 10)
    wide = [layer for layer in model.layers if isinstance(layer, fastconv.WideConv2D)]
    assert [(w.filters, w.merged_layers) for w in wide] == [(128, 2), (256, 2)]
    assert isinstance(model.get_layer("conv2"), keras.layers.Conv2D)


@pytest.mark.parametrize(
    "dataset, variant, needs",
    [("mnist", "wide", "stack"), ("cifar10", "stacked", "odd kernel >= 5")],
)
def test_variant_that_replaces_nothing_is_not_applicable(dataset, variant, needs):
    shape = (28, 28, 1) if dataset == "mnist" else (32, 32, 3)
    with pytest.raises(models.NotApplicableError, match=needs):
        models.build_model(dataset, variant, shape, 10)


def test_build_model_rejects_unknown_names_and_converted_variants():
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*mnist"):
        models.build_model("nope", "baseline", (28, 28, 1), 10)
    with pytest.raises(ValueError, match="unknown variant 'nope'.*factorized"):
        models.build_model("mnist", "nope", (28, 28, 1), 10)
    with pytest.raises(ValueError, match="convert_model"):
        models.build_model("mnist", "converted-cp", (28, 28, 1), 10)


def test_convs_counts_offered_and_replaced():
    convs = models.Convs(models.VARIANTS["stacked"])
    tiny_net(convs, (12, 12, 1), 3)
    # conv2 (5x5) is replaced; the two 3x3 of the stack are offered one by one.
    assert (convs.offered, convs.replaced) == (3, 1)
    convs = models.Convs(models.VARIANTS["wide"])
    tiny_net(convs, (12, 12, 1), 3)
    assert (convs.offered, convs.replaced) == (3, 2)


def test_kept_stack_layers_get_suffixed_names():
    model = tiny_net(models.Convs(), (12, 12, 1), 3)
    assert isinstance(model.get_layer("conv3_0"), keras.layers.Conv2D)
    assert isinstance(model.get_layer("conv3_1"), keras.layers.Conv2D)


def test_model_cost_counts_params_and_macs_by_hand():
    model = tiny_net(models.Convs(), (12, 12, 1), 3)
    cost = models.model_cost(model)
    # conv1 1->4 3x3, conv2 4->8 5x5, two 8->8 3x3, all "same" on 12x12; dense 8->3.
    params = (9 * 4 + 4) + (25 * 4 * 8 + 8) + 2 * (9 * 8 * 8 + 8) + (8 * 3 + 3)
    macs = 144 * (9 * 4 + 25 * 4 * 8 + 2 * 9 * 8 * 8) + 8 * 3
    assert cost.params == params == model.count_params()
    assert cost.macs == macs


def test_every_variant_costs_fewer_macs_than_the_baseline_except_stacked():
    base = models.model_cost(models.build_model("mnist", "baseline", (28, 28, 1), 10))
    for variant in SCRATCH:
        if variant == "wide":
            continue
        model = models.build_model("mnist", variant, (28, 28, 1), 10)
        macs = models.model_cost(model).macs
        # Two stacked 3x3 of full width cost more than one 5x5 at 32 -> 64.
        assert (macs > base.macs) == (variant == "stacked"), variant


@pytest.fixture
def registry():
    """Restores the registries after a test that adds to them."""
    saved_models, saved_variants = dict(models.MODELS), dict(models.VARIANTS)
    yield
    models.MODELS.clear()
    models.MODELS.update(saved_models)
    models.VARIANTS.clear()
    models.VARIANTS.update(saved_variants)


def test_registered_variant_is_built_and_listed(registry):
    variant = models.register_variant(
        "cp2",
        lambda f, k, **kw: fastconv.CPConv2D(f, k, rank=2, **kw),
        description="rank 2",
    )
    assert models.VARIANTS["cp2"] is variant and variant.kind == "scratch"
    model = models.build_model("mnist", "cp2", (28, 28, 1), 10)
    assert model.get_layer("conv2").rank == 2


def test_registered_stack_and_convert_variants(registry):
    stack = models.register_variant(
        "wide-stack",
        stack=lambda f, k, n, **kw: [fastconv.WideConv2D(f, k, merged_layers=n, **kw)],
    )
    assert stack.kind == "scratch"
    model = models.build_model("cifar10", "wide-stack", (32, 32, 3), 10)
    assert sum(isinstance(x, fastconv.WideConv2D) for x in model.layers) == 2
    converted = models.register_variant(
        "converted-vbmf", convert={"method": "tucker", "rank": "vbmf"}
    )
    assert converted.kind == "converted"
    assert converted.convert == {"method": "tucker", "rank": "vbmf"}


def test_registered_model_replaces_the_reference_net(registry):
    models.register_model("mnist", tiny_net)
    model = models.build_model("mnist", "cp", (12, 12, 1), 3)
    assert model.name == "tiny_net"
    assert isinstance(model.get_layer("conv2"), fastconv.CPConv2D)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="baseline", builder=len), "name=.baseline"),
        (dict(name="has space", builder=len), "name='has space'"),
        (dict(name=3, builder=len), "name=3"),
        (dict(name="x", builder=3), "builder=3"),
        (dict(name="x", stack="s"), "stack='s'"),
        (dict(name="x"), "needs builder=, stack= or convert="),
        (dict(name="x", builder=len, convert={"method": "cp"}), "not both"),
        (dict(name="x", convert=["cp"]), r"convert=\['cp'\]"),
    ],
)
def test_register_variant_rejects_bad_input(registry, kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.register_variant(**kwargs)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (("bad name", tiny_net), {}, "dataset='bad name'"),
        (("mine", "builder"), {}, "builder='builder'"),
        (("mine", tiny_net), {"load": 5}, "load=5"),
        (("mine", tiny_net), {}, "pass load="),
    ],
)
def test_register_model_rejects_bad_input(registry, args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.register_model(*args, **kwargs)
