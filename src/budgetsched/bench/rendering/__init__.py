"""Rendering: the report's sections (sections.py) laid out as markdown (markdown.py), rich text (rich_text.py), CSV
and JSON (csv_json.py); the experiments' sections (experiments.py); figures (plots.py). ``report.py`` (alias
``budgetsched.bench.report``) re-exports the analysis with its renderers."""
