"""The study report's data: frozen records that :func:`budgetsched.bench.analysis.report.build_report` fills and the
renderers (:mod:`budgetsched.bench.rendering`) only format.

A :class:`Report` holds one :class:`Setting` per task x optimizer x budget (each schedule's :class:`Choice`, the
Table-1 :class:`Ranked` competitors, paired :class:`Difference` s), Table 1 as :class:`Table1Cell` s, the
per-budget comparison as :class:`BudgetRow` s, the trials the study lacks as :class:`MissingTrial` s and the
budgets that are one run as :class:`SameRun` s. Each setting carries the headline rule's decision
(:class:`budgetsched.bench.analysis.headline.Headline`); Table 1 and the study-level sections count
:meth:`Report.table1_settings`. Field order is the order of the JSON report.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from budgetsched.bench.analysis.headline import Headline

__all__ = ["SPLITS", "Choice", "Ranked", "Difference", "Setting", "Table1Cell", "Comparison", "BudgetRow",
           "MissingTrial", "SameRun", "OffPlan", "Report", "LrPoint"]

#: Table 1's budget splits: low (budget < the low limit), high, and every counted setting.
SPLITS = ("low", "high", "overall")


@dataclass(frozen=True)
class Choice:
    """One schedule's result in one setting: the candidate chosen by validation and its test statistics."""

    label: str
    lr: float
    patience: int | None  # plateau only
    val_mean: float  # selection score (+inf if the candidate diverged)
    mean: float  # mean test metric over the chosen candidate's seeds (+inf if it diverged)
    std: float  # sample std (ddof=1) if n > 1; 0 if n == 1 (shown as "n=1", never as "± 0"); nan if diverged
    n: int  # seeds averaged
    n_candidates: int  # LRs (x patiences) of this schedule with a finished trial in this setting
    rank: int | None = None  # Table-1 rank in the setting; None for plateau (merged into step) or unranked labels
    ranked_as: str | None = None  # "plateau" on the step row when plateau's result stood for step
    lo: float | None = None  # 95 % interval of the mean test metric, LR re-selected in every draw; None if n < 2
    hi: float | None = None
    p_top1: float | None = None  # probability of rank 1 over the draws (step: step incl. plateau); None if n < 2
    p_top3: float | None = None
    lr_grid: tuple[float, ...] = ()  # the LRs this schedule was run at in this setting (any status)
    stand_in: str | None = None  # "constant": the chosen plateau trials reuse constant's (patience never triggers)

    @property
    def diverged(self) -> bool:
        return math.isinf(self.mean)

    @property
    def lr_edge(self) -> str | None:
        """Where the chosen LR sits in ``lr_grid``: "low" (smallest) or "high" (largest), where the best LR may lie
        outside the grid; "only" for a one-LR grid; None inside the grid."""
        if not self.lr_grid:
            return None
        if len(self.lr_grid) == 1:
            return "only"
        if self.lr == min(self.lr_grid):
            return "low"
        if self.lr == max(self.lr_grid):
            return "high"
        return None


@dataclass(frozen=True)
class Ranked:
    """One Table-1 competitor of a setting: ``source`` is the label whose result stands ("plateau" for step)."""

    label: str
    source: str
    mean: float
    rank: int
    p_top1: float | None
    p_top3: float | None


@dataclass(frozen=True)
class Difference:
    """A paired difference ``label - against`` of mean test metrics (lower is better: negative = ``label`` better).

    ``value`` is the point estimate (+inf if only ``label`` diverged, -inf if only ``against`` did, nan if both);
    ``lo`` / ``hi`` its 95 % interval (None with one seed); ``relative`` = value / |mean of against|.
    """

    label: str
    against: str
    value: float
    lo: float | None
    hi: float | None
    relative: float | None
    n: int  # seeds of the setting

    @property
    def clear(self) -> str | None:
        """The interval's verdict: "better" when it lies below 0, "worse" above 0, None when it contains 0 or is
        absent (one seed, a diverged side)."""
        if self.lo is None or self.hi is None:
            return None
        if self.hi < 0:
            return "better"
        if self.lo > 0:
            return "worse"
        return None


@dataclass(frozen=True)
class Setting:
    """One task x optimizer x budget with each schedule's chosen result, its ranking and their uncertainty."""

    task: str
    optimizer: str
    budget: float
    split: str  # "low" or "high"
    results: dict[str, Choice]  # every schedule with a finished trial (plateau included), display order
    missing: list[str]  # schedule labels of the study with no finished trial in this setting
    n_seeds: int = 0  # distinct seeds with a finished trial in this setting
    ranking: dict[str, Ranked] = field(default_factory=dict)  # Table-1 competitors
    best: str | None = None  # the Table-1 label ranked first (display order among ties)
    runner_up: str | None = None
    gap: Difference | None = None  # runner_up - best, paired
    tied: bool | None = None  # True when gap's 95 % interval contains 0; None with one seed or one competitor
    vs_reference: dict[str, Difference] = field(default_factory=dict)
    vs_best_other: Difference | None = None
    total_steps: int | None = None
    budget_unit: str | None = None
    same_run_as: float | None = None  # the budget under which this same run is counted in Table 1
    fair: Any = None  # Table 1's ranking of this setting (budgetsched.bench.analysis.fair.FairRanking)
    headline: Headline | None = None  # the headline rule's decision (budgetsched.bench.analysis.headline)

    @property
    def counted(self) -> bool:
        """Counted once (False for a budget that is the same run as a larger budget of the study, counted under
        that one). Whether Table 1 counts it also depends on the headline rule: :meth:`Report.in_table1`."""
        return self.same_run_as is None

    @property
    def set_apart(self) -> bool:
        """Counted once, but set apart by the headline rule: its best schedule is not shown to beat the task's
        trivial baseline by more than its own noise (docs/tasks.md)."""
        return self.counted and self.headline is not None and not self.headline.counted


