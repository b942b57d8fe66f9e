"""The training loop, written once for both engines.

A *member* is one trial. The loop (:func:`fit`) trains K members at once through a model container that holds
their parameters as rows of one ``[K, N]`` buffer: :class:`budgetsched.bench.engines.stacked.SingleModel` (K = 1, any
``nn.Module``: the sequential engine, :func:`train_trial`) or :class:`budgetsched.bench.engines.stacked.StackedModel`
(K stacked copies: the batched engine, :mod:`budgetsched.bench.engines.batched`). Everything that decides a result is
here and nowhere else:

* **Budget.** A trial runs its planned ``total_steps`` (:class:`budgetsched.bench.protocol.plan.PlannedTrial`,
  computed once by ``protocol.plan.plan_trial``; :class:`Plan` adds its LR per step); budgets are counted in steps
  by default, so the last epoch may be partial.
* **Randomness (common random numbers).** Members with the same seed start from the same weights
  (``torch.manual_seed(seed)`` right before ``task.make_model()``), see the same batches (one ``randperm`` per
  epoch from ``torch.Generator().manual_seed(seed)``) and the same augmentation draws (:func:`augment_generator`),
  whatever their schedule, LR or engine: the schedules of one seed form a paired comparison.
* **Optimizer.** :func:`budgetsched.bench.engines.optim.optimizer_for`: the protocol's
  :class:`~budgetsched.bench.engines.optim.OptimizerSpec` (``torch.optim`` semantics), LR and momentum per step from
  the schedule, times the plateau scale; or, for ``schedule-free`` trials, its
  :class:`~budgetsched.bench.engines.optim.ScheduleFreeSpec` (the ``schedulefree`` package's update) at a constant LR.
* **Evaluation.** On the validation split at the end of every epoch and at the end of the run; on the test split
  once, at the end; always at the parameters the optimizer evaluates (``spec.evaluating``: the iterates, or
  schedule-free's average). A trial's result is its final validation and test loss and metric.
* **Plateau.** :class:`budgetsched.Plateau` updated with the validation loss at every evaluation; ``patience`` is
  in evaluations, exactly as given (no cap). A patience that cannot trigger within the budget
  (:func:`plateau_is_constant`) makes the trial equal to the constant schedule; the runner then reuses that trial.
* **Divergence.** A member diverges when a training loss is not finite or exceeds ``diverge_factor`` (default 10)
  times its first step's loss (only when that loss is positive), or when a validation loss is not finite. Its
  ``steps`` are the steps taken before the bad one; it stops contributing (LR 0, parameters zeroed) and the others
  train on. The rule is checked on each epoch's recorded losses, so the loop never waits on the device per step.
* **Timing.** ``wall_time`` is the training and evaluation time of the trial (its 1/K share of a stacked run);
  building models and placing data are outside it.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Protocol, Sequence

import numpy as np
import torch

from budgetsched import Plateau, Schedule
from budgetsched.bench.tasks.data import TaskData
from budgetsched.bench.protocol import plan as planning
from budgetsched.bench.protocol.grid import CHANGE_PARAMS, SCHEDULE_FREE, TrialConfig
from budgetsched.bench.protocol.plan import PlannedTrial, as_planned, steps_per_epoch  # steps_per_epoch: re-exported
from budgetsched.bench.engines.optim import OptimizerSpec, ScheduleFreeSpec, optimizer_for
from budgetsched.bench.protocol.records import CURVE_KEYS, TrialResult, new_curves  # re-exported
from budgetsched.bench.protocol.status import Status
from budgetsched.bench.engines.stacked import EVAL_BATCH, SingleModel  # EVAL_BATCH: re-exported

# ------------------------------------------------------------------------------------------------------ plan
@dataclass(frozen=True)
class Plan:
    """One trial's LR (and momentum) per step over its planned run (:class:`PlannedTrial`, computed once by
    :func:`budgetsched.bench.protocol.plan.plan_trial`); the plateau scale is applied by the loop."""

    trial: PlannedTrial
    lrs: np.ndarray  # float64 [total_steps]
    momenta: np.ndarray | None  # onecycle's momentum / beta1 per step, else None
    plateau: dict[str, Any] | None  # Plateau(**plateau) for plateau trials

    @property
    def total_steps(self) -> int:
        return self.trial.total_steps

    @property
    def steps_per_epoch(self) -> int:
        return self.trial.steps_per_epoch

    @property
    def epochs(self) -> int:
        """Epochs started (the last may be partial); also the number of evaluations."""
        return self.trial.epochs

    def epoch_steps(self, epoch: int) -> np.ndarray:
        """Global indices of the steps of ``epoch``."""
        r = self.trial.epoch_range(epoch)
        return np.arange(r.start, r.stop)


def lr_plan(planned: PlannedTrial) -> Plan:
    """The LR (and momentum) of every step of a planned trial (its config's schedule, never its stand-in's)."""
    config, total = planned.config, planned.total_steps
    if config.schedule == "plateau":
        return Plan(planned, np.full(total, config.lr), None, config.params)
    if config.schedule == SCHEDULE_FREE:  # an optimizer of its own at a constant LR (engines/schedulefree.py)
        return Plan(planned, np.full(total, config.lr), None, None)
    params = {k: v for k, v in config.params.items() if k not in CHANGE_PARAMS}
    sched = Schedule(config.schedule, total, peak_lr=config.lr, **params)
    if planned.change is None:
        return Plan(planned, sched.values(), sched.momentum_values(), None)
    lrs, moms = _changed_budget(config, params, planned.change, total)
    return Plan(planned, lrs, moms, None)


def plan_trial(trial: TrialConfig | PlannedTrial, task: Any = None, n_train: int | None = None) -> Plan:
    """The trial's LR plan: ``lr_plan`` of ``trial`` (a config is planned first, from ``task`` and ``n_train``)."""
    return lr_plan(as_planned(trial, task, n_train))  # type: ignore[arg-type]


