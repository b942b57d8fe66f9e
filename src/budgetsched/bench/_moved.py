"""Where the harness's modules moved when ``budgetsched.bench`` was split into folders.

``import budgetsched.bench.report`` (and ``from budgetsched.bench import report``) keep working: the old name is
an alias of the module in its new home, the same object, so monkeypatching either name patches both.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

#: old module name under ``budgetsched.bench`` -> its home now
MOVED = {
    "status": "protocol.status", "grid": "protocol.grid", "study": "protocol.study", "presets": "protocol.presets",
    "data": "tasks.data", "models": "tasks.models", "custom": "tasks.custom",
    "optim": "engines.optim", "train": "engines.train", "stacked": "engines.stacked", "kernels": "engines.kernels",
    "batched": "engines.batched", "anytime": "engines.anytime", "schedulefree": "engines.schedulefree",
    "store": "storage.store", "runners": "execution.runners",
    "stats": "analysis.stats", "report": "rendering.report", "advise": "analysis.advise",
    "experiments": "analysis.experiments", "refine": "analysis.refine",
    "plots": "rendering.plots",
}
_PREFIX = "budgetsched.bench."


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``budgetsched.bench.<old>`` and hands back the module of its new home."""

    def find_spec(self, fullname: str, path: object = None, target: object = None):  # noqa: D401
        if fullname.startswith(_PREFIX) and fullname[len(_PREFIX):] in MOVED:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(_PREFIX + MOVED[spec.name[len(_PREFIX):]])

    def exec_module(self, module: ModuleType) -> None:  # the real module is already executed
        pass


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
