"""Packaging: the core needs numpy only; every adapter, integration and the harness names its extra when missing.

The fresh-environment tests build a new virtual environment with nothing but this package (editable, no
dependencies) and numpy, as ``pip install budgetsched`` would give a JAX or Keras user, and check it from outside.
pip's cache and the configured indexes are reused, so this takes seconds.
"""
from __future__ import annotations

import email
import os
import socket
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

import budgetsched

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "matplotlib", "rich", "scipy", "sklearn", "mnist1d", "jax", "keras", "transformers", "lightning")
ADAPTERS = [  # module, the extra its message names, the framework it needs
    ("budgetsched.torch", "torch", "torch"),
    ("budgetsched.optax", "jax", "jax"),
    ("budgetsched.keras", "keras", "keras"),
    ("budgetsched.integrations.hf", "hf", "torch"),
    ("budgetsched.integrations.lightning", "lightning", "torch"),
    ("budgetsched.bench", "bench", "torch"),
]


def _run(python: str | Path, code: str, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=env, timeout=120, **kw)


def test_import_budgetsched_loads_numpy_only():
    code = ("import sys, budgetsched, budgetsched.schedule, budgetsched.plateau, budgetsched.profiles, "
            "budgetsched.sampling, budgetsched.errors, budgetsched.integrations\n"
            "budgetsched.Schedule('rex', 100, 0.1).values()\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = _run(sys.executable, code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_message_names_the_extra_in_this_environment_too(monkeypatch):
    import importlib

    for module, extra, framework in ADAPTERS:
        monkeypatch.setitem(sys.modules, framework, None)  # as if it were not installed
        monkeypatch.delitem(sys.modules, module, raising=False)
        with pytest.raises(budgetsched.MissingExtraError) as e:
            importlib.import_module(module)
        assert f"pip install 'budgetsched[{extra}]'" in str(e.value) and isinstance(e.value, ModuleNotFoundError)
        monkeypatch.undo()


# ------------------------------------------------------------------------------------------- a fresh venv
def _pip(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=600, cwd=cwd)


def _skip_if_offline(result: subprocess.CompletedProcess, what: str) -> None:
    """A failed pip call fails the test unless this machine has no network at all (then: skip, saying so)."""
    if result.returncode == 0:
        return
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        pytest.skip(f"no network on this machine: pip could not {what} (setuptools/numpy are not in pip's cache)")
    pytest.fail(f"pip could not {what}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory):
    """A new venv with only budgetsched (editable, --no-deps) and numpy."""
    where = tmp_path_factory.mktemp("core-venv") / "venv"
    venv.create(where, with_pip=False)  # this session's pip installs into it (--python): no ensurepip, faster
    python = where / "bin" / "python"
    result = _pip("--python", str(python), "install", "-q", "--no-deps", "-e", str(ROOT), "numpy")
    _skip_if_offline(result, "install budgetsched and numpy into a fresh venv")
    return where


def test_fresh_venv_core_builds_schedules(core_venv):
    code = ("import sys, budgetsched\n"
            "from budgetsched import Schedule, Plateau, available, parse_sampling\n"
            "s = Schedule('rex', 1000, peak_lr=0.1, warmup_fraction=0.01)\n"
            "assert abs(Schedule('rex', 100, 0.1)(50) - 0.1 * 2 / 3) < 1e-15\n"
            "assert s.with_budget(2000, at_step=400)(400) == s(400) and len(s.values()) == 1000\n"
            "assert len(available()) == 14 and parse_sampling('50-75').points.tolist() == [0.0, 0.5, 0.75]\n"
            "p = Plateau(2); [p.update(1.0) for _ in range(4)]; assert p.scale == 0.1\n"
            f"print(budgetsched.__version__, sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = _run(core_venv / "bin" / "python", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [budgetsched.__version__, "[]"]
    # nothing but numpy (and the package itself) is installed there
    frameworks = _run(core_venv / "bin" / "python", "import importlib.util as u; "
                      f"print([m for m in {HEAVY!r} if u.find_spec(m)])")
    assert frameworks.stdout.strip() == "[]"


@pytest.mark.parametrize("module,extra,framework", ADAPTERS)
def test_fresh_venv_adapter_import_names_the_extra(core_venv, module, extra, framework):
    out = _run(core_venv / "bin" / "python", f"import {module}")
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("budgetsched.MissingExtraError: ") and last.endswith(f"pip install 'budgetsched[{extra}]'")
    assert f"{module} needs {framework}" in last


def test_fresh_venv_command_says_to_install_the_bench_extra(core_venv):
    script = core_venv / "bin" / "budgetsched"
    out = subprocess.run([str(script), "report", "x.db"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("budgetsched: error: ")
    assert "pip install 'budgetsched[bench]'" in out.stderr
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip() == f"budgetsched {budgetsched.__version__}"


def test_the_wheel_ships_py_typed_and_the_license(tmp_path):
    result = _pip("wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT))
    _skip_if_offline(result, "build a wheel (its build backend, setuptools, is fetched)")
    assert "SetuptoolsDeprecationWarning" not in result.stderr
    (wheel,) = tmp_path.glob("budgetsched-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = email.message_from_string(z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
    assert "budgetsched/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("Requires-Dist")[0] == "numpy>=1.24"  # the only unconditional dependency
    assert not [r for r in meta.get_all("Requires-Dist") if "extra ==" not in r and not r.startswith("numpy")]
    extras = set(meta.get_all("Provides-Extra"))
    assert {"torch", "jax", "keras", "bench", "ray", "hf", "lightning", "all", "dev"} <= extras
