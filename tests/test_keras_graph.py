"""fastconv._keras_graph: the private Keras names it needs, its graph walker, and
that no other module reaches into Keras's private API."""

import importlib
import re
import tomllib
from pathlib import Path

import keras
import numpy as np
import pytest

from fastconv import _keras_graph
from tests.layer_checks import random_input, to_numpy

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fastconv"
PRIVATE_TEXT = (
    "keras.src",
    "_run_through_graph",
    "_nodes_by_depth",
    "_inbound_nodes",
    "_flatten_layers",
)
ALLOWED = {PACKAGE / "_keras_graph.py"}


def test_every_required_private_name_exists():
    _keras_graph.check_private_api()


def test_torch_device_name_exists():
    pytest.importorskip("torch")
    _keras_graph.check_private_api("torch")


def test_pyproject_bounds_keras_to_the_supported_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    keras_pins = [d for d in project["dependencies"] if re.match(r"keras\W", d)]
    assert keras_pins == [f"keras{_keras_graph.SUPPORTED_KERAS}"]


def _remove(name, monkeypatch):
    """Makes the private ``name`` disappear for the rest of the test."""
    owner, _, attribute = name.rpartition(".")
    if owner.startswith("keras."):
        monkeypatch.delattr(importlib.import_module(owner), attribute)
        return
    instances = _keras_graph._probe_instances()
    monkeypatch.setattr(_keras_graph, "_probe_instances", lambda: instances)
    instance = instances[owner]
    defining = [c for c in type(instance).__mro__ if attribute in vars(c)]
    monkeypatch.delattr(defining[0] if defining else instance, attribute)
    assert not hasattr(instance, attribute)


@pytest.mark.parametrize("name", _keras_graph.REQUIRED)
def test_a_missing_private_name_is_named_with_the_supported_range(name, monkeypatch):
    if "torch" in name:
        pytest.importorskip("torch")
    _remove(name, monkeypatch)
    with pytest.raises(RuntimeError) as error:
        _keras_graph.check_private_api("torch")
    message = str(error.value)
    assert name in message
    assert f"Keras {keras.version()}" in message
    assert f"keras{_keras_graph.SUPPORTED_KERAS}" in message


def test_the_walker_fails_clearly_when_its_private_method_is_gone(monkeypatch):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    _remove("Functional._run_through_graph", monkeypatch)
    with pytest.raises(RuntimeError, match=r"Functional\._run_through_graph"):
        _keras_graph.run_graph(model, np.ones((1, 2), "float32"), _replay)


def _replay(op, *args, **kwargs):
    return op(*args, **kwargs)


def nested_model():
    """A nested Sequential, a nested Functional on a branch, a Dense called twice
    and a bare ``keras.ops`` operation."""
    head = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(6, name="head_dense")], name="head"
    )
    block_in = keras.Input((6,))
    block_out = keras.layers.Dense(6, activation="tanh", name="block_dense")(block_in)
    block = keras.Model(block_in, block_out, name="block")

    inputs = keras.Input((4,))
    x = keras.layers.Dense(6, name="stem")(inputs)
    shared = keras.layers.Dense(6, activation="relu", name="shared")
    x = shared(shared(x))
    x = keras.layers.Add(name="add")([x, block(x)])
    x = keras.ops.multiply(x, 0.5)
    outputs = head(x)
    return keras.Model(inputs, outputs, name="outer")


def test_operation_nodes_in_run_order_with_the_shared_layer_twice():
    model = nested_model()
    ops = [node.operation for node in _keras_graph.operation_nodes(model)]
    names = [op.name for op in ops]
    assert names[:3] == ["stem", "shared", "shared"]
    assert names[-1] == "head"
    assert set(names[3:-1]) >= {"block", "add"}
    assert len(names) == 7
    assert ops[1] is ops[2]


