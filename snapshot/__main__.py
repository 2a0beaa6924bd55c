"""`python -m snapshot`: run a snapshot, list recovery points, restore disks."""
from __future__ import annotations

import sys

from snapshot.cli import main

if __name__ == "__main__":
    sys.exit(main())