def _changed_budget(config: TrialConfig, params: dict[str, Any], change: tuple[int, int, str], total: int
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """LR (and momentum) per step of a run planned for ``planned`` steps that learns after ``at`` steps that it has
    ``total`` (see ``grid.CHANGE_PARAMS``). Steps before ``at`` are the plan's; from there each strategy is the
    library's own rule, ``Schedule.with_budget(strategy=...)`` (one implementation, none copied here):

    * ``"continue"``: ``with_budget(total, at_step=at)`` (no LR jump; step ``at`` keeps the plan's LR: the rule the
      stored continue trials were trained with); a plan already finished keeps its end value.
    * ``"rewarm"``: ``with_budget(total, at_step=at - 1, strategy="rewarm", rewarm_steps=1)``: step ``at`` is at
      the peak and the profile decays from it to the floor at ``total``, i.e. the schedule again from its peak over
      the remaining ``total - at`` steps, exactly as the trials stored as "restart" were trained (their keys are
      kept, ``grid.TrialConfig.key``, so a key still means one result).
    * ``"extend"``: ``with_budget(total, at_step=at - 1, strategy="extend")``: from step ``at`` the plan for
      ``total`` from the start, its peak scaled by min(1, sqrt(planned / total)).
    * ``"keep"`` (a baseline, never told): the plan, then its end value.
    """
    planned, at, on_change = change
    first = Schedule(config.schedule, planned, peak_lr=config.lr, **params)
    if on_change == "continue" and at < planned:
        after = first.with_budget(total, at_step=at, strategy="continue")
    elif on_change in ("rewarm", "extend"):
        after = first.with_budget(total, at_step=at - 1, strategy=on_change,
                                  **({"rewarm_steps": 1} if on_change == "rewarm" else {}))
    else:  # keep, or continue after a finished plan: its end value
        after = first
    t = np.arange(total)
    lrs = np.where(t < at, _hold(first, t), _hold(after, t))
    moms = np.where(t < at, _hold_momentum(first, t), _hold_momentum(after, t)) \
        if first.momentum_values() is not None else None
    return lrs, moms


def _hold(s: Schedule, t: np.ndarray) -> np.ndarray:
    """The schedule's LR at steps ``t`` (its end value past its total)."""
    return np.array([s(int(i)) for i in t], dtype=np.float64)


def _hold_momentum(s: Schedule, t: np.ndarray) -> np.ndarray:
    return np.array([s.momentum(int(i)) for i in t], dtype=np.float64)


def plateau_is_constant(trial: TrialConfig | PlannedTrial, task: Any = None, n_train: int | None = None) -> bool:
    """:func:`budgetsched.bench.protocol.plan.plateau_is_constant` of the trial (planned first if a config)."""
    return planning.plateau_is_constant(as_planned(trial, task, n_train))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- the members
class Model(Protocol):
    """What the loop needs of a model container (see :mod:`budgetsched.bench.engines.stacked`)."""

    K: int
    flat: torch.Tensor  # [K, N] parameters, one row per member

    def loss_and_grad(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-member training losses [K] (detached) and gradients [K, N] of one batch ([G, B, ...] per seed group)."""

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
        """Per-member mean loss and mean per-example metric over (x, y)."""


@dataclass
class Members:
    """The per-member record of K trials trained together: status, steps, curves, plateau, divergence."""

    configs: list[TrialConfig]
    plans: list[Plan]
    status: list[Status] = field(init=False)
    steps: np.ndarray = field(init=False)
    curves: list[dict[str, list[float]]] = field(init=False)
    alive: np.ndarray = field(init=False)
    scale: np.ndarray = field(init=False)
    final: list[tuple[float, float, float, float] | None] = field(init=False)

    def __post_init__(self) -> None:
        K = len(self.configs)
        lengths = {(p.total_steps, p.steps_per_epoch) for p in self.plans}
        if len(lengths) != 1:
            raise ValueError(f"members trained together must share their run length, got {sorted(lengths)}")
        self.status = [Status.DONE] * K
        self.steps = np.zeros(K, dtype=np.int64)
        self.curves = [new_curves() for _ in range(K)]
        self.alive = np.ones(K, dtype=bool)
        self.scale = np.ones(K)
        self.final = [None] * K
        self._plateaus = [None if p.plateau is None else Plateau(**p.plateau) for p in self.plans]
        self._factor = np.array([c.diverge_factor for c in self.configs])
        self._first_loss: np.ndarray | None = None
        self._train_loss = np.full(K, math.nan)
        self._grad_norm = np.full(K, math.nan)

    @property
    def plan(self) -> Plan:
        return self.plans[0]

    def lrs(self, steps: np.ndarray) -> np.ndarray:
        """[S, K] LRs of these steps: schedule x plateau scale, 0 for members that stopped."""
        return np.stack([p.lrs[steps] for p in self.plans], axis=1) * (self.scale * self.alive)[None, :]

    def momenta(self, steps: np.ndarray, default: float) -> np.ndarray | None:
        """[S, K] momentum / beta1 of these steps, or None when no member's schedule has its own."""
        if all(p.momenta is None for p in self.plans):
            return None
        return np.stack([p.momenta[steps] if p.momenta is not None else np.full(len(steps), default)
                         for p in self.plans], axis=1)

    def check_steps(self, losses: torch.Tensor, grad_norms: torch.Tensor | None = None) -> np.ndarray:
        """Apply the divergence rule to one epoch's training losses [S, K]; return the members that just stopped.

        Members that pass take S steps and record the epoch's mean training loss (and mean gradient norm).
        """
        L = losses.detach().to(torch.float64).cpu().numpy()
        G = None if grad_norms is None else grad_norms.detach().to(torch.float64).cpu().numpy()
        if self._first_loss is None:
            self._first_loss = L[0].copy()
        first = self._first_loss
        with np.errstate(invalid="ignore", over="ignore"):
            bad = ~np.isfinite(L) | ((first > 0) & (L > self._factor * first))
        dead = []
        for k in np.flatnonzero(self.alive):
            hit = np.flatnonzero(bad[:, k])
            if hit.size:
                self.steps[k] += int(hit[0])
                self._stop(k)
                dead.append(k)
            else:
                self.steps[k] += L.shape[0]
                self._train_loss[k] = float(L[:, k].mean())
                self._grad_norm[k] = math.nan if G is None else float(G[:, k].mean())
        return np.array(dead, dtype=np.int64)

    def record(self, epoch: int, last_step: int, val_loss: Sequence[float], val_metric: Sequence[float]) -> np.ndarray:
        """Record one evaluation (curves, validation divergence, plateau update); return members that just stopped."""
        dead = []
        for k in np.flatnonzero(self.alive):
            lr = float(self.plans[k].lrs[last_step]) * self.scale[k]
            for key, v in zip(CURVE_KEYS, (epoch + 1, last_step + 1, self._train_loss[k], val_loss[k],
                                           val_metric[k], lr, self._grad_norm[k])):
                self.curves[k][key].append(v)
            if not math.isfinite(val_loss[k]):
                self._stop(k)
                dead.append(k)
            elif self._plateaus[k] is not None:
                self.scale[k] = self._plateaus[k].update(val_loss[k])
        return np.array(dead, dtype=np.int64)

    def record_state(self) -> dict[str, Any]:
        """Everything recorded so far (a deep copy), for a run that continues from a snapshot."""
        return copy.deepcopy({"status": self.status, "steps": self.steps, "curves": self.curves, "alive": self.alive,
                              "scale": self.scale, "first_loss": self._first_loss, "train_loss": self._train_loss,
                              "grad_norm": self._grad_norm,
                              "plateaus": [None if p is None else p.state_dict() for p in self._plateaus]})

    def restore(self, record: dict[str, Any]) -> None:
        r = copy.deepcopy(record)
        self.status, self.steps, self.curves, self.alive = r["status"], r["steps"], r["curves"], r["alive"]
        self.scale, self._first_loss = r["scale"], r["first_loss"]
        self._train_loss, self._grad_norm = r["train_loss"], r["grad_norm"]
        for p, st in zip(self._plateaus, r["plateaus"]):
            if p is not None and st is not None:
                p.load_state_dict(st)

    def finish(self, val: tuple[Sequence[float], Sequence[float]], test: tuple[Sequence[float], Sequence[float]]) -> None:
        for k in np.flatnonzero(self.alive):
            self.final[k] = (val[0][k], val[1][k], test[0][k], test[1][k])

    def _stop(self, k: int) -> None:
        self.alive[k] = False
        self.status[k] = Status.DIVERGED

    def results(self, wall_time: float) -> list[TrialResult]:
        out = []
        for k in range(len(self.configs)):
            metrics = self.final[k] if self.status[k] == Status.DONE else (None,) * 4
            out.append(TrialResult(self.status[k], *metrics, curves=self.curves[k],  # type: ignore[misc]
                                   steps=int(self.steps[k]), wall_time=wall_time))
        return out


# ------------------------------------------------------------------------------------------------ batches
def augment_generator(seed: int, device: str | torch.device) -> torch.Generator:
    """Randomness for ``task.augment``: its own stream, so augmentation never shifts the data order."""
    return torch.Generator(device=device).manual_seed(seed + 1_000_003)


class Batches:
    """Each epoch's batches for the G distinct seeds of the members (members of one seed share them).

    ``epoch()`` draws each seed's permutation and gathers the epoch's examples once, ``[G, n, ...]``; a step's
    batch is then a slice. Augmentation (``task.augment``) is drawn per seed from :func:`augment_generator`.
    """

    def __init__(self, seeds: Sequence[int], x: torch.Tensor, y: torch.Tensor, batch_size: int,
                 augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None) -> None:
        self.x, self.y, self.bs, self.n = x, y, batch_size, len(y)
        self._orders = [torch.Generator().manual_seed(s) for s in seeds]
        self._augment = augment
        self._aug = [augment_generator(s, x.device) for s in seeds] if augment is not None else None

    def epoch(self, n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        self._epoch_start = [g.get_state() for g in self._orders]  # a snapshot mid-epoch re-draws this epoch
        used = min(self.n, n_steps * self.bs)
        idx = torch.stack([torch.randperm(self.n, generator=g)[:used] for g in self._orders]).to(self.x.device)
        return self.x[idx], self.y[idx]

    def state(self) -> dict[str, Any]:
        """Where the data streams are: each order generator at the start of the current epoch, each augmentation
        generator now (restored by :meth:`restore`, then ``epoch()`` re-draws the same permutation)."""
        return {"orders": [s.clone() for s in self._epoch_start],
                "aug": None if self._aug is None else [g.get_state() for g in self._aug]}

    def restore(self, state: dict[str, Any]) -> None:
        for g, st in zip(self._orders, state["orders"]):
            g.set_state(st)
        if self._aug is not None:
            for g, st in zip(self._aug, state["aug"]):
                g.set_state(st)

    def batch(self, xs: torch.Tensor, ys: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        xb, yb = xs[:, i * self.bs:(i + 1) * self.bs], ys[:, i * self.bs:(i + 1) * self.bs]
        if self._aug is not None:
            xb = torch.stack([self._augment(xb[g], gen) for g, gen in enumerate(self._aug)])  # type: ignore[misc]
        return xb, yb


# ------------------------------------------------------------------------------------------------- the loop
@dataclass
class Snapshot:
    """K members after ``step`` steps: parameters, optimizer state, data streams, the current epoch's recorded
    losses so far, and the members' record. Taken mid-epoch, or after the epoch's evaluation at an epoch end."""

    step: int
    flat: torch.Tensor
    state: list[torch.Tensor]
    batches: dict[str, Any]
    losses: list[torch.Tensor]
    norms: list[torch.Tensor]
    record: dict[str, Any]


def fit(model: Model, members: Members, spec: OptimizerSpec | ScheduleFreeSpec, task: Any, data: TaskData, batches: Batches,
        on_epoch: Callable[[int], None] | None = None, *, start: Snapshot | None = None,
        snapshot_at: Collection[int] = (), on_snapshot: Callable[[Snapshot], None] | None = None,
        stop_at: int | None = None) -> None:
    """Train the members of ``model`` to the end of their budget, recording everything in ``members``.

    ``on_epoch(model_steps)`` is called after every epoch with the model-steps it trained (for progress bars).
    Anytime branching (:mod:`budgetsched.bench.engines.anytime`) continues a run from ``start``, asks for a
    :class:`Snapshot` after each step in ``snapshot_at`` (``on_snapshot``), and stops after ``stop_at`` steps
    without the final test evaluation.
    """
    plan, flat = members.plan, model.flat
    spe = plan.steps_per_epoch
    state = spec.init_state(flat)
    wd = float(getattr(task, "weight_decay", 0.0))
    val = test = None
    t0 = 0 if start is None else start.step
    if start is not None:
        with torch.no_grad():
            flat.copy_(start.flat)
            for mine, saved in zip(state, start.state):
                mine.copy_(saved)
        batches.restore(start.batches)
        members.restore(start.record)

    def stop(dead: np.ndarray) -> None:  # stopped members: zeroed and inert (their LR is 0 from now on)
        if dead.size:
            rows = torch.as_tensor(dead, device=flat.device)
            with torch.no_grad():
                for t in (flat, *state):
                    t[rows] = 0.0

    def snapshot(step: int, losses: list[torch.Tensor], norms: list[torch.Tensor]) -> None:
        if on_snapshot is not None:
            on_snapshot(Snapshot(step, flat.detach().clone(), [t.clone() for t in state], batches.state(),
                                 [x.clone() for x in losses], [x.clone() for x in norms], members.record_state()))

    for epoch in range(t0 // spe, plan.epochs):
        steps = plan.epoch_steps(epoch)
        cols = spec.columns(members.lrs(steps), members.momenta(steps, spec.momentum), steps, flat.device,
                            flat.dtype)
        xs, ys = batches.epoch(len(steps))
        first = t0 - epoch * spe if epoch == t0 // spe else 0
        losses, norms = (list(start.losses), list(start.norms)) if first and start is not None else ([], [])
        for i in range(first, len(steps)):
            xb, yb = batches.batch(xs, ys, i)
            loss, grad = model.loss_and_grad(xb, yb)
            with torch.no_grad():
                norms.append(torch.linalg.vector_norm(grad, dim=1))
                spec.update(flat, grad, state, cols, i, wd)
            losses.append(loss)
            done = int(steps[i]) + 1
            if i + 1 < len(steps):  # mid-epoch
                if done in snapshot_at:
                    snapshot(done, losses, norms)
                if done == stop_at:
                    if on_epoch is not None:
                        on_epoch(model.K * (i + 1 - first))
                    return
        stop(members.check_steps(torch.stack(losses), torch.stack(norms)))
        if on_epoch is not None:
            on_epoch(model.K * (len(steps) - first))
        if not members.alive.any():
            return
        with spec.evaluating(flat, state):
            val = model.evaluate(data.val_x, data.val_y)
        stop(members.record(epoch, int(steps[-1]), *val))
        if not members.alive.any():
            return
        done = int(steps[-1]) + 1
        if done in snapshot_at:  # an epoch end: after its evaluation
            snapshot(done, [], [])
        if done == stop_at:
            return
    with spec.evaluating(flat, state):
        if val is None:  # started from a snapshot at the run's end: its last evaluation, again (deterministic)
            val = model.evaluate(data.val_x, data.val_y)
        test = model.evaluate(data.test_x, data.test_y)
    members.finish(val, test)


def _sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def place(data: TaskData, device: str | torch.device, dtype: torch.dtype) -> TaskData:
    """The task's splits on the training device, floating inputs cast to the model's dtype."""
    def mv(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)
    return TaskData(*(mv(getattr(data, f)) for f in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")))


def run_members(configs: Sequence[TrialConfig], plans: list[Plan], model: Model, task: Any, data: TaskData,
                on_epoch: Callable[[int], None] | None = None) -> list[TrialResult]:
    """Train members already built into ``model`` (data already placed); one result per member.

    An exception while training (e.g. out of memory) fails every member of the run with its message.
    """
    members = Members(list(configs), plans)
    specs = {optimizer_for(c) for c in configs}
    if len(specs) != 1:
        raise ValueError(f"members trained together must share their optimizer, got {sorted(map(str, specs))}")
    (spec,) = specs
    seeds = list(dict.fromkeys(c.seed for c in configs))
    batches = Batches(seeds, data.train_x, data.train_y, task.batch_size, getattr(task, "augment", None))
    device = model.flat.device
    t0 = time.perf_counter()
    try:
        fit(model, members, spec, task, data, batches, on_epoch)
        error = None
    except Exception as e:  # one broken run never stops a study
        error = f"{type(e).__name__}: {e}"
    _sync(device)
    wall = (time.perf_counter() - t0) / len(configs)
    if error is not None:
        return [TrialResult.failed(error, members.curves[k], int(members.steps[k]), wall) for k in range(len(configs))]
    return members.results(wall)


# ------------------------------------------------------------------------------------------ sequential engine
def train_trial(trial: TrialConfig | PlannedTrial, task: Any, data: TaskData, device: str | torch.device = "cpu",
                placed: TaskData | None = None, on_epoch: Callable[[int], None] | None = None) -> TrialResult:
    """Train one trial, one model at a time (any model, BatchNorm included); never raises for a trial that fails.

    ``trial`` is a :class:`PlannedTrial` (or a config, planned here). ``placed`` is ``data`` already on ``device``
    in the model's dtype (a runner reuses it across trials); ``on_epoch(model_steps)`` is called after every epoch
    (progress).

    Raises:
        ValueError: the trial's task is not ``task.name`` (a caller mistake, not a trial outcome).
    """
    config = trial.config if isinstance(trial, PlannedTrial) else trial
    if config.task != task.name:
        raise ValueError(f"config is for task {config.task!r} but the task given is {task.name!r}")
    try:
        plan = plan_trial(trial, task, len(data.train_y))
        torch.manual_seed(config.seed)
        model = SingleModel(task.make_model(), task, device)
        if placed is None or placed.train_x.device != model.flat.device or (
                placed.train_x.is_floating_point() and placed.train_x.dtype != model.flat.dtype):
            placed = place(data, device, model.flat.dtype)
    except Exception as e:
        return TrialResult.failed(f"{type(e).__name__}: {e}")
    [result] = run_members([config], [plan], model, task, placed, on_epoch)
    return result
