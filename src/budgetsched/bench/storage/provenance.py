"""What a row records besides its config and result: the versions, host and run that produced it, and the
result's fields checked and normalised for storing (status written as ``Status.value``)."""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import math
import platform
import socket
import sys
from typing import Any, Mapping

from budgetsched.bench.protocol.status import Status

__all__ = ["RESULT_FIELDS", "package_version", "torch_version", "now", "dumps", "result_fields", "provenance"]

#: Result attributes a trial result must provide (``TrialResult`` in ``bench/protocol/records.py``).
RESULT_FIELDS = ("status", "val_loss", "val_metric", "test_loss", "test_metric", "curves", "steps", "wall_time", "error")
_METRICS = ("val_loss", "val_metric", "test_loss", "test_metric")


def package_version() -> str:
    mod = sys.modules.get("budgetsched")
    version = getattr(mod, "__version__", None)
    if version:
        return str(version)
    try:
        return importlib.metadata.version("budgetsched")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def torch_version() -> str | None:
    # Do not import torch just to read its version (it takes a second); use the loaded module or the metadata.
    mod = sys.modules.get("torch")
    if mod is not None and getattr(mod, "__version__", None):
        return str(mod.__version__)
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _json_default(o: Any) -> Any:
    if isinstance(o, (tuple, set)):
        return list(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {o!r}")


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=_json_default)


def _opt_float(name: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"result field {name} must be a number or None, got {value!r}") from None


def result_fields(result: Any) -> dict[str, Any]:
    """Read the TrialResult fields from a TrialResult-like object or a mapping."""
    if isinstance(result, Mapping):
        missing = [f for f in RESULT_FIELDS if f not in result and f != "error"]
        get = lambda f: result.get(f)  # noqa: E731
    else:
        missing = [f for f in RESULT_FIELDS if not hasattr(result, f) and f != "error"]
        get = lambda f: getattr(result, f, None)  # noqa: E731
    if missing:
        raise ValueError(
            f"trial result lacks field(s) {', '.join(missing)}; a result needs {', '.join(RESULT_FIELDS)}"
        )
    out = {f: get(f) for f in RESULT_FIELDS}
    out["status"] = Status.parse(out["status"]).value  # SQL holds the enum's value
    for m in _METRICS:
        out[m] = _opt_float(m, out[m])
    out["wall_time"] = _opt_float("wall_time", out["wall_time"])
    if out["steps"] is not None:
        out["steps"] = int(out["steps"])
    curves = out["curves"] if out["curves"] is not None else {}
    if not isinstance(curves, Mapping):
        raise ValueError(f"result field curves must be a dict of lists, got {type(curves).__name__}")
    out["curves"] = {str(k): list(v) for k, v in curves.items()}
    if out["error"] is not None:
        out["error"] = str(out["error"])
    return out



def provenance(meta: Mapping[str, Any], wall_time: float | None) -> dict[str, Any]:
    """The provenance columns of a row written now: versions, host, engine, device, start and finish times (ISO),
    and the whole run ``meta`` as JSON. ``started`` is ``meta["started"]``, else the finish time minus
    ``wall_time``."""
    finished_dt = _dt.datetime.now(_dt.timezone.utc)
    started = meta.get("started")
    if started is None and wall_time is not None and math.isfinite(wall_time):
        started = (finished_dt - _dt.timedelta(seconds=wall_time)).isoformat(timespec="milliseconds")
    return {
        "started": None if started is None else str(started),
        "finished": finished_dt.isoformat(timespec="milliseconds"),
        "package_version": package_version(), "torch_version": torch_version(),
        "python_version": platform.python_version(), "hostname": socket.gethostname(),
        "engine": None if meta.get("engine") is None else str(meta["engine"]),
        "device": None if meta.get("device") is None else str(meta["device"]),
        "run_meta": dumps({k: v for k, v in meta.items() if k != "started"}),
    }
