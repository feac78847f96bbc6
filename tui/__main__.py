"""``python -m tui``: the same as ``chat-tui``."""

import sys

from .cli.entry import main

if __name__ == "__main__":
    sys.exit(main())
