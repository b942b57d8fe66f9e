"""budgetsched: budget-aware learning-rate schedules (REX and friends) and the REX paper's benchmark harness.

A schedule is a *profile* m(z) of progress z in [0, 1] times a *sampling rate* (Chen, Wolfe, Kyrillidis,
"REX: Revisiting Budgeted Training with an Improved Schedule", MLSys 2022).

>>> from budgetsched import Schedule
>>> Schedule("rex", total_steps=1000, peak_lr=0.1)(500)  # 0.1 * 2/3
0.06666666666666667

The core (this package: profiles, sampling rates, :class:`Schedule`, :class:`Plateau`, errors) needs numpy only.
Each adapter needs its framework, installed with an extra: ``budgetsched.torch`` (``budgetsched[torch]``),
``budgetsched.optax`` (``[jax]``), ``budgetsched.keras`` (``[keras]``), ``budgetsched.integrations.hf``
(``[hf]``), ``budgetsched.integrations.lightning`` (``[lightning]``) and the harness ``budgetsched.bench`` and the
``budgetsched`` command (``[bench]``). Importing one without its framework raises :class:`MissingExtraError`
(a ``ModuleNotFoundError``) that names the extra to install.
"""
from importlib.util import find_spec as _find_spec

from .plateau import Plateau
from .profiles import available, get_profile
from .sampling import Sampling, parse_sampling
from .schedule import Schedule

__version__ = "0.1.0"
__all__ = ["Schedule", "Plateau", "Sampling", "available", "get_profile", "parse_sampling", "__version__"]
# budgetsched.MissingExtraError is importable too, but not star-exported: catching ImportError is enough

# import name -> distribution name, where they differ (for the message)
_DISTRIBUTIONS = {"sklearn": "scikit-learn"}


class MissingExtraError(ModuleNotFoundError):
    """An adapter or the harness was imported without its framework; the message names the extra to install.

    ``extra`` is the extra's name (``pip install 'budgetsched[<extra>]'``), ``missing`` the missing modules.
    """

    def __init__(self, what: str, extra: str, missing: list[str]) -> None:
        names = ", ".join(_DISTRIBUTIONS.get(m, m) for m in missing)
        super().__init__(f"{what} needs {names}, not installed here: pip install 'budgetsched[{extra}]'",
                         name=missing[0])
        self.extra, self.missing = extra, list(missing)


def _require(what: str, extra: str, *modules: str) -> None:
    """Raise :class:`MissingExtraError` if any of the top-level ``modules`` cannot be found (nothing is imported)."""
    missing = [m for m in modules if _find_spec(m) is None]
    if missing:
        raise MissingExtraError(what, extra, missing)
