"""``like``: the fast layer that stands for a ``Conv2D``, sized by one rule.

``LikeMixin`` gives every fastconv layer ``like(conv, ratio)`` and
``like_size(conv, ratio)``; a layer class supplies its size arguments with
``_like_kwargs``. ``fastconv.suggest_replacements``, the benchmark's
variants and ``fastconv demo`` build their layers this way.
"""

from __future__ import annotations

import keras

from fastconv._validation import is_int_at_least, is_number

__all__ = ["LikeMixin"]


class LikeMixin:
    """``like`` and ``like_size`` for ``BaseFastConv``."""

    @classmethod
    def like(cls, conv, ratio=0.25, *, input_channels=None, **overrides):
        """A fresh, unbuilt layer of this class standing for ``conv``.

        It has the ``Conv2D``'s ``filters``, ``kernel_size``, ``strides``,
        ``padding``, ``data_format``, ``dilation_rate``, ``activation`` and
        ``use_bias`` (not its name, initializers, regularizers, constraints or
        weights: a fresh layer is trained, or filled from a decomposition by
        ``fastconv.convert``), and the size that ``like_size(conv, ratio)``
        gives. ``fastconv.suggest_replacements`` and the benchmark's variants
        build their layers this way.

        Args:
            conv: the ``keras.layers.Conv2D`` to stand for (ungrouped).
            ratio: the size as a fraction of the channels, a number in
                ``(0, 1]``; see ``like_size``.
            input_channels: the ``Conv2D``'s input channels; needed only when
                ``conv`` is not built, else read off its kernel.
            **overrides: constructor arguments of this class that replace those
                read off ``conv`` or given by the size rule (``name``,
                ``implementation``, ...).

        Returns:
            The layer, not built.

        Raises:
            TypeError: if ``conv`` is not a ``keras.layers.Conv2D``.
            ValueError: on a grouped ``conv``, a ``ratio`` outside ``(0, 1]``,
                missing or inconsistent ``input_channels``, or arguments the
                layer rejects for this configuration.

        Example:
            >>> import keras, fastconv
            >>> conv = keras.layers.Conv2D(128, 3, padding="same")
            >>> layer = fastconv.CPConv2D.like(conv, input_channels=64)
            >>> (layer.filters, layer.kernel_size, layer.padding, layer.rank)
            (128, (3, 3), 'same', 32)
        """
        size = cls.like_size(conv, ratio, input_channels=input_channels)
        kwargs = {
            "filters": conv.filters,
            "kernel_size": tuple(conv.kernel_size),
            "strides": tuple(conv.strides),
            "padding": conv.padding,
            "data_format": conv.data_format,
            "dilation_rate": tuple(conv.dilation_rate),
            "activation": conv.activation,
            "use_bias": conv.use_bias,
            **size,
            **overrides,
        }
        return cls(**kwargs)

    @classmethod
    def like_size(cls, conv, ratio=0.25, *, input_channels=None) -> dict:
        """The size arguments that ``like(conv, ratio)`` gives this class.

        One rule for every layer: ranks and inner widths are ``ratio`` of the
        channels, ``max(1, round(ratio * channels))``. CP: ``rank`` of
        ``filters``, at most the kernel's largest CP rank; Tucker-2: ``rank``
        ``(R_in, R_out)`` of ``(C_in, filters)``; bottleneck:
        ``bottleneck_filters`` of ``filters``; factorized and stacked:
        ``intermediate_filters`` of ``filters``; depthwise separable: none
        (its size is the ``Conv2D``'s). ``WideConv2D`` raises a ``TypeError``:
        it stands for a stack of convolutions (``fastconv.wide_replacement``).

        Args:
            conv, ratio, input_channels: as for ``like``.

        Returns:
            A dict of constructor arguments, e.g. ``{"rank": 32}``.

        Raises:
            TypeError, ValueError: as for ``like``.
        """
        from fastconv.layers.base import BaseFastConv

        where = f"{cls.__name__}.like"
        if cls is BaseFastConv:
            raise TypeError(
                f"{where}: the base class stands for no layer; call like on a fast "
                "layer class (fastconv.CPConv2D.like, fastconv.TuckerConv2D.like, ...)"
            )
        if not isinstance(conv, keras.layers.Conv2D):
            raise TypeError(
                f"{where}: conv must be a keras.layers.Conv2D, received conv of "
                f"type {type(conv).__name__}"
            )
        if conv.groups != 1:
            raise ValueError(
                f"{where}: conv must be an ungrouped Conv2D (the fast layers have "
                f"no groups), received conv with groups={conv.groups}"
            )
        if not (is_number(ratio) and 0 < ratio <= 1):
            raise ValueError(
                f"{where}: ratio must be a number in (0, 1], received ratio={ratio!r}"
            )
        if input_channels is not None and not is_int_at_least(input_channels, 1):
            raise ValueError(
                f"{where}: input_channels must be a positive int, received "
                f"input_channels={input_channels!r}"
            )
        if conv.built:
            c_in = int(conv.kernel.shape[-2])
            if input_channels is not None and int(input_channels) != c_in:
                raise ValueError(
                    f"{where}: input_channels must match the built conv's "
                    f"{c_in} input channels, received input_channels="
                    f"{input_channels!r}"
                )
        elif input_channels is None:
            raise ValueError(
                f"{where}: input_channels is needed for a conv that is not built "
                "(its kernel says how many input channels it has), received "
                "input_channels=None"
            )
        else:
            c_in = int(input_channels)
        return cls._like_kwargs(conv, c_in, float(ratio))

    @classmethod
    def _like_kwargs(cls, conv, c_in: int, ratio: float) -> dict:
        """The size arguments of ``like`` for a ``Conv2D`` from ``c_in``
        channels (arguments already checked); none by default."""
        return {}

    @staticmethod
    def _share(channels: int, ratio: float) -> int:
        """``ratio`` of ``channels``, rounded, at least 1: the size rule of
        ``like_size``."""
        return max(1, round(channels * ratio))
