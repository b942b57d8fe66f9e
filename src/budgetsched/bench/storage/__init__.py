"""Storage: the SQLite results store.

``store`` (:class:`~budgetsched.bench.storage.store.Store`: opening, typed rows, the recorded study design,
writing), ``schema`` (layout, identity, migrations), ``database`` (errors, the one transaction helper, the
directory lock), ``claims`` (the :class:`~budgetsched.bench.storage.claims.Claims` interface, its SQLite and null
implementations) and ``provenance`` (versions, host and run of a row; result fields as stored).
"""
