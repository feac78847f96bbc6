"""``python -m tui.cli``: the same as ``chat-tui``."""

import sys

from .entry import main

if __name__ == "__main__":
    sys.exit(main())
