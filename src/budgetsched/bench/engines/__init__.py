"""Engines: how trials train, given their planned runs (:class:`budgetsched.bench.protocol.plan.PlannedTrial`).

``optim`` (the optimizer specifications: the protocol's SGDM / Adam and their schedule-free counterparts,
``optimizer_for``), ``train`` (the one training loop, ``fit``, and the sequential engine), ``stacked`` and the
``kernels`` package (model containers: one model, or K stacked copies; kernels by model family), ``batched`` (K
trials as one stacked model), ``anytime`` (trunks and branches), ``schedulefree`` (one schedule-free run serving
every budget, through ``fit``) and ``trainable`` (a user's own training function).
"""
