"""The protocol: what a study is, validated once (torch-free).

``status`` (the trial status enum), ``grid`` (``TrialConfig``: every value of a trial checked when built, its
versioned key, grid expansion, the budget-change strategies), ``study`` (the study spec from presets, TOML files and
flags: validated and expanded once) and ``presets``; ``plan`` (``plan_trial``: the one place a budget becomes a run,
a frozen ``PlannedTrial``; ``plan_study`` with the one collapse rule, ``same_run_key`` / ``counted_budget``),
``selection`` (the selection rule written once: a trial's score, candidates x seeds arrays, the choice on
validation, the plateau->step merge, ranks) and ``records`` (the typed trial records: ``TrialResult`` from the
engines, ``TrialRow`` decoded once by the store). Nothing here imports torch, so the command line parses and
validates a study before loading any framework.
"""
