"""``python -m spectral_sweep.report SWEEP_DIR... [--out DIR] [--quiet]``."""

import sys

from .write import main

sys.exit(main())
