"""``python -m budgetsched``: the ``budgetsched`` command."""
import sys

from budgetsched._command import main  # one line naming the bench extra when it is missing

sys.exit(main())
