"""Which fused computation a task's loss or metric allows: read from its declared ``kind``.

A task's loss and metric are plain functions; the registry's own declare what they compute
(:func:`budgetsched.bench.tasks.registry.declare_kind`), so the kernels may compute them in closed form (softmax
cross-entropy and its gradient ``(softmax - onehot) / B``; the error of an argmax; bits per character from the
per-token cross-entropy). A function that declares nothing is called as it is (with ``torch.func`` for its
gradient): the kernels never recognise a function by identity.
"""
from __future__ import annotations

from typing import Any, Callable

__all__ = ["CROSS_ENTROPY", "ERROR_PERCENT", "BITS_PER_CHAR", "kind_of"]

#: Mean softmax cross-entropy of logits [..., C] against class indices (over the batch and any positions).
CROSS_ENTROPY = "cross_entropy"
#: Per-example classification error in percent: 100 x (argmax of the logits != class).
ERROR_PERCENT = "error_percent"
#: Per-sequence mean cross-entropy in bits (logits [N, T, V], ids [N, T]).
BITS_PER_CHAR = "bits_per_char"


def kind_of(fn: Callable[..., Any]) -> str | None:
    """What ``fn`` declares it computes (its ``kind`` attribute), or None."""
    kind = getattr(fn, "kind", None)
    return kind if isinstance(kind, str) else None
