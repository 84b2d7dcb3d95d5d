"""`python -m maskbnn`: the `maskbnn` command (torchrun starts its processes this way: `-m maskbnn`)."""

import sys

from maskbnn.cli import main

sys.exit(main())
