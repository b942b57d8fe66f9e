"""``budgetsched report``, ``plot`` and ``advise``: read a store (never written to) and show what it says.

The store is read before any output directory is made, and a directory made for a command that then fails is
removed again, so a failed command leaves nothing behind.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from budgetsched.cli._common import check_resamples, open_existing_store, output_dir, output_file, read_rows
from budgetsched.errors import UsageError

#: Captions of the figures a md report links.
CAPTIONS = {"figure2": "Figure 2: test metric vs budget (95 % intervals)",
            "figure2_paired": "Figure 2 (paired): each schedule − {reference} vs budget (95 % intervals)",
            "figure3": "Figure 3: test metric vs initial LR (95 % intervals)"}


def _report(rows: list[dict[str, Any]], **options: Any) -> Any:
    """``build_report`` with the user's options (a bad option raises UsageError: one line, exit 2)."""
    from budgetsched.bench.analysis.report import build_report

    return build_report(rows, **options)


def cmd_report(args: argparse.Namespace) -> int:
    from budgetsched.bench import report as rep  # analysis + renderers (budgetsched.bench.rendering.report)

    check_resamples(args.resamples)
    store = open_existing_store(args.store)
    try:
        rows = store.trial_rows()
        planned = store.planned_configs()  # the recorded design: a trial that never got a row is reported missing
        evaluations = store.evaluations()  # evaluation-seed trials: kept out of the choice, they score it
    finally:
        store.close()
    from budgetsched.bench.analysis.ablations import ablations, lr_grid_rows
    from budgetsched.bench.protocol.study import on_grid

    rows, grid = lr_grid_rows(rows, args.lr_grid)  # --lr-grid x3: the paper's grid alone, refinement left out
    if grid.grid == "x3":  # refinement points are then not missing trials either
        planned = [c for c in planned if on_grid(c.lr)]
    # an ablation study (variants of a schedule or an optimizer): paired side tables; Table 1 ranks the base labels
    side = ablations(rows, evaluations, [c.key for c in planned])
    r = _report(rows, reference=args.reference, subject=args.subject, resamples=args.resamples, seed=args.seed,
                planned=planned, plateau_into_step=args.plateau_into_step, evaluations=evaluations,
                rank_labels=None if side is None else side.table1_labels, all_settings=args.all_settings)
    extra = {"ablations": side, "lr_grid": grid}
    figures = None
    if args.figures is not None:
        from budgetsched.bench.rendering import plots

        with output_dir(args.figures, "--figures") as figures_dir:
            written = [*plots.figure2(r, figures_dir), *plots.figure2_paired(r, figures_dir),
                       *plots.figure3(rows, figures_dir)]
        base = Path(args.output).resolve().parent if args.output is not None else Path.cwd()
        figures = {CAPTIONS[p.stem].format(reference=r.reference): Path(os.path.relpath(p.resolve(), base)).as_posix()
                   for p in written if p.suffix == ".png"}
    if args.format == "rich":
        from rich.console import Console

        if args.output is None:
            rep.render_rich(r, Console(), **extra)
            return 0
        with output_file(args.output) as f:
            rep.render_rich(r, Console(file=f, width=160, force_terminal=False), **extra)
        return 0
    from budgetsched.bench.rendering.experiments import markdown_sections

    text = {"md": lambda x: rep.to_markdown(x, figures=figures, **extra) + markdown_sections(rows),
            "csv": rep.to_csv, "json": lambda x: json.dumps(rep.to_json(x, **extra), indent=2) + "\n"}[args.format](r)
    if args.output is None:
        sys.stdout.write(text)
    else:
        with output_file(args.output) as f:
            f.write(text)
    return 0


def _plot_budgets(text: str | None) -> list[float] | None:
    """``--budgets 5,25%,100`` as percents."""
    if text is None:
        return None
    out = []
    for part in (p.strip() for p in text.split(",")):
        try:
            out.append(float(part.rstrip("%")))
        except ValueError:
            raise UsageError(f"--budgets: {part!r} is not a percent (e.g. 5,25,100)") from None
    return out


