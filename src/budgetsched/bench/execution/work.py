"""One chunk trained wherever it runs (this process, a worker process, a Ray task): the engine its kind names,
with the task's data from this process's cache."""
from __future__ import annotations

from typing import Any, Callable, Iterator

from budgetsched.bench.execution.chunks import Chunk
from budgetsched.bench.execution.context import ExecutionContext, process_state
from budgetsched.bench.protocol.grid import TrialConfig

__all__ = ["iter_chunk", "run_chunk"]


def iter_chunk(kind: str, chunk: Chunk, ctx: ExecutionContext, on_epoch: Callable[[int], None] | None = None
               ) -> Iterator[tuple[TrialConfig, Any]]:
    """Train one chunk of planned trials, yielding (config, result) as the engine produces them; ``on_epoch(n)``
    hears of the model-steps trained as each epoch ends."""
    task, data = process_state().cache.load(chunk[0].config.task, ctx.data_dir, ctx.cache_dir)
    device = ctx.device
    if data is None:  # a trainable
        from budgetsched.bench.engines.trainable import run_trainable

        for p in chunk:
            yield p.config, run_trainable(p, task)
        return
    if kind == "schedule-free":
        from budgetsched.bench.engines.schedulefree import train_schedule_free

        yield from train_schedule_free(chunk, task, data, device)
        return
    if kind == "anytime":
        from budgetsched.bench.engines.anytime import train_anytime

        yield from train_anytime(chunk, task, data, device, ctx.chunk_size, ctx.checkpoint_dir, on_epoch)
        return
    if kind == "batched":
        from budgetsched.bench.engines import batched

        yield from batched.train_group(chunk, task, data, device, ctx.chunk_size, on_epoch=on_epoch)
    else:
        from budgetsched.bench.engines.train import place, train_trial

        placed = None
        for p in chunk:
            if placed is None and device != "cpu":
                import torch

                placed = place(data, device, torch.get_default_dtype())
            yield p.config, train_trial(p, task, data, device, placed=placed, on_epoch=on_epoch)


def run_chunk(kind: str, chunk: Chunk, ctx: ExecutionContext) -> list[tuple[TrialConfig, Any]]:
    """A whole chunk's results (what a worker process or a Ray task sends back); progress goes to this process's
    reporter, if it has one."""
    return list(iter_chunk(kind, chunk, ctx, process_state().progress))
