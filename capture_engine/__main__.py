"""Entry point of `python -m capture_engine`."""
from __future__ import annotations

import sys

from capture_engine.cli import main

if __name__ == "__main__":
    sys.exit(main())