def test_run_graph_visits_every_operation_and_reproduces_the_model():
    model = nested_model()
    x = random_input((3, 4), seed=0)
    visited = []

    def call(op, *args, **kwargs):
        visited.append(op.name)
        return op(*args, **kwargs)

    outputs = _keras_graph.run_graph(model, x, call)
    expected = [node.operation.name for node in _keras_graph.operation_nodes(model)]
    assert visited == expected
    np.testing.assert_allclose(
        to_numpy(keras.tree.flatten(outputs)[0]), to_numpy(model(x)), rtol=1e-6
    )


def test_the_hook_replaces_every_call_and_can_replay_nested_models():
    model = nested_model()
    x = random_input((2, 4), seed=1)
    leaves = []

    def call(op, *args, **kwargs):
        if _keras_graph.graph(op) is not None:
            return _keras_graph.run_graph(op, args[0], call)
        leaves.append(op.name)
        if op.name == "stem":
            return keras.ops.zeros_like(op(*args, **kwargs))
        return op(*args, **kwargs)

    outputs = _keras_graph.run_graph(model, x, call)
    assert "block_dense" in leaves and "head_dense" in leaves
    assert leaves.count("shared") == 2
    shared = model.get_layer("shared")
    h = shared(shared(keras.ops.zeros((2, 6))))
    expected = model.get_layer("head")(0.5 * (h + model.get_layer("block")(h)))
    np.testing.assert_allclose(
        to_numpy(keras.tree.flatten(outputs)[0]), to_numpy(expected), rtol=1e-6
    )


def test_graph_of_models_and_layers():
    functional = nested_model()
    sequential = functional.get_layer("head")
    assert _keras_graph.graph(functional) is functional
    assert _keras_graph.is_functional(_keras_graph.graph(sequential))
    assert _keras_graph.graph(keras.layers.Dense(2)) is None
    assert _keras_graph.graph(keras.Sequential([keras.layers.Dense(2)])) is None
    with pytest.raises(ValueError, match="run_graph: model must be"):
        _keras_graph.run_graph(keras.layers.Dense(2), np.ones((1, 2)), _replay)


def test_in_symbolic_scope_is_true_only_while_tracing():
    seen = []

    def record(x):
        seen.append(_keras_graph.in_symbolic_scope())
        return x

    layer = keras.layers.Lambda(record)
    layer(keras.Input((2,)))
    layer(np.ones((1, 2), "float32"))
    assert seen[0] is True
    assert seen[-1] is False


def test_accepts_training():
    assert _keras_graph.accepts_training(keras.layers.Dropout(0.5))
    assert not _keras_graph.accepts_training(object())


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_only_the_wrapper_touches_private_keras():
    offenders = [
        f"{path.relative_to(ROOT)}: {text}"
        for path in _modules()
        if path not in ALLOWED
        for text in PRIVATE_TEXT
        if text in path.read_text()
    ]
    assert _modules(), "no modules found under fastconv/"
    assert not offenders, (
        "private Keras API used outside fastconv/_keras_graph.py: "
        + "; ".join(offenders)
    )


def test_nested_layers_reaches_inside_nested_models():
    inner = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, name="d1")], name="inner"
    )
    inputs = keras.Input((4,))
    outer = keras.Model(inputs, keras.layers.Dense(2, name="d2")(inner(inputs)))
    names = [layer.name for layer in _keras_graph.nested_layers(outer)]
    assert "d1" in names and "d2" in names and "inner" in names
    assert outer.name not in names
    assert [layer.name for layer in outer.layers] != names


def test_inbound_nodes_and_first_input_shape():
    conv = keras.layers.Conv2D(2, 3)
    assert _keras_graph.inbound_nodes(conv) == []
    assert _keras_graph.first_input_shape(conv) is None
    a, b = keras.Input((8, 8, 3)), keras.Input((6, 5, 3))
    conv(a), conv(b)
    assert len(_keras_graph.inbound_nodes(conv)) == 2
    assert _keras_graph.first_input_shape(conv) == (None, 8, 8, 3)
