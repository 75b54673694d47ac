"""``python -m fastconv.cli``: the ``fastconv`` command, without the quiet start.

By the time this runs, ``import fastconv`` has imported TensorFlow, so its
start-up lines are already printed; the ``fastconv`` console script
(`fastconv_launch.main`) keeps them out.
"""

import sys

from fastconv.cli import main

sys.exit(main())
