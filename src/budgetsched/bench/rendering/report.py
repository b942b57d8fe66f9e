"""The study report in one import: the analysis (:mod:`budgetsched.bench.analysis.report`: ``build_report``, the
report's records, row helpers) and its renderers (markdown, rich, csv, json). ``budgetsched.bench.report`` is this
module."""
from __future__ import annotations

from budgetsched.bench.analysis.report import *  # noqa: F401,F403 - the analysis half, re-exported
from budgetsched.bench.analysis.report import __all__ as _analysis_all
from budgetsched.bench.rendering.csv_json import CSV_COLUMNS, to_csv, to_json
from budgetsched.bench.rendering.markdown import to_markdown
from budgetsched.bench.rendering.rich_text import render_rich

__all__ = [*_analysis_all, "to_markdown", "to_csv", "to_json", "render_rich", "CSV_COLUMNS"]
