"""Named study presets: plain dicts a user can read, print and copy.

The fields are those of a study file (:class:`budgetsched.bench.protocol.study.StudySpec`, docs/studies.md); each is also a
``budgetsched run`` flag that overrides it.

``demo`` runs in a few minutes on 2 CPU cores; ``paper`` is the paper's protocol on ``mnist1d-mlp``; ``suite`` is
the paper's protocol on suite v2's five offline tasks with LR refinement (docs/tasks.md; ``suite-v1`` is the
earlier suite, whose results docs/results.md reported); ``suite-smoke`` runs suite v2's tasks in seconds (CI),
``suite-pilot`` is the pilot its wall time is estimated from;
``ablations`` holds the side studies of suite v2 (OneCycle's momentum cycle and warm-up, schedule-free, AdamW
against Adam);
``smoke`` is a seconds-long study for tests. ``sampling``, ``delay``, ``budget-change`` and ``contenders`` are the
paper's other experiments and the newer alternatives (docs/results.md).

LR grids are multiples of 3 as in the REX paper (section 5). The suites' grids are five points per task and
optimizer placed around the best LR of a pilot (v1: linear decay at 25, 50 and 100 %, two seeds; v2: linear decay
at 1 and 100 %, one seed). ``refine = true`` then adds points around every schedule's own best and extends a grid
whose best sits at its edge; the suite (v2) uses ``refine = "edge"``, the paper's x3 grid extended only where a
schedule's best sits at its edge (the ablations read the x3 grid alone next to the refined one).
The suite's 3 seeds are its tuning seeds; ``eval_seeds = 10`` retrains each chosen configuration on 10 fresh
evaluation seeds (docs/protocol.md), on which the headline rule of docs/tasks.md is decided.
"""
from __future__ import annotations

import copy
import math
from typing import Any

from budgetsched.bench.protocol.grid import PAPER_BUDGETS
from budgetsched.errors import UsageError

__all__ = ["PRESETS", "get_preset", "available_presets", "SUITE_V2_TASKS", "SUITE_V2_LRS", "ABLATION_TASKS"]

#: The paper's schedules (section 4.1); ``plateau`` is decay-on-plateau, ``constant`` the paper's "None".
_PAPER_SCHEDULES = ["rex", "linear", "cosine", "step", "plateau", "onecycle", "exp", "constant"]

#: The paper's sampling study approximates the 50-75 step schedule "as a tuned exponentially decaying profile"
#: without giving gamma. Fitted here by least squares in log space to the step levels it replaces, ln m = gamma z
#: through (0.5, ln 0.1) and (0.75, ln 0.01): gamma = (0.5 ln 0.1 + 0.75 ln 0.01) / (0.5^2 + 0.75^2) = -5.668.
STEP_AS_EXP_GAMMA = round((0.5 * math.log(0.1) + 0.75 * math.log(0.01)) / (0.5 ** 2 + 0.75 ** 2), 3)
#: The sampling rates of the paper's Table 2, from every step to the coarsest.
TABLE2_SAMPLINGS = ("every-step", "1-100", "5-25", "10-10", "25-50-75", "33-66", "50-75")

#: Suite v2's tasks (docs/tasks.md): image classification (MNIST-1D MLP and CNN, digits MLP), a generative model
#: (VAE on binarised digits) and text (a character MLP on Tiny Shakespeare).
SUITE_V2_TASKS = ("mnist1d-mlp-v2", "mnist1d-cnn-v2", "digits-mlp-v2", "digits-vae-v2", "shakespeare-mlp")
#: Suite v2's LR grids: five points of the x3 grid per task and optimizer, placed around the best LRs of linear decay
#: at 1 % and at 100 % (one seed, docs/tasks.md); where those lie 30x apart (the VAE with Adam) the 1 % best sits at
#: the grid's edge and refinement extends it.
SUITE_V2_LRS: dict[str, dict[str, list[float]]] = {
    "mnist1d-mlp-v2": {"sgdm": [0.03, 0.1, 0.3, 1.0, 3.0], "adam": [0.001, 0.003, 0.01, 0.03, 0.1]},
    "mnist1d-cnn-v2": {"sgdm": [0.01, 0.03, 0.1, 0.3, 1.0], "adam": [0.001, 0.003, 0.01, 0.03, 0.1]},
    "digits-mlp-v2": {"sgdm": [0.01, 0.03, 0.1, 0.3, 1.0], "adam": [0.003, 0.01, 0.03, 0.1, 0.3]},
    "digits-vae-v2": {"sgdm": [0.003, 0.01, 0.03, 0.1, 0.3], "adam": [0.0003, 0.001, 0.003, 0.01, 0.03]},
    "shakespeare-mlp": {"sgdm": [0.03, 0.1, 0.3, 1.0, 3.0], "adam": [0.001, 0.003, 0.01, 0.03, 0.1]},
}
#: The ablations' tasks: suite v2's two cheapest per step (docs/tasks.md).
ABLATION_TASKS = ("digits-mlp-v2", "mnist1d-mlp-v2")
#: OneCycle's own warm-up as a warm-up of another schedule: the suite's OneCycle (profiles.onecycle, the default
#: variant "triangle") rises linearly from min_ratio x peak = peak/10 to the peak over the first half of the run,
#: lr(t) = peak (0.1 + 0.9 t / (T/2)); Schedule's warm-up ramps linearly from warmup_start_ratio x peak over
#: W = ceil(f T) steps, lr(t) = peak (0.1 + 0.9 t / (W - 1)). (The cosine rise from peak/25 over 30 % is
#: OneCycleLR's shape, variant "torch", which the suite does not run.)
_ONECYCLE_RISE = {"warmup_fraction": 0.5, "warmup_start_ratio": 0.1}

