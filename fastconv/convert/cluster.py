"""Data-parallel training over several processes or machines ("multi-worker").

Every process runs the same program; the environment tells each one the
cluster and its place in it, the engine's usual way:

- TensorFlow: ``TF_CONFIG``, the JSON that
  ``tf.distribute.MultiWorkerMirroredStrategy`` reads
  (``{"cluster": {"worker": ["host0:port", "host1:port"]}, "task": {"type":
  "worker", "index": 0}}``).
- JAX: the variables of ``keras.distribution.initialize``:
  ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` (the coordinator, process 0, first),
  ``KERAS_DISTRIBUTION_NUM_PROCESSES`` and ``KERAS_DISTRIBUTION_PROCESS_ID``.

`join_cluster` joins it, once per process and before the engine computes
anything (both engines refuse later). On TensorFlow it creates the strategy,
and `MultiWorker.fit` trains with a custom step under ``strategy.run``
(Keras 3's ``model.fit`` does not run under that strategy); on JAX it calls
``jax.distributed.initialize`` and trains with ``model.fit`` under
``keras.distribution.DataParallel`` over the devices of every process. Each
process feeds its slice of every global batch, so the losses are those of one
process training on the same global batches. Each collective is bounded in
time, and heartbeats make a process that dies fail the others; joining is
bounded on JAX, while TensorFlow waits for every worker to connect (its
coordination service, which Python cannot interrupt). The PyTorch backend is
not supported.
"""

from __future__ import annotations

import dataclasses
import json
import os
import weakref
from collections.abc import Mapping

import keras
import numpy as np

from fastconv._validation import is_int_at_least

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "Cluster",
    "ClusterError",
    "MultiWorker",
    "join_cluster",
    "read_cluster",
    "shard_rows",
]

#: Seconds each collective may take, and JAX's `join_cluster` waits for the others.
DEFAULT_TIMEOUT_S = 120
#: Seconds without a heartbeat after which JAX declares a process dead.
HEARTBEAT_S = 10

_JAX_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


