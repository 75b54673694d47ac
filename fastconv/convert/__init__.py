"""From trained Keras models to fast ones: `decompose`, `convert_model`, `finetune`,
`fold_batchnorm`, `sensitivity`.

Floor 3 of fastconv: the one place where the decompositions
(`fastconv.decomposition`) and the layers (`fastconv.layers`) meet, and where a
profile (`fastconv.profile`) meets the layers: `suggest_replacements`.
"""

from fastconv.convert.convert_model import (
    ConversionAccuracyWarning,
    ConversionResult,
    convert_model,
)
from fastconv.convert.decompose import Decomposition, decompose, parse_rank
from fastconv.convert.finetune import finetune, recalibrate_batchnorm
from fastconv.convert.fold import (
    FoldedBatchNormalization,
    FoldReport,
    FoldResult,
    fold_batchnorm,
)
from fastconv.convert.report import ConversionReport, LayerReport
from fastconv.convert.sensitivity import (
    SensitivityResult,
    SensitivityRow,
    sensitivity,
)
from fastconv.convert.suggest import (
    DEFAULT_CANDIDATES,
    Candidate,
    Suggestion,
    candidate_layer,
    suggest_replacements,
)

__all__ = [
    "DEFAULT_CANDIDATES",
    "Candidate",
    "ConversionAccuracyWarning",
    "ConversionReport",
    "ConversionResult",
    "Decomposition",
    "FoldedBatchNormalization",
    "FoldReport",
    "FoldResult",
    "LayerReport",
    "Suggestion",
    "candidate_layer",
    "convert_model",
    "decompose",
    "finetune",
    "fold_batchnorm",
    "recalibrate_batchnorm",
    "parse_rank",
    "suggest_replacements",
    "SensitivityResult",
    "SensitivityRow",
    "sensitivity",
]
