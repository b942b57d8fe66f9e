"""budgetsched.bench: the REX paper's budgeted-training protocol as studies (config -> trials -> store -> report).

Your own model, three ways (docs/your-model.md):

* a :class:`Task` (data, model, loss, metric, 100 % run), given to ``budgetsched run --task module:factory``;
* a training function decorated with :func:`trainable` (your loop; budgetsched gives each trial its optimizer and
  schedule and stores what it returns);
* a Hugging Face ``Trainer`` or Lightning run inside such a function (``budgetsched.integrations``).
"""
from budgetsched import _require

# the harness needs the bench extra; one line naming it if any of its packages is missing
_require("budgetsched.bench", "bench", "torch", "matplotlib", "rich", "sklearn", "scipy", "mnist1d")

from budgetsched.bench import _moved

_moved.install()  # the modules' old flat paths (budgetsched.bench.report, ...) keep working

from budgetsched.bench.tasks.custom import Diverged, Trainable, trainable  # noqa: E402

__all__ = ["Task", "TaskData", "register_task", "trainable", "Trainable", "Trial", "Diverged", "StudySpec",
           "run_study", "Store"]


def __getattr__(name: str):  # the torch-heavy parts load on first use
    if name in ("Task", "TaskData", "register_task"):
        from budgetsched.bench.tasks import registry

        return getattr(registry, name)
    if name == "Trial":
        from budgetsched.bench.engines.trainable import Trial

        return Trial
    if name == "StudySpec":
        from budgetsched.bench.protocol.study import StudySpec

        return StudySpec
    if name == "run_study":
        from budgetsched.bench.execution.runners import run_study

        return run_study
    if name == "Store":
        from budgetsched.bench.storage.store import Store

        return Store
    raise AttributeError(f"module 'budgetsched.bench' has no attribute {name!r}")
