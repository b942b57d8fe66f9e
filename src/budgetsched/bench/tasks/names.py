"""The built-in tasks' names, without torch: what a study may name before any framework is loaded.

:mod:`budgetsched.bench.tasks.registry` builds these tasks (and imports torch to do it); the study spec checks a
name against this tuple first, so a misspelled task is answered in a fraction of a second
(``tests/test_cli_edges.py`` checks that this tuple and the registry's built-in tasks are the same, in order).
"""
from __future__ import annotations

import sys

__all__ = ["BUILTIN_TASKS", "known_tasks"]

#: The offline suite (v1), the REX paper's settings (Table 3), then suite v2's tasks, in the registry's order.
BUILTIN_TASKS = ("mnist1d-mlp", "mnist1d-cnn", "digits-mlp", "digits-vae", "shakespeare-char",
                 "cifar10-resnet20", "cifar100-vgg16", "mnist-vae", "stl10-wrn",
                 "mnist1d-mlp-v2", "mnist1d-cnn-v2", "digits-mlp-v2", "digits-vae-v2", "shakespeare-mlp")


def known_tasks() -> tuple[str, ...]:
    """Every task name usable in this process: the built-in ones, and those registered with ``register_task``.

    A task can only have been registered if the registry is loaded, so it is read only when it already is: asking
    never imports torch.
    """
    registry = sys.modules.get("budgetsched.bench.tasks.registry")
    if registry is None:
        return BUILTIN_TASKS
    return tuple(registry.available_tasks())
