"""A study's progress (bench/execution/progress.py): one concept, a rich bar on a terminal and plain lines elsewhere,
fed by the runner's own events (a fake clock and stream here: no store, no thread, no terminal)."""
from __future__ import annotations

import io
import threading
import time

import pytest

from budgetsched.bench.execution.progress import PLAIN_EVERY_S, Progress, duration
from budgetsched.bench.execution.run import run_study
from budgetsched.bench.protocol.grid import expand
from budgetsched.bench.storage.store import Store


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _said(stream: io.StringIO) -> list[str]:
    lines = stream.getvalue().splitlines()
    assert all(line.startswith("budgetsched: ") for line in lines), lines  # every line like the command's
    return [line[len("budgetsched: "):] for line in lines]


def test_plain_progress_prints_a_line_per_tenth():
    # 41 trials in the grid, 1 already in the store: 40 to run, one finished each (fake) second
    clock, out = Clock(), io.StringIO()
    p = Progress("lines", 41, 1, stream=out, clock=clock)
    assert p.mode == "lines" and not p.live
    for _ in range(40):
        clock.now += 1
        p.trial()
    p.close()
    header, *said = _said(out)
    assert header == "40 trials to run (1 already in the store)"  # (before, total) == (1, 40)
    assert len(said) == 10 and said[-1] == "40 of 40 trials (100 %), 40 s"
    assert said[0] == "4 of 40 trials (10 %), 4 s, about 36 s left"  # elapsed x (left / done)
    assert said[4] == "20 of 40 trials (50 %), 20 s, about 20 s left"


def test_plain_lines_come_no_more_often_than_every_five_minutes_between_tenths():
    clock, out = Clock(), io.StringIO()
    p = Progress("lines", 1000, 0, stream=out, clock=clock)
    clock.now += 2 * PLAIN_EVERY_S
    p.work(50)  # epochs end, no trial finished yet: nothing to say
    assert _said(out) == ["1000 trials to run"]
    p.trial()  # 1 of 1000: no new tenth, but more than 5 min since the start
    assert _said(out)[-1] == "1 of 1000 trials (0 %), 10 min, about 166.5 h left"  # 600 s x 999 / 1
    for _ in range(50):  # a minute of epochs and trials: under 5 min since the last line
        clock.now += 1
        p.work(10)
        p.trial()
    assert len(_said(out)) == 2
    clock.now += PLAIN_EVERY_S - 50  # 5 min after the last line; a long chunk's epochs still keep the log alive
    p.work(10)
    assert _said(out)[-1] == "51 of 1000 trials (5 %), 15 min, about 4.7 h left"  # 900 s x 949 / 51 = 16,747 s
    assert len(_said(out)) == 3


def test_a_burst_of_trials_is_one_line_with_its_latest_count():
    # a trial each half second: a tenth each, but lines at least 2 s apart (the last one always)
    clock, out = Clock(), io.StringIO()
    p = Progress("lines", 10, 0, stream=out, clock=clock)
    for _ in range(10):
        clock.now += 0.5
        p.trial()
    assert _said(out)[1:] == ["4 of 10 trials (40 %), 2 s, about 3 s left",
                              "8 of 10 trials (80 %), 4 s, about 1 s left", "10 of 10 trials (100 %), 5 s"]
    out = io.StringIO()
    p = Progress("lines", 10, 0, stream=out, clock=clock)
    p.trial(3)  # a chunk written at once, right away: under 2 s since the start, nothing yet
    p.work(1)
    assert len(_said(out)) == 1
    clock.now += 2
    p.work(1)  # the next epoch's end says it
    p.trial(7)
    assert _said(out)[1:] == ["3 of 10 trials (30 %), 2 s, about 5 s left", "10 of 10 trials (100 %), 2 s"]


def test_durations_read_as_a_person_says_them():
    assert [duration(s) for s in (42, 89.4, 90, 420, 5399, 5400, 9000)] == [
        "42 s", "89 s", "2 min", "7 min", "90 min", "1.5 h", "2.5 h"]


def test_nothing_to_run_says_nothing_and_off_says_nothing():
    out = io.StringIO()
    Progress("lines", 12, 12, stream=out).close()
    p = Progress(False, 12, 0, stream=out)
    p.trial(12)
    p.work(5)
    p.close()
    assert out.getvalue() == "" and p.mode == "off" and Progress("off", 1, 0).mode == "off"


def test_trials_finished_by_another_run_count_like_this_runs():
    clock, out = Clock(), io.StringIO()
    p = Progress("lines", 10, 0, stream=out, clock=clock)
    clock.now += 5
    p.trial(4)  # e.g. adopted: another run on the store trained them
    clock.now += 5
    p.trial(6)
    assert _said(out)[1:] == ["4 of 10 trials (40 %), 5 s, about 8 s left", "10 of 10 trials (100 %), 10 s"]


