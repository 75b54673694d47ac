"""fastconv's drop-in Keras layers, one public class per file."""

from fastconv.layers.base import BaseFastConv
from fastconv.layers.bottleneck_conv import BottleneckConv1D, BottleneckConv3D
from fastconv.layers.bottleneck_conv2d import BottleneckConv2D
from fastconv.layers.cp_conv import CPConv1D, CPConv3D
from fastconv.layers.cp_conv2d import CPConv2D
from fastconv.layers.depthwise_separable_conv import (
    DepthwiseSeparableConv1D,
    DepthwiseSeparableConv3D,
)
from fastconv.layers.depthwise_separable_conv2d import DepthwiseSeparableConv2D
from fastconv.layers.factorized_conv2d import FactorizedConv2D
from fastconv.layers.factorized_conv3d import FactorizedConv3D
from fastconv.layers.low_rank_dense import LowRankDense
from fastconv.layers.stacked_conv2d import StackedConv2D
from fastconv.layers.tucker_conv import TuckerConv1D, TuckerConv3D
from fastconv.layers.tucker_conv2d import TuckerConv2D
from fastconv.layers.tucker_conv2d_transpose import TuckerConv2DTranspose
from fastconv.layers.wide_conv2d import WideConv2D, wide_replacement

__all__ = [
    "BaseFastConv",
    "BottleneckConv1D",
    "BottleneckConv2D",
    "BottleneckConv3D",
    "CPConv1D",
    "CPConv2D",
    "CPConv3D",
    "DepthwiseSeparableConv1D",
    "DepthwiseSeparableConv2D",
    "DepthwiseSeparableConv3D",
    "FactorizedConv2D",
    "FactorizedConv3D",
    "LowRankDense",
    "StackedConv2D",
    "TuckerConv1D",
    "TuckerConv2D",
    "TuckerConv2DTranspose",
    "TuckerConv3D",
    "WideConv2D",
    "wide_replacement",
]