@dataclass(frozen=True)
class Table1Cell:
    """One schedule's Table-1 share in one split: Top-1 / Top-3 shares of the split's ``n`` settings (None without
    settings), their credits (a place tied between k rows counts 1/k for each, so the Top-1 shares of a split sum
    to 1), their 95 % intervals for these tasks ((lo, hi) or None) and ``n_clear_top1``, the Top-1 credit in
    settings not tied within noise; ``n_present``: settings where the row has a result of its own (a stand-in is
    not one); ``n_candidates``: the median number of candidates it chose among there
    (:func:`budgetsched.bench.analysis.aggregate.table1`)."""

    top1: float | None
    top3: float | None
    n: int
    n_top1: float
    n_top3: float
    n_clear_top1: float
    top1_ci: tuple[float, float] | None = None
    top3_ci: tuple[float, float] | None = None
    n_present: int | None = None
    n_candidates: float | None = None


@dataclass(frozen=True)
class Comparison:
    """The subject against one other schedule across the settings of one budget (see ``_by_budget``)."""

    n: int  # settings where both sides are finite
    not_comparable: int  # settings where either side diverged
    better: int  # point estimate below 0
    worse: int
    clear_better: int  # the setting's own 95 % interval below 0
    clear_worse: int
    mean_relative: float | None  # mean over settings of (subject - other) / |other|
    ci: tuple[float, float] | None  # its nested 95 % interval
    against: tuple[str, ...]  # the other schedules (the best other differs by setting)


@dataclass(frozen=True)
class BudgetRow:
    """One budget of the per-budget comparison: the subject against the reference and the best other schedule."""

    budget: float
    n_settings: int
    vs_reference: Comparison | None
    vs_best_other: Comparison | None


@dataclass(frozen=True)
class MissingTrial:
    """A trial the study lacks: a never-run or failed (LR, patience, seed) of a schedule, or (``lr`` None) a
    schedule with no finished trial in the setting."""

    task: str
    optimizer: str
    budget: float
    schedule: str
    lr: float | None
    patience: int | None
    seed: int | None
    reason: str


@dataclass(frozen=True)
class SameRun:
    """Budgets of one task x optimizer whose runs have the same length: one run, counted once as ``counted_as``."""

    task: str
    optimizer: str
    total_steps: int
    budgets: tuple[float, ...]
    counted_as: float
    real_percent: float | None  # the run's length as a percent of the 100 % run
    budget_unit: str | None


@dataclass(frozen=True)
class OffPlan:
    """A finished trial whose scheduler reached another position than planned (a ``@trainable`` loop that stepped
    it too few or too many times): kept in the tables, listed so that its result is read with that in mind."""

    task: str
    optimizer: str
    budget: float
    schedule: str
    lr: float
    seed: int
    scheduler_steps: int  # the position the scheduler reached
    total_steps: int | None  # the planned length


@dataclass(frozen=True)
class Report:
    """Everything the renderers need. Build it with :func:`budgetsched.bench.analysis.report.build_report`."""

    settings: list[Setting]
    table1: dict[str, dict[str, Table1Cell]]  # label -> split -> cell
    labels: list[str]  # every schedule label, display order
    ranked_labels: list[str]  # labels in Table 1
    missing: list[MissingTrial]
    n_trials: int
    n_trials_done: int
    n_trials_diverged: int
    n_trials_failed: int
    low_limit: float
    metric_names: dict[str, str] = field(default_factory=dict)
    reference: str | None = None
    subject: str | None = None
    uncertainty: dict[str, Any] = field(default_factory=dict)  # method, resamples, seed, confidence
    by_budget: list[BudgetRow] = field(default_factory=list)  # subject vs reference / best other per budget
    duplicates: list[SameRun] = field(default_factory=list)  # budgets that are one run
    plateau_into_step: bool = False  # Table 1 in the paper's view: plateau merged into step
    statistics: dict[str, Any] = field(default_factory=dict)  # normalised scores, P(improvement): for these tasks
    off_plan: list[OffPlan] = field(default_factory=list)  # trials whose scheduler did not follow its plan
    all_settings: bool = False  # --all-settings: every setting counted, the headline rule not applied

    def in_table1(self, s: Setting) -> bool:
        """Whether Table 1, the per-budget comparison and the study-level statistics count ``s``: counted once and
        not set apart by the headline rule (every setting counted once with ``all_settings``)."""
        return s.counted and (self.all_settings or not s.set_apart)

    def table1_settings(self) -> list[Setting]:
        """The settings Table 1 and the study-level sections are computed on (:meth:`in_table1`)."""
        return [s for s in self.settings if self.in_table1(s)]

    def set_apart_settings(self) -> list[Setting]:
        """The settings the headline rule sets apart (listed separately; counted anyway with ``all_settings``)."""
        return [s for s in self.settings if s.set_apart]

    def no_baseline(self) -> list[str]:
        """Tasks the headline rule could not be applied to (no trivial baseline known here): their settings count."""
        return sorted({s.task for s in self.settings if s.counted and s.headline is not None
                       and s.headline.baseline is None})

    def one_score(self) -> list[Setting]:
        """Settings with one score (one seed): no noise measured, so the headline rule was not applied; they count."""
        return [s for s in self.settings if s.counted and s.headline is not None and s.headline.baseline is not None
                and not s.headline.applied]


@dataclass(frozen=True)
class LrPoint:
    """One LR of one schedule in one setting (Figure 3): mean over seeds with its Student-t 95 % interval."""

    lr: float
    patience: int | None
    mean: float  # +inf if any seed diverged
    lo: float | None
    hi: float | None
    n: int
