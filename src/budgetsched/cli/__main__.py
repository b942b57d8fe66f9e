"""``python -m budgetsched.cli``: the ``budgetsched`` command."""
import sys

from budgetsched.cli import main

sys.exit(main())
