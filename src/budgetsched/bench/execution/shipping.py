"""The user's code travels with a study to a Ray cluster.

Task references are resolved here, on the driver (a relative file path against the driver's working directory),
and shipped with Ray's own mechanism, a runtime environment (:func:`code_to_ship`):

* ``path/to/file.py:factory``: the file's directory is the job's ``working_dir`` (every worker process starts in
  its copy, so the file and its sibling modules import there). Caches, virtual environments, version-control
  folders and stores are left out (:data:`EXCLUDES`); a directory that still holds more than
  :data:`MAX_SHIP_BYTES` is refused with one line (move the task file to a directory of its own).
* ``package.module:factory``: the module's top-level package goes in ``py_modules``, unless it is installed (in
  site-packages: every node needs it installed, as it needs budgetsched).

Each worker then imports a reference's code from the shipped copy (:func:`budgetsched.bench.tasks.registry.locate_task`);
the task keeps the reference as the user wrote it, so stored trials name it unchanged.
"""
from __future__ import annotations

import fnmatch
import importlib.util
import os
import site
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from budgetsched.errors import UsageError

__all__ = ["Shipment", "code_to_ship", "EXCLUDES", "MAX_SHIP_BYTES"]

#: What a shipped directory leaves out (Ray's working_dir excludes, gitignore-style patterns).
EXCLUDES = (".git", ".hg", ".svn", "__pycache__", "*.pyc", ".venv", "venv", ".env", "env", "node_modules",
            ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".tox", "*.egg-info", "build",
            "dist", "*.db", "*.db-wal", "*.db-shm", "*.db-journal", "*.anytime")
#: The most a shipped directory may hold after the excludes (Ray's own limit is 512 MiB, kept in its object store).
MAX_SHIP_BYTES = 50 * 1024 * 1024


@dataclass
class Shipment:
    """A runtime environment for the study (``runtime_env``) and, per task reference, where a worker imports its
    code from (``locations``: a path relative to the worker's working directory, or a module name)."""

    runtime_env: dict[str, Any] = field(default_factory=dict)
    locations: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.runtime_env


def _excluded(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in EXCLUDES)


def _size(directory: Path, limit: int) -> int:
    """Bytes under ``directory`` after the excludes (stops counting once past ``limit``)."""
    total = 0
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not _excluded(d)]
        for f in files:
            if not _excluded(f):
                try:
                    total += os.lstat(os.path.join(root, f)).st_size
                except OSError:
                    pass
        if total > limit:
            break
    return total


def _installed(path: Path) -> bool:
    """``path`` is inside an installation (site-packages, the standard library), not the user's own tree."""
    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib", "platstdlib")}
    roots.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    roots.add(site.getusersitepackages())
    return any(Path(r).resolve() in path.parents for r in roots if r and Path(r).exists())


def code_to_ship(task_names: Iterable[str], limit: int = MAX_SHIP_BYTES) -> Shipment:
    """What a Ray cluster needs of the user's code for tasks ``task_names`` (registered names need nothing).

    Raises:
        UsageError: task files in more than one directory (one working directory per job), or a directory above
            ``limit`` bytes.
    """
    from budgetsched.bench.tasks.registry import task_code

    out = Shipment()
    files: dict[str, Path] = {}
    modules: set[str] = set()
    for ref in dict.fromkeys(task_names):
        code = task_code(ref)
        if code is None:
            continue
        kind, where = code
        if kind == "file":
            files[ref] = where
            continue
        top = where.split(".")[0]
        if top == "budgetsched":
            continue
        spec = importlib.util.find_spec(top)
        if spec is None:
            continue  # resolve_task already said it cannot be imported
        if spec.submodule_search_locations:
            location = Path(list(spec.submodule_search_locations)[0]).resolve()
        elif spec.origin and spec.origin.endswith(".py"):
            location = Path(spec.origin).resolve()
        else:
            continue  # a built-in or compiled module: it has to be installed on the nodes
        if not _installed(location):
            modules.add(str(location))
        out.locations[ref] = where
    if files:
        directories = sorted({p.parent for p in files.values()})
        if len(directories) > 1:
            raise UsageError(f"task files in {len(directories)} directories ({', '.join(map(str, directories))}): "
                             "a study ships one directory to a Ray cluster; put the task files in one directory")
        directory = directories[0]
        size = _size(directory, limit)
        if size > limit:
            raise UsageError(f"the directory of the task file, {str(directory)!r}, holds more than "
                             f"{limit / 2 ** 20:.0f} MiB to ship to the Ray cluster (caches, environments and stores "
                             "left out); move the task file and the code it imports to a directory of their own")
        out.runtime_env["working_dir"] = str(directory)
        out.runtime_env["excludes"] = list(EXCLUDES)
        out.locations.update({ref: path.name for ref, path in files.items()})
    if modules:
        out.runtime_env["py_modules"] = sorted(modules)
    return out


def local_locations(task_names: Iterable[str]) -> dict[str, str]:
    """Where workers that share this machine's disk import each file reference from: its absolute path (so a
    relative reference means the same file whatever a worker's working directory)."""
    from budgetsched.bench.tasks.registry import task_code

    out = {}
    for ref in dict.fromkeys(task_names):
        code = task_code(ref)
        if code is not None and code[0] == "file":
            out[ref] = str(code[1])
    return out


