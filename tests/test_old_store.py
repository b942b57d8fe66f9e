"""A store written before the harness was restructured resumes with zero retraining and reports the same tables."""
from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path

import pytest

from budgetsched.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "store_2c4dd9a"
GRID = ["--task", "digits-mlp", "--schedules", "rex,linear,step,plateau,onecycle", "--optimizers", "sgdm,adam",
        "--budgets", "2,10,100", "--lrs", "0.03,0.1,0.3", "--seeds", "2", "--quiet"]


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript(gzip.decompress((FIXTURE / "store.sql.gz").read_bytes()).decode())
    con.close()
    return db


def test_old_store_resumes_with_zero_trainings(old_store, trained):
    assert main(["run", *GRID, "--store", str(old_store)]) == 0
    assert trained == []


@pytest.mark.parametrize("fmt", ["md", "csv", "json"])
def test_old_store_reports_the_same_tables(old_store, tmp_path, fmt):
    out = tmp_path / f"report.{fmt}"
    assert main(["report", str(old_store), "--format", fmt, "--output", str(out)]) == 0
    assert out.read_text() == (FIXTURE / f"report.{fmt}").read_text()