def cmd_plot(args: argparse.Namespace) -> int:
    from budgetsched.bench.rendering import plots
    from budgetsched.bench.rendering.figure_axes import check_selection

    check_resamples(args.resamples)
    budgets = _plot_budgets(args.budgets)
    schedules = None if args.schedules is None else [s.strip() for s in args.schedules.split(",") if s.strip()]
    rows = read_rows(args.store, tuning=True)
    report = _report(rows, resamples=args.resamples, seed=args.seed)
    # the user's budgets and schedules against the study, before any directory is made
    check_selection(budgets, schedules, (s.budget for s in report.settings), report.labels)
    chosen = dict(budgets=budgets, schedules=schedules)
    with output_dir(args.out, "--out") as out:
        written = [*plots.figure2(report, out, **chosen), *plots.figure2_paired(report, out, **chosen),
                   *plots.figure3(rows, out, **chosen)]
        if any("delay" in (r.get("schedule_params") or {}) for r in rows):
            written += plots.delay_figure(report, out)
        if any("sampling" in (r.get("schedule_params") or {}) for r in rows):
            written += plots.sampling_heatmap(rows, out)
        for task, opt in sorted({(s.task, s.optimizer) for s in report.settings}):
            have = sorted(s.budget for s in report.settings if (s.task, s.optimizer) == (task, opt)
                          and (budgets is None or s.budget in budgets))
            # LR / loss curves at the largest budget (the longest runs show the most), or at every budget on request
            for budget in (have if args.curves == "all" else have[-1:]):
                written += plots.curves(rows, out, task=task, optimizer=opt, budget=budget, report=report,
                                        schedules=schedules)
    for path in written:
        print(path)
    return 0


def _advice_budget(args: argparse.Namespace, rows: list[dict[str, Any]]) -> float:
    """The budget of ``advise`` in percent, from --budget, --epochs or --steps."""
    if args.budget is not None:
        text = str(args.budget).strip().rstrip("%")
        try:
            return float(text)
        except ValueError:
            raise UsageError(f"--budget {args.budget!r} is not a percent (e.g. 30 or 30%)") from None
    tasks = {r["task"] for r in rows if args.task is None or r["task"] == args.task}
    if len(tasks) != 1:
        raise UsageError("--epochs and --steps need one task: pass --task (the study has "
                         f"{', '.join(sorted(tasks)) or 'none'})")
    task = tasks.pop()
    if args.epochs is not None:
        from budgetsched.bench.tasks import get_task

        return 100.0 * args.epochs / get_task(task).max_epochs
    per_percent = [r["total_steps"] / r["budget"] for r in rows if r["task"] == task and r.get("total_steps")]
    if not per_percent:
        raise UsageError(f"the study does not record the run length of {task!r}; give --budget in percent")
    return 100.0 * args.steps / (max(per_percent) * 100.0)


def _study(path: str) -> dict[str, Any]:
    """Every trial of the store with its evaluation records and design, as ``budgetsched report`` reads them, so
    that ``advise`` answers from Table 1's ranking (evaluation seeds where the study has them) and ``--evaluate``
    scores each pick in the held-out setting's Table-1 ranking."""
    store = open_existing_store(path)
    try:
        return {"rows": store.trial_rows(), "evaluations": store.evaluations(), "planned": store.planned_configs()}
    finally:
        store.close()


def cmd_advise(args: argparse.Namespace) -> int:
    from budgetsched.bench.analysis.advise import advise, leave_one_budget_out

    rows = read_rows(args.store, tuning=True)
    budget = _advice_budget(args, rows)
    study = _study(args.store)
    advice = advise(budget=budget, task=args.task, optimizer=args.optimizer, **study)
    scored = leave_one_budget_out(**study) if args.evaluate else None
    if args.format == "json":
        out: dict[str, Any] = {"budget": budget, "advice": [a.to_json() for a in advice]}
        if scored is not None:
            out["leave_one_budget_out"] = scored.to_json()
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return 0
    print("\n\n".join(a.text() for a in advice))
    if scored is not None:
        print()
        print(scored.text())
    return 0
