"""Batched engine: K trials of one group (same task, optimizer, budget) trained as one stacked model.

Every member is built exactly as the sequential engine builds it (seed, then ``task.make_model()``) and trained by
the same loop (:func:`budgetsched.bench.engines.train.fit`) with its own LR schedule, momentum / beta1, optimizer state,
plateau and divergence record, so each member's result equals its sequential run up to floating-point reduction
order. What is shared is the work: one forward, one backward and one optimizer update per step for all K members
(:class:`budgetsched.bench.engines.stacked.StackedModel`), and one batch per seed: members are ordered by seed, so the
members of one seed read one input batch (for MLPs, their first layer is one wide matmul).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import torch

from budgetsched.bench.protocol.grid import TrialConfig, group_key
from budgetsched.bench.protocol.plan import PlannedTrial, as_planned
from budgetsched.bench.engines.stacked import StackedModel, check_stacking
from budgetsched.bench.engines.train import TrialResult, lr_plan, place, run_members

__all__ = ["supports", "train_group", "chunks_by_seed"]


def supports(task: Any, data: Any = None) -> bool:
    """True if the task's model can be stacked: ``task.batchable`` when the task says, else (``None``, the default
    for a user's task) tried on a few training examples: two stacked copies must give each copy's own loss and
    gradient, with no buffers, no dropout and no BatchNorm. Without data to try, False (sequential engine)."""
    declared = getattr(task, "batchable", False)
    if declared is not None:
        return bool(declared)
    if data is None:
        return False
    try:
        return _stacks(task, data)
    except Exception:  # anything the stacked forward cannot do: the sequential engine can
        return False


def _stacks(task: Any, data: Any) -> bool:
    from torch import nn

    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(task.make_model())
    if any(isinstance(m, (nn.Dropout, nn.modules.batchnorm._BatchNorm)) for m in models[0].modules()) or \
            any(True for _ in models[0].buffers()):
        return False
    x, y = data.train_x[:4], data.train_y[:4]
    aug = getattr(task, "augment", None)
    if aug is not None:
        x = aug(x, torch.Generator().manual_seed(0))
    from budgetsched.bench.engines.stacked import SingleModel

    singles = [SingleModel(m, task, "cpu").loss_and_grad(x[None], y[None]) for m in models]
    torch.manual_seed(0)
    models = [task.make_model()]
    torch.manual_seed(1)
    models.append(task.make_model())
    losses, grads = StackedModel(models, [0, 0], task, "cpu").loss_and_grad(x[None], y[None])
    return all(torch.allclose(losses[k], singles[k][0][0], rtol=1e-4, atol=1e-5) and
               torch.allclose(grads[k], singles[k][1][0], rtol=1e-3, atol=1e-5) for k in range(2))


def chunks_by_seed(configs: list[TrialConfig], chunk_size: int) -> list[list[TrialConfig]]:
    """The configs ordered by seed (stable) and cut into the fewest chunks of at most ``chunk_size``, of equal
    size as far as possible, so that the members of a seed stay together."""
    ordered = sorted(configs, key=lambda c: c.seed)
    n = -(-len(ordered) // chunk_size) if ordered else 0
    bounds = [round(i * len(ordered) / n) for i in range(n + 1)] if n else [0]
    return [ordered[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def train_group(configs: Iterable[TrialConfig | PlannedTrial], task: Any, data: Any, device: str | torch.device = "cpu",
                chunk_size: int = 64, *, stacking: str = "auto",
                on_epoch: Callable[[int], None] | None = None) -> Iterator[tuple[TrialConfig, TrialResult]]:
    """Train trials of one group together; yield ``(config, result)`` per trial as each chunk finishes.

    Args:
        configs: planned trials (or configs, planned here) sharing ``grid.group_key`` (task, optimizer, budget).
        task, data: the task and its data (as for ``train_trial``).
        device: where the stacked model and the data live.
        chunk_size: models trained at once (bounds memory); results of a chunk are yielded when it finishes.
        stacking: forward implementation, one of ``STACKINGS`` (results agree; speed differs).
        on_epoch: called with the model-steps trained after every epoch of a chunk (progress).

    Raises:
        ValueError: (at call time, before any training) the configs do not share one group, are for another task,
            the task is not batchable, or chunk_size / stacking is invalid.
    """
    items = list(configs)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    check_stacking(stacking)  # here too: a bad name would otherwise fail every chunk as a failed trial
    if not supports(task, data):
        raise ValueError(f"task {task.name!r} is not batchable (its model has per-batch state); "
                         "use the sequential engine")
    planned = [as_planned(c, task, len(data.train_y)) for c in items]
    configs = [p.config for p in planned]
    keys = sorted({group_key(c) for c in configs}, key=str)
    if len(keys) > 1:
        raise ValueError(f"configs must share one (task, optimizer, budget) group, got {len(keys)}: {keys}")
    if configs and configs[0].task != task.name:
        raise ValueError(f"configs are for task {configs[0].task!r} but the task given is {task.name!r}")
    return _run(planned, task, data, device, chunk_size, stacking, on_epoch)


def _run(planned: list[PlannedTrial], task: Any, data: Any, device: str | torch.device, chunk_size: int,
         stacking: str, on_epoch: Callable[[int], None] | None) -> Iterator[tuple[TrialConfig, TrialResult]]:
    placed: dict[torch.dtype, Any] = {}  # data moved to the device once per dtype
    by_config = {p.config: p for p in planned}
    for chunk in chunks_by_seed(list(by_config), chunk_size):
        yield from zip(chunk, _train_chunk([by_config[c] for c in chunk], task, data, device, placed, stacking,
                                           on_epoch))


def _train_chunk(trials: list[PlannedTrial], task: Any, data: Any, device: str | torch.device,
                 placed: dict[torch.dtype, Any], stacking: str,
                 on_epoch: Callable[[int], None] | None) -> list[TrialResult]:
    chunk = [p.config for p in trials]
    out: list[TrialResult | None] = [None] * len(chunk)
    members, plans, models = [], [], []
    for i, c in enumerate(chunk):  # a member whose setup fails is reported failed; the rest train on
        try:
            plan = lr_plan(trials[i])
            torch.manual_seed(c.seed)
            model = task.make_model()
        except Exception as e:
            out[i] = TrialResult.failed(f"{type(e).__name__}: {e}")
            continue
        members.append(i)
        plans.append(plan)
        models.append(model)
    if members:
        seeds = [chunk[i].seed for i in members]
        group = [list(dict.fromkeys(seeds)).index(s) for s in seeds]
        try:
            stack = StackedModel(models, group, task, device, stacking)
            dtype = stack.flat.dtype
            if dtype not in placed:
                placed[dtype] = place(data, device, dtype)
            results = run_members([chunk[i] for i in members], plans, stack, task, placed[dtype], on_epoch)
        except Exception as e:  # the stack could not be built (e.g. out of memory): every member failed
            results = [TrialResult.failed(f"{type(e).__name__}: {e}") for _ in members]
        for i, r in zip(members, results):
            out[i] = r
    return out  # type: ignore[return-value]
