"""The repository's examples, loaded as modules so tests can call what users copy."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(filename: str) -> ModuleType:
    """``examples/<filename>`` executed as a fresh module."""
    spec = importlib.util.spec_from_file_location(f"{Path(filename).stem}_example", EXAMPLES / filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
