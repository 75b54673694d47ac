"""Recovering accuracy after a conversion: `finetune`.

Lebedev et al. (2015) fine-tune the whole network after replacing its layers
with their decompositions, with plain back-propagation at a learning rate well
below the one used for training; the decomposed layers start close to the
originals, and a large step throws that away. `finetune` compiles the model
with such an optimizer and fits it. The default, Adam at ``1e-4``, did best of
``1e-3``, ``1e-4`` and ``1e-5`` for a CP- and a Tucker-converted MNIST CNN in
``examples/convert_trained_model.py --learning-rates 1e-3 1e-4 1e-5`` (the
numbers are in ``docs/convert.md``).
"""

from __future__ import annotations

import os

import keras
import numpy as np

from fastconv import _keras_graph
from fastconv._validation import is_int_at_least, is_number
from fastconv.convert import cluster

__all__ = ["DEFAULT_LEARNING_RATE", "finetune", "recalibrate_batchnorm"]

#: The learning rate `finetune` uses when none is given (Adam).
DEFAULT_LEARNING_RATE = 1e-4
#: The optimizers named by ``optimizer=``, as functions of the learning rate.
_OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate, momentum=0.9),
}


def finetune(
    model,
    x,
    y=None,
    epochs: int = 1,
    learning_rate: float | None = None,
    batch_size: int | None = 32,
    *,
    optimizer: str = "adam",
    loss=None,
    metrics=None,
    distribution: str | None = None,
    **fit_kwargs,
) -> keras.callbacks.History:
    """Fine-tunes a converted model at a low learning rate; trains it in place.

    The model is compiled anew with ``optimizer`` at ``learning_rate``, keeping
    the loss and metrics it was compiled with (`convert_model` copies the
    original's compile settings) unless ``loss``/``metrics`` are given, then
    ``model.fit(x, y, epochs=epochs, batch_size=batch_size, **fit_kwargs)``.

    Args:
        model: a Keras model, typically ``convert_model(...).model``.
        x: training inputs, as for ``model.fit`` (arrays, a dataset, ...).
        y: training targets, as for ``model.fit``.
        epochs: epochs to train (default 1).
        learning_rate: the optimizer's learning rate (default
            ``DEFAULT_LEARNING_RATE``, ``1e-4``); refused with an optimizer
            instance, which has its own.
        batch_size: as for ``model.fit``; None for datasets.
        optimizer: ``"adam"`` (default), ``"sgd"`` (with momentum 0.9, as in
            Lebedev et al.) or a ``keras.optimizers.Optimizer`` instance, used
            as given.
        loss: the loss; default: the model's compiled loss.
        metrics: the metrics; default: the model's compiled metrics.
        distribution: None (default) trains in this process; ``"multi-worker"``
            trains data-parallel with the other processes of the cluster that
            the environment describes (`fastconv.convert.cluster`: ``TF_CONFIG``
            or ``KERAS_DISTRIBUTION_*``; joined by ``join_cluster()`` at the
            start of the program): ``x``, ``y`` NumPy arrays, ``batch_size`` the
            global batch, and of ``fit_kwargs`` only ``shuffle``, ``callbacks``
            and ``verbose``.
        **fit_kwargs: passed to ``model.fit`` (``validation_data``,
            ``callbacks``, ``verbose``, ...).

    Returns:
        The ``keras.callbacks.History`` of the fit.

    Raises:
        ValueError: a non-positive or non-finite ``learning_rate``, a
            ``learning_rate`` with an optimizer instance, a non-positive
            ``epochs`` or ``batch_size``, an unknown optimizer name, NaN or Inf
            in array inputs or targets (they would turn every weight to NaN),
            array inputs without targets, with no examples, with a length
            other than the targets' or a shape other than the model's inputs,
            or no ``loss`` for a model that was never compiled. Every check
            runs before the model is compiled or trained.
        TypeError: ``model`` is not a ``keras.Model``, or ``x`` or ``y`` is a
            path instead of data.

    Example:
        >>> history = fastconv.finetune(new_model, x_train, y_train, epochs=1)
        ... # doctest: +SKIP
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"finetune: model must be a keras.Model, received {type(model).__name__}"
        )
    if not is_int_at_least(epochs, 1):
        raise ValueError(
            f"finetune: epochs must be a positive int, received epochs={epochs!r}"
        )
    check_training("finetune", learning_rate, optimizer, loss)
    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATE
    if batch_size is not None and not is_int_at_least(batch_size, 1):
        raise ValueError(
            "finetune: batch_size must be None or a positive int, received "
            f"batch_size={batch_size!r}"
        )
    _check_data(model, x, y)
    for name, data in (("x", x), ("y", y)):
        _check_finite(name, data)
    compiled = _compile_config(model)
    if loss is not None:
        compiled["loss"] = loss
    if metrics is not None:
        compiled["metrics"] = metrics
    if compiled.get("loss") is None:
        raise ValueError(
            f"finetune: model {model.name!r} has no compiled loss; pass loss= "
            "(e.g. loss='sparse_categorical_crossentropy')"
        )
    compiled["optimizer"] = _optimizer(optimizer, learning_rate)
    if distribution is not None:
        return _finetune_multi_worker(
            distribution, model, compiled, x, y, epochs, batch_size, fit_kwargs
        )
    model.compile(**compiled)
    return model.fit(x, y, epochs=epochs, batch_size=batch_size, **fit_kwargs)


def recalibrate_batchnorm(
    model, x, *, batch_size: int = 128, max_examples: int | None = 5000
) -> int:
    """Re-estimates every BatchNormalization's moving mean and variance on ``x``.

    After a conversion, the layers after a converted convolution see
    activations that differ a little from those their moving statistics were
    averaged over, and a short fine-tuning (moving averages with momentum
    0.99 forget slowly) leaves those statistics stale: a model can train to
    high accuracy in training mode and predict worse in inference mode. This
    runs ``model`` in training mode over ``x`` in batches of ``batch_size``
    and sets each moving statistic to the average of its batch statistics
    (each layer's momentum set to ``(i - 1) / i`` at batch ``i``, then put
    back). Nothing else changes: no trainable weight, no optimizer.

    Args:
        model: a built ``keras.Model``; nested models are searched too.
        x: inputs of ``model`` (an array, or a list or dict of arrays),
            examples from the training distribution.
        batch_size: examples per batch (the statistics are averaged per batch).
        max_examples: use at most this many of ``x`` (None: all).

    Returns:
        How many BatchNormalization layers were re-estimated (0 leaves the
        model untouched).

    Raises:
        TypeError: ``model`` is not a ``keras.Model``.
        ValueError: a bad ``batch_size`` or ``max_examples``, or ``x`` without
            examples, with non-finite values or of another shape than the
            model's inputs.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "recalibrate_batchnorm: model must be a keras.Model, received "
            f"{type(model).__name__}"
        )
    if not is_int_at_least(batch_size, 1):
        raise ValueError(
            "recalibrate_batchnorm: batch_size must be a positive int, received "
            f"batch_size={batch_size!r}"
        )
    if max_examples is not None and not is_int_at_least(max_examples, 1):
        raise ValueError(
            "recalibrate_batchnorm: max_examples must be None or a positive int, "
            f"received max_examples={max_examples!r}"
        )
    if not _is_arrays(x):
        raise ValueError(
            "recalibrate_batchnorm: x must be an array (or a list or dict of "
            f"arrays) of the model's inputs, received {type(x).__name__}"
        )
    leaves = keras.tree.flatten(x)
    lengths = {len(leaf) if leaf.ndim else 0 for leaf in leaves}
    if 0 in lengths or len(lengths) != 1:
        raise ValueError(
            "recalibrate_batchnorm: x must hold at least one example, as many in "
            f"every array, received lengths {sorted(lengths)}"
        )
    _check_data(model, x, np.zeros(lengths.pop()), "recalibrate_batchnorm")
    _check_finite("x", x, "recalibrate_batchnorm")
    layers = [
        layer
        for layer in _keras_graph.nested_layers(model)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    if not layers:
        return 0
    count = (
        len(leaves[0]) if max_examples is None else min(len(leaves[0]), max_examples)
    )
    momenta = [layer.momentum for layer in layers]
    try:
        for i, start in enumerate(range(0, count, batch_size), start=1):
            for layer in layers:
                layer.momentum = (i - 1) / i
            picked = slice(start, min(start + batch_size, count))
            model(keras.tree.map_structure(lambda a, p=picked: a[p], x), training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return len(layers)


def _is_arrays(data) -> bool:
    """An array, or a non-empty list, tuple or dict of arrays."""
    if isinstance(data, np.ndarray):
        return True
    if not isinstance(data, list | tuple | dict) or not data:
        return False
    return all(isinstance(v, np.ndarray) for v in keras.tree.flatten(data))


def _check_data(model, x, y, owner: str = "finetune") -> None:
    """Refuses training data that ``model.fit`` would misread or fail on late:
    a path instead of arrays, arrays without targets, no examples, inputs and
    targets of different lengths, or inputs of the wrong shape."""
    for name, data in (("x", x), ("y", y)):
        if isinstance(data, str | bytes | os.PathLike):
            raise TypeError(
                f"{owner}: {name} must be arrays or a dataset, received a "
                f"{type(data).__name__} {data!r}; load the file first"
            )
    if not _is_arrays(x):
        return
    if y is None:
        raise ValueError(
            f"{owner}: y must be given when x is arrays (only a dataset or "
            "generator yields its own targets), received y=None"
        )
    leaves = keras.tree.flatten(x)
    lengths = {len(v) if v.ndim else 0 for v in leaves}
    if _is_arrays(y):
        lengths |= {len(v) if v.ndim else 0 for v in keras.tree.flatten(y)}
    if 0 in lengths or len(lengths) != 1:
        raise ValueError(
            f"{owner}: x and y must hold the same number of examples, at least "
            f"one, received lengths {sorted(lengths)}"
        )
    inputs = getattr(model, "inputs", None) or []
    if isinstance(x, dict) or len(inputs) != len(leaves):
        return
    for leaf, tensor in zip(leaves, inputs, strict=True):
        shape = tuple(tensor.shape[1:])
        got = leaf.shape[1:]
        if len(got) != len(shape) or any(
            want is not None and want != size
            for want, size in zip(shape, got, strict=True)
        ):
            raise ValueError(
                f"{owner}: x has examples of shape {got}; model {model.name!r} "
                f"takes {shape}"
            )


def _finetune_multi_worker(
    distribution, model, compiled, x, y, epochs, batch_size, fit_kwargs
):
    if distribution != "multi-worker":
        raise ValueError(
            "finetune: distribution must be None or 'multi-worker', received "
            f"distribution={distribution!r}"
        )
    unsupported = sorted(set(fit_kwargs) - {"shuffle", "callbacks", "verbose"})
    if unsupported:
        raise ValueError(
            "finetune: with distribution='multi-worker', of model.fit's arguments "
            f"only shuffle, callbacks and verbose are taken; received "
            f"{', '.join(unsupported)}"
        )
    if batch_size is None:
        raise ValueError(
            "finetune: distribution='multi-worker' needs batch_size, the global batch"
        )
    workers = cluster.join_cluster()
    model.compile(**compiled)
    return workers.fit_copy(
        model, compiled, x, y, batch_size=batch_size, epochs=epochs, **fit_kwargs
    )


def _check_finite(name: str, data, owner: str = "finetune") -> None:
    """Refuses NumPy arrays in ``data`` (an array, or a list or dict of them)
    holding NaN or Inf; datasets and generators are not read."""
    if not isinstance(data, np.ndarray | list | tuple | dict):
        return
    for leaf in keras.tree.flatten(data):
        if isinstance(leaf, np.ndarray) and leaf.dtype.kind == "f":
            if not np.all(np.isfinite(leaf)):
                raise ValueError(
                    f"{owner}: {name} holds NaN or Inf; training on it would turn "
                    "the model's weights to NaN"
                )


def check_training(owner: str, learning_rate, optimizer, loss) -> None:
    """Refuses a learning rate, optimizer or loss that `finetune` cannot use.

    Args:
        owner: the function checking, first in the message.
        learning_rate: None (the default rate) or a positive finite number;
            not with an optimizer instance.
        optimizer: ``"adam"``, ``"sgd"`` or a ``keras.optimizers.Optimizer``.
        loss: None, or what ``keras.losses.get`` takes.

    Raises:
        ValueError: naming ``owner``, the argument and the value received.
    """
    is_instance = isinstance(optimizer, keras.optimizers.Optimizer)
    if learning_rate is not None and is_instance:
        raise ValueError(
            f"{owner}: learning_rate={learning_rate!r} cannot apply to an optimizer "
            f"instance ({type(optimizer).__name__}); set its learning rate when "
            "creating it, or pass optimizer='adam' or 'sgd'"
        )
    if learning_rate is not None and not (
        is_number(learning_rate) and 0 < learning_rate < float("inf")
    ):
        raise ValueError(
            f"{owner}: learning_rate must be a positive finite number, received "
            f"learning_rate={learning_rate!r}"
        )
    if not is_instance and not (
        isinstance(optimizer, str) and optimizer in _OPTIMIZERS
    ):
        raise ValueError(
            f"{owner}: optimizer must be 'adam', 'sgd' or a "
            f"keras.optimizers.Optimizer, received optimizer={optimizer!r}"
        )
    if loss is not None:
        try:
            keras.losses.get(loss)
        except (ValueError, TypeError):
            raise ValueError(
                f"{owner}: loss must be a Keras loss (a name such as "
                "'sparse_categorical_crossentropy', a function or a "
                f"keras.losses.Loss), received loss={loss!r}"
            ) from None


def _optimizer(optimizer, learning_rate: float) -> keras.optimizers.Optimizer:
    """The optimizer `check_training` accepted, at ``learning_rate``."""
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return optimizer
    return _OPTIMIZERS[optimizer](learning_rate)


def _compile_config(model) -> dict:
    """The arguments the model was compiled with (loss, metrics, ...), or {}."""
    if not model.compiled:
        return {}
    config = keras.saving.deserialize_keras_object(model.get_compile_config() or {})
    config.pop("optimizer", None)
    return dict(config)
