"""``python -m ocilab``: the command line."""

import sys

from ocilab.cli import main

sys.exit(main())
