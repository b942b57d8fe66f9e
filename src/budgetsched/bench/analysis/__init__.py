"""Analysis: reading typed trials (rows.py), the report's data (report.py: build_report; setting.py, summary.py,
report_model.py), statistics (stats.py, aggregate.py, fair.py), the advisor, side experiments and refinement. The
selection rule itself is the protocol's (budgetsched.bench.protocol.selection)."""
