"""`python -m connectivity`: run a check from the command line."""
from __future__ import annotations

import sys

from connectivity.cli import main

sys.exit(main())
