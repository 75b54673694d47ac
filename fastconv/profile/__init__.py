"""Where the time goes: a per-layer cost profiler for Keras models.

``profile(model, inputs)`` gives one row per layer (nested models expanded)
with its parameters, multiply-adds, activation memory, measured forward and
backward time, their shares of the model, and its arithmetic intensity; the
sum of the rows is compared with the whole model, measured the same way.
What the fast layers would change at each ``Conv2D`` of a result is
``fastconv.convert.suggest_replacements`` (also ``fastconv.suggest_replacements``):
it builds fast layers, so it lives on the floor above ``layers/`` and this
package.

Names: ``fastconv.profile`` is this package, and stays one. The function is
``fastconv.profile.profile`` (``from fastconv.profile import profile``) and,
at the top level, ``fastconv.profile_model``. Binding the top-level name
``fastconv.profile`` to the function instead would make that attribute a
function or a package depending on import order, and break
``import fastconv.profile.report`` followed by ``fastconv.profile.report``;
making the module itself callable would be a trick that IDEs, type checkers
and readers do not expect.

Example:
    >>> import keras
    >>> from fastconv.profile import profile
    >>> model = keras.Sequential(
    ...     [keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3, name="conv"),
    ...      keras.layers.Flatten(name="flat"), keras.layers.Dense(10, name="out")])
    >>> result = profile(model, batch_size=8, warmup=1, repeats=2, jit=False)
    >>> [row.path for row in result.layers]
    ['conv', 'flat', 'out']
    >>> result.to_json("profile.json"); result.plot("profile.png")  # doctest: +SKIP
    >>> print(result)  # doctest: +SKIP
"""

from fastconv.profile.profiler import MODES, LayerProfile, ProfileResult, profile
from fastconv.profile.report import format_table, load_json, plot, write_json

__all__ = [
    "MODES",
    "LayerProfile",
    "ProfileResult",
    "format_table",
    "load_json",
    "plot",
    "profile",
    "write_json",
]