class ClusterError(ValueError):
    """A cluster that cannot be read or joined, or a run it cannot train."""


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The processes of a multi-worker run, as the environment gives them.

    Attributes:
        backend: the Keras backend, ``tensorflow`` or ``jax``.
        addresses: ``host:port`` of every process (TensorFlow), or of the
            coordinator first (JAX).
        num_processes: how many processes train together.
        process_id: this process, ``0 <= process_id < num_processes``; 0 is
            the coordinator (JAX) or the first worker (TensorFlow).
    """

    backend: str
    addresses: tuple[str, ...]
    num_processes: int
    process_id: int


def read_cluster(environ: Mapping[str, str] | None = None) -> Cluster:
    """Reads the cluster of the current Keras backend from the environment.

    Raises:
        ClusterError: the variables are missing or invalid (naming the
            variable and the value received), or the backend has no
            multi-worker training here (PyTorch).
    """
    environ = os.environ if environ is None else environ
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tf_cluster(environ)
    if backend == "jax":
        return _jax_cluster(environ)
    raise ClusterError(
        f"multi-worker training is not supported on the {backend} backend: fastconv "
        "runs it on TensorFlow (TF_CONFIG) and JAX (KERAS_DISTRIBUTION_* variables); "
        "use KERAS_BACKEND=tensorflow or jax"
    )


def _tf_cluster(environ) -> Cluster:
    text = environ.get("TF_CONFIG")
    example = (
        'e.g. TF_CONFIG=\'{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
        '"task": {"type": "worker", "index": 0}}\''
    )
    if not text:
        raise ClusterError(f"multi-worker on TensorFlow needs TF_CONFIG; {example}")
    try:
        spec = json.loads(text)
        workers = list(spec["cluster"].get("chief", [])) + list(
            spec["cluster"]["worker"]
        )
        kind, index = spec["task"]["type"], spec["task"]["index"]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ClusterError(
            f"TF_CONFIG is not a cluster spec ({type(exc).__name__}: {exc}); "
            f"received TF_CONFIG={text!r}; {example}"
        ) from None
    for role in ("chief", "worker"):
        entry = spec["cluster"].get(role, [])
        if not isinstance(entry, list) or not all(map(_is_address, entry)):
            raise ClusterError(
                f'TF_CONFIG cluster {role} entry must be a list of "host:port" '
                f"strings, received {role}={entry!r}; {example}"
            )
    offset = {"chief": 0, "worker": len(spec["cluster"].get("chief", []))}
    if kind not in offset or not is_int_at_least(index, 0):
        raise ClusterError(
            "TF_CONFIG task must be a chief or worker with an integer index >= 0, "
            f"received task={spec['task']!r}"
        )
    process_id = offset[kind] + index
    if index >= len(spec["cluster"].get(kind, [])) or process_id >= len(workers):
        raise ClusterError(
            f"TF_CONFIG task {spec['task']!r} is not in its cluster of "
            f"{len(workers)} process(es): {workers!r}"
        )
    return Cluster("tensorflow", tuple(workers), len(workers), process_id)


def _jax_cluster(environ) -> Cluster:
    missing = [name for name in _JAX_VARIABLES if not environ.get(name)]
    if missing:
        raise ClusterError(
            f"multi-worker on JAX needs {', '.join(_JAX_VARIABLES)}; missing: "
            f"{', '.join(missing)} (e.g. KERAS_DISTRIBUTION_JOB_ADDRESSES=host0:12345 "
            "KERAS_DISTRIBUTION_NUM_PROCESSES=2 KERAS_DISTRIBUTION_PROCESS_ID=0)"
        )
    values = {}
    for name in _JAX_VARIABLES[1:]:
        try:
            values[name] = int(environ[name])
        except ValueError:
            values[name] = None
    count, process_id = values.values()
    if count is None or count < 1:
        raise ClusterError(
            "KERAS_DISTRIBUTION_NUM_PROCESSES must be an integer >= 1, received "
            f"{environ[_JAX_VARIABLES[1]]!r}"
        )
    if process_id is None or not 0 <= process_id < count:
        raise ClusterError(
            f"KERAS_DISTRIBUTION_PROCESS_ID must be an integer in [0, {count}), "
            f"received {environ[_JAX_VARIABLES[2]]!r}"
        )
    addresses = tuple(a.strip() for a in environ[_JAX_VARIABLES[0]].split(","))
    if len(addresses) > 1 and len(addresses) != count:
        raise ClusterError(
            f"KERAS_DISTRIBUTION_JOB_ADDRESSES lists {len(addresses)} addresses but "
            f"KERAS_DISTRIBUTION_NUM_PROCESSES is {count}; give the coordinator's "
            "address alone, or one per process"
        )
    if not all(map(_is_address, addresses)):
        raise ClusterError(
            "KERAS_DISTRIBUTION_JOB_ADDRESSES must be host:port, comma separated, "
            f"received {environ[_JAX_VARIABLES[0]]!r}"
        )
    return Cluster("jax", addresses, count, process_id)


def _is_address(value) -> bool:
    """Whether ``value`` is a ``"host:port"`` string with a port in 1..65535."""
    if not isinstance(value, str):
        return False
    host, _, port = value.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def shard_rows(
    n: int, batch_size: int, num_processes: int, process_id: int, order=None
) -> np.ndarray:
    """The rows one process feeds: its slice of every global batch.

    Global batch ``k`` is rows ``order[k * batch_size:(k + 1) * batch_size]``
    (``order`` defaults to ``0..n-1``); process ``p`` feeds the ``p``-th of its
    ``num_processes`` equal slices, so the processes' slices, in process order,
    make the global batch again. An incomplete last batch is dropped.

    Raises:
        ValueError: naming the argument, on counts that are not positive ints,
            a ``batch_size`` that is not a multiple of ``num_processes``, or a
            ``process_id`` outside ``[0, num_processes)``, or an ``order``
            that is not a permutation of ``range(n)``.
    """
    for name, value, low in (
        ("n", n, 0),
        ("batch_size", batch_size, 1),
        ("num_processes", num_processes, 1),
        ("process_id", process_id, 0),
    ):
        if not is_int_at_least(value, low):
            raise ValueError(
                f"shard_rows: {name} must be an int >= {low}, received {name}={value!r}"
            )
    if batch_size % num_processes:
        raise ValueError(
            f"shard_rows: batch_size must be a multiple of num_processes="
            f"{num_processes}, received batch_size={batch_size}"
        )
    if process_id >= num_processes:
        raise ValueError(
            f"shard_rows: process_id must be below num_processes={num_processes}, "
            f"received process_id={process_id}"
        )
    if order is None:
        order = np.arange(n)
    else:
        order = np.asarray(order)
        if (
            order.shape != (n,)
            or not np.issubdtype(order.dtype, np.integer)
            or not np.array_equal(np.sort(order), np.arange(n))
        ):
            shown = np.array2string(order, threshold=8)
            raise ValueError(
                f"shard_rows: order must be a 1-D integer permutation of "
                f"range(n={n}), received order={shown} of shape {order.shape} "
                f"and dtype {order.dtype}"
            )
    rows = order[: n // batch_size * batch_size]
    per_process = batch_size // num_processes
    return rows.reshape(-1, num_processes, per_process)[:, process_id].reshape(-1)


class MultiWorker:
    """A joined cluster: build models under `scope`, train them with `fit`.

    Attributes:
        cluster: the `Cluster` joined.
        replicas: the devices the data is split over, in every process.
    """

    def __init__(self, cluster: Cluster, timeout_s: float):
        self.cluster = cluster
        self.timeout_s = timeout_s
        self._steps = weakref.WeakKeyDictionary()
        if cluster.backend == "tensorflow":
            self._strategy = _tf_strategy(timeout_s)
            self.replicas = self._strategy.num_replicas_in_sync
        else:
            self._distribution = _jax_distribution(cluster, timeout_s)
            self.replicas = len(self._distribution.device_mesh.devices.reshape(-1))

    def scope(self):
        """The context in which models (and optimizers) that `fit` trains are
        built: the strategy's scope, or the distribution's."""
        if self.cluster.backend == "tensorflow":
            return self._strategy.scope()
        return self._distribution.scope()

    def fit(
        self,
        model,
        x,
        y,
        *,
        batch_size: int,
        epochs: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        callbacks=None,
        verbose=0,
    ) -> keras.callbacks.History:
        """Trains ``model`` (built under `scope` and compiled) data-parallel.

        Args:
            model: the model; its compiled loss and optimizer are used.
            x, y: NumPy arrays, the same in every process.
            batch_size: the global batch, a multiple of ``replicas``.
            epochs: passes over the data; an incomplete last batch is dropped.
            shuffle: a permutation per epoch, seeded by ``seed + epoch``, the
                same in every process.
            seed: see ``shuffle``.
            callbacks: Keras callbacks; they see ``loss``, the epoch's running
                mean of the global batches' losses, as ``model.fit`` reports it.
            verbose: as for ``model.fit``.

        Returns:
            The ``History``: ``history["loss"]`` per epoch.

        Raises:
            ClusterError: inputs that are not NumPy arrays of equal length, or
                a batch that is not a multiple of ``replicas`` or longer than
                the data.
        """
        x, y = self._check_data(x, y, batch_size)
        history = keras.callbacks.History()
        callbacks = keras.callbacks.CallbackList(
            [*(callbacks or []), history],
            add_progbar=verbose != 0,
            model=model,
            verbose=verbose,
            epochs=epochs,
            steps=len(x) // batch_size,
        )
        callbacks.on_train_begin()
        for epoch in range(epochs):
            order = (
                np.random.default_rng(seed + epoch).permutation(len(x))
                if shuffle
                else None
            )
            rows = shard_rows(
                len(x),
                batch_size,
                self.cluster.num_processes,
                self.cluster.process_id,
                order,
            )
            callbacks.on_epoch_begin(epoch)
            if self.cluster.backend == "tensorflow":
                loss = self._tf_epoch(model, x[rows], y[rows], batch_size, callbacks)
            else:
                loss = self._jax_epoch(model, x[rows], y[rows], batch_size, callbacks)
            callbacks.on_epoch_end(epoch, {"loss": loss})
        callbacks.on_train_end()
        return history

    def _check_data(self, x, y, batch_size):
        if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)):
            raise ClusterError(
                "multi-worker training takes NumPy arrays x and y (the whole data, "
                f"in every process), received {type(x).__name__} and "
                f"{type(y).__name__}"
            )
        if len(x) != len(y):
            raise ClusterError(
                f"x and y differ in length: {len(x)} and {len(y)} examples"
            )
        if not is_int_at_least(batch_size, 1) or batch_size % self.replicas:
            raise ClusterError(
                f"multi-worker: the global batch_size must be a multiple of the "
                f"{self.replicas} devices of the cluster, received {batch_size!r}"
            )
        if batch_size > len(x):
            raise ClusterError(
                f"multi-worker: batch_size {batch_size} is larger than the data "
                f"({len(x)} examples); every step needs a whole global batch"
            )
        return x, y

    def _jax_epoch(self, model, x, y, batch_size, callbacks) -> float:
        last = {}

        class Relay(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                callbacks.on_train_batch_begin(batch, logs)

            def on_train_batch_end(self, batch, logs=None):
                last.update(logs or {})
                callbacks.on_train_batch_end(batch, logs)

        with self._distribution.scope():
            model.fit(
                x,
                y,
                batch_size=batch_size // self.cluster.num_processes,
                epochs=1,
                shuffle=False,
                verbose=0,
                callbacks=[Relay()],
            )
        return float(last["loss"])

    def _tf_epoch(self, model, x, y, batch_size, callbacks) -> float:
        import tensorflow as tf

        strategy = self._strategy
        per_replica = batch_size // self.replicas

        def dataset(context):
            return tf.data.Dataset.from_tensor_slices((x, y)).batch(per_replica)

        iterator = iter(strategy.distribute_datasets_from_function(dataset))
        step = self._tf_step(model, batch_size)
        total = 0.0
        for batch in range(len(x) * self.cluster.num_processes // batch_size):
            callbacks.on_train_batch_begin(batch)
            try:
                total += float(step(iterator))
            except Exception as exc:
                lost = self._lost(exc, f"step {batch}")
                if lost is None:
                    raise
                raise lost from None
            callbacks.on_train_batch_end(batch, {"loss": total / (batch + 1)})
        return total / (batch + 1)

    def _tf_step(self, model, batch_size: int):
        steps = self._steps.setdefault(model, {})  # one per global batch size
        if batch_size in steps:
            return steps[batch_size]
        import tensorflow as tf

        strategy = self._strategy
        loss_fn = _per_example_loss(model)

        def replica_step(x, y):
            with tf.GradientTape() as tape:
                per_example = loss_fn(y, model(x, training=True))
                loss = tf.nn.compute_average_loss(
                    per_example, global_batch_size=batch_size
                )
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            variables = model.trainable_variables
            grads = tape.gradient(loss, variables)
            model.optimizer.apply_gradients(zip(grads, variables, strict=True))
            return loss

        @tf.function
        def step(iterator):
            losses = strategy.run(replica_step, args=next(iterator))
            return strategy.reduce("SUM", losses, axis=None)

        steps[batch_size] = step
        return step

    def fit_copy(self, model, compile_args: dict, x, y, **fit_args):
        """Trains a copy of ``model`` built under `scope` (its weights, and
        compiled with ``compile_args``), then gives ``model`` its weights.

        For a model built outside `scope`, as `fastconv.finetune` receives
        one. ``fit_args`` go to `fit`; returns its ``History``.

        Raises:
            ClusterError: a model that ``keras.models.clone_model`` cannot copy.
        """
        args = dict(compile_args)
        args["optimizer"] = keras.optimizers.serialize(args["optimizer"])
        with self.scope():
            try:
                replica = keras.models.clone_model(model)
            except Exception as exc:
                raise self._lost(exc, "copying the model") or ClusterError(
                    f"multi-worker: model {model.name!r} cannot be copied into the "
                    f"cluster's scope ({type(exc).__name__}: {exc}); build it under "
                    "MultiWorker.scope() and train it with MultiWorker.fit"
                ) from exc
            replica.set_weights(model.get_weights())
            args["optimizer"] = keras.optimizers.deserialize(args["optimizer"])
            replica.compile(**args)
        history = self.fit(replica, x, y, **fit_args)
        model.set_weights(replica.get_weights())
        return history

    def _lost(self, exc: Exception, where: str) -> ClusterError | None:
        """A clear error for TensorFlow's failed collectives: another process
        died (no heartbeats) or did not answer in time; None for others."""
        if self.cluster.backend != "tensorflow":
            return None
        import tensorflow as tf

        if not isinstance(
            exc, tf.errors.UnavailableError | tf.errors.DeadlineExceededError
        ):
            return None
        return ClusterError(
            f"multi-worker: {where} failed in process {self.cluster.process_id}: "
            "another process of the cluster died or did not answer within "
            f"{self.timeout_s:g} s ({exc.message.strip()})"
        )


def _per_example_loss(model):
    loss = model.loss
    if isinstance(loss, list | tuple | dict):
        raise ClusterError(
            "multi-worker on TensorFlow trains a model with a single loss, received "
            f"loss={loss!r}"
        )
    if isinstance(loss, keras.losses.Loss):
        return loss.call
    return keras.losses.get(loss)


def _tf_strategy(timeout_s: float):
    import tensorflow as tf

    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_s)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except RuntimeError as exc:
        raise ClusterError(
            f"multi-worker: TensorFlow cannot join the cluster now ({exc}); call "
            "fastconv.convert.cluster.join_cluster() at the start of the program, "
            "before any model or tensor is made"
        ) from exc


def _jax_distribution(cluster: Cluster, timeout_s: float):
    import jax

    # Cross-process collectives on CPU devices; GPUs and TPUs have their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=cluster.addresses[0],
            num_processes=cluster.num_processes,
            process_id=cluster.process_id,
            initialization_timeout=int(timeout_s),
            heartbeat_timeout_seconds=HEARTBEAT_S,
        )
    except RuntimeError as exc:
        raise ClusterError(
            f"multi-worker: process {cluster.process_id} of {cluster.num_processes} "
            f"could not join the JAX cluster at {cluster.addresses[0]} ({exc}); "
            f"start every process within {timeout_s:g} s of each other, and call "
            "join_cluster() before JAX computes anything"
        ) from exc
    distribution = keras.distribution.DataParallel(
        devices=keras.distribution.list_devices()
    )
    distribution.auto_shard_dataset = False  # every process feeds its own slice
    return distribution


_JOINED: list[MultiWorker] = []


def join_cluster(timeout_s: float = DEFAULT_TIMEOUT_S) -> MultiWorker:
    """Joins the cluster of `read_cluster` once per process; returns it.

    Call it at the start of the program, before any model or tensor is made:
    TensorFlow configures its collective ops, and JAX its distributed runtime,
    only then. A second call returns the cluster joined by the first.

    Args:
        timeout_s: seconds each collective may take, and on JAX the wait
            for every process to join (TensorFlow waits until every worker
            connects); a process that stops sending heartbeats fails the
            others (TensorFlow's coordination service; JAX after
            ``HEARTBEAT_S`` seconds).

    Raises:
        ClusterError: see `read_cluster`; or the engine cannot join now (it
            already computed), or the others did not join in time.
    """
    if _JOINED:
        return _JOINED[0]
    if not (isinstance(timeout_s, int | float) and timeout_s > 0):
        raise ClusterError(
            f"timeout_s must be a positive number, received {timeout_s!r}"
        )
    _JOINED.append(MultiWorker(read_cluster(), timeout_s))
    return _JOINED[0]