def test_trials_reported_from_two_threads_are_all_counted():
    out = io.StringIO()
    p = Progress("lines", 2000, 0, stream=out)

    def report() -> None:
        for _ in range(1000):
            p.work(1)  # what a worker-process reader thread does
            p.trial()
    threads = [threading.Thread(target=report) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _said(out)[-1].startswith("2000 of 2000 trials (100 %)")


def test_auto_is_the_bar_on_a_terminal_and_lines_elsewhere():
    assert Progress("auto", 3, 0, stream=io.StringIO()).mode == "lines"
    tty = Tty()
    p = Progress("auto", 3, 1, stream=tty)
    assert p.mode == "bar" and p.live
    p.trial(2)
    p.close()
    assert "3/3 trials" in tty.getvalue() and "trials to run" not in tty.getvalue()
    assert Progress(True, 3, 0, stream=io.StringIO()).mode == "bar"  # True keeps meaning the bar


def test_a_bad_progress_value_is_named():
    with pytest.raises(ValueError, match=r"progress must be True, False or one of 'auto', .* got 'plain'"):
        Progress("plain", 3, 0)


@pytest.mark.usefixtures("one_torch_thread")
def test_run_study_lines_count_its_writes_and_another_runs_without_reading_the_store(tmp_path, capsys):
    from budgetsched.bench.engines.train import TrialResult

    grid = expand(["digits-mlp"], ["rex", "linear"], ["sgdm"], [2.0], [0.03, 0.1], [0])  # 4 trials
    other = "elsewhere.example:1:-:other0"
    sentinel = TrialResult("done", -1.0, -1.0, -1.0, -1.0, {"epoch": [1]}, 7, 0.5, None)

    wrote = threading.Event()

    class NoScan(Store):
        """Progress and the summary must come from the runner's events: a full read of the rows fails."""

        def trial_rows(self, *a, **k):
            raise AssertionError("the store was scanned")

        def rows(self, *a, **k):
            raise AssertionError("the store was scanned")

        def put(self, *a, **k):
            super().put(*a, **k)
            wrote.set()

    path = tmp_path / "s.db"
    with Store(path) as s:
        s.put(grid[0], sentinel)  # finished before the run
        assert s.claim([grid[1].key], other, 60) == [grid[1].key]  # another live run holds one

    def other_run_finishes():  # a second after this run wrote its own trials, while it waits
        wrote.wait(300)
        time.sleep(1.0)
        with Store(path) as theirs:
            theirs.put(grid[1], sentinel)

    t = threading.Thread(target=other_run_finishes)
    t.start()
    with NoScan(path) as store, pytest.warns(UserWarning, match="waiting for 1 trials claimed by another run"):
        summary = run_study(grid, store, progress="lines", lease_s=60)
    t.join()
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "budgetsched: 3 trials to run (1 already in the store)"
    assert err[-1].startswith("budgetsched: 3 of 3 trials (100 %), ")
    assert "\x1b" not in "".join(err) and "ETA" not in "".join(err)
    assert (summary.ran, summary.by_others, summary.skipped) == (2, 1, 1)
    assert summary.engines == ("batched",) and summary.engine == "batched"


@pytest.mark.usefixtures("one_torch_thread")
def test_trials_another_run_finished_are_counted_when_a_claim_is_refused_not_when_the_pass_ends(tmp_path,
                                                                                                 monkeypatch):
    from budgetsched.bench.engines.train import TrialResult
    from budgetsched.bench.execution import run as run_mod

    grid = expand(["digits-mlp"], ["rex", "linear"], ["sgdm"], [2.0, 4.0], [0.1], [0])  # 2 groups (budgets) of 2
    first = [c for c in grid if c.budget == 2.0]
    sentinel = TrialResult("done", -1.0, -1.0, -1.0, -1.0, {"epoch": [1]}, 7, 0.5, None)
    events: list[tuple[str, int]] = []

    class Recorded(Progress):
        def trial(self, n: int = 1) -> None:
            events.append(("trial", n))
            super().trial(n)

    class Racing(Store):
        """The other run finishes the first group right after this run planned (its first look at the store)."""

        looks = 0

        def finished_keys(self):
            keys = super().finished_keys()
            Racing.looks += 1
            if Racing.looks == 1:
                with Store(tmp_path / "s.db") as theirs:
                    for c in first:
                        theirs.put(c, sentinel)
            return keys

        def put(self, config, *a, **k):
            events.append(("put", 1))
            super().put(config, *a, **k)

    monkeypatch.setattr(run_mod, "Progress", Recorded)
    with Racing(tmp_path / "s.db") as store:
        s = run_study(grid, store, engine="sequential", progress=False)
    assert (s.ran, s.by_others, s.skipped) == (2, 2, 0)
    # the first chunk's claim is refused (finished): both counted before this run writes its own two
    assert events[:2] == [("trial", 1), ("trial", 1)] and events[2:] == [("put", 1), ("trial", 1)] * 2
