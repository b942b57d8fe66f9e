"""Anytime branching: one trunk per (LR, seed), a short branch per budget (Hägele et al. 2024).

A warmup-stable-decay run (``wsd``) is the same at every budget until its cooldown starts: warmup (fixed steps),
then the peak LR. So the trials of one (task, optimizer, LR, seed) that differ only in budget share a *trunk*:
train it once, at the peak, to the last budget's cooldown start; at each budget's cooldown start take a snapshot and
train a *branch* from it through that budget's cooldown. Each branch is exactly the trial a separate run of that
budget would be (same weights, optimizer state, data order and augmentation draws at the branch point; the tests
check it), at a fraction of the compute: with 20 % cooldowns the six paper budgets cost 0.8 + 0.2 x 1.91 = 1.18
full runs instead of 1.91.

The branch point of a budget is where its LR first departs from the longest budget's LR (for ``wsd``: the first
step of its cooldown), so any schedule family whose runs share a prefix branches correctly; for others the trunk is
empty and every budget is its own run.

Snapshots are written to ``checkpoint_dir`` (one file per trunk and branch point) as they are taken, so a study
killed mid-trunk resumes from its last snapshot instead of from scratch.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from budgetsched.bench.protocol.grid import CHANGE_PARAMS, SCHEDULE_FREE, TrialConfig
from budgetsched.bench.protocol.plan import PlannedTrial, as_planned
from budgetsched.bench.engines.train import Batches, Members, Plan, Snapshot, TrialResult, fit, lr_plan, place

__all__ = ["trunk_key", "trunk_plan", "branch_points", "train_anytime", "anytime_model_steps"]


def trunk_key(c: TrialConfig) -> tuple:
    """Trials with equal trunk keys share a trunk (they differ only in budget)."""
    return (c.task, c.optimizer, c.lr, c.seed, c.schedule, c.schedule_params, c.budget_unit, c.diverge_factor)


def trunk_plan(config: TrialConfig, total: int) -> tuple[np.ndarray, np.ndarray | None]:
    """LR (and momentum) of the trunk: the trial's schedule as if its run were twice the longest budget, whose
    prefix every budget shares until it departs (for ``wsd``: until its cooldown)."""
    from budgetsched import Schedule

    s = Schedule(config.schedule, 2 * total, peak_lr=config.lr, **config.params)
    return s.values(), s.momentum_values()


@functools.lru_cache(maxsize=256)
def shares_prefix(schedule: str, schedule_params: tuple[tuple[str, Any], ...]) -> bool:
    """Whether runs of different budgets of this schedule start alike (their LR and momentum agree on the first
    steps), so a trunk can serve them: true for ``wsd``, ``step``, ``constant``, any ``delay=``; false for profiles
    that start decaying at once (``rex``, ``linear``, ``cosine``...), which gain nothing from branching."""
    from budgetsched import Schedule

    params = {k: list(v) if isinstance(v, tuple) else v for k, v in schedule_params}
    a, b = (Schedule(schedule, t, peak_lr=1.0, **params) for t in (1000, 2000))
    same = bool(np.array_equal(a.values()[:8], b.values()[:8]))
    ma, mb = a.momentum_values(), b.momentum_values()
    return same and (ma is None or bool(np.array_equal(ma[:8], mb[:8])))


def branch_points(plans: dict[TrialConfig, Plan], trunk: tuple[np.ndarray, np.ndarray | None]
                  ) -> dict[TrialConfig, int]:
    """Each config's branch point: the first step at which its LR (or momentum) departs from the trunk's."""
    lrs, moms = trunk
    out = {}
    for c, p in plans.items():
        same = p.lrs == lrs[:p.total_steps]
        if p.momenta is not None and moms is not None:
            same &= p.momenta == moms[:p.total_steps]
        out[c] = int(np.argmin(same)) if not same.all() else p.total_steps
    return out


def anytime_model_steps(totals: Sequence[int], points: Sequence[int]) -> tuple[int, int]:
    """(model-steps with branching, model-steps of separate runs) for one trunk with these budgets."""
    return max(points) + sum(t - s for t, s in zip(totals, points)), sum(totals)


def _ckpt_name(c: TrialConfig, step: int) -> str:
    blob = json.dumps([str(x) for x in trunk_key(c)], sort_keys=True)
    return f"trunk-{hashlib.sha256(blob.encode()).hexdigest()[:20]}-{step}.pt"


def _split(snap: Snapshot, k: int, group: int) -> dict[str, Any]:
    """Member k's part of a snapshot (its rows, its seed group's data streams, its record)."""
    r = snap.record
    return {"step": snap.step, "flat": snap.flat[k].clone(), "state": [t[k].clone() for t in snap.state],
            "orders": snap.batches["orders"][group],
            "aug": None if snap.batches["aug"] is None else snap.batches["aug"][group],
            "losses": [x[k].clone() for x in snap.losses], "norms": [x[k].clone() for x in snap.norms],
            "record": {"status": r["status"][k], "steps": int(r["steps"][k]), "curves": r["curves"][k],
                       "alive": bool(r["alive"][k]), "scale": float(r["scale"][k]),
                       "first_loss": None if r["first_loss"] is None else float(r["first_loss"][k]),
                       "train_loss": float(r["train_loss"][k]), "grad_norm": float(r["grad_norm"][k]),
                       "plateau": r["plateaus"][k]}}


def _join(parts: list[dict[str, Any]], groups: list[int]) -> Snapshot:
    """The snapshot of K members from their parts (members ordered as ``groups``, one part per member)."""
    first_of = {g: k for k, g in reversed(list(enumerate(groups)))}
    rec = [p["record"] for p in parts]
    record = {"status": [r["status"] for r in rec], "steps": np.array([r["steps"] for r in rec], dtype=np.int64),
              "curves": [r["curves"] for r in rec], "alive": np.array([r["alive"] for r in rec]),
              "scale": np.array([r["scale"] for r in rec]),
              "first_loss": None if rec[0]["first_loss"] is None else np.array([r["first_loss"] for r in rec]),
              "train_loss": np.array([r["train_loss"] for r in rec]),
              "grad_norm": np.array([r["grad_norm"] for r in rec]), "plateaus": [r["plateau"] for r in rec]}
    n_groups = max(groups) + 1
    batches = {"orders": [parts[first_of[g]]["orders"] for g in range(n_groups)],
               "aug": None if parts[0]["aug"] is None else [parts[first_of[g]]["aug"] for g in range(n_groups)]}
    n_losses = len(parts[0]["losses"])
    return Snapshot(parts[0]["step"], torch.stack([p["flat"] for p in parts]),
                    [torch.stack([p["state"][i] for p in parts]) for i in range(len(parts[0]["state"]))],
                    batches, [torch.stack([p["losses"][i] for p in parts]) for i in range(n_losses)],
                    [torch.stack([p["norms"][i] for p in parts]) for i in range(n_losses)], record)


def train_anytime(configs: Sequence[TrialConfig | PlannedTrial], task: Any, data: Any, device: str | torch.device = "cpu",
                  chunk_size: int = 64, checkpoint_dir: str | os.PathLike[str] | None = None,
                  on_epoch: Callable[[int], None] | None = None, counter: list[int] | None = None
                  ) -> Iterator[tuple[TrialConfig, TrialResult]]:
    """Train ``configs`` (planned trials, or configs planned here; one task, optimizer and budget unit; any LRs,
    seeds, budgets) by trunks and branches;
    yield ``(config, result)`` per trial. ``counter[0]`` accumulates the model-steps actually trained."""
    from budgetsched.bench.engines.batched import chunks_by_seed, supports
    from budgetsched.bench.engines.stacked import SingleModel, StackedModel

    n = len(data.train_y)
    planned = {p.config: p for p in (as_planned(c, task, n) for c in configs)}
    configs = list(planned)
    if len({(c.task, c.optimizer, c.budget_unit) for c in configs}) > 1:
        raise ValueError("train_anytime takes trials of one task, optimizer and budget unit")
    odd = sorted({c.label for c in configs if c.schedule in ("plateau", SCHEDULE_FREE) or
                  any(k in c.params for k in CHANGE_PARAMS)})
    if odd:
        raise ValueError(f"anytime branching needs closed-form schedules; {', '.join(odd)} cannot branch")
    trunks: dict[tuple, list[TrialConfig]] = {}
    for c in configs:
        trunks.setdefault(trunk_key(c), []).append(c)
    # trunks with the same budgets and schedule are trained together, members of a seed side by side
    families: dict[tuple, list[tuple]] = {}
    for key, members in trunks.items():
        families.setdefault((key[4], key[5], tuple(sorted(c.budget for c in members))), []).append(key)
    ckpt = None if checkpoint_dir is None else Path(checkpoint_dir)
    if ckpt is not None:
        ckpt.mkdir(parents=True, exist_ok=True)
    stackable = supports(task, data)
    count = counter if counter is not None else [0]

    def steps_trained(k: int) -> None:
        count[0] += k
        if on_epoch is not None:
            on_epoch(k)

    for keys in families.values():
        heads = sorted((max(trunks[k], key=lambda c: c.budget) for k in keys), key=lambda c: c.seed)
        for chunk_heads in chunks_by_seed(heads, chunk_size if stackable else 1):
            chunk = [trunks[trunk_key(h)] for h in chunk_heads]
            yield from _train_family(chunk, planned, task, data, device, stackable, ckpt, steps_trained,
                                     SingleModel, StackedModel)


def _train_family(chunk: list[list[TrialConfig]], planned: dict[TrialConfig, PlannedTrial], task: Any, data: Any,
                  device: Any, stackable: bool,
                  ckpt: Path | None, steps_trained: Callable[[int], None], SingleModel: Any, StackedModel: Any
                  ) -> Iterator[tuple[TrialConfig, TrialResult]]:
    from budgetsched.bench.engines.optim import optimizer_for
    from budgetsched.bench.engines.train import run_members

    budgets = sorted(c.budget for c in chunk[0])
    by_budget = [{c.budget: c for c in trunk} for trunk in chunk]
    heads = [row[budgets[-1]] for row in by_budget]
    plans = {c: lr_plan(planned[c]) for row in by_budget for c in row.values()}
    # branch points are the same for every trunk of the family (same schedule and budgets; the LR only scales it)
    proto = by_budget[0]
    point = branch_points({proto[b]: plans[proto[b]] for b in budgets},
                          trunk_plan(proto[budgets[-1]], plans[proto[budgets[-1]]].total_steps))
    point = {b: point[proto[b]] for b in budgets}
    branched = [b for b in budgets if 0 < point[b] < plans[proto[b]].total_steps]  # others run on their own
    seeds = [h.seed for h in heads]
    group = [list(dict.fromkeys(seeds)).index(s) for s in seeds]

    def build() -> Any:
        models = []
        for h in heads:
            torch.manual_seed(h.seed)
            models.append(task.make_model())
        if stackable:
            return StackedModel(models, group, task, device)
        return SingleModel(models[0], task, device)

    model = build()
    placed = place(data, device, model.flat.dtype)
    spec = optimizer_for(heads[0])
    wanted = sorted({point[b] for b in branched})
    snaps: dict[int, Snapshot] = {}
    for s in wanted:  # snapshots of an earlier, interrupted study
        files = [ckpt / _ckpt_name(h, s) for h in heads] if ckpt is not None else []
        if files and all(f.exists() for f in files):
            snaps[s] = _join([torch.load(f, weights_only=False) for f in files], group)
    missing = [s for s in wanted if s not in snaps]
    if missing:
        start = max((s for s in snaps if s < min(missing)), default=None)

        def keep(snap: Snapshot) -> None:
            snaps[snap.step] = snap
            if ckpt is not None:
                for k, h in enumerate(heads):
                    tmp = ckpt / (_ckpt_name(h, snap.step) + ".tmp")
                    torch.save(_split(snap, k, group[k]), tmp)
                    os.replace(tmp, ckpt / _ckpt_name(h, snap.step))
        trunk = Members(heads, [plans[h] for h in heads])
        batches = Batches(list(dict.fromkeys(seeds)), placed.train_x, placed.train_y, task.batch_size,
                          getattr(task, "augment", None))
        fit(model, trunk, spec, task, placed, batches, steps_trained,
            start=None if start is None else snaps[start], snapshot_at=set(missing), on_snapshot=keep,
            stop_at=max(missing))
    for b in budgets:
        configs = [row[b] for row in by_budget]
        s = point[b]
        members = Members(configs, [plans[c] for c in configs])
        batches = Batches(list(dict.fromkeys(seeds)), placed.train_x, placed.train_y, task.batch_size,
                          getattr(task, "augment", None))
        results = _branch(model, members, spec, task, placed, batches, steps_trained,
                          snaps[s] if b in branched else None, None if b in branched else build)
        yield from zip(configs, results)


def _branch(model: Any, members: Members, spec: Any, task: Any, data: Any, batches: Batches,
            steps_trained: Callable[[int], None], start: Snapshot | None, rebuild: Callable[[], Any] | None
            ) -> list[TrialResult]:
    """Train one branch (every trunk of the chunk, one budget) from its snapshot (or from scratch)."""
    import time

    from budgetsched.bench.engines.train import _sync

    if rebuild is not None:  # no shared prefix: an ordinary run
        model = rebuild()
    t0 = time.perf_counter()
    try:
        fit(model, members, spec, task, data, batches, steps_trained, start=start)
        error = None
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
    _sync(model.flat.device)
    wall = (time.perf_counter() - t0) / len(members.configs)
    if error is not None:
        return [TrialResult.failed(error, members.curves[k], int(members.steps[k]), wall)
                for k in range(len(members.configs))]
    return members.results(wall)
