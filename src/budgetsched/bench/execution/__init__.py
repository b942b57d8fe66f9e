"""Execution: a planned study run in this process, in worker processes or on a Ray cluster, written to a store."""
