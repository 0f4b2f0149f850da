"""`python -m seqmix.train.tools.sweep FILE …`: same as `seqmix sweep FILE …`."""

import sys

from .main import run_cli

sys.exit(run_cli())
