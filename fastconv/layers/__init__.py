"""fastconv's drop-in Keras layers, one public class per file."""

from fastconv.layers.base import BaseFastConv
from fastconv.layers.bottleneck_conv2d import BottleneckConv2D
from fastconv.layers.cp_conv2d import CPConv2D
from fastconv.layers.depthwise_separable_conv2d import DepthwiseSeparableConv2D
from fastconv.layers.factorized_conv2d import FactorizedConv2D
from fastconv.layers.low_rank_dense import LowRankDense
from fastconv.layers.stacked_conv2d import StackedConv2D
from fastconv.layers.tucker_conv2d import TuckerConv2D
from fastconv.layers.wide_conv2d import WideConv2D, wide_replacement

__all__ = [
    "BaseFastConv",
    "BottleneckConv2D",
    "CPConv2D",
    "DepthwiseSeparableConv2D",
    "FactorizedConv2D",
    "LowRankDense",
    "StackedConv2D",
    "TuckerConv2D",
    "WideConv2D",
    "wide_replacement",
]
