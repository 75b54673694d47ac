"""fastconv: fast convolution building blocks for Keras 3."""

# First, before Keras: ``python -m fastconv.cli`` refuses a KERAS_BACKEND that
# Keras cannot start on in one line, not a traceback (see the module).
import fastconv_launch.python_m  # noqa: F401
from fastconv import cost, export, kernels
from fastconv.convert import (
    ConversionAccuracyWarning,
    ConversionReport,
    ConversionResult,
    SensitivityResult,
    convert_model,
    decompose,
    finetune,
    fold_batchnorm,
    recalibrate_batchnorm,
    sensitivity,
    suggest_replacements,
)
from fastconv.cost import Cost, conv2d_cost
from fastconv.export import QuantizationAccuracyWarning, export_model
from fastconv.kernels import keep_freed_memory
from fastconv.layers import (
    BaseFastConv,
    BottleneckConv1D,
    BottleneckConv2D,
    BottleneckConv3D,
    CPConv1D,
    CPConv2D,
    CPConv3D,
    DepthwiseSeparableConv1D,
    DepthwiseSeparableConv2D,
    DepthwiseSeparableConv3D,
    FactorizedConv2D,
    FactorizedConv3D,
    LowRankDense,
    StackedConv2D,
    TuckerConv1D,
    TuckerConv2D,
    TuckerConv2DTranspose,
    TuckerConv3D,
    WideConv2D,
    wide_replacement,
)

# fastconv.profile stays the package; its function is fastconv.profile_model
# (see fastconv/profile/__init__.py for why).
from fastconv.profile import profile as profile_model

__version__ = "0.1.0"

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
    "ConversionAccuracyWarning",
    "ConversionReport",
    "ConversionResult",
    "convert_model",
    "decompose",
    "finetune",
    "fold_batchnorm",
    "recalibrate_batchnorm",
    "SensitivityResult",
    "sensitivity",
    "Cost",
    "conv2d_cost",
    "cost",
    "export",
    "export_model",
    "QuantizationAccuracyWarning",
    "kernels",
    "keep_freed_memory",
    "profile_model",
    "suggest_replacements",
    "__version__",
]
