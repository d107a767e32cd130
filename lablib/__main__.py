"""``python -m lablib capture|dissect|serve``: the command line lives in :mod:`lablib.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
