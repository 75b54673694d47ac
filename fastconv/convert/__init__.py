"""From trained Keras models to fast ones: `decompose`, `convert_model`, `finetune`,
`sensitivity`.

Floor 3 of fastconv: the one place where the decompositions
(`fastconv.decomposition`) and the layers (`fastconv.layers`) meet.
"""

from fastconv.convert.convert_model import ConversionResult, convert_model
from fastconv.convert.decompose import Decomposition, decompose, parse_rank
from fastconv.convert.finetune import finetune
from fastconv.convert.report import ConversionReport, LayerReport
from fastconv.convert.sensitivity import (
    SensitivityResult,
    SensitivityRow,
    sensitivity,
)

__all__ = [
    "ConversionReport",
    "ConversionResult",
    "Decomposition",
    "LayerReport",
    "convert_model",
    "decompose",
    "finetune",
    "parse_rank",
    "SensitivityResult",
    "SensitivityRow",
    "sensitivity",
]
