"""Analysis: selection on validation, statistics, the report's tables, the advisor, side experiments, refinement."""
