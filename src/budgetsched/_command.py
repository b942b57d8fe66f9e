"""The ``budgetsched`` console script: the command of :mod:`budgetsched.cli`, or one line naming the bench extra.

The command runs the harness (``budgetsched.bench``), which needs the ``bench`` extra. Without it, importing
:mod:`budgetsched.cli` fails, so the script's entry point is this module: ``--version`` still answers, and every
other use prints ``budgetsched: error: ... pip install 'budgetsched[bench]'`` and exits with 2.
"""
from __future__ import annotations

import sys
from typing import Sequence

from budgetsched import MissingExtraError, __version__


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from budgetsched.cli import main as cli_main
    except MissingExtraError as e:
        if e.extra != "bench":
            raise
        args = sys.argv[1:] if argv is None else list(argv)
        if args == ["--version"]:
            print(f"budgetsched {__version__}")
            return 0
        sys.stderr.write(f"budgetsched: error: the budgetsched command needs the bench extra "
                         f"(missing: {', '.join(e.missing)}): pip install 'budgetsched[bench]'\n")
        return 2
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
