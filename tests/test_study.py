"""Study specs (presets, TOML files, flags) validated once; budgets that are one run; plateau stand-ins;
LR refinement."""
from __future__ import annotations

import math
import re
import warnings

import pytest

from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.protocol.records import Provenance, TrialRow
from budgetsched.bench.protocol.status import Status
from budgetsched.bench.protocol.presets import available_presets, get_preset
from budgetsched.bench.execution.runners import BudgetCollapseWarning, run_study
from budgetsched.bench.storage.store import Store
from budgetsched.bench.protocol.study import MAX_EXTENSIONS, StudySpec, load_config, refinement
from budgetsched.cli import main
from budgetsched.errors import UsageError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BASE = dict(tasks=["digits-mlp"], schedules=["rex", "linear"], lrs=[0.03, 0.1], optimizers=["sgdm"], budgets=[2.0],
            seeds=1)


def test_every_preset_is_a_valid_spec():
    for name in available_presets():
        spec = StudySpec.from_mapping(get_preset(name), name)
        assert spec.configs()
    suite = StudySpec.from_mapping(get_preset("suite"), "suite")
    assert suite.refine and len(suite.tasks) == 5 and len(suite.budgets) * len(suite.tasks) * 2 == 60  # settings
    assert len(suite.configs()) == 5 * 2 * 6 * 9 * 5 * 3  # (7 schedules + plateau x 2 patiences) x 5 LRs x 3 seeds


@pytest.mark.parametrize("change,needle", [
    (dict(budgets=[150]), "150"),
    (dict(lrs=[0.1, -1]), "-1"),
    (dict(lrs=[0.0]), "0.0"),
    (dict(schedules=["rex", "rexx"]), "rexx"),
    (dict(schedules=[["delayed-linear", {"dealy": 0.5}]]), "dealy"),
    (dict(optimizers=["lion"]), "lion"),
    (dict(tasks=["nosuch"]), "nosuch"),
    (dict(seeds=[2 ** 70]), "2**63"),
    (dict(seeds=0), "count in [1, 10000]"),
    (dict(seeds=10 ** 9), "count in [1, 10000]"),
    (dict(plateau_patience=[0]), "plateau_patience"),
    (dict(budget_unit="hours"), "hours"),
    (dict(diverge_factor=1.0), "diverge_factor"),
    (dict(refine="yes"), "refine"),
    (dict(lrs="0.1"), "lrs"),
    (dict(bugdets=[1]), "unknown key(s) 'bugdets'"),
])
def test_bad_specs_name_the_value(change, needle):
    with pytest.raises(UsageError, match="^study: .*" + re.escape(needle)):
        StudySpec.from_mapping({**BASE, **change}, "study")


