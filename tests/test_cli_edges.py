"""The command line's edges, as a new user meets them: usage errors answered without importing torch, a
did-you-mean for misspelled names and study-file keys, a mistyped resume path refused, no empty output
directory left behind by a failed command, progress as plain lines when stderr is not a terminal, and the summary
naming the engine that trained (the lines themselves: tests/test_progress.py; the engines named by the runner:
tests/test_summary_engines.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from budgetsched.cli import main

ENV = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
BASE = ["--task", "digits-mlp", "--schedules", "rex", "--optimizers", "sgdm", "--budgets", "2", "--lrs", "0.1",
        "--seeds", "1"]

#: Runs the command in a fresh interpreter and reports whether torch was imported by the time it answered.
WRAPPER = ("import sys; from budgetsched.cli import main; rc = main(sys.argv[1:]); "
           "sys.stdout.write(f'{rc} torch={\"torch\" in sys.modules}\\n')")


def _fresh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True, env=ENV,
                          timeout=120)


def test_builtin_task_names_without_torch_are_the_registrys():
    from budgetsched.bench.tasks import registry
    from budgetsched.bench.tasks.names import BUILTIN_TASKS

    assert BUILTIN_TASKS == tuple(n for n in registry.available_tasks() if n in registry._BUILTIN)
    assert set(BUILTIN_TASKS) == set(registry._BUILTIN)


@pytest.mark.parametrize("args,needle", [
    (["--task", "digits-mpl"], "unknown task 'digits-mpl' (did you mean 'digits-mlp'?); choose from"),
    (["--schedules", "rexx"], "unknown schedule 'rexx' (did you mean 'rex'?); choose from"),
    (["--budgets", "150"], "150"),
    (["--seeds", "0"], "seeds must be a count in [1, 10000]"),
    (["--lrs", "sgdm=0.1;adm=0.01"], "unknown optimizer 'adm' in lrs (did you mean 'adam'?)"),
    (["--workers", "0"], "workers must be an integer >= 1"),
])
def test_usage_errors_are_answered_without_importing_torch(tmp_path, args, needle):
    db = tmp_path / "s.db"
    r = _fresh("run", *BASE, *args, "--store", str(db))
    assert r.stdout == "2 torch=False\n", (r.stdout, r.stderr)
    assert r.stderr.startswith("budgetsched: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert needle in r.stderr
    assert not db.exists()


def test_a_misspelled_study_file_key_is_named_with_its_likely_meaning(tmp_path):
    toml = tmp_path / "study.toml"
    toml.write_text('tasks = ["digits-mlp"]\nschedule = ["rex"]\nlrs = [0.1]\n')
    r = _fresh("run", "--config", str(toml), "--store", str(tmp_path / "s.db"))
    assert r.stdout == "2 torch=False\n", r.stderr
    assert "unknown key(s) 'schedule'; did you mean 'schedules'? (valid keys: budget_unit, " in r.stderr
    assert "no schedules given" not in r.stderr
    toml.write_text('tasks = ["digits-mlp"]\nlrs = [0.1]\n')  # really missing: the message says how to give it
    assert main(["run", "--config", str(toml), "--store", str(tmp_path / "s.db")]) == 2


def test_did_you_mean_for_presets_and_missing_keys_name_the_flag(tmp_path, capsys):
    assert main(["run", "--preset", "smok", "--store", str(tmp_path / "s.db")]) == 2
    assert "unknown preset 'smok' (did you mean 'smoke'?)" in capsys.readouterr().err
    assert main(["run", "--task", "digits-mlp", "--lrs", "0.1", "--store", str(tmp_path / "s.db")]) == 2
    assert "command line: no schedules given: pass --schedules, --preset or --config" in capsys.readouterr().err


def test_a_misspelled_command_or_choice_gets_a_did_you_mean(capsys):
    for argv, hint in ((["reprot", "s.db"], "(did you mean 'report'?)"),
                       (["report", "s.db", "--format", "jsn"], "(did you mean 'json'?)")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("budgetsched: error: ") and hint in err and err.count("\n") == 1


def test_a_mistyped_resume_path_is_refused_not_started_afresh(tmp_path, capsys):
    store = tmp_path / "nodir" / "sub" / "a.db"
    assert main(["run", *BASE, "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no such directory {str(tmp_path / 'nodir')!r}" in err
    assert "(create it first" in err
    assert not (tmp_path / "nodir").exists()


def test_failed_commands_leave_no_output_directory(tmp_path, capsys):
    missing = str(tmp_path / "missing.db")
    assert main(["plot", missing, "--out", str(tmp_path / "figs")]) == 2
    assert main(["report", missing, "--figures", str(tmp_path / "f" / "g")]) == 2
    assert main(["report", missing, "--output", str(tmp_path / "r.md"), "--format", "md"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert capsys.readouterr().err.count("budgetsched: error: ") == 3


@pytest.mark.usefixtures("one_torch_thread")
def test_without_a_terminal_progress_is_plain_lines_and_a_new_store_is_announced(tmp_path):
    db = tmp_path / "s.db"
    args = ["run", *BASE, "--schedules", "rex,linear", "--lrs", "0.03,0.1", "--store", str(db)]
    r = subprocess.run([sys.executable, "-m", "budgetsched.cli", *args], capture_output=True, text=True, env=ENV,
                       timeout=300)  # stderr is a pipe, not a terminal
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == f"budgetsched: new store at {db}"
    assert lines[1] == "budgetsched: 4 trials to run"
    assert lines[-1].startswith("budgetsched: 4 of 4 trials (100 %), ")
    assert "ETA" not in r.stderr and "\x1b" not in r.stderr and "\r" not in r.stderr
    assert "(batched, 1 worker, cpu" in r.stdout
    again = subprocess.run([sys.executable, "-m", "budgetsched.cli", *args], capture_output=True, text=True,
                           env=ENV, timeout=300)
    assert again.returncode == 0 and again.stderr == ""  # resumed: nothing new, nothing to run, nothing said


@pytest.mark.parametrize("value", ["0", "1.5", "-0.5", "nan", "inf"])
def test_gpus_per_chunk_outside_0_1_is_a_usage_error_naming_it(tmp_path, capsys, value):
    db = tmp_path / "s.db"
    assert main(["run", *BASE, "--engine", "ray", "--gpus-per-chunk", value, "--store", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("budgetsched: error: gpus_per_chunk must be a number in (0, 1]") and err.count("\n") == 1
    assert f"got {float(value)!r}" in err
    assert not db.exists()


def test_gpus_per_chunk_without_ray_is_refused(tmp_path, capsys):
    assert main(["run", *BASE, "--gpus-per-chunk", "0.5", "--store", str(tmp_path / "s.db")]) == 2
    assert "gpus_per_chunk 0.5 is only used with engine 'ray', not 'batched'" in capsys.readouterr().err


def test_gpus_per_chunk_reaches_the_runner_in_options_checked_once(tmp_path, monkeypatch):
    from budgetsched.bench.execution import options as run_options, ray as ray_exec, runners
    from budgetsched.bench.execution.run import StudySummary

    monkeypatch.setattr(ray_exec, "check_cluster", lambda address: None)  # no Ray instance needed
    checks = []
    real = run_options._checked_device
    monkeypatch.setattr(run_options, "_checked_device", lambda *a: checks.append(a) or real(*a))
    seen = {}

    def fake_run_study(configs, store, **kw):
        seen.update(kw)
        return StudySummary(total=len(configs), skipped=0)

    monkeypatch.setattr(runners, "run_study", fake_run_study)
    assert main(["run", *BASE, "--engine", "ray", "--gpus-per-chunk", "0.25", "--device", "cuda",
                 "--store", str(tmp_path / "s.db"), "--quiet"]) == 0
    options = seen["options"]
    assert isinstance(options, run_options.RunOptions)
    assert (options.engine, options.gpus_per_chunk, options.device) == ("ray", 0.25, "cuda")
    assert len(checks) == 1 and not {"engine", "gpus_per_chunk", "device", "workers"} & seen.keys()


@pytest.mark.parametrize("command", ["report", "plot"])
@pytest.mark.parametrize("value,needle", [("10", "resamples must be an integer >= 200, got 10"),
                                          ("1000001", "resamples must be at most 1000000, got 1000001")])
def test_resamples_bounds_are_checked_before_the_store_is_read(tmp_path, capsys, command, value, needle):
    # one home for both bounds (analysis.stats.check_resamples); the store does not even exist
    rest = ["--out", str(tmp_path / "figs")] if command == "plot" else []
    assert main([command, str(tmp_path / "missing.db"), *rest, "--resamples", value]) == 2
    assert capsys.readouterr().err == f"budgetsched: error: {needle}\n"
    assert not (tmp_path / "figs").exists()
