"""What of the user's code a study ships to a Ray cluster (budgetsched.bench.execution.shipping), decided on the
driver: a task file's directory as the working directory (caches and stores left out, a size limit), an
uninstalled package as py_modules, nothing for installed packages and built-in tasks."""
from __future__ import annotations

import sys
import textwrap

import pytest

from budgetsched.bench.execution.shipping import EXCLUDES, code_to_ship
from budgetsched.bench.tasks import registry
from budgetsched.errors import UsageError

TASK = textwrap.dedent("""
    from budgetsched.bench.tasks import get_task

    def make_task():
        return get_task("digits-mlp")
""")


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "mine.py").write_text(TASK)
    (tmp_path / "driver").mkdir()
    monkeypatch.chdir(tmp_path / "driver")
    return tmp_path


def test_a_task_file_ships_its_directory_and_is_found_by_name(user_dir):
    s = code_to_ship(["../tasks/mine.py:make_task", "digits-mlp"])
    assert s.runtime_env["working_dir"] == str(user_dir / "tasks")  # resolved against the driver's directory
    assert set(EXCLUDES) <= set(s.runtime_env["excludes"]) and "*.db" in s.runtime_env["excludes"]
    assert s.locations == {"../tasks/mine.py:make_task": "mine.py"}  # relative to the worker's working directory
    assert code_to_ship(["digits-mlp"]).empty


def test_a_large_directory_is_refused_in_one_line_and_excludes_do_not_count(user_dir):
    (user_dir / "tasks" / "weights.bin").write_bytes(b"\0" * 3000)
    with pytest.raises(UsageError, match=r"holds more than .* MiB .* move the task file") as e:
        code_to_ship(["../tasks/mine.py:make_task"], limit=2000)
    assert "\n" not in str(e.value) and str(user_dir / "tasks") in str(e.value)
    (user_dir / "tasks" / "weights.bin").unlink()
    for excluded in (".git/big", "__pycache__/big.pyc", "study.db", ".venv/lib/big"):
        path = user_dir / "tasks" / excluded
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * 3000)
    assert code_to_ship(["../tasks/mine.py:make_task"], limit=2000).runtime_env["working_dir"]


def test_task_files_in_two_directories_are_refused(user_dir):
    (user_dir / "other").mkdir()
    (user_dir / "other" / "theirs.py").write_text(TASK)
    with pytest.raises(UsageError, match="2 directories"):
        code_to_ship(["../tasks/mine.py:make_task", "../other/theirs.py:make_task"])


def test_an_uninstalled_package_ships_as_py_modules_and_an_installed_one_does_not(user_dir, monkeypatch):
    pkg = user_dir / "driver" / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tasks.py").write_text(TASK)
    monkeypatch.syspath_prepend(str(user_dir / "driver"))
    monkeypatch.delitem(sys.modules, "mypkg", raising=False)
    registry.get_task("mypkg.tasks:make_task")
    s = code_to_ship(["mypkg.tasks:make_task"])
    assert s.runtime_env == {"py_modules": [str(pkg)]} and s.locations == {"mypkg.tasks:make_task": "mypkg.tasks"}
    assert code_to_ship(["sklearn.datasets:load_digits"]).empty  # installed: every node has it
