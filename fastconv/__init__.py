"""fastconv: fast convolution building blocks for Keras 3."""

from fastconv import cost
from fastconv.cost import Cost, conv2d_cost
from fastconv.layers import BaseFastConv, CPConv2D

__version__ = "0.1.0"

__all__ = ["BaseFastConv", "CPConv2D", "Cost", "conv2d_cost", "cost", "__version__"]
