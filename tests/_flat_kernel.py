"""Run the batched engine's flat optimizer kernel step by step, as the engine does (columns built per epoch)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch


def flat_steps(spec: Any, p0: torch.Tensor, grads: Sequence[torch.Tensor], lrs: np.ndarray, moms: np.ndarray | None,
               wd: float, epochs: Sequence[range] | None = None) -> list[torch.Tensor]:
    """Parameters ``[K, N]`` after each step of ``spec``'s kernel (an OptimizerSpec or ScheduleFreeSpec) from ``p0``
    with ``grads[s]``; ``lrs`` / ``moms``: ``[S, K]`` per step and member; ``epochs``: the step ranges whose columns
    are built together (default: one range of every step)."""
    flat, state, out = p0.clone(), spec.init_state(p0), []
    for r in epochs or [range(len(grads))]:
        steps = np.arange(r.start, r.stop)
        cols = spec.columns(lrs[steps], None if moms is None else moms[steps], steps, "cpu", torch.float64)
        for i, s in enumerate(steps):
            with torch.no_grad():
                spec.update(flat, grads[s].clone(), state, cols, i, wd)
            out.append(flat.clone())
    return out
