"""`python -m handler COMMAND`: the entry the launcher calls."""
import sys

from handler.main import main

sys.exit(main(sys.argv[1:]))
