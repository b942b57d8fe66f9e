"""Tasks: what a trial trains and how it is scored.

``registry`` (the :class:`Task` type, losses and metrics, built-in tasks, ``module:factory`` / ``file.py:factory``
references), ``data`` (offline loaders), ``models`` (the tasks' networks) and ``custom`` (``@trainable``: a user's
own training loop as a task). The registry imports torch, so its names load on first use: ``budgetsched.bench``
itself (and the study spec above it) stays importable without torch.
"""
from __future__ import annotations

from typing import Any

_REGISTRY_NAMES = ("Task", "TaskData", "get_task", "available_tasks", "register_task", "resolve_task",
                   "cross_entropy", "error_percent", "bits_per_char", "vae_neg_elbo", "vae_loss")

__all__ = ["Task", "TaskData", "get_task", "available_tasks", "register_task", "resolve_task"]


def __getattr__(name: str) -> Any:
    if name in _REGISTRY_NAMES:
        from budgetsched.bench.tasks import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'budgetsched.bench.tasks' has no attribute {name!r}")
