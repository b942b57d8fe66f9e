"""The protocol: what a study is, validated once (torch-free).

``status`` (the trial status enum), ``grid`` (``TrialConfig``, its versioned key, grid expansion), ``study`` (the
study spec from presets, TOML files and flags) and ``presets``. Nothing here imports torch, so the command line
parses and validates a study before loading any framework.
"""
