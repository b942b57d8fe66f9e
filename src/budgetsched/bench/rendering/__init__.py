"""Rendering: figures (and the report's text formats) drawn from the analysis."""