PRESETS: dict[str, dict[str, Any]] = {
    "demo": {
        "description": "REX vs six schedules on mnist1d-mlp, SGDM and Adam, all 6 budgets, 3 LRs, 1 seed",
        "tasks": ["mnist1d-mlp"],
        "schedules": ["rex", "linear", "cosine", "step", "onecycle", "exp", "constant"],
        "optimizers": ["sgdm", "adam"],
        "budgets": list(PAPER_BUDGETS),
        # Three multiples of 3 around each optimizer's best LR on mnist1d-mlp, measured with linear decay at 5, 50
        # and 100 % budgets (validation error %): SGDM best at 0.3 (1.0 fails to learn at >= 50 %), Adam at 0.01.
        "lrs": {"sgdm": [0.1, 0.3, 1.0], "adam": [0.003, 0.01, 0.03]},
        "seeds": [0],
        "plateau_patience": [5, 10],
    },
    "paper": {
        "description": "the REX paper's protocol (section 4) on mnist1d-mlp: 8 schedules, 2 optimizers, "
                       "6 budgets, 5 LRs per optimizer, 3 seeds, plateau patience 5/10",
        "tasks": ["mnist1d-mlp"],
        "schedules": list(_PAPER_SCHEDULES),
        "optimizers": ["sgdm", "adam"],
        "budgets": list(PAPER_BUDGETS),
        "lrs": {"sgdm": [0.01, 0.03, 0.1, 0.3, 1.0], "adam": [0.001, 0.003, 0.01, 0.03, 0.1]},
        "seeds": [0, 1, 2],
        "plateau_patience": [5, 10],
    },
    "suite": {
        "description": "suite v2 (docs/tasks.md): the REX paper's protocol on five offline tasks that train 5 000 "
                       "optimizer steps at 100 % (50 at 1 %), evaluated every 4 steps: 8 schedules (plateau with "
                       "patience 5/10 evaluations), SGDM and Adam, 6 budgets, 5 LRs of the x3 grid per task and "
                       "optimizer, extended where a best LR sits at its edge, 3 tuning seeds, each chosen "
                       "configuration retrained on 10 evaluation seeds: 60 settings",
        "tasks": list(SUITE_V2_TASKS),
        "schedules": list(_PAPER_SCHEDULES),
        "optimizers": ["sgdm", "adam"],
        "budgets": list(PAPER_BUDGETS),
        "lrs": copy.deepcopy(SUITE_V2_LRS),
        "seeds": [0, 1, 2],
        "plateau_patience": [5, 10],
        "refine": "edge",
        "eval_seeds": 10,
    },
    "suite-smoke": {
        "description": "suite v2's five tasks in seconds (CI): REX, linear and plateau (patience 5), Adam at one LR "
                       "each, budgets 1 and 2 %, one seed",
        "tasks": list(SUITE_V2_TASKS),
        "schedules": ["rex", "linear", "plateau"],
        "optimizers": ["adam"],
        "budgets": [1.0, 2.0],
        "lrs": {task: {"adam": [grid["adam"][2]]} for task, grid in SUITE_V2_LRS.items()},
        "seeds": [0],
        "plateau_patience": [5],
    },
    "suite-pilot": {
        "description": "suite v2's pilot (docs/benchmarks.md): its five tasks and 8 schedules, Adam only, budgets 10 "
                       "and 50 %, the middle three LRs of each grid, one seed",
        "tasks": list(SUITE_V2_TASKS),
        "schedules": list(_PAPER_SCHEDULES),
        "optimizers": ["adam"],
        "budgets": [10.0, 50.0],
        "lrs": {task: {"adam": grid["adam"][1:4]} for task, grid in SUITE_V2_LRS.items()},
        "seeds": [0],
        "plateau_patience": [5, 10],
    },
    "ablations": {
        "description": "what a reviewer asks of suite v2, on its two cheapest tasks (paired side tables, not "
                       "Table 1). OneCycle is the suite's (the REX paper's triangle): LR linear from peak/10 up to "
                       "the peak at half the run and back to peak/10, momentum / beta1 0.95 -> 0.85 -> 0.95. "
                       "Variants: onecycle(base_momentum=0.9,max_momentum=0.9) is that LR curve with momentum / "
                       "beta1 held at 0.9 (the other schedules' constant); rex / linear "
                       "(warmup_fraction=0.5,warmup_start_ratio=0.1) are REX / linear after OneCycle's own rise: a "
                       "linear ramp from peak/10 over the first W = ceil(T/2) steps, reaching the peak at step W-1 "
                       "(OneCycle at step T/2: one step apart at most), then the profile over the other T - W steps "
                       "down to 0 (OneCycle ends at peak/10); schedule-free is SGDScheduleFree with SGDM and "
                       "AdamWScheduleFree with Adam and AdamW (decoupled decay; its AdamW setting is the "
                       "same-decay comparison, and its Adam and AdamW runs are the same run). Optimizers SGDM, Adam "
                       "(L2 decay) and AdamW (the same coefficient, decoupled); 6 budgets, the suite's x3 LR grids "
                       "(AdamW: Adam's) plus refinement around every best (the x3 grid read alone beside it), "
                       "3 seeds",
        "tasks": list(ABLATION_TASKS),
        "schedules": ["onecycle", ["onecycle", {"max_momentum": 0.9, "base_momentum": 0.9}],
                      "rex", ["rex", dict(_ONECYCLE_RISE)], "linear", ["linear", dict(_ONECYCLE_RISE)],
                      "schedule-free"],
        "optimizers": ["sgdm", "adam", "adamw"],
        "budgets": list(PAPER_BUDGETS),
        "lrs": {task: {**copy.deepcopy(SUITE_V2_LRS[task]), "adamw": list(SUITE_V2_LRS[task]["adam"])}
                for task in ABLATION_TASKS},
        "seeds": [0, 1, 2],
        "refine": True,
    },
    "suite-v1": {
        "description": "suite v1 (the results of docs/results.md before suite v2): the REX paper's protocol on the "
                       "five first offline tasks: 8 schedules (plateau with patience "
                       "5/10 evaluations), SGDM and Adam, 6 budgets, 5 LRs per task and optimizer plus refinement, "
                       "3 seeds: 60 settings",
        "tasks": ["mnist1d-mlp", "mnist1d-cnn", "digits-mlp", "digits-vae", "shakespeare-char"],
        "schedules": list(_PAPER_SCHEDULES),
        "optimizers": ["sgdm", "adam"],
        "budgets": list(PAPER_BUDGETS),
        "lrs": {
            "mnist1d-mlp": {"sgdm": [0.03, 0.1, 0.3, 1.0, 3.0], "adam": [0.001, 0.003, 0.01, 0.03, 0.1]},
            "mnist1d-cnn": {"sgdm": [0.01, 0.03, 0.1, 0.3, 1.0], "adam": [0.001, 0.003, 0.01, 0.03, 0.1]},
            "digits-mlp": {"sgdm": [0.01, 0.03, 0.1, 0.3, 1.0], "adam": [0.001, 0.003, 0.01, 0.03, 0.1]},
            "digits-vae": {"sgdm": [0.003, 0.01, 0.03, 0.1, 0.3], "adam": [0.0003, 0.001, 0.003, 0.01, 0.03]},
            "shakespeare-char": {"sgdm": [0.1, 0.3, 1.0, 3.0, 10.0], "adam": [0.003, 0.01, 0.03, 0.1, 0.3]},
        },
        "seeds": [0, 1, 2],
        "plateau_patience": [5, 10],
        "refine": True,
    },
    "budget-change": {
        "description": "runs planned for 25 % that learn at the 5 % or the 20 % point that their budget is 50 % or "
                       "100 %: "
                       "go on by Schedule.with_budget's strategy continue (no LR jump), rewarm (the schedule again "
                       "from its peak) or extend (the plan for the new budget, peak scaled), or keep the planned "
                       "schedule and then its end value; against runs that knew the budget from the start "
                       "(mnist1d-mlp, SGDM and Adam, 3 LRs, 3 seeds)",
        "tasks": ["mnist1d-mlp"],
        "schedules": [s for name in ("rex", "linear", "cosine") for s in (
            [name] + [[name, {"planned_budget": 25, "change_at": at, "on_change": how}]
                      for at in (5, 20) for how in ("continue", "rewarm", "extend", "keep")])],
        "optimizers": ["sgdm", "adam"],
        "budgets": [50.0, 100.0],
        "lrs": {"sgdm": [0.1, 0.3, 1.0], "adam": [0.003, 0.01, 0.03]},
        "seeds": [0, 1, 2],
    },
    "sampling": {
        "description": "the paper's Table 2: profiles REX, linear, the step schedule approximated as exp "
                       f"(gamma {STEP_AS_EXP_GAMMA}) and cosine x 7 sampling rates, SGDM at one fixed LR (0.3, the "
                       "best LR of linear decay on mnist1d-mlp at 25-100 %), 5/25/100 % of the epochs, 3 seeds",
        "tasks": ["mnist1d-mlp"],
        "schedules": [[name, {**params, "sampling": rate}] for name, params in
                      (("rex", {}), ("linear", {}), ("exp", {"gamma": STEP_AS_EXP_GAMMA}), ("cosine", {}))
                      for rate in TABLE2_SAMPLINGS],
        "optimizers": ["sgdm"],
        "budgets": [5.0, 25.0, 100.0],
        "lrs": [0.3],
        "seeds": [0, 1, 2],
    },
    "delay": {
        "description": "the paper's Figure 2: linear delayed to 25 / 50 / 75 % of the run, REX, linear, and step "
                       "(its 100 % result is the reference line), mnist1d-mlp, SGDM and Adam, all 6 budgets, "
                       "5 LRs, 3 seeds",
        "tasks": ["mnist1d-mlp"],
        "schedules": ["rex", "linear", "step"] + [["linear", {"delay": d}] for d in (0.25, 0.5, 0.75)],
        "optimizers": ["sgdm", "adam"],
        "budgets": list(PAPER_BUDGETS),
        "lrs": {"sgdm": [0.03, 0.1, 0.3, 1.0, 3.0], "adam": [0.001, 0.003, 0.01, 0.03, 0.1]},
        "seeds": [0, 1, 2],
    },
    "contenders": {
        "description": "REX against what a practitioner without a known budget would reach for today: WSD "
                       "(20 % linear cooldown) and schedule-free SGD / AdamW (one run serves every budget), with "
                       "linear, cosine and OneCycle; mnist1d-mlp, SGDM and Adam, all 6 budgets, the suite's LR grid "
                       "plus refinement, 3 seeds",
        "tasks": ["mnist1d-mlp"],
        "schedules": ["rex", "linear", "cosine", "onecycle", ["wsd", {"fraction": 0.2}], "schedule-free"],
        "optimizers": ["sgdm", "adam"],
        "budgets": list(PAPER_BUDGETS),
        "lrs": {"sgdm": [0.03, 0.1, 0.3, 1.0, 3.0], "adam": [0.001, 0.003, 0.01, 0.03, 0.1]},
        "seeds": [0, 1, 2],
        "refine": True,
    },
    "smoke": {
        "description": "a seconds-long study for tests: digits-mlp, 2 schedules, SGDM, 2 budgets, 2 LRs, 1 seed",
        "tasks": ["digits-mlp"],
        "schedules": ["rex", "linear"],
        "optimizers": ["sgdm"],
        "budgets": [2.0, 4.0],
        "lrs": [0.03, 0.1],
        "seeds": [0],
        "plateau_patience": [5],
    },
}


def available_presets() -> list[str]:
    """Preset names."""
    return list(PRESETS)


def get_preset(name: str) -> dict[str, Any]:
    """A copy of preset ``name`` (safe to modify); an unknown name raises :class:`UsageError` (a ``ValueError``)
    listing the valid ones, with a did-you-mean."""
    try:
        return copy.deepcopy(PRESETS[name])
    except (KeyError, TypeError):
        from budgetsched._checks import did_you_mean

        close = did_you_mean(str(name), list(PRESETS))
        hint = f" (did you mean {close!r}?)" if close else ""
        raise UsageError(f"unknown preset {name!r}{hint}; choose from {', '.join(PRESETS)}") from None
