"""``python -m multimeter``: the ``multimeter`` command line (see :mod:`multimeter._cli`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from multimeter._cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
