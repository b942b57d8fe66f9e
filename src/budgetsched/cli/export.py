"""``budgetsched export STORE --tensorboard DIR``: every trial's curves as TensorBoard scalars; ``--rows FILE``: the
trial rows without curves in one compressed file (:func:`export_rows_file`).

One run per trial, named ``task/optimizer/schedule/budget=B/lr=LR/seed=S`` (the trial's key is added where two
trials would share a name, e.g. plateau's patience values), so TensorBoard's run filter groups them; each run has
the trial's hyperparameters and final results attached for the HParams dashboard. The x-axis is the optimizer
step (``step`` of the stored curves). View with ``tensorboard --logdir DIR`` (docs/cli.md).

Written with ``torch.utils.tensorboard`` when the ``tensorboard`` package is installed, else with tensorboardX
(``pip install 'budgetsched[tensorboard]'``).
"""
from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any, Iterable

from budgetsched.cli._common import open_existing_store, output_dir, path_error, read_rows
from budgetsched.errors import UsageError

#: Stored curve name -> TensorBoard tag (curves not listed keep their name).
TAGS = {"train_loss": "train/loss", "val_loss": "val/loss", "val_metric": "val/metric", "lr": "lr",
        "grad_norm": "train/grad_norm", "epoch": "epoch"}
#: The final results attached to each run (and shown by the HParams dashboard).
RESULTS = ("val_loss", "val_metric", "test_loss", "test_metric")


def _writer_api() -> tuple[Any, Any]:
    """(SummaryWriter, hparams summary function) of torch.utils.tensorboard, else of tensorboardX."""
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard writes through it)
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams
    except ImportError:
        try:
            from tensorboardX import SummaryWriter
            from tensorboardX.summary import hparams
        except ImportError:
            raise UsageError("--tensorboard needs the tensorboard package (or tensorboardX): "
                             "pip install 'budgetsched[tensorboard]'") from None
    return SummaryWriter, hparams


def run_name(row: Any) -> str:
    """``task/optimizer/label/budget=B/lr=LR/seed=S``, with characters a directory name cannot hold replaced."""
    parts = [row.task, row.optimizer, row.label, f"budget={row.budget:g}", f"lr={row.lr:g}", f"seed={row.seed}"]
    return "/".join(re.sub(r"[^\w.=,()+-]", "_", p) or "_" for p in parts)


def _names(rows: list[Any]) -> list[str]:
    """One run name per row, unique: a name two rows share gets each row's key."""
    names = [run_name(r) for r in rows]
    shared = {n for n in names if names.count(n) > 1}
    return [f"{n}/{r.key[:8]}" if n in shared else n for n, r in zip(names, rows)]


def _hparams(row: Any) -> dict[str, Any]:
    """The trial's settings as TensorBoard hyperparameters (numbers, text or booleans)."""
    h: dict[str, Any] = {"task": row.task, "schedule": row.label, "optimizer": row.optimizer,
                         "budget": float(row.budget), "budget_unit": row.budget_unit, "lr": float(row.lr),
                         "seed": int(row.seed), "status": str(row.status)}
    for k, v in row.params.items():
        if isinstance(v, (bool, int, float, str)):
            h[f"schedule.{k}"] = v
    if row.stand_in:
        h["stand_in"] = row.stand_in
    return h


def _points(curves: dict[str, list[float]]) -> Iterable[tuple[str, int, float]]:
    """(tag, step, value) of every finite curve point; the step axis is the optimizer step where stored."""
    steps = curves.get("step") or []
    for name, values in curves.items():
        if name == "step":
            continue
        for i, v in enumerate(values):
            if v is None or not math.isfinite(float(v)):
                continue
            step = int(steps[i]) if i < len(steps) and steps[i] is not None else i
            yield TAGS.get(name, name), step, float(v)


def export_tensorboard(rows: list[Any], out: Path) -> int:
    """Write one TensorBoard run per trial row (:class:`TrialRow`) under ``out``; returns the number of runs."""
    SummaryWriter, hparams = _writer_api()
    for row, name in zip(rows, _names(rows)):
        writer = SummaryWriter(log_dir=str(out / name))
        try:
            last = 0
            for tag, step, value in _points(dict(row.curves)):
                writer.add_scalar(tag, value, step)
                last = max(last, step)
            results = {f"result/{k}": float(getattr(row, k)) for k in RESULTS
                       if getattr(row, k) is not None and math.isfinite(float(getattr(row, k)))}
            for tag, value in results.items():
                writer.add_scalar(tag, value, last)
            for summary in hparams(_hparams(row), results):
                writer.file_writer.add_summary(summary)
        finally:
            writer.close()
    return len(rows)


def export_rows_file(store_path: str, target: str) -> int:
    """``export STORE --rows FILE``: the store's trial rows without curves in one compressed file
    (:mod:`budgetsched.bench.storage.rows_file`); returns the number of trials."""
    from budgetsched.bench.storage.rows_file import SUFFIX, export_rows, is_rows_file

    if not is_rows_file(target):
        raise UsageError(f"--rows {target!r} must end in {SUFFIX} (report, plot and advise read such a file "
                         "like a store)")
    if Path(target).resolve() == Path(store_path).resolve():
        raise UsageError(f"--rows {target!r} is the store being exported; give another file")
    parent = Path(target).parent
    if not parent.is_dir():
        raise UsageError(f"--rows {target!r}: no directory {str(parent)!r}")
    store = open_existing_store(store_path)
    try:
        if not store.rows():
            raise UsageError(f"store {store_path!r} holds no trials yet; run a study first")
        try:
            return export_rows(store, target)
        except OSError as e:
            raise path_error(e, "write", "--rows", target) from None
    finally:
        store.close()


def cmd_export(args: argparse.Namespace) -> int:
    if args.rows is not None:
        n = export_rows_file(args.store, args.rows)
        print(f"{n} trial{'' if n == 1 else 's'} written to {args.rows} (without curves); render it with: "
              f"budgetsched report {args.rows}")
        return 0
    rows = read_rows(args.store, typed=True)
    _writer_api()  # a missing package is said before any directory is made
    target = Path(args.tensorboard)
    if target.is_dir() and any(target.iterdir()):
        raise UsageError(f"--tensorboard {args.tensorboard!r} is not empty; give a new directory (TensorBoard would "
                         "show an earlier export's runs twice)")
    with output_dir(target, "--tensorboard") as out:
        n = export_tensorboard(rows, out)
    print(f"{n} run{'' if n == 1 else 's'} written to {out}; view them with: tensorboard --logdir {out}")
    return 0
