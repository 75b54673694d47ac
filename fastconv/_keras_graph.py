"""The one place where fastconv touches Keras's private API.

Keras 3 has no public way to walk a functional model's graph node by node or to
replay it with a hook around every layer call, yet `convert_model` (to find the
convolutions and record their inputs) and the profiler (to time every layer on
its real input) need both. ``keras.models.clone_model`` itself is built on the
same internals, so they are the least fragile choice, but they are private:
Keras may rename or remove them in any release. Every private name fastconv
uses is read here, and nowhere else, so that such a change breaks one file and
`check_private_api` says which name went missing.

The private names, all listed in `REQUIRED`:

- ``Functional``, the class of functional models, from
  ``keras.src.models.functional`` (``keras.Model`` is not it: a subclassed model
  is a ``keras.Model`` too);
- ``Function._nodes_by_depth``, the graph's nodes grouped by depth, and
  ``Function._run_through_graph``, which replays them;
- ``Functional._standardize_inputs``, which flattens a call's inputs the way
  ``Functional.call`` does;
- ``Sequential._functional``, the functional graph a built ``Sequential`` runs;
- ``Layer._call_context_args``, the call arguments (``training``) Keras passes
  down to nested layers;
- ``Layer._inbound_nodes``, the graph nodes where a layer was called, one per
  call (a shared layer has several);
- ``Layer._flatten_layers``, every layer nested in a layer or model at any
  depth (``Model.layers`` lists only the top level);
- ``in_symbolic_scope`` from ``keras.src.backend.common.symbolic_scope``, true
  while Keras traces a model symbolically;
- ``get_device`` from ``keras.src.backend.torch.core``, the device the torch
  backend places new tensors on;
- the package ``keras.src.export``, whose functions run while
  ``Model.export`` traces a model (every format goes through it).

All of them exist unchanged from Keras 3.10 to 3.15; ``_run_through_graph`` is
called with ``operation_fn``, the only hook it has had since 3.0 (its
``call_fn`` arrived later and its ``operation_fn`` was required before 3.14).
The supported range, `SUPPORTED_KERAS`, is the one ``pyproject.toml`` pins.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable

import keras

__all__ = [
    "KERAS_VERSION",
    "REQUIRED",
    "SUPPORTED_KERAS",
    "accepts_training",
    "check_private_api",
    "functional_class",
    "first_input_shape",
    "graph",
    "in_symbolic_scope",
    "inbound_nodes",
    "is_functional",
    "nested_layers",
    "operation_nodes",
    "run_graph",
    "torch_device",
]

KERAS_VERSION: str = keras.version()

#: The Keras versions fastconv is tested against, as pinned in pyproject.toml.
SUPPORTED_KERAS = ">=3.10,<3.16"

_FUNCTIONAL = "keras.src.models.functional.Functional"
_SYMBOLIC_SCOPE = "keras.src.backend.common.symbolic_scope.in_symbolic_scope"
_TORCH_DEVICE = "keras.src.backend.torch.core.get_device"
_EXPORT_PACKAGE = "keras.src.export"

#: Every private Keras name this module relies on. Dotted paths name module
#: attributes; ``Class.attribute`` names an attribute of that class's
#: instances.
REQUIRED: tuple[str, ...] = (
    _FUNCTIONAL,
    "Functional._nodes_by_depth",
    "Functional._run_through_graph",
    "Functional._standardize_inputs",
    "Sequential._functional",
    "Layer._call_context_args",
    "Layer._inbound_nodes",
    "Layer._flatten_layers",
    _SYMBOLIC_SCOPE,
    _TORCH_DEVICE,
    _EXPORT_PACKAGE,
)


def _missing(name: str) -> RuntimeError:
    return RuntimeError(
        f"fastconv relies on Keras's private {name}, which Keras {KERAS_VERSION} "
        f"does not have; fastconv supports keras{SUPPORTED_KERAS} "
        f'(pip install "keras{SUPPORTED_KERAS}")'
    )


def _import(path: str):
    """The object at ``module.attribute`` path, or a clear error naming it."""
    module, _, attribute = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError):
        raise _missing(path) from None


def _attribute(obj, name: str, owner: str):
    try:
        return getattr(obj, name)
    except AttributeError:
        raise _missing(f"{owner}.{name}") from None


def functional_class() -> type:
    """Keras's ``Functional`` class, the type of functional models."""
    return _import(_FUNCTIONAL)


def is_functional(obj) -> bool:
    """Whether ``obj`` is a functional model (a ``Functional`` instance)."""
    return isinstance(obj, functional_class())


def graph(layer):
    """The functional graph that runs ``layer``, or None.

    Args:
        layer: any layer or model.

    Returns:
        ``layer`` itself for a functional model, the inner graph of a built
        ``keras.Sequential``, None for anything else (a plain layer, a
        subclassed model, an unbuilt ``Sequential``).
    """
    if isinstance(layer, keras.Sequential):
        return _attribute(layer, "_functional", "Sequential")
    if is_functional(layer):
        return layer
    return None