def test_toml_round_trip_and_errors(tmp_path):
    p = tmp_path / "study.toml"
    p.write_text('description = "two schedules"\ntasks = ["digits-mlp"]\nschedules = ["rex", ["delayed-linear", '
                 '{delay = 0.5}]]\nlrs = {sgdm = [0.1], adam = [0.01]}\nbudgets = [2, 4]\nseeds = 2\n'
                 'budget_unit = "epochs"\n')
    spec = StudySpec.from_mapping(load_config(p), str(p))
    assert spec.schedules == ["rex", ("delayed-linear", {"delay": 0.5})] and spec.seeds == [0, 1]
    assert spec.budget_unit == "epochs" and {c.budget_unit for c in spec.configs()} == {"epochs"}
    again = StudySpec.from_mapping(spec.to_dict(), "round trip")
    assert again.configs() == spec.configs()
    p.write_text("tasks = [\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_config(p)
    p.write_text('tasks = ["digits-mlp"]\nschedules = ["rex"]\nlrs = [0.1]\nseeds = "three"\n')
    with pytest.raises(UsageError, match="seeds must be a list of integers"):
        StudySpec.from_mapping(load_config(p), str(p))
    with pytest.raises(UsageError, match="no such file"):
        load_config(tmp_path / "missing.toml")


def test_cli_config_file_and_flags_override(tmp_path, capsys):
    p = tmp_path / "study.toml"
    p.write_text('tasks = ["digits-mlp"]\nschedules = ["rex"]\nlrs = [0.1]\noptimizers = ["sgdm"]\n'
                 'budgets = [2]\nseeds = 1\n')
    db = tmp_path / "s.db"
    assert main(["run", "--config", str(p), "--lrs", "0.03,0.1", "--store", str(db), "--quiet"]) == 0
    with Store(db, readonly=True) as s:
        assert sorted(r["lr"] for r in s.rows()) == [0.03, 0.1]
    p.write_text('tasks = ["digits-mlp"]\nschedules = ["rex"]\nlrs = [0.1]\nbudgetz = [2]\n')
    assert main(["run", "--config", str(p), "--store", str(tmp_path / "t.db"), "--quiet"]) == 2
    assert "unknown key(s) 'budgetz'" in capsys.readouterr().err and not (tmp_path / "t.db").exists()
    assert main(["run", "--config", str(p), "--preset", "smoke", "--store", str(tmp_path / "t.db")]) == 2


@pytest.mark.parametrize("args", [["--schedules", "delayed-linear:dealy=0.5"], ["--schedules", "nosuch"],
                                  ["--lrs", "0"], ["--lrs", "-0.1"], ["--budget-unit", "hours"]])
def test_bad_grids_fail_before_any_store_is_written(tmp_path, args, capsys):
    db = tmp_path / "s.db"
    argv = ["run", "--task", "digits-mlp", "--schedules", "rex", "--lrs", "0.1", "--budgets", "2", "--seeds", "1",
            *args, "--store", str(db), "--quiet"]
    with pytest.raises(SystemExit) if "hours" in args else _nothing():
        assert main(argv) == 2
    assert not db.exists()
    assert capsys.readouterr().err.count("\n") == 1


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_budgets_that_are_one_run_are_trained_once_with_a_warning(tmp_path, trained):
    """With the paper's epoch rounding, 1 % and 1.5 % of digits' 60 epochs are both one epoch: trained once and
    counted as the larger budget (the one collapse rule, the report's: issue 17's decision)."""
    spec = StudySpec.from_mapping({**BASE, "budgets": [1.0, 1.5, 5.0], "budget_unit": "epochs"})
    with Store(tmp_path / "s.db") as store, warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = run_study(spec.configs(), store, progress=False)
        rows = store.rows()
    msgs = [str(x.message) for x in w if issubclass(x.category, BudgetCollapseWarning)]
    assert len(msgs) == 1 and "budget 1 % is 29 steps, the same run as budget 1.5 %" in msgs[0]
    assert sorted({r["budget"] for r in rows}) == [1.5, 5.0] and s.dropped == 4
    assert {r["budget"]: r["total_steps"] for r in rows} == {1.5: 29, 5.0: 3 * 29}
    assert len(trained) == len(rows) == 8
    # in steps (the default), the same budgets are three different runs
    steps = StudySpec.from_mapping({**BASE, "budgets": [1.0, 1.5, 5.0]})
    with Store(tmp_path / "t.db") as store, warnings.catch_warnings():
        warnings.simplefilter("error", BudgetCollapseWarning)
        run_study(steps.configs(), store, progress=False)
        assert sorted({r["total_steps"] for r in store.rows()}) == [18, 27, 87]


def test_plateau_that_cannot_trigger_is_recorded_as_constant_without_training(tmp_path, trained):
    """Budget 4 % of digits = 70 steps = 3 evaluations: patience 1 could trigger (3 >= 1 + 3? no: 3 <= 1 + 2),
    so neither patience 1 nor 5 can change the run; patience values are kept as asked (no cap)."""
    spec = StudySpec.from_mapping({**BASE, "schedules": ["constant", "plateau"], "plateau_patience": [1, 5],
                                   "budgets": [4.0], "seeds": 2})
    with Store(tmp_path / "s.db") as store:
        s = run_study(spec.configs(), store, progress=False)
        rows = store.rows()
    assert s.stand_ins == 8 and len(rows) == 12
    assert [c.schedule for c in trained].count("plateau") == 0 and len(trained) == 4  # only the constant trials
    const = {(r["lr"], r["seed"]): r for r in rows if r["schedule"] == "constant"}
    for r in (r for r in rows if r["schedule"] == "plateau"):
        assert r["stand_in"] == "constant" and r["schedule_params"]["patience"] in (1, 5)
        c = const[(r["lr"], r["seed"])]
        assert (r["val_metric"], r["test_metric"], r["curves"]) == (c["val_metric"], c["test_metric"], c["curves"])
    # with a budget long enough for patience 1 (6 evaluations), that plateau is trained; patience 5 still is not
    longer = spec.override(budgets=[10.0])
    with Store(tmp_path / "s.db") as store:
        trained.clear()
        s = run_study(longer.configs(), store, progress=False)
    assert s.stand_ins == 4 and sorted(c.params.get("patience", 0) for c in trained) == [0, 0, 0, 0, 1, 1, 1, 1]


def test_a_stand_in_reuses_a_constant_trial_already_in_the_store(tmp_path, trained):
    only_const = StudySpec.from_mapping({**BASE, "schedules": ["constant"], "budgets": [4.0]})
    with Store(tmp_path / "s.db") as store:
        run_study(only_const.configs(), store, progress=False)
        trained.clear()
        s = run_study(only_const.override(schedules=["constant", "plateau"]).configs(), store, progress=False)
        assert trained == [] and s.stand_ins == 4 and len(store.rows()) == 6


def _row(c, status, val_metric):
    """A synthetic stored trial of ``c``, typed as ``Store.trial_rows()`` gives it."""
    return TrialRow(key=c.key, config=c, status=Status.parse(status), val_loss=None, val_metric=val_metric,
                    test_loss=None, test_metric=None, curves={}, steps=None, wall_time=None, error=None,
                    provenance=Provenance())


def _val_rows(configs, best):
    """Synthetic finished rows whose validation metric is lowest at ``best`` (log distance)."""
    return [_row(c, "done", abs(math.log(c.lr / best))) for c in configs]


@pytest.mark.parametrize("best,expected", [
    (0.05, [0.01, 0.03, 0.1, 0.0173205, 0.0519615]),  # interior: +- sqrt 3 around 0.03
    (0.3, [0.01, 0.03, 0.1, 0.3, 1.0, 0.173205, 0.519615]),  # edge: extend 0.3, 1; then +- sqrt 3 around 0.3
    # at most 3 extensions below (0.003, 0.001, 0.0003), then +- sqrt 3 around the edge point
    (1e-5, [0.01, 0.03, 0.1, 0.003, 0.001, 0.0003, 0.000519615, 0.000173205]),
])
def test_refinement_adds_the_expected_lrs(best, expected):
    spec = StudySpec.from_mapping({**BASE, "lrs": [0.01, 0.03, 0.1], "seeds": 2})
    configs = spec.configs()
    for _ in range(10):
        new = refinement(spec, configs, _val_rows(configs, best))
        if not new:
            break
        assert len({c.seed for c in new}) == 2  # every seed of the grid
        configs = configs + new
    got = sorted({c.lr for c in configs if c.schedule == "rex"})
    assert got == sorted(expected)
    assert sum(lr < 0.01 for lr in got if lr in (0.003, 0.001, 0.0003)) <= MAX_EXTENSIONS


@pytest.mark.parametrize("best,expected", [
    (0.05, [0.01, 0.03, 0.1]),  # interior: the x3 grid stays as it is
    (0.3, [0.01, 0.03, 0.1, 0.3, 1.0]),  # edge: extended to 0.3, then 1 (0.3 is interior then): no sqrt 3 points
    (1e-5, [0.01, 0.03, 0.1, 0.003, 0.001, 0.0003]),  # at most MAX_EXTENSIONS below, nothing else
])
def test_edge_refinement_only_extends_the_grid(best, expected):
    spec = StudySpec.from_mapping({**BASE, "lrs": [0.01, 0.03, 0.1], "seeds": 2, "refine": "edge"})
    configs = spec.configs()
    for _ in range(10):
        new = refinement(spec, configs, _val_rows(configs, best))
        if not new:
            break
        configs = configs + new
    assert sorted({c.lr for c in configs if c.schedule == "rex"}) == sorted(expected)


@pytest.mark.parametrize("bad", ["all", "yes", 1, None])
def test_refine_accepts_only_true_false_or_edge(bad):
    with pytest.raises(UsageError, match="refine must be true, false or \"edge\""):
        StudySpec.from_mapping({**BASE, "refine": bad})


def test_refinement_waits_for_every_seed_and_skips_never_training():
    spec = StudySpec.from_mapping({**BASE, "lrs": [0.01, 0.03, 0.1], "seeds": 2})
    configs = spec.configs()
    rows = _val_rows(configs, 0.05)
    assert refinement(spec, configs, rows[:-1])  # rex is complete, linear is not
    assert {c.schedule for c in refinement(spec, configs, rows[:-1])} == {"rex"}
    diverged = [_row(c, "diverged", None) for c in configs]
    assert refinement(spec, configs, diverged) == []


def test_cli_refine_adds_trials_and_resumes(tmp_path, capsys):
    db = tmp_path / "s.db"
    argv = ["run", "--task", "digits-mlp", "--schedules", "rex", "--optimizers", "sgdm", "--budgets", "3",
            "--lrs", "0.01,0.03", "--seeds", "1", "--refine", "--store", str(db), "--quiet"]
    assert main(argv) == 0
    with Store(db, readonly=True) as s:
        lrs = sorted(r["lr"] for r in s.rows())
    assert len(lrs) > 2 and {0.01, 0.03} < set(lrs)  # refinement points were trained
    first = capsys.readouterr().out.splitlines()[-1]
    assert first.startswith(f"{len(lrs)} trials run") and "0 already in the store" in first
    assert main(argv) == 0  # nothing left: the rerun trains nothing, and says every trial was there before
    assert f"0 trials run (0 done, 0 diverged, 0 failed), {len(lrs)} already in the store, {len(lrs)} in the grid" \
        in capsys.readouterr().out.splitlines()[-1]
    with Store(db, readonly=True) as s:
        assert sorted(r["lr"] for r in s.rows()) == lrs


def test_sampling_preset_is_the_papers_table2_grid():
    from budgetsched import Schedule
    from budgetsched.bench.protocol.presets import STEP_AS_EXP_GAMMA, TABLE2_SAMPLINGS

    spec = StudySpec.from_mapping(get_preset("sampling"), "sampling")
    configs = spec.configs()
    assert len(configs) == 4 * 7 * 3 * 3 and {c.lr for c in configs} == {0.3} and spec.optimizers == ["sgdm"]
    assert {c.params["sampling"] for c in configs} == set(TABLE2_SAMPLINGS)
    # the exp approximation of step: gamma fitted to the 50-75 levels in log space (ln m = gamma z)
    assert STEP_AS_EXP_GAMMA == pytest.approx(-5.668, abs=1e-3)
    m = Schedule("exp", 1000, gamma=STEP_AS_EXP_GAMMA)
    fitted = [math.log(m(500)), math.log(m(750))]
    residual = sum((f - math.log(v)) ** 2 for f, v in zip(fitted, (0.1, 0.01)))
    for g in (STEP_AS_EXP_GAMMA - 0.05, STEP_AS_EXP_GAMMA + 0.05):  # the least-squares optimum
        other = Schedule("exp", 1000, gamma=g)
        assert residual < sum((math.log(other(t)) - math.log(v)) ** 2 for t, v in ((500, 0.1), (750, 0.01)))
    held = Schedule("rex", 100, sampling="10-10").values()
    assert len(set(held.round(12))) == 10  # ten levels, each held


def test_delay_and_budget_change_presets():
    delay = StudySpec.from_mapping(get_preset("delay"), "delay")
    assert {c.label for c in delay.configs()} == {"rex", "linear", "step", "linear(delay=0.25)", "linear(delay=0.5)",
                                                 "linear(delay=0.75)"}
    bc = StudySpec.from_mapping(get_preset("budget-change"), "budget-change")
    assert {c.params.get("on_change") for c in bc.configs()} == {None, "continue", "rewarm", "extend", "keep"}
    assert {c.params.get("change_at") for c in bc.configs()} == {None, 5, 20}  # told early, and late


def test_the_store_records_the_study_it_ran(tmp_path):
    db = tmp_path / "s.db"
    argv = ["run", "--task", "digits-mlp", "--schedules", "rex", "--optimizers", "sgdm", "--lrs", "0.1",
            "--budgets", "2", "--seeds", "1", "--store", str(db), "--quiet"]
    assert main(argv) == 0 and main([*argv[:-3], "--seeds", "2", "--store", str(db), "--quiet"]) == 0
    with Store(db, readonly=True) as s:
        studies = s.studies()
    assert [h["spec"]["seeds"] for h in studies] == [[0], [0, 1]]
    assert StudySpec.from_mapping(studies[-1]["spec"], "recorded").configs()[0].task == "digits-mlp"


def test_refined_label_shows_a_weighting_only_when_it_is_not_the_optimizers_own():
    def label(opt, weighting):
        return TrialConfig("t", "refined", opt, 10.0, 0.1, 0,
                           schedule_params=(("grad_norms", (1.0, 2.0)), ("weighting", weighting))).label
    assert label("sgdm", "sgd") == label("adam", "adam") == "refined"
    assert label("sgdm", "adam") == "refined(weighting=adam)"


def test_the_grid_is_expanded_once_and_handed_out(monkeypatch):
    """validate() expands the grid (TrialConfig checks every value there); configs() hands out that expansion and
    expands again only for a spec changed since."""
    from budgetsched.bench.protocol import study as study_mod

    calls = []
    real = study_mod.expand
    monkeypatch.setattr(study_mod, "expand", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    spec = StudySpec.from_mapping({**BASE, "optimizers": ["sgdm", "adam"]})
    assert len(calls) == 2  # one per (task, optimizer), in validate
    first, second = spec.configs(), spec.configs()
    assert first == second and first is not second and len(calls) == 2
    assert len(first) == 2 * 2 * 2 * 1  # schedules x optimizers x LRs x seeds, at budget 2
    spec.seeds = [0, 1]
    assert len(spec.configs()) == 2 * len(first) and len(calls) == 4


def test_a_store_of_restart_trials_resumes_as_rewarm_without_training(tmp_path, trained):
    """A store written before the rename spells on_change "restart" in its rows; the same study spelled "rewarm"
    finds every trial finished (same keys) and trains nothing; its rows read back as "rewarm"."""
    import sqlite3

    def spec(how):
        change = {"planned_budget": 2, "change_at": 1, "on_change": how}
        return StudySpec.from_mapping({**BASE, "schedules": [["linear", change]], "budgets": [4.0]})

    db = tmp_path / "s.db"
    with Store(db) as store:
        assert run_study(spec("restart").configs(), store, progress=False).ran == 2
    with sqlite3.connect(db) as c:  # the rows as the earlier version wrote them
        for col in ("config", "schedule_params", "label"):
            c.execute(f"UPDATE trials SET {col} = replace({col}, 'rewarm', 'restart')")
        assert c.execute("SELECT count(*) FROM trials WHERE config LIKE '%\"restart\"%'").fetchone() == (2,)
    c.close()
    trained.clear()
    with Store(db) as store:
        s = run_study(spec("rewarm").configs(), store, progress=False)
        rows = store.trial_rows()
    assert (s.ran, s.skipped, trained) == (0, 2, [])
    assert {r.params["on_change"] for r in rows} == {"rewarm"} and {r.key for r in rows} == {
        c.key for c in spec("rewarm").configs()}


def test_task_flag_narrows_a_preset_with_per_task_lrs():
    from budgetsched.cli._parser import build_parser
    from budgetsched.cli._study import study_spec

    args = build_parser().parse_args(["run", "--preset", "suite", "--task", "digits-mlp-v2", "--store", "s.db"])
    spec = study_spec(args)
    assert spec.tasks == ["digits-mlp-v2"] and set(spec.lrs) == {"digits-mlp-v2"}
    assert spec.lrs_for("adam", "digits-mlp-v2") == get_preset("suite")["lrs"]["digits-mlp-v2"]["adam"]
    bad = build_parser().parse_args(["run", "--preset", "suite", "--task", "digits-mlp", "--store", "s.db"])
    with pytest.raises(UsageError, match="no LRs for task.*digits-mlp.*--lrs"):  # named, with the way out
        study_spec(bad)
