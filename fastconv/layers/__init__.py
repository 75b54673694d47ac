"""fastconv's drop-in Keras layers, one public class per file."""

from fastconv.layers.base import BaseFastConv
from fastconv.layers.cp_conv2d import CPConv2D

__all__ = ["BaseFastConv", "CPConv2D"]
