"""`python -m seqmix.train.tools.bench`: the same as `seqmix bench`."""

import sys

from .cli import main

sys.exit(main())