def operation_nodes(function) -> list:
    """The nodes of a functional graph that call an operation, in run order.

    Args:
        function: a functional model.

    Returns:
        Its nodes, deepest (closest to the inputs) first, as Keras runs them;
        input nodes are left out. Each has ``.operation`` (the layer or op),
        ``.input_tensors`` and ``.outputs`` (symbolic tensors of the graph).
    """
    by_depth = _attribute(function, "_nodes_by_depth", "Functional")
    return [
        node
        for depth in sorted(by_depth, reverse=True)
        for node in by_depth[depth]
        if node.operation is not None and not node.is_input
    ]


def run_graph(model, inputs, call: Callable):
    """Replays a model's graph, calling ``call`` in place of every operation.

    The graph runs as ``model(inputs)`` would run it, node by node, but each
    node computes ``call(operation, *args, **kwargs)`` with the operation (a
    layer, a nested model, a ``keras.ops`` op) and the arguments it receives in
    the graph, now real tensors; ``return operation(*args, **kwargs)`` replays
    the model unchanged. A nested model is one operation: the hook decides
    whether to call it or replay it with ``run_graph`` in turn.

    Args:
        model: a functional model or a built ``keras.Sequential``.
        inputs: the model's inputs, in any structure ``model(inputs)`` takes.
        call: the hook, ``call(operation, *args, **kwargs) -> outputs``.

    Returns:
        The outputs, in the structure of the model's outputs (a single output
        of a functional model stays in a one-element list if it was declared
        as one).

    Raises:
        ValueError: ``model`` has no functional graph.
    """
    function = graph(model)
    if function is None:
        raise ValueError(
            "run_graph: model must be a functional model or a built "
            f"keras.Sequential, received {type(model).__name__} "
            f"{getattr(model, 'name', model)!r}"
        )
    standardize = _attribute(function, "_standardize_inputs", "Functional")
    replay = _attribute(function, "_run_through_graph", "Functional")
    return replay(
        standardize(inputs), operation_fn=lambda op: functools.partial(call, op)
    )


def accepts_training(operation) -> bool:
    """Whether Keras passes ``training`` down to ``operation`` when it is called
    inside a model (true of every Keras layer; false of a bare op)."""
    return "training" in getattr(operation, "_call_context_args", ())


def inbound_nodes(layer) -> list:
    """The graph nodes where ``layer`` was called symbolically, in call order:
    one per call, so a layer shared by two branches has two; empty for a layer
    never called on a ``keras.Input``."""
    return list(_attribute(layer, "_inbound_nodes", "Layer"))


def nested_layers(layer) -> list:
    """Every layer inside ``layer`` (a model, or a layer holding layers), at any
    depth, each once, in tracking order; ``layer`` itself is not included."""
    return list(_attribute(layer, "_flatten_layers", "Layer")(include_self=False))


def first_input_shape(layer) -> tuple | None:
    """The shape of the first input of ``layer``'s first call in a graph (batch
    size included, unknown sizes as None), or None if it was never called on
    symbolic tensors."""
    nodes = inbound_nodes(layer)
    if not nodes or not nodes[0].input_tensors:
        return None
    return tuple(nodes[0].input_tensors[0].shape)


def in_symbolic_scope() -> bool:
    """Whether Keras is tracing symbolically (building a model, computing
    output specs), where layers receive no concrete tensors."""
    return bool(_import(_SYMBOLIC_SCOPE)())


def in_export() -> bool:
    """Whether Keras's ``Model.export`` is running in this thread: a function
    of ``keras.src.export`` is on the call stack (Keras has no flag for it)."""
    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module == _EXPORT_PACKAGE or module.startswith(_EXPORT_PACKAGE + "."):
            return True
        frame = frame.f_back
    return False


def torch_device():
    """The device Keras's torch backend places new tensors on, e.g. ``"cpu"``
    or ``"cuda"``. Imports PyTorch."""
    return _import(_TORCH_DEVICE)()


def _probe_instances() -> dict:
    """One object of each class whose instance attributes `REQUIRED` names."""
    inputs = keras.Input((1,))
    layer = keras.layers.Identity()
    functional = keras.Model(inputs, layer(inputs))
    return {
        "Functional": functional,
        "Sequential": keras.Sequential([keras.Input((1,)), keras.layers.Identity()]),
        "Layer": layer,
    }


def check_private_api(backend: str | None = None) -> None:
    """Checks that every name in `REQUIRED` exists in the installed Keras.

    Instance attributes are looked up on a tiny model built for the check.
    The torch backend's ``get_device`` is checked only when ``backend`` (by
    default Keras's current backend) is ``"torch"``, as importing it loads
    PyTorch.

    Args:
        backend: the Keras backend to check for; None for the current one.

    Raises:
        RuntimeError: a private name is missing; the message names it, the
            installed Keras version and the supported range.
    """
    backend = backend or keras.backend.backend()
    instances = None
    for name in REQUIRED:
        if name == _TORCH_DEVICE and backend != "torch":
            continue
        owner, _, attribute = name.partition(".")
        if owner == "keras":
            _import(name)
            continue
        if instances is None:
            instances = _probe_instances()
        if not hasattr(instances[owner], attribute):
            raise _missing(name)
