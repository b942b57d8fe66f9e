"""A store's rows exported without curves (export --rows) re-render every table the store renders."""
from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path

import pytest

from budgetsched.bench.storage.rows_file import RowsFile, export_rows
from budgetsched.bench.storage.store import Store
from budgetsched.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "store_2c4dd9a"


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> tuple[Path, Path]:
    """(a real store with curves and a recorded study, its export), written once for the module."""
    d = tmp_path_factory.mktemp("rows")
    db = d / "old.db"
    con = sqlite3.connect(db)
    con.executescript(gzip.decompress((FIXTURE / "store.sql.gz").read_bytes()).decode())
    con.close()
    out = d / "study.jsonl.gz"
    assert main(["export", str(db), "--rows", str(out)]) == 0
    return db, out


@pytest.mark.parametrize("fmt", ["md", "csv", "json"])
def test_exported_rows_render_the_stores_tables(stored, tmp_path, fmt):
    db, rows = stored
    a, b = tmp_path / f"store.{fmt}", tmp_path / f"rows.{fmt}"
    assert main(["report", str(db), "--format", fmt, "--output", str(a)]) == 0
    assert main(["report", str(rows), "--format", fmt, "--output", str(b)]) == 0
    assert b.read_text() == a.read_text()
    assert len(a.read_text()) > 1000  # a real report, not two empty ones


def test_rows_file_holds_every_trial_and_the_design_without_curves(stored):
    db, rows = stored
    with Store(db, readonly=True) as s:
        want, planned, studies = s.rows(), s.planned_configs(), s.studies()
    got = RowsFile(rows)
    assert len(want) > 50 and any(r["curves"].get("val_loss") for r in want)
    assert [r["key"] for r in got.rows()] == [r["key"] for r in want]
    for g, w in zip(got.rows(), want):
        assert g["curves"] == {}
        assert {k: v for k, v in g.items() if k != "curves"} == {k: v for k, v in w.items() if k != "curves"}
    assert got.studies() == studies and got.planned_configs() == planned
    assert got.counts() == Store(db, readonly=True).counts()
    assert rows.stat().st_size < db.stat().st_size / 4  # the curves were the bulk


def test_export_is_byte_identical_when_repeated(stored, tmp_path):
    db, rows = stored
    again = tmp_path / "again.jsonl.gz"
    with Store(db, readonly=True) as s:
        assert export_rows(s, again) == len(s.rows())
    assert again.read_bytes() == rows.read_bytes()
    with gzip.open(again, "rt") as f:
        header = json.loads(f.readline())
    assert header["format"] == "budgetsched-rows" and header["version"] == 1 and header["studies"]


def test_export_rows_errors_are_one_line(stored, tmp_path, capsys):
    db, _ = stored
    assert main(["export", str(db), "--rows", str(tmp_path / "x.json")]) == 2
    assert "must end in .jsonl.gz" in capsys.readouterr().err
    assert main(["export", str(db), "--rows", str(tmp_path / "no" / "x.jsonl.gz")]) == 2
    assert "no directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # --rows and --tensorboard are one choice
        main(["export", str(db), "--rows", str(tmp_path / "a.jsonl.gz"), "--tensorboard", str(tmp_path / "tb")])
    assert e.value.code == 2 and "not allowed with" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(b"not gzip")
    assert main(["report", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not a budgetsched rows file" in err and err.count("\n") == 1
    assert main(["report", str(tmp_path / "missing.jsonl.gz")]) == 2
    assert "no such results file" in capsys.readouterr().err
